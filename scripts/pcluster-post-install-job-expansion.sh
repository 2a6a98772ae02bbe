#!/bin/bash
# ParallelCluster post_install (2.x) / OnNodeConfigured (3.x) script: let running Slurm jobs
# grow, which `hpcrun scale +N` (IndeX attaching render nodes) needs.
#
# Why a script: ParallelCluster 2.8.0 has no CustomSlurmSettings, so slurm.conf is edited on
# the head node. ParallelCluster's own slurm.conf may already set SchedulerParameters (3.x
# sets nohold_on_prolog_fail when node names go into /etc/hosts), and Slurm keeps only the
# last SchedulerParameters line, so the value is extended, never replaced. Runs on every
# node; only the head node changes anything. Safe to run twice.
set -euo pipefail

SLURM_CONF="${SLURM_CONF:-/opt/slurm/etc/slurm.conf}"
CFN_CONFIG="${CFN_CONFIG:-/etc/parallelcluster/cfnconfig}"
PARAMETER="permit_job_expansion"

node_type=""
if [[ -r "$CFN_CONFIG" ]]; then
    # shellcheck disable=SC1090
    . "$CFN_CONFIG"
    node_type="${cfn_node_type:-}"
fi
case "$node_type" in
    MasterServer | HeadNode) ;;   # 2.x and 3.x names of the head node
    *) echo "not the head node (cfn_node_type=${node_type:-unset}); nothing to do"; exit 0 ;;
esac

if [[ ! -w "$SLURM_CONF" ]]; then
    echo "error: $SLURM_CONF is missing or not writable" >&2
    exit 1
fi

# The last uncommented SchedulerParameters line is the one Slurm uses.
current="$(grep -E '^[[:space:]]*SchedulerParameters[[:space:]]*=' "$SLURM_CONF" | tail -n 1 || true)"
if [[ -z "$current" ]]; then
    echo "SchedulerParameters=$PARAMETER" >> "$SLURM_CONF"
elif [[ ",${current#*=}," == *",$PARAMETER,"* ]]; then
    echo "$PARAMETER already set in $SLURM_CONF"
    exit 0
else
    value="${current#*=}"
    value="${value//[[:space:]]/}"
    # Comment out every earlier line and write one with the extended value.
    sed -i -E 's/^([[:space:]]*SchedulerParameters[[:space:]]*=)/# replaced by hpcrun: \1/' "$SLURM_CONF"
    echo "SchedulerParameters=${value:+$value,}$PARAMETER" >> "$SLURM_CONF"
fi
echo "SchedulerParameters now: $(grep -E '^SchedulerParameters=' "$SLURM_CONF" | tail -n 1)"

if [[ "${HPCRUN_NO_RECONFIGURE:-}" == "1" ]]; then
    exit 0
fi
PATH="/opt/slurm/bin:$PATH"
if ! scontrol reconfigure 2>/dev/null; then
    systemctl restart slurmctld
fi
