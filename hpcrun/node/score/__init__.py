"""The score task: score a table with a tree model as a job array -- `inspect`, `shard`, `merge`.

It runs on cluster nodes with the cluster's own Python, where hpcrun is not installed:
`hpcrun.node.zipapp` packs this package into one content-hashed `score_task.pyz`, which
the submitting side copies to the cluster and runs as `python score_task.pyz inspect ...`.
Inside the zipapp the package is `hpcrun_score`; so every import here is relative and
none leaves the package (the standard library, numpy, pyarrow, xgboost and, lazily,
tritonclient are all it uses).

`inspect` (table.py, model.py) reads metadata, headers and line breaks, never the table,
so the user's machine can plan an array over a table of any size from its JSON; the plan
comes back as plan.json (plan.py, the one type both sides read). `shard` (shard.py)
scores one slice of the plan in bounded memory: segments read and re-cut into batches
(reading.py), predicted in the task (local.py) or by a Triton server it starts
(servers.py) and feeds through shared memory (triton.py), two batches in flight
(scoring.py), written into its part (writing.py). `merge` (merge.py) streams the parts
into one file. Every file is written under a temporary name and renamed, so a part that
exists is complete and a killed task leaves nothing that looks finished.

Why bit-identical predictions: every server mode sends the same float32 matrix through
the same `model.predict` (the pytriton model imports it from the zipapp), so switching
modes never moves a number, and the tests compare modes with `==`, not a tolerance.

CSV inputs are split at line breaks, so quoted fields must not contain newlines; a block
whose row count differs from the plan's fails the shard rather than shifting rows.
"""
