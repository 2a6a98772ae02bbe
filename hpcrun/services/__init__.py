"""Services carry out a workload's plan against a cluster: they run its Slurm commands
through the backend's `SlurmClient`, record intent and outcome in the state store and
report progress. Workloads stay pure data; the CLI stays parsing and printing.
"""
