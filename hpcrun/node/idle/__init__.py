"""The idle guard: how long a Slurm cluster has had no job, and what to do about it.

`compute` is the one definition of "idle" (pure, stdlib only): hpcrun's `status`,
`clusters` and `down --if-idle` use it through `hpcrun.services.idle`, and the guard
that `hpcrun create --idle-down` installs on a ParallelCluster head node uses it there
(`guard`, run every 5 minutes by a systemd timer or cron, installed by `install`). The
package ships to the head node as a zipapp (`hpcrun.node.zipapp`), so it imports only
itself, relatively, and runs on the head node's own python3 (3.7 on Amazon Linux 2).
"""
