#!/usr/bin/env bash
# Start the test cluster on 127.0.0.1 only and write $SCANJOB_CACHE/run/env.sh:
#   etcd, kube-apiserver (static token auth, RBAC, self-signed CA), kube-controller-manager
#   (Job controller, garbage collector, ServiceAccount and token controllers) and SeaweedFS S3
#   with SigV4 keys and a bucket; Kueue (batch/v1 Jobs labelled with a queue); an OCI registry
#   (docker-registry) holding the images and the chart, published by release/publish.sh; and a
#   node: kube-scheduler, containerd + runc and a kubelet that registers "$(hostname)" and runs
#   the pods, from images built here out of the release binaries (images.py), imported into
#   containerd and pullable from the registry. Pods use the host's network (hostNetwork): every
#   connection of the test run stays on 127.0.0.1. Anything left by an earlier run is stopped and
#   wiped first.
#   Logs: $SCANJOB_CACHE/run/logs/*.log (printed in part when a service does not come up).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

ETCD=$(command -v etcd || true)
KUBECTL=$KUBE_BIN/kubectl
HELM=$TOOLS_BIN/helm
WEED=$VENV/bin/weed
for b in "$ETCD" "$KUBE_BIN/kube-apiserver" "$KUBE_BIN/kube-controller-manager" "$KUBE_BIN/kube-scheduler" \
  "$KUBE_BIN/kubelet" "$KUBECTL" "$HELM" "$KUEUE_DIR/kueue" "$WEED" "$VENV/bin/python" "$(command -v containerd || true)" "$(command -v runc || true)"; do
  [ -n "$b" ] && [ -x "$b" ] || die "missing ${b:-etcd}: run tests/cluster/install.sh first"
done
command -v openssl >/dev/null || die "openssl is missing"
command -v ss >/dev/null || die "ss (iproute2) is missing"
getent ahostsv4 "$NODE_NAME" | grep -q '^127\.' \
  || die "the hostname $NODE_NAME does not resolve to a loopback address (/etc/hosts): the apiserver reaches the kubelet by it"
ROOT=$(cd "$HERE/../.." && pwd)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCANJOB_CACHE/target}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1)
for b in scanjob scanjob-operator; do
  [ -x "$CARGO_TARGET_DIR/release/$b" ] || die "missing $CARGO_TARGET_DIR/release/$b: cargo build --release --workspace first"
done

# A killed earlier run may have left processes and data behind.
bash "$HERE/down.sh"
left=$(awk -v p="$RUN_DIR/" 'index($2, p) == 1 {print $2}' /proc/self/mounts)
[ -z "$left" ] || die "mounts left under $RUN_DIR after down.sh; not wiping it: $left"
for port in "${ALL_PORTS[@]}"; do
  [ -z "$(ss -Hltn "sport = :$port")" ] || die "port $port is taken by another program: $(ss -Hltnp "sport = :$port")"
done
rm -rf --one-file-system "$RUN_DIR"
mkdir -p "$RUN_DIR"/{pids,logs,pki,etcd,s3} "$CONTAINERD_DIR"/{root,state,runc,net.d} "$KUBELET_DIR"/{root,pki,pod-logs}
cd "$RUN_DIR"

TOKEN=scanjob-test-admin-$(openssl rand -hex 16)
S3_ACCESS_KEY=scanjob-test
S3_SECRET_KEY=$(openssl rand -hex 20)
S3_BUCKET=scanjob-test
S3_REGION=us-east-1

# Waits up to $2 seconds for command "${@:3}" to succeed, watching that service $1 stays alive.
wait_for() {
  local name=$1 secs=$2 i pid
  shift 2
  pid=$(cat "pids/$name.pid")
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  echo "error: $name did not become ready; last lines of $RUN_DIR/logs/$name.log:" >&2
  tail -25 "logs/$name.log" >&2 || true
  bash "$HERE/down.sh" || true
  exit 1
}
start() {
  local name=$1
  shift
  "$@" >"logs/$name.log" 2>&1 </dev/null &
  echo $! >"pids/$name.pid"
}

t0=$(date +%s.%N)

# --- PKI: a throwaway CA per run, the serving cert for 127.0.0.1, the ServiceAccount key --------
openssl req -x509 -newkey rsa:2048 -nodes -keyout pki/ca.key -out pki/ca.crt -days 2 \
  -subj "/CN=scanjob-test-ca" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout pki/apiserver.key -out pki/apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >pki/apiserver.ext
openssl x509 -req -in pki/apiserver.csr -CA pki/ca.crt -CAkey pki/ca.key -CAcreateserial \
  -out pki/apiserver.crt -days 2 -extfile pki/apiserver.ext 2>/dev/null
