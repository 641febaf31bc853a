#!/usr/bin/env bash
# Start the test cluster on 127.0.0.1 only and write $SCANJOB_CACHE/run/env.sh:
#   etcd, kube-apiserver (static token auth, RBAC, self-signed CA), kube-controller-manager
#   (Job controller, garbage collector, ServiceAccount and token controllers) and SeaweedFS S3
#   with SigV4 keys and a bucket. Anything left by an earlier run is stopped and wiped first.
#   Logs: $SCANJOB_CACHE/run/logs/*.log (printed in part when a service does not come up).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

ETCD=$(command -v etcd || true)
KUBECTL=$KUBE_BIN/kubectl
HELM=$TOOLS_BIN/helm
WEED=$VENV/bin/weed
for b in "$ETCD" "$KUBE_BIN/kube-apiserver" "$KUBE_BIN/kube-controller-manager" "$KUBECTL" "$HELM" "$WEED" "$VENV/bin/python"; do
  [ -n "$b" ] && [ -x "$b" ] || die "missing ${b:-etcd}: run tests/cluster/install.sh first"
done
command -v openssl >/dev/null || die "openssl is missing"
command -v ss >/dev/null || die "ss (iproute2) is missing"

# A killed earlier run may have left processes and data behind.
bash "$HERE/down.sh"
for port in "${ALL_PORTS[@]}"; do
  [ -z "$(ss -Hltn "sport = :$port")" ] || die "port $port is taken by another program: $(ss -Hltnp "sport = :$port")"
done
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"/{pids,logs,pki,etcd,s3}
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
openssl genrsa -out pki/sa.key 2048 2>/dev/null
openssl rsa -in pki/sa.key -pubout -out pki/sa.pub 2>/dev/null
echo "$TOKEN,scanjob-test-admin,scanjob-test-admin,system:masters" >pki/tokens.csv
chmod 600 pki/*.key pki/tokens.csv

cat >kubeconfig <<KC
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
    token: $TOKEN
contexts:
- name: scanjob-test
  context: {cluster: scanjob-test, user: scanjob-test-admin, namespace: default}
current-context: scanjob-test
KC
chmod 600 kubeconfig

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

etcd_ready() { [[ "$(curl -sf "http://127.0.0.1:$ETCD_PORT/health")" == *'"health":"true"'* ]]; }
wait_for etcd 30 etcd_ready

# --- kube-apiserver ------------------------------------------------------------------------------
start kube-apiserver "$KUBE_BIN/kube-apiserver" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
  --secure-port="$API_PORT" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --tls-cert-file=pki/apiserver.crt --tls-private-key-file=pki/apiserver.key --client-ca-file=pki/ca.crt \
  --token-auth-file=pki/tokens.csv --authorization-mode=RBAC --anonymous-auth=false \
  --service-account-issuer="https://127.0.0.1:$API_PORT" --service-account-key-file=pki/sa.pub \
  --service-account-signing-key-file=pki/sa.key --service-cluster-ip-range=10.0.0.0/24 \
  --allow-privileged=true --endpoint-reconciler-type=none --profiling=false
api_ready() {
  [ "$(curl -s --cacert pki/ca.crt -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT/readyz")" = ok ]
}
wait_for kube-apiserver 120 api_ready

# --- kube-controller-manager ---------------------------------------------------------------------
# The default controller set includes job, garbage-collector, serviceaccount, serviceaccount-token
# and namespace (test namespaces are deleted through it). There is no scheduler and no kubelet:
# the tests' kubelet stand-in runs pods that have no node.
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
ENV
log "cluster up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s: kube-apiserver https://127.0.0.1:$API_PORT, S3 http://127.0.0.1:$S3_PORT/$S3_BUCKET; logs in $RUN_DIR/logs"
cat env.sh
