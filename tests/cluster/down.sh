#!/usr/bin/env bash
# Stop everything up.sh started and check that no test port is left bound. Safe to run any time,
# also after a run that was killed halfway (stale pid files are verified before anything is killed).
# Logs stay in $SCANJOB_CACHE/run/logs for inspection.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

alive() {
  local f=$RUN_DIR/pids/$1.pid
  [ -f "$f" ] && is_ours "$(cat "$f")"
}
kubectl_admin() { KUBECONFIG=$RUN_DIR/kubeconfig "$KUBE_BIN/kubectl" "$@"; }

# --- the node: pods, containers, shims, mounts, cgroups; also after a crash ----------------------
# 1. Pods are deleted through the API while the kubelet still runs, so it stops their containers.
if alive kubelet && alive kube-apiserver && alive containerd; then
  kubectl_admin delete jobs --all -A --wait=false >/dev/null 2>&1 || true
  kubectl_admin delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
  for ((i = 0; i < 60; i++)); do
    [ -z "$(kubectl_admin get pods -A -o name 2>/dev/null)" ] && [ -z "$(node_ctr tasks ls -q 2>/dev/null)" ] && break
    sleep 0.5
  done
fi
# 2. The kubelet, then what containerd still runs (the kubelet removes containers lazily).
if alive kubelet; then
  log "stopping kubelet"
  stop_pid "$(cat "$RUN_DIR/pids/kubelet.pid")" 20
fi
rm -f "$RUN_DIR/pids/kubelet.pid"
if alive containerd; then
  for t in $(node_ctr tasks ls -q 2>/dev/null); do node_ctr tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  sleep 0.5
  for t in $(node_ctr tasks ls -q 2>/dev/null); do node_ctr tasks delete -f "$t" >/dev/null 2>&1 || true; done
  containers=$(node_ctr containers ls -q 2>/dev/null || true)
  [ -z "$containers" ] || node_ctr containers rm $containers >/dev/null 2>&1 || true
  log "stopping containerd"
  stop_pid "$(cat "$RUN_DIR/pids/containerd.pid")" 20
fi
rm -f "$RUN_DIR/pids/containerd.pid"
# 3. After a crash, containers outlive containerd under their shims: runc removes them, then
#    anything still in the pods' cgroups is killed, then the shims of our socket.
if [ -d "$CONTAINERD_DIR/runc/k8s.io" ] && command -v runc >/dev/null; then
  for id in $(ls "$CONTAINERD_DIR/runc/k8s.io"); do
    runc --root "$CONTAINERD_DIR/runc/k8s.io" delete --force "$id" >/dev/null 2>&1 || true
  done
fi
pod_procs() { cat $(find /sys/fs/cgroup/*/"$CGROUP_ROOT" /sys/fs/cgroup/"$CGROUP_ROOT" -name cgroup.procs 2>/dev/null) /dev/null 2>/dev/null; }
for ((i = 0; i < 10; i++)); do
  procs=$(pod_procs)
  [ -z "$procs" ] && break
  log "killing processes left in the pods' cgroups: $(echo $procs)"
  kill -KILL $procs 2>/dev/null || true
  sleep 0.5
done
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null); do
  log "killing leftover shim $pid"
  kill -KILL "$pid" 2>/dev/null || true
done
# 4. Mounts under the node's directory (the kubelet's root bind mount, tokens, shm, rootfs overlays,
#    netns), deepest first; then the cgroups, deepest first.
for ((i = 0; i < 5; i++)); do
  mounts=$(awk -v p="$NODE_DIR/" 'index($2, p) == 1 || $2 == substr(p, 1, length(p) - 1) {print $2}' /proc/self/mounts | sort -r)
  [ -z "$mounts" ] && break
  for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done
for c in /sys/fs/cgroup/*/"$CGROUP_ROOT" /sys/fs/cgroup/"$CGROUP_ROOT"; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done
# 5. Paths the kubelet and containerd hard-code outside their configured directories, removed only
#    when up.sh found them missing.
for made in run-containerd:/run/containerd var-lib-cni:/var/lib/cni var-lib-kubelet:/var/lib/kubelet \
  var-log-containers:/var/log/containers; do
  if [ -f "$NODE_DIR/made-${made%%:*}" ]; then
    rm -rf --one-file-system "${made#*:}"
    rm -f "$NODE_DIR/made-${made%%:*}"
  fi
done

# --- the control plane and S3 --------------------------------------------------------------------
for name in "${SERVICES[@]}"; do
  pidfile=$RUN_DIR/pids/$name.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && is_ours "$pid"; then
    log "stopping $name (pid $pid)"
    stop_pid "$pid" 20
  fi
  rm -f "$pidfile"
done

# A run killed before it wrote its pid files can still hold ports: stop our own binaries there.
for port in "${ALL_PORTS[@]}"; do
  for pid in $(port_pids "$port"); do
    if is_ours "$pid"; then
      log "stopping leftover $(readlink "/proc/$pid/exe") (pid $pid) on port $port"
      stop_pid "$pid" 10
    fi
  done
done

busy=()
for port in "${ALL_PORTS[@]}"; do
  [ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] || busy+=("$port")
done
[ ${#busy[@]} = 0 ] || die "ports still bound after stopping: ${busy[*]} ($(ss -Hltnp | grep -E ":($(IFS='|'; echo "${busy[*]}"))\b" || true))"

# Nothing of the node may be left: a mount, a cgroup or a pod process would outlive the run.
left=()
mapfile -t mounts < <(awk -v p="$NODE_DIR/" 'index($2, p) == 1 {print $2}' /proc/self/mounts)
[ ${#mounts[@]} = 0 ] || left+=("mounts: ${mounts[*]}")
cgroups=$(ls -d /sys/fs/cgroup/*/"$CGROUP_ROOT" /sys/fs/cgroup/"$CGROUP_ROOT" 2>/dev/null || true)
[ -z "$cgroups" ] || left+=("cgroups: $cgroups")
shims=$(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true)
[ -z "$shims" ] || left+=("shims: $shims")
[ ${#left[@]} = 0 ] || die "left behind by the node: ${left[*]}"
