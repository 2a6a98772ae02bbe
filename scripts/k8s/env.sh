# Sourced by scripts/k8s/{up,down,smoke}.sh: where the binaries and kwokctl's state live.
# Everything is outside the repo: binaries by version under the cache dir, and kwokctl's
# working dir (clusters, pids, logs, kubeconfigs) under HPCRUN_KWOK_WORKDIR.
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.5}
HPCRUN_K8S_CACHE=${HPCRUN_K8S_CACHE:-$HOME/.cache/hpcrun}
K8S_BIN=$HPCRUN_K8S_CACHE/k8s-$K8S_VERSION/bin
HPCRUN_KWOK_WORKDIR=${HPCRUN_KWOK_WORKDIR:-$HPCRUN_K8S_CACHE/kwok}
HPCRUN_K8S_CLUSTER=${HPCRUN_K8S_CLUSTER:-hpcrun}
export KWOK_WORKDIR=$HPCRUN_KWOK_WORKDIR
KWOKCTL=$K8S_BIN/kwokctl
KUBECTL=$K8S_BIN/kubectl
cluster_dir() { echo "$KWOK_WORKDIR/clusters/$1"; }
kubeconfig_of() { echo "$(cluster_dir "$1")/kubeconfig.yaml"; }
export KUBECACHEDIR=${KUBECACHEDIR:-$KWOK_WORKDIR/kube-cache}   # kubectl discovery cache, not ~/.kube/cache
