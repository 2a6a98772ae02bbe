"""How hpcrun speaks Kubernetes: the objects it makes (`manifests`), and, beside them, the
server-side-apply layer and the scheduler that run them. Only this package knows
Kubernetes' object grammar, as only hpcrun.slurm knows Slurm's."""
