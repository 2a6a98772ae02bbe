#!/usr/bin/env bash
# Start a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler as local processes) with kwok faking N GPU nodes and their pods, and
# metrics-server serving metrics.k8s.io from the pods' kwok.x-k8s.io/usage-cpu and
# usage-memory annotations (so HorizontalPodAutoscalers really scale).
# No container engine, nothing downloaded: the binaries come from scripts/k8s/build.sh.
#   scripts/k8s/up.sh [NAME]       (NAME default $HPCRUN_K8S_CLUSTER or "hpcrun")
# Env: HPCRUN_K8S_NODES (4), HPCRUN_K8S_GPUS (2 per node), HPCRUN_K8S_INSTANCE_TYPE,
#      HPCRUN_K8S_CACHE, HPCRUN_KWOK_WORKDIR, K8S_VERSION.
# Writes a `backend: kubernetes` cluster file beside the kubeconfig (hpcrun-cluster.yaml)
# and prints the kubeconfig path last (stdout); everything else goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"

NAME=${1:-$HPCRUN_K8S_CLUSTER}
NODES=${HPCRUN_K8S_NODES:-4}
GPUS=${HPCRUN_K8S_GPUS:-2}
INSTANCE_TYPE=${HPCRUN_K8S_INSTANCE_TYPE:-g4dn.xlarge}
NODE_CPU=${HPCRUN_K8S_NODE_CPU:-4}
NODE_MEMORY=${HPCRUN_K8S_NODE_MEMORY:-16Gi}

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl \
  metrics-server; do
  [[ -x $K8S_BIN/$b ]] || { echo "error: $K8S_BIN/$b missing: run make k8s-binaries" >&2; exit 1; }
done

log() { echo "$@" >&2; }
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

mkdir -p "$KWOK_WORKDIR"
KUBECONFIG_PATH=$(kubeconfig_of "$NAME")
if prints "$NAME" "$KWOKCTL" get clusters 2>/dev/null; then
  if "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz >/dev/null 2>&1; then
    log "== cluster $NAME already running"
  else
    # Created but stopped (e.g. after a reboot). `kwokctl start cluster` brings it back, but
    # kwok v0.8.0's controller then fails to take over the old node leases ("lease already
    # exists") and never runs the pods of those nodes: make a fresh cluster instead (~4 s).
    log "== cluster $NAME exists but is not running: recreating it"
    "$here/down.sh" "$NAME" >&2
  fi
