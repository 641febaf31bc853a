# Shared settings for the cluster scripts; sourced, not run.
# Everything built, installed or started lives under $SCANJOB_CACHE, outside the clone, so a
# second run on the same machine reuses it and `git clean` never destroys a 10-minute build.
SCANJOB_CACHE=${SCANJOB_CACHE:-$HOME/.cache/scanjob}
KUBE_VERSION=v1.36.3
# Staging modules (k8s.io/api, k8s.io/apiserver, ...) are published as v0.<minor>.<patch>.
KUBE_STAGING_VERSION=v0.36.3
# A kube-apiserver 1.36 built with Go 1.27 serves broken OpenAPI, so the Go minor is pinned.
GO_REQUIRED_MINOR=go1.26
HELM_VERSION=v3.19.0
# The lint of .github/workflows (built from its Go module).
ACTIONLINT_VERSION=v1.7.12
# The batch queue (sigs.k8s.io/kueue) the shared-cluster tests admit Jobs through.
KUEUE_VERSION=v0.17.0
ETCD_PACKAGE=etcd-server
SEAWEEDFS_VERSION=4.48
PYARROW_VERSION=26.0.1
# DuckDB's delta and httpfs extensions come as wheels of the same version (DuckDB would
# otherwise download them at run time); 1.5.5 is the newest release that has them.
DUCKDB_VERSION=1.5.5
# The Delta Lake readers the tests read the table of contents with.
POLARS_VERSION=2.1.0
DELTALAKE_VERSION=1.6.6
PANDAS_VERSION=3.1.1
# Spark reads the table too: pyspark from PyPI, Delta's Spark connector as two jars from Maven
# Central (Spark's own Ivy download is not used), Java 17 from Debian.
PYSPARK_VERSION=4.0.1
DELTA_SPARK_VERSION=4.0.1
# Validates rendered Helm output against the Kubernetes OpenAPI schemas (knows 1.36).
KUBERNETES_VALIDATE_VERSION=1.37.0
# Builds the `scanjob` wheel (release/wheel.sh; tests/wheel.sh).
MATURIN_VERSION=1.16.0

KUBE_BIN=$SCANJOB_CACHE/kube-$KUBE_VERSION
# Kueue's binary, its CRDs and its webhook manifests, from its Go module.
KUEUE_DIR=$SCANJOB_CACHE/kueue-$KUEUE_VERSION
# The OCI archives of the images (built from the release binaries by images.py, imported into
# containerd by up.sh) and of the pause image.
IMAGES_DIR=$SCANJOB_CACHE/images
TOOLS_BIN=$SCANJOB_CACHE/bin
VENV=$SCANJOB_CACHE/venv
SPARK_JARS_DIR=$SCANJOB_CACHE/spark-jars-$DELTA_SPARK_VERSION
RUN_DIR=$SCANJOB_CACHE/run

# Loopback ports. Chosen away from the defaults (6443, 2379, 8333) so a developer's own cluster
# or S3 on the same machine does not collide with the test one.
ETCD_PORT=${SCANJOB_ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
API_PORT=${SCANJOB_API_PORT:-26443}
KCM_PORT=${SCANJOB_KCM_PORT:-26444}
# The node: the kubelet's API and healthz, kube-scheduler's secure port.
KUBELET_PORT=${SCANJOB_KUBELET_PORT:-26250}
KUBELET_HEALTHZ_PORT=$((KUBELET_PORT - 2))
SCHED_PORT=${SCANJOB_SCHED_PORT:-26459}
# Kueue, a host process: its admission webhooks (called by kube-apiserver), health and metrics.
KUEUE_WEBHOOK_PORT=${SCANJOB_KUEUE_PORT:-26460}
KUEUE_HEALTH_PORT=$((KUEUE_WEBHOOK_PORT + 1))
KUEUE_METRICS_PORT=$((KUEUE_WEBHOOK_PORT + 2))
# Low enough that every weed port and its gRPC twin (+10000) stays below the kernel's ephemeral
# range (32768 and up), where an outgoing connection (the apiserver's to etcd) may hold it.
S3_PORT=${SCANJOB_S3_PORT:-18333}
# The OCI registry the images and the chart are pushed to and the node pulls from.
REGISTRY_PORT=${SCANJOB_REGISTRY_PORT:-25000}
REGISTRY=127.0.0.1:$REGISTRY_PORT/scanjob

die() { echo "error: $*" >&2; exit 1; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# The node's state: containerd's root and state, the kubelet's root, pod logs. Everything of the
# node lives under these, and down.sh unmounts and removes them.
NODE_DIR=$RUN_DIR/node
CONTAINERD_DIR=$NODE_DIR/containerd
CONTAINERD_SOCK=$CONTAINERD_DIR/containerd.sock
KUBELET_DIR=$NODE_DIR/kubelet
# The cgroup (in every v1 hierarchy, or under the v2 root) that holds every pod.
CGROUP_ROOT=scanjob-test
# The node registers under the machine's hostname, which must resolve to a loopback address: the
# apiserver reaches the kubelet (logs, exec) by hostname, never through another interface.
NODE_NAME=$(hostname)

# The processes up.sh starts, in stop order. Each has $RUN_DIR/pids/<name>.pid.
SERVICES=(kubelet containerd kueue kube-scheduler kube-controller-manager kube-apiserver etcd weed registry)

# Every loopback port the services listen on (weed opens gRPC twins at +10000 and a few extras);
# down.sh checks that none is left bound and up.sh that none is taken before starting.
WEED_MASTER_PORT=$((S3_PORT + 1000))
WEED_VOLUME_PORT=$((S3_PORT + 1007))
WEED_FILER_PORT=$((S3_PORT + 555))
WEED_ICEBERG_PORT=$((S3_PORT - 152))
WEED_LANCE_PORT=$((S3_PORT - 151))
WEED_METRICS_PORT=$((S3_PORT + 768))
WEED_ADMIN_PORT=$((S3_PORT + 1313))
ALL_PORTS=(
  "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$SCHED_PORT" "$KCM_PORT" "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT"
  "$KUEUE_WEBHOOK_PORT" "$KUEUE_HEALTH_PORT" "$KUEUE_METRICS_PORT" "$REGISTRY_PORT"
  "$S3_PORT" $((S3_PORT + 10000)) "$WEED_MASTER_PORT" $((WEED_MASTER_PORT + 10000))
  "$WEED_VOLUME_PORT" $((WEED_VOLUME_PORT + 10000)) "$WEED_FILER_PORT" $((WEED_FILER_PORT + 10000))
  "$WEED_ICEBERG_PORT" "$WEED_LANCE_PORT" "$WEED_METRICS_PORT" "$WEED_ADMIN_PORT" $((WEED_ADMIN_PORT + 10000))
)

# Pids of whatever listens on TCP port $1 (any address).
port_pids() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }

# True when pid $1 runs one of the binaries this project starts: a stale pid file must never make
# us kill an unrelated process that reused the pid.
is_ours() {
  local exe
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  case "$exe" in
  "$SCANJOB_CACHE"/* | */etcd | */containerd | */docker-registry) return 0 ;;
  *) return 1 ;;
  esac
}

# Stop pid $1: SIGTERM, then SIGKILL after $2 seconds (kube-apiserver drains for a few seconds).
stop_pid() {
  local pid=$1 grace=${2:-20} i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

# ctr against the test node's containerd, in the namespace the kubelet uses.
node_ctr() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