# The apiserver's client certificate for the kubelet's API (logs, exec).
openssl req -newkey rsa:2048 -nodes -keyout pki/kubelet-client.key -out pki/kubelet-client.csr \
  -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' >pki/kubelet-client.ext
openssl x509 -req -in pki/kubelet-client.csr -CA pki/ca.crt -CAkey pki/ca.key -CAcreateserial \
  -out pki/kubelet-client.crt -days 2 -extfile pki/kubelet-client.ext 2>/dev/null
openssl genrsa -out pki/sa.key 2048 2>/dev/null
openssl rsa -in pki/sa.key -pubout -out pki/sa.pub 2>/dev/null
KUBELET_TOKEN=scanjob-test-node-$(openssl rand -hex 16)
{
  echo "$TOKEN,scanjob-test-admin,scanjob-test-admin,system:masters"
  # The kubelet and kube-scheduler; a test cluster of one node needs no node authorizer.
  echo "$KUBELET_TOKEN,system:node:$NODE_NAME,system:node:$NODE_NAME,system:masters"
} >pki/tokens.csv
chmod 600 pki/*.key pki/tokens.csv

write_kubeconfig() { # FILE TOKEN
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: scanjob-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 pki/ca.crt)
users:
- name: scanjob-test-admin
  user:
    token: $2
contexts:
- name: scanjob-test
  context: {cluster: scanjob-test, user: scanjob-test-admin, namespace: default}
current-context: scanjob-test
KC
  chmod 600 "$1"
}
write_kubeconfig kubeconfig "$TOKEN"
write_kubeconfig node.kubeconfig "$KUBELET_TOKEN"

# --- etcd ---------------------------------------------------------------------------------------
start etcd "$ETCD" --name scanjob-test --data-dir "$RUN_DIR/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "scanjob-test=http://127.0.0.1:$ETCD_PEER_PORT"

# --- SeaweedFS S3 (started early: it comes up while kube-apiserver does) -------------------------
cat >s3/identities.json <<S3
{"identities":[{"name":"scanjob-test","credentials":[{"accessKey":"$S3_ACCESS_KEY","secretKey":"$S3_SECRET_KEY"}],
  "actions":["Admin","Read","List","Tagging","Write"]}]}
S3
start weed "$WEED" mini -dir="$RUN_DIR/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 -metricsIp=127.0.0.1 \
  -s3.port="$S3_PORT" -master.port="$WEED_MASTER_PORT" -volume.port="$WEED_VOLUME_PORT" \
  -filer.port="$WEED_FILER_PORT" -s3.port.iceberg="$WEED_ICEBERG_PORT" -s3.port.lance="$WEED_LANCE_PORT" -metricsPort="$WEED_METRICS_PORT" \
  -admin.port="$WEED_ADMIN_PORT" -admin.ui=false -webdav=false -master.telemetry=false \
  -s3.localSocket="$RUN_DIR/s3/s3.sock" -filer.localSocket="$RUN_DIR/s3/filer.sock" \
  -s3.config="$RUN_DIR/s3/identities.json" -bucket="$S3_BUCKET"

# --- the OCI registry: on 127.0.0.1 only, storage under the run's directory --------------------
mkdir -p registry
cat >registry/config.yml <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $RUN_DIR/registry/data}
http: {addr: 127.0.0.1:$REGISTRY_PORT}
YML
start registry docker-registry serve "$RUN_DIR/registry/config.yml"

etcd_ready() { [[ "$(curl -sf "http://127.0.0.1:$ETCD_PORT/health")" == *'"health":"true"'* ]]; }
wait_for etcd 30 etcd_ready

# --- kube-apiserver ------------------------------------------------------------------------------
start kube-apiserver "$KUBE_BIN/kube-apiserver" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
  --secure-port="$API_PORT" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --tls-cert-file=pki/apiserver.crt --tls-private-key-file=pki/apiserver.key --client-ca-file=pki/ca.crt \
  --token-auth-file=pki/tokens.csv --authorization-mode=RBAC --anonymous-auth=false \
  --service-account-issuer="https://127.0.0.1:$API_PORT" --service-account-key-file=pki/sa.pub \
  --service-account-signing-key-file=pki/sa.key --service-cluster-ip-range=10.0.0.0/24 \
  --allow-privileged=true --endpoint-reconciler-type=none --profiling=false \
  --kubelet-client-certificate=pki/kubelet-client.crt --kubelet-client-key=pki/kubelet-client.key \
  --kubelet-preferred-address-types=Hostname,InternalIP
api_ready() {
  [ "$(curl -s --cacert pki/ca.crt -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT/readyz")" = ok ]
}
wait_for kube-apiserver 120 api_ready

# --- kube-controller-manager ---------------------------------------------------------------------
# The default controller set includes job, garbage-collector, serviceaccount, serviceaccount-token
# and namespace (test namespaces are deleted through it).
start kube-controller-manager "$KUBE_BIN/kube-controller-manager" --kubeconfig=kubeconfig \
  --authentication-kubeconfig=kubeconfig --authorization-kubeconfig=kubeconfig \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
  --service-account-private-key-file=pki/sa.key --root-ca-file=pki/ca.crt \
  --use-service-account-credentials=false --profiling=false
kcm_ready() { [ "$(curl -sk "https://127.0.0.1:$KCM_PORT/healthz")" = ok ]; }
wait_for kube-controller-manager 60 kcm_ready
# Pods are admitted only once the namespace has its "default" ServiceAccount.
sa_ready() { KUBECONFIG=$RUN_DIR/kubeconfig "$KUBECTL" get serviceaccount default -n default; }
wait_for kube-controller-manager 60 sa_ready

# --- kube-scheduler -------------------------------------------------------------------------------
start kube-scheduler "$KUBE_BIN/kube-scheduler" --kubeconfig=node.kubeconfig \
  --authentication-kubeconfig=node.kubeconfig --authorization-kubeconfig=node.kubeconfig \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --leader-elect=false --profiling=false

# --- Kueue: the batch queue, a host process like the control plane ------------------------------
# Its CRDs first (server-side: the Workload CRD is too big for a client-side apply's annotation).
KUBECONFIG=$RUN_DIR/kubeconfig "$KUBECTL" apply --server-side -f "$KUEUE_DIR/crds" >/dev/null \
  || die "applying Kueue's CRDs from $KUEUE_DIR/crds failed"
KUBECONFIG=$RUN_DIR/kubeconfig "$KUBECTL" wait --for condition=Established --timeout=60s \
  -f "$KUEUE_DIR/crds" >/dev/null || die "Kueue's CRDs did not become established"
# kube-apiserver calls its webhooks at https://127.0.0.1:<port>, with a serving certificate of the
# run's CA; Kueue's own certificate management (a Service's DNS name) is off. Kueue reads its
# metrics certificate from the fixed /etc/kueue/metrics/certs: it gets that directory in a mount
# namespace of its own, over an overlay of /etc that the host never sees.
mkdir -p kueue/certs kueue/etc/kueue/metrics
openssl req -newkey rsa:2048 -nodes -keyout kueue/certs/tls.key -out kueue/certs/tls.csr -subj "/CN=kueue" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >kueue/certs/tls.ext
openssl x509 -req -in kueue/certs/tls.csr -CA pki/ca.crt -CAkey pki/ca.key -CAcreateserial \
  -out kueue/certs/tls.crt -days 2 -extfile kueue/certs/tls.ext 2>/dev/null
chmod 600 kueue/certs/tls.key
cp -r kueue/certs kueue/etc/kueue/metrics/certs
cat >kueue/config.yaml <<YAML
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
health: {healthProbeBindAddress: "127.0.0.1:$KUEUE_HEALTH_PORT"}
metrics: {bindAddress: "127.0.0.1:$KUEUE_METRICS_PORT"}
webhook: {host: 127.0.0.1, port: $KUEUE_WEBHOOK_PORT, certDir: "$RUN_DIR/kueue/certs"}
leaderElection: {leaderElect: false}
internalCertManagement: {enable: false}
integrations: {frameworks: ["batch/job"]}
YAML
# The webhooks of Kueue's own kinds and of batch/v1 Jobs only (no other integration runs). The
# Job webhooks see only Jobs labelled with a queue, so every other test's Jobs never wait on Kueue.
"$VENV/bin/python" - "$KUEUE_DIR/webhooks.yaml" "https://127.0.0.1:$KUEUE_WEBHOOK_PORT" \
  "$(base64 -w0 pki/ca.crt)" >kueue/webhooks.yaml <<'PY' || die "writing Kueue's webhook configurations failed"
import sys, yaml
source, base, ca = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(source)) if d]
for doc in docs:
    doc["metadata"] = {"name": "kueue-" + doc["metadata"]["name"]}
    kept = []
    for hook in doc["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        if not (path.endswith("-batch-v1-job") or "-kueue-x-k8s-io-" in path):
            continue
        hook["clientConfig"] = {"url": base + path, "caBundle": ca}
        if path.endswith("-batch-v1-job"):
            hook["objectSelector"] = {"matchExpressions": [
                {"key": "kueue.x-k8s.io/queue-name", "operator": "Exists"}]}
        kept.append(hook)
    doc["webhooks"] = kept
yaml.safe_dump_all(docs, sys.stdout)
PY
start kueue unshare --mount --propagation private -- sh -c \
  'mount -t overlay kueue-etc -o "lowerdir=$1:/etc" /etc && KUBECONFIG=$4 exec "$2" --config="$3" --feature-gates=VisibilityOnDemand=false' \
  sh "$RUN_DIR/kueue/etc" "$KUEUE_DIR/kueue" "$RUN_DIR/kueue/config.yaml" "$RUN_DIR/kubeconfig"

# --- images: built from the release binaries and the Containerfile, rebuilt when either changed --
mkdir -p "$IMAGES_DIR"
images_stamp=$IMAGES_DIR/.inputs
images_inputs=$(cd "$ROOT" && sha256sum Containerfile tests/cluster/images.py \
  "$CARGO_TARGET_DIR/release/scanjob" "$CARGO_TARGET_DIR/release/scanjob-operator" | cut -c1-64 | tr '\n' ' ')
images_inputs="$VERSION $images_inputs"
if [ "$(cat "$images_stamp" 2>/dev/null)" != "$images_inputs" ]; then
  t_img=$(date +%s)
  python3 "$HERE/images.py" build --containerfile "$ROOT/Containerfile" --bin-dir "$CARGO_TARGET_DIR/release" \
    --tag "$VERSION" --out "$IMAGES_DIR" >"$IMAGES_DIR/images.json" || die "building the images failed"
  echo "$images_inputs" >"$images_stamp"
  log "images built in $(($(date +%s) - t_img)) s: $(tr '\n' ' ' <"$IMAGES_DIR/images.json")"
fi
# The images and the chart go to the registry by the release's own recipe; the node pulls from it
# what a ScanJob or the chart names there.
registry_ready() { curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/"; }
wait_for registry 30 registry_ready
HELM=$HELM bash "$ROOT/release/publish.sh" --registry "$REGISTRY" --tag "$VERSION" --images "$IMAGES_DIR" \
  --plain-http >"$RUN_DIR/logs/publish.log" 2>&1 || { tail -20 "$RUN_DIR/logs/publish.log" >&2; bash "$HERE/down.sh"; die "publishing to the test registry failed"; }

# --- containerd ----------------------------------------------------------------------------------
# Started by hand with everything under $CONTAINERD_DIR. cgroupfs, since PID 1 need not be systemd.
# restrict_oom_score_adj: without CAP_SYS_RESOURCE in the bounding set (as on the test machines), the
# negative oom_score_adj containerd gives sandboxes makes runc fail ("can't get final child's PID
# from pipe"); true keeps every container at or above containerd's own score.
[ -e /run/containerd ] || touch "$NODE_DIR/made-run-containerd"   # shim sockets, hard-coded in 1.6
[ -e /var/lib/cni ] || touch "$NODE_DIR/made-var-lib-cni"         # libcni's result cache, hard-coded
cat >"$CONTAINERD_DIR/config.toml" <<TOML
version = 2
root = "$CONTAINERD_DIR/root"
state = "$CONTAINERD_DIR/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = "$CONTAINERD_DIR/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/scanjob/pause:1.0"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$CONTAINERD_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."127.0.0.1:$REGISTRY_PORT"]
    endpoint = ["http://127.0.0.1:$REGISTRY_PORT"]
  # The chart's default images (ghcr.io/scanjob/...) resolve to the same registry: a pull never
  # leaves the machine. (containerd 1.6's CRI forgets an imported name once the same image is
  # pulled under another; the kubelet then pulls it again, from here.)
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."ghcr.io"]
    endpoint = ["http://127.0.0.1:$REGISTRY_PORT"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CONTAINERD_DIR/net.d"
    max_conf_num = 1
TOML
# Every pod runs with hostNetwork, so the only network is loopback: it makes the node Ready, and a
# pod without hostNetwork fails to start (containerd 1.6 wants an eth0) instead of getting a route.
cat >"$CONTAINERD_DIR/net.d/10-loopback.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "scanjob-test-lo", "plugins": [{"type": "loopback"}]}
JSON
start containerd containerd --config "$CONTAINERD_DIR/config.toml"
ctr_ready() { node_ctr version; }
wait_for containerd 30 ctr_ready
for image in pause scanjob scanjob-operator; do
  node_ctr images import "$IMAGES_DIR/$image.tar" >/dev/null || die "importing $IMAGES_DIR/$image.tar into containerd failed"
done

# --- kubelet -------------------------------------------------------------------------------------
[ -e /var/lib/kubelet ] || touch "$NODE_DIR/made-var-lib-kubelet"       # device-plugins socket, hard-coded
[ -e /var/log/containers ] || touch "$NODE_DIR/made-var-log-containers" # log symlinks, hard-coded
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p "/sys/fs/cgroup/$CGROUP_ROOT"
else
  for c in /sys/fs/cgroup/*/; do   # the kubelet wants its cgroupRoot in every v1 hierarchy
    case "$c" in */unified/) continue ;; esac
    [ -L "${c%/}" ] || mkdir -p "$c$CGROUP_ROOT"
  done
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$CGROUP_ROOT/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$CGROUP_ROOT/cpuset.mems"
fi
cat >"$KUBELET_DIR/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false               # kubelet >= 1.35 refuses a cgroup v1 host without it
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
failSwapOn: false
oomScoreAdj: 0                    # -999 needs CAP_SYS_RESOURCE
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $RUN_DIR/pki/ca.crt}
authorization: {mode: Webhook}
podLogsDir: $KUBELET_DIR/pod-logs
makeIPTablesUtilChains: false     # no rules in the host's firewall
hairpinMode: none
imageGCHighThresholdPercent: 100  # images are imported, never pulled: never collect them
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
evictionPressureTransitionPeriod: 5s
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
fileCheckFrequency: 5s
maxPods: 60
serializeImagePulls: false
YAML
start kubelet "$KUBE_BIN/kubelet" --config="$KUBELET_DIR/config.yaml" --kubeconfig="$RUN_DIR/node.kubeconfig" \
  --root-dir="$KUBELET_DIR/root" --cert-dir="$KUBELET_DIR/pki" --hostname-override="$NODE_NAME" --v=2
