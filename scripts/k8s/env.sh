# Sourced by scripts/k8s/{build,up,down,smoke}.sh: where the binaries and kwokctl's state live.
# Everything is outside the repo: binaries by version under the cache dir, and kwokctl's
# working dir (clusters, pids, logs, kubeconfigs) under HPCRUN_KWOK_WORKDIR.
K8S_VERSION=${K8S_VERSION:-v1.34.4}      # EKS supports 1.34; newest 1.34 patch on the proxy
ETCD_VERSION=${ETCD_VERSION:-v3.6.5}     # k/k v1.34.x build/dependencies.yaml: etcd 3.6.5
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
# prints LINE CMD...: true when CMD succeeds and LINE is one whole line of its stdout.
# The output is read to its end before it is searched: under pipefail, `CMD | grep -q`
# fails at random whenever grep exits at its first match and CMD then dies of SIGPIPE
# writing the rest (CI saw `etcd --version` do exactly that).
prints() { local line=$1 out; shift; out=$("$@") || return 1; grep -qxF -- "$line" <<<"$out"; }