fi
if ! prints "$NAME" "$KWOKCTL" get clusters 2>/dev/null; then
  conf=$KWOK_WORKDIR/hpcrun-$NAME.yaml
  cat >"$conf" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: $K8S_VERSION
  etcdVersion: ${ETCD_VERSION#v}
  bindAddress: 127.0.0.1
  kubeApiserverBinary: $K8S_BIN/kube-apiserver
  kubeControllerManagerBinary: $K8S_BIN/kube-controller-manager
  kubeSchedulerBinary: $K8S_BIN/kube-scheduler
  kubectlBinary: $K8S_BIN/kubectl
  kwokControllerBinary: $K8S_BIN/kwok
  etcdBinary: $K8S_BIN/etcd
  cacheDir: $KWOK_WORKDIR/cache
  # metrics.k8s.io for HPAs: kwokctl starts metrics-server, registers its APIService, and
  # gives the kwok controller a Metric (kwok-metrics.yaml, appended below: what a node's
  # /metrics/nodes/NAME/metrics/resource serves) and its default ClusterResourceUsage (pod
  # usage from the kwok.x-k8s.io/usage-cpu / usage-memory annotations; 1m / 1Mi without).
  enable:
  - metrics-server
  metricsServerBinary: $K8S_BIN/metrics-server
  # a local kustomize dir, not kwokctl's default: components.yaml from github.com
  metricsServerManifests:
  - $here/metrics-server
componentsPatches:
- name: kube-controller-manager
  extraArgs:
  # HPAs act every 2 s instead of every 15 s (tests wait for them). The other HPA defaults
  # stay: a 5 min scale-down window (an HPA's behavior can shorten it), 5 min CPU warm-up.
  - key: horizontal-pod-autoscaler-sync-period
    value: 2s
- name: metrics-server
  extraArgs:
  # scrape every 10 s (metrics-server's minimum) instead of kwokctl's 15 s: a pod's first
  # CPU figure takes two scrapes (three with kwok's stock Metric, see kwok-metrics.yaml)
  - key: metric-resolution
    value: 10s
    override: true
  # must stay below 90 % of the resolution (metrics-server refuses to start otherwise)
  - key: kubelet-request-timeout
    value: 5s
---
EOF
  cat "$here/kwok-metrics.yaml" >>"$conf"
  # kwokctl caches a built manifest by its source path: drop it so edits to the dir count
  rm -rf "$KWOK_WORKDIR/cache/manifest"
  log "== creating cluster $NAME (kwokctl, runtime binary, $K8S_VERSION)"
  # --kubeconfig "": leave ~/.kube/config alone; the cluster's own kubeconfig is used.
  # PortForward: `kubectl port-forward` to a fake pod reaches what a PortForward object
  # names (a test's stand-in for a viewer); the API server dials the nodes' kubelet (kwok)
  # at their address, so the nodes carry no Hostname of their own (kwok adds localhost).
  "$KWOKCTL" --config "$conf" create cluster --name "$NAME" --kubeconfig "" \
    --enable-crds=PortForward --timeout 3m --wait 2m >&2
fi
log "== control plane ready after $(elapsed) s"

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# The fake nodes: kwok (binary runtime: --manage-all-nodes) keeps them Ready and runs their
# pods through its default stages (pods Ready, Job pods Succeeded).
manifest=$(
  for ((i = 0; i < NODES; i++)); do
    n=gpu-node-$i
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
    # where metrics-server scrapes this node: the kwok controller's per-node path
    metrics.k8s.io/resource-metrics-path: /metrics/nodes/$n/metrics/resource
  labels:
    type: kwok
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node.kubernetes.io/instance-type: $INSTANCE_TYPE
    topology.kubernetes.io/zone: us-east-1a
    nvidia.com/gpu.present: "true"
spec: {}
status:
  capacity:
    cpu: "$NODE_CPU"
    memory: $NODE_MEMORY
    pods: "110"
    nvidia.com/gpu: "$GPUS"
  allocatable:
    cpu: "$NODE_CPU"
    memory: $NODE_MEMORY
    pods: "110"
    nvidia.com/gpu: "$GPUS"
  addresses:
  - type: InternalIP
    address: 127.0.0.1
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
    kubeProxyVersion: fake
EOF
  done
)
echo "$manifest" | kc apply -f - >&2
kc wait --for=condition=Ready node -l type=kwok --timeout=60s >&2
# kube-controller-manager is working once it has made default/default (pods need it)
for _ in $(seq 120); do kc -n default get serviceaccount default >/dev/null 2>&1 && break; sleep 0.5; done
kc -n default get serviceaccount default >/dev/null
log "== $NODES nodes Ready after $(elapsed) s"
# A ready cluster file for hpcrun (`hpcrun create --config` it): the kwok pods run no
# container, so any image name does; none needs pulling.
cluster_file=$(cluster_dir "$NAME")/hpcrun-cluster.yaml
cat >"$cluster_file" <<EOF
backend: kubernetes
name: $NAME
kubeconfig: $KUBECONFIG_PATH
namespace: default
index:
  image: nvcr.io/nvidia/nvindex:kwok
  pull_secret: null
EOF
log "== hpcrun cluster file: $cluster_file"
log "export KUBECONFIG=$KUBECONFIG_PATH"
echo "$KUBECONFIG_PATH"