kubelet_ready() { curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"; }
wait_for kubelet 60 kubelet_ready
sched_ready() { [ "$(curl -sk "https://127.0.0.1:$SCHED_PORT/healthz")" = ok ]; }
wait_for kube-scheduler 60 sched_ready
node_ready() {
  [ "$(KUBECONFIG=$RUN_DIR/kubeconfig "$KUBECTL" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for kubelet 120 node_ready

# --- Kueue's webhooks, once it serves them -----------------------------------------------------
kueue_ready() { [ "$(curl -s "http://127.0.0.1:$KUEUE_HEALTH_PORT/readyz")" = ok ]; }
wait_for kueue 60 kueue_ready
KUBECONFIG=$RUN_DIR/kubeconfig "$KUBECTL" apply -f kueue/webhooks.yaml >/dev/null \
  || die "applying Kueue's webhook configurations failed"

# --- S3 readiness: a SigV4-signed HEAD on the bucket; an unsigned request must be refused --------
s3_code() { curl -s -o /dev/null -w '%{http_code}' -I "$@" "http://127.0.0.1:$S3_PORT/$S3_BUCKET"; }
s3_ready() { [ "$(s3_code --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY")" = 200 ]; }
wait_for weed 60 s3_ready
code=$(s3_code)
[ "$code" = 403 ] || { bash "$HERE/down.sh"; die "S3 answered an unsigned request with HTTP $code, expected 403"; }

cat >env.sh <<ENV
# Written by tests/cluster/up.sh; source it to reach the test cluster and S3.
export SCANJOB_CACHE=$SCANJOB_CACHE
export KUBECONFIG=$RUN_DIR/kubeconfig
export KUBECTL=$KUBECTL
export HELM=$HELM
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_REGION=$S3_REGION
export AWS_DEFAULT_REGION=$S3_REGION
export AWS_ALLOW_HTTP=true
export SCANJOB_TEST_BUCKET=$S3_BUCKET
export SCANJOB_PYTHON=$VENV/bin/python
export SCANJOB_CLUSTER_LOGS=$RUN_DIR/logs
export SCANJOB_CONTAINERD_SOCK=$CONTAINERD_SOCK
export SCANJOB_IMAGES_DIR=$IMAGES_DIR
export SCANJOB_IMAGES_PY=$HERE/images.py
export SCANJOB_API_PORT=$API_PORT
export SCANJOB_SLOWFS=$TOOLS_BIN/slowfs
export SCANJOB_SPARK_JARS=$SPARK_JARS_DIR
export SCANJOB_KUEUE_LOG=$RUN_DIR/logs/kueue.log
export SCANJOB_REGISTRY=$REGISTRY
ENV
log "cluster up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s: kube-apiserver https://127.0.0.1:$API_PORT, S3 http://127.0.0.1:$S3_PORT/$S3_BUCKET; logs in $RUN_DIR/logs"
cat env.sh
