#!/usr/bin/env bash
# Build a real Kubernetes control plane (no container engine) from Go modules, once per
# machine, cached outside the repo by version:
#   ${HPCRUN_K8S_CACHE:-$HOME/.cache/hpcrun}/k8s-<K8S_VERSION>/bin/
#     kube-apiserver kube-controller-manager kube-scheduler kubectl   (k8s.io/kubernetes)
#     etcd                                                             (go.etcd.io/etcd/server/v3)
#     kwok kwokctl                                                     (sigs.k8s.io/kwok)
#     helm                                                             (helm.sh/helm/v3)
#     metrics-server                                                   (sigs.k8s.io/metrics-server)
# Idempotent: a binary is rebuilt only when it is missing or its stamp (bin/.stamp-<name>)
# names another module version. Prints how long each part took.
#
# k/k cannot be `go install`ed (its go.mod replaces the staging modules with ./staging/...),
# so it is built from a wrapper module that requires k8s.io/kubernetes vX and replaces every
# k8s.io/<staging> module with k8s.io/<staging> v0.X.Y (the list read from k/k's go.mod).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"                    # K8S_VERSION, ETCD_VERSION, K8S_BIN, prints
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}    # newest helm v3 on the proxy
# kwok v0.8.0 defaults to metrics-server 0.8.1; v0.8.0 is the 0.8 release on the module proxy
# (not v0.9.0). It reads the nodes' metrics.k8s.io/resource-metrics-path that kwok relies on.
METRICS_SERVER_VERSION=${METRICS_SERVER_VERSION:-v0.8.0}

BIN=$K8S_BIN
WORK=$(dirname "$BIN")/build

export CGO_ENABLED=0
export GOMAXPROCS=${GOMAXPROCS:-2}
export GOFLAGS="-mod=mod -trimpath -buildvcs=false"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

command -v go >/dev/null || { echo "error: go not found (Go >= 1.24 is needed)" >&2; exit 1; }
mkdir -p "$BIN" "$WORK"

now() { date +%s; }
T_ALL=$(now)
BUILT=0

# stamp NAME -> the text that must be in bin/.stamp-NAME for NAME to count as built
want_stamp() { echo "$1 $2 go=$(go env GOVERSION)"; }
is_built() {  # NAME STAMP
  [[ -x $BIN/$1 && -f $BIN/.stamp-$1 && "$(cat "$BIN/.stamp-$1")" == "$2" ]]
}

# build NAME STAMP MODDIR PKG LDFLAGS: one binary at a time (memory), timed
build() {
  local name=$1 stamp=$2 dir=$3 pkg=$4 ldflags=$5 t
  if is_built "$name" "$stamp"; then
    echo "== $name: up to date ($stamp)"
    return
  fi
  echo "== $name: building $pkg"
  t=$(now)
  (cd "$dir" && go build -ldflags "$ldflags" -o "$BIN/$name.tmp" "$pkg")
  mv -f "$BIN/$name.tmp" "$BIN/$name"
  echo "$stamp" >"$BIN/.stamp-$name"
  echo "== $name: built in $(($(now) - t)) s ($(du -h "$BIN/$name" | cut -f1))"
  BUILT=1
}

# wrapper DIR MODULE GOVERSION REQUIRE... : a go.mod + tools.go importing the main packages
write_tools_go() {  # DIR PKG...
  local dir=$1; shift
  { echo "//go:build tools"; echo; echo "package tools"; echo; echo "import ("
    for p in "$@"; do echo "	_ \"$p\""; done; echo ")"; } >"$dir/tools.go"
}

