"""What runs on a cluster (IndeX sessions, Blender frames, Triton scoring), as plain data.

Each workload turns its inputs into `JobSpec`s (Slurm) or manifests (Kubernetes) with no
I/O of its own; the IndeX, Blender and Triton issues fill this package.
"""
