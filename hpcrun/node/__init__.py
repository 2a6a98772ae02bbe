"""Programs that run ON cluster nodes, not on the user's machine.

`viewer/` is the open nvindex-slurm-compatible renderer (launcher, render agents, viewer
and its web page), `score/` the score task (`inspect`, `shard`, `merge`), `flare/` a FLARE
participant's task and `farm/` the render farm's queue worker (SQS in, S3 out). They are
shipped to the nodes as an installed package (`hpcrun-nvindex-slurm`) or, where hpcrun is
not installed, as a zipapp built from the package's own files (`hpcrun.node.zipapp`).

The boundary: code under `hpcrun.node` imports only `hpcrun.node`, `hpcrun.scenes` and
`hpcrun.errors` -- never state, services, slurm, workloads or the CLI, which are the
user's side. `score/`, `flare/` and `farm/` are stricter still: each imports nothing
outside its own package (relative imports only), because a zipapp holds that package
alone. The user's side may import node code (e.g. `workloads.score` takes its plan types
from `node.score.plan`).
"""