# ---------------------------------------------------------------- Kubernetes (k/k)
K8S_MINOR_V=v0.${K8S_VERSION#v1.}        # v1.34.4 -> v0.34.4 (staging modules)
IFS=. read -r _maj K8S_MINOR _patch <<<"${K8S_VERSION#v}"
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
need_k8s=0
for b in "${K8S_BINS[@]}"; do
  is_built "$b" "$(want_stamp "$b" "k8s.io/kubernetes@$K8S_VERSION")" || need_k8s=1
done
if [[ $need_k8s == 1 ]]; then
  t=$(now)
  KDIR=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  [[ -f $KDIR/go.mod ]] || { echo "error: cannot download k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
  W=$WORK/kubernetes
  mkdir -p "$W"
  GOVER=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$KDIR/go.mod")
  {
    echo "module hpcrun.local/k8s-build"
    echo
    echo "go $GOVER"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # every `k8s.io/<name> => ./staging/src/k8s.io/<name>` becomes `=> k8s.io/<name> v0.X.Y`
    sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/.*$#\t\1 => \1 '"$K8S_MINOR_V"'#p' "$KDIR/go.mod"
    echo ")"
  } >"$W/go.mod.new"
  if ! cmp -s "$W/go.mod.new" "$W/go.mod.src" 2>/dev/null; then
    cp "$W/go.mod.new" "$W/go.mod"; rm -f "$W/go.sum" "$W/go.mod.src"
    write_tools_go "$W" $(for b in "${K8S_BINS[@]}"; do echo "k8s.io/kubernetes/cmd/$b"; done)
    echo "== kubernetes: resolving the wrapper module ($(grep -c '=> k8s.io' "$W/go.mod") staging replaces)"
    (cd "$W" && go mod tidy)
    cp "$W/go.mod.new" "$W/go.mod.src"   # only once tidy worked
  fi
  rm -f "$W/go.mod.new"
  echo "== kubernetes: module ready in $(($(now) - t)) s"
  # hack/lib/version.sh's kube::version::ldflags
  BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  KLD="-s -w"
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    KLD+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR"
    KLD+=" -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE"
  done
  for b in "${K8S_BINS[@]}"; do
    build "$b" "$(want_stamp "$b" "k8s.io/kubernetes@$K8S_VERSION")" "$W" "k8s.io/kubernetes/cmd/$b" "$KLD"
  done
fi

# ---------------------------------------------------------------- etcd
if ! is_built etcd "$(want_stamp etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"; then
  t=$(now)
  W=$WORK/etcd-$ETCD_VERSION
  mkdir -p "$W"
  if [[ ! -f $W/.tidy-ok ]]; then
    cat >"$W/go.mod" <<EOF
module hpcrun.local/etcd-build

go 1.24

require (
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
EOF
    write_tools_go "$W" go.etcd.io/etcd/server/v3
    (cd "$W" && go mod tidy)
    touch "$W/.tidy-ok"
  fi
  echo "== etcd: module ready in $(($(now) - t)) s"
  build etcd "$(want_stamp etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION")" "$W" go.etcd.io/etcd/server/v3 "-s -w"
fi

# ---------------------------------------------------------------- kwok, kwokctl (no replaces)
KWLD="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$K8S_VERSION"
for b in kwok kwokctl; do
  stamp=$(want_stamp "$b" "sigs.k8s.io/kwok@$KWOK_VERSION k8s=$K8S_VERSION")
  if ! is_built "$b" "$stamp"; then
    echo "== $b: building sigs.k8s.io/kwok/cmd/$b@$KWOK_VERSION"
    t=$(now)
    GOFLAGS="-trimpath -buildvcs=false" GOBIN=$WORK/gobin go install -ldflags "$KWLD" "sigs.k8s.io/kwok/cmd/$b@$KWOK_VERSION"
    mv -f "$WORK/gobin/$b" "$BIN/$b"; echo "$stamp" >"$BIN/.stamp-$b"
    echo "== $b: built in $(($(now) - t)) s ($(du -h "$BIN/$b" | cut -f1))"
    BUILT=1
  else
    echo "== $b: up to date ($stamp)"
  fi
done

# ---------------------------------------------------------------- helm (no replaces)
stamp=$(want_stamp helm "helm.sh/helm/v3@$HELM_VERSION")
if ! is_built helm "$stamp"; then
  echo "== helm: building helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  t=$(now)
  HDIR=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  # helm's Makefile: the client-go version it was built with is its default kube capability
  CGV=$(sed -n 's/^[[:space:]]*k8s.io\/client-go \(v[0-9.]*\).*/\1/p' "$HDIR/go.mod" | head -1)
  IFS=. read -r _ HMAJ HMIN _ <<<"${CGV#v}"
  HMAJ=$((HMAJ + 1))   # client-go v0.35.x -> Kubernetes 1.35
  HLD="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  HLD+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  HLD+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HMAJ -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HMIN"
  HLD+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HMAJ -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HMIN"
  GOFLAGS="-trimpath -buildvcs=false" GOBIN=$WORK/gobin go install -ldflags "$HLD" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv -f "$WORK/gobin/helm" "$BIN/helm"; echo "$stamp" >"$BIN/.stamp-helm"
  echo "== helm: built in $(($(now) - t)) s ($(du -h "$BIN/helm" | cut -f1))"
  BUILT=1
else
  echo "== helm: up to date ($stamp)"
fi

# ---------------------------------------------------------------- metrics-server (no replaces)
# Serves metrics.k8s.io for HPAs. It scrapes the kwok controller (at the path each fake node's
# metrics.k8s.io/resource-metrics-path names), which reports the pods' usage-* annotations.
stamp=$(want_stamp metrics-server "sigs.k8s.io/metrics-server@$METRICS_SERVER_VERSION")
if ! is_built metrics-server "$stamp"; then
  echo "== metrics-server: building sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
  t=$(now)
  # its Makefile's VERSION_LDFLAGS: `metrics-server --version` prints client-go's gitVersion
  MLD="-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
  MLD+=" -X k8s.io/client-go/pkg/version.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  GOFLAGS="-trimpath -buildvcs=false" GOBIN=$WORK/gobin go install -ldflags "$MLD" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
  mv -f "$WORK/gobin/metrics-server" "$BIN/metrics-server"; echo "$stamp" >"$BIN/.stamp-metrics-server"
  echo "== metrics-server: built in $(($(now) - t)) s ($(du -h "$BIN/metrics-server" | cut -f1))"
  BUILT=1
else
  echo "== metrics-server: up to date ($stamp)"
fi

# ---------------------------------------------------------------- check
prints "Client Version: $K8S_VERSION" "$BIN/kubectl" version --client ||
  { echo "error: kubectl does not report $K8S_VERSION" >&2; exit 1; }
prints "Kubernetes $K8S_VERSION" "$BIN/kube-apiserver" --version ||
  { echo "error: kube-apiserver does not report $K8S_VERSION" >&2; exit 1; }
prints "etcd Version: ${ETCD_VERSION#v}" "$BIN/etcd" --version ||
  { echo "error: etcd does not report ${ETCD_VERSION#v}" >&2; exit 1; }
prints "$METRICS_SERVER_VERSION" "$BIN/metrics-server" --version ||
  { echo "error: metrics-server does not report $METRICS_SERVER_VERSION" >&2; exit 1; }
if [[ $BUILT == 1 ]]; then
  echo "== all built in $(($(now) - T_ALL)) s; $(du -sh "$BIN" | cut -f1) in $BIN"
fi
echo "$BIN"
