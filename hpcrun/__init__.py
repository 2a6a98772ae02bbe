"""hpcrun: one command to run GPU visualisation and batch work on Slurm clusters."""

__version__ = "0.1.0"
