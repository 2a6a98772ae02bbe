#!/usr/bin/env bash
# Delete a cluster made by scripts/k8s/up.sh and check that none of its processes is left.
#   scripts/k8s/down.sh [NAME]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
NAME=${1:-$HPCRUN_K8S_CLUSTER}
dir=$(cluster_dir "$NAME")

[[ -x $KWOKCTL ]] || { echo "error: $KWOKCTL missing: run make k8s-binaries" >&2; exit 1; }
if [[ ! -d $dir ]]; then
  echo "== no cluster $NAME under $KWOK_WORKDIR"
  exit 0
fi
# kwokctl's binary runtime writes each component's pid to <cluster>/pids/<component>.pid
# (the files have no trailing newline: read them one by one)
pids=""
for f in "$dir"/pids/*.pid; do
  if [[ -f $f ]]; then pids+=" $(tr -dc '0-9' <"$f")"; fi
done
# alive PID: running, and not a zombie waiting for init to reap it
alive() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
t0=$(date +%s)
"$KWOKCTL" delete cluster --name "$NAME" >&2 || true
left=""
for pid in $pids; do
  for _ in 1 2 3 4 5 6 7 8 9 10; do alive "$pid" || break; sleep 0.5; done
  if alive "$pid"; then
    echo "== pid $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline | cut -c1-80)) still running: killing it" >&2
    kill "$pid" 2>/dev/null || true; sleep 1; kill -9 "$pid" 2>/dev/null || true
    left+=" $pid"
  fi
done
rm -rf "$dir" "$KWOK_WORKDIR/hpcrun-$NAME.yaml"
echo "== cluster $NAME deleted in $(($(date +%s) - t0)) s${left:+ (had to kill:$left)}"
