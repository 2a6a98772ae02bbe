#!/usr/bin/env bash
# Check a cluster from scripts/k8s/up.sh: a Deployment with GPU limits is scheduled and its
# pods become Ready (kwok's default stages); a pod asking more GPUs than a node has stays
# Pending with reason Unschedulable.   scripts/k8s/smoke.sh [NAME]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
NAME=${1:-$HPCRUN_K8S_CLUSTER}
GPUS=${HPCRUN_K8S_GPUS:-2}
kc() { "$KUBECTL" --kubeconfig "$(kubeconfig_of "$NAME")" "$@"; }
ns=hpcrun-smoke
t0=$(date +%s)

kc version
kc get nodes -o wide
kc delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
kc create namespace "$ns" >/dev/null
# pods are refused until kube-controller-manager has made the namespace's default ServiceAccount
for _ in $(seq 60); do kc -n "$ns" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.5; done
cat <<EOF2 | kc -n "$ns" apply -f -
apiVersion: apps/v1
kind: Deployment
metadata: {name: gpu-work}
spec:
  replicas: 3
  selector: {matchLabels: {app: gpu-work}}
  template:
    metadata: {labels: {app: gpu-work}}
    spec:
      containers:
      - name: work
        image: example.invalid/gpu-work:1
        resources:
          requests: {cpu: 500m, memory: 1Gi}
          limits: {nvidia.com/gpu: "1"}
---
apiVersion: v1
kind: Pod
metadata: {name: too-many-gpus}
spec:
  containers:
  - name: work
    image: example.invalid/gpu-work:1
    resources:
      limits: {nvidia.com/gpu: "$((GPUS + 1))"}
EOF2
kc -n "$ns" rollout status deployment/gpu-work --timeout=60s
kc -n "$ns" wait --for=condition=Ready pod -l app=gpu-work --timeout=60s
kc -n "$ns" get pods -o wide
for _ in $(seq 60); do
  reason=$(kc -n "$ns" get pod too-many-gpus -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}')
  [[ -n $reason ]] && break
  sleep 0.5
done
phase=$(kc -n "$ns" get pod too-many-gpus -o jsonpath='{.status.phase}')
msg=$(kc -n "$ns" get pod too-many-gpus -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')
echo "too-many-gpus: phase=$phase reason=$reason: $msg"
[[ $phase == Pending && $reason == Unschedulable ]] || { echo "FAIL: expected Pending/Unschedulable" >&2; exit 1; }
kc delete namespace "$ns" --wait=false >/dev/null
echo "== smoke OK in $(($(date +%s) - t0)) s"
