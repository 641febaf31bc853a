#!/usr/bin/env bash
# A real NFSv3 server for the tests and benchmarks: nfs-ganesha (VFS backend) exporting DIR
# read-only, with its own rpcbind, inside a network namespace made here and reached from the
# host over a veth pair. Nothing listens outside that pair: the host side is NET.1, the server
# NET.2, and NET must be inside 10.99.0.0/16 (a range the tests keep to themselves).
#
#   bash tests/nfs/ganesha.sh [--squash No_Root_Squash|Root_Squash] [--net 10.99.N] [--privileged-port] DIR
#
# --privileged-port: the export answers only clients that connect from a port below 1024 (as a
# Linux server's `secure` option does).
#
# Prints `ready SERVER_IP HOST_IP GANESHA_PID` once MOUNT and NFS are registered, then serves
# until its stdin closes or it gets SIGTERM/SIGINT, and removes the namespace, the veth pair and
# both daemons on the way out, whatever the way out.
set -euo pipefail
SQUASH=No_Root_Squash
PRIVILEGED_PORT=false
NET=10.99.0
while [ $# -gt 1 ]; do
  case $1 in
  --squash) SQUASH=$2; shift 2 ;;
  --net) NET=$2; shift 2 ;;
  --privileged-port) PRIVILEGED_PORT=true; shift ;;
  *) echo "ganesha.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
DIR=$(realpath "${1:?usage: ganesha.sh [--squash No_Root_Squash|Root_Squash] [--net 10.99.N] DIR}")
case $SQUASH in No_Root_Squash | Root_Squash | All_Squash) ;; *) echo "ganesha.sh: squash $SQUASH?" >&2; exit 2 ;; esac
[[ $NET =~ ^10\.99\.([0-9]{1,3})$ ]] && [ "${BASH_REMATCH[1]}" -le 255 ] \
  || { echo "ganesha.sh: --net must be 10.99.N (0..255), not $NET" >&2; exit 2; }
N=${BASH_REMATCH[1]}
HOST_IP=$NET.1 SERVER_IP=$NET.2
NS=scanjob-nfs-$N HOST_IF=sjnfs$N-h NS_IF=sjnfs$N-n
for tool in ganesha.nfsd rpcbind rpcinfo ip; do
  command -v "$tool" >/dev/null || { echo "ganesha.sh: $tool missing (bash tests/cluster/install.sh)" >&2; exit 2; }
done
if ip netns list | grep -qw "$NS"; then
  echo "ganesha.sh: namespace $NS exists (another server on $NET?)" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/scanjob-ganesha.XXXXXX)
GANESHA_PID=

stop() {
  local pid=$1 name=$2
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  # ganesha takes ~2 s to exit after SIGTERM; its namespace must outlive it.
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "ganesha.sh: $name did not exit after SIGTERM; killing it" >&2
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  trap - EXIT INT TERM HUP
  stop "$GANESHA_PID" ganesha
  stop "$(cat "$WORK/rpcbind.pid" 2>/dev/null)" rpcbind
  ip link del "$HOST_IF" 2>/dev/null || true # takes the namespace's end with it
  ip netns del "$NS" 2>/dev/null || true
  if [ -s "$WORK/ganesha.log" ] && [ "${KEEP_LOG:-}" ]; then cat "$WORK/ganesha.log" >&2; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' INT TERM HUP

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip link add "$HOST_IF" type veth peer name "$NS_IF"
ip link set "$NS_IF" netns "$NS"
ip addr add "$HOST_IP/24" dev "$HOST_IF"
ip link set "$HOST_IF" up
ip netns exec "$NS" ip addr add "$SERVER_IP/24" dev "$NS_IF"
ip netns exec "$NS" ip link set "$NS_IF" up

sed -e "s#@SERVER_IP@#$SERVER_IP#; s#@EXPORT_DIR@#$DIR#; s#@CLIENT_IP@#$HOST_IP#; s#@SQUASH@#$SQUASH#; s#@PRIVILEGED_PORT@#$PRIVILEGED_PORT#" \
  "$HERE/ganesha.conf.in" >"$WORK/ganesha.conf"
# ganesha registers MOUNT and NFS with the portmapper and exits if it cannot; this one listens
# only on the namespace's addresses. The two share a /run of their own (`ip netns exec` gives
# each command a mount namespace), where rpcbind keeps its lock and socket: servers on other
# nets run at the same time. ganesha runs in the foreground (-F) in place of the shell, so $!
# is the daemon; the config path must be absolute (it changes to /).
ip netns exec "$NS" bash -c '
  mount -t tmpfs -o size=1m,mode=755 scanjob-nfs-run /run || exit 1
  rpcbind -w -f &
  echo $! >"$1/rpcbind.pid"
  # ganesha gives up at once if the portmapper does not answer yet.
  for _ in $(seq 100); do rpcinfo -p >/dev/null 2>&1 && break; sleep 0.05; done
  exec ganesha.nfsd -F -f "$1/ganesha.conf" -L "$1/ganesha.log" -p "$1/ganesha.pid" -N NIV_WARN
' ganesha "$WORK" &
GANESHA_PID=$!
ready=
for _ in $(seq 100); do
  kill -0 "$GANESHA_PID" 2>/dev/null || break
  # A NULL call to each over TCP: registered with the portmapper and answering (ganesha
  # registers a program before its listener is up).
  if rpcinfo -t "$SERVER_IP" mountd 3 >/dev/null 2>&1 && rpcinfo -t "$SERVER_IP" nfs 3 >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "ganesha.sh: the server did not come up; its log:" >&2
  cat "$WORK/ganesha.log" >&2 || true
  exit 1
fi
echo "ready $SERVER_IP $HOST_IP $GANESHA_PID"
# Serve until stdin closes (the test that started us ended) or a signal arrives.
while read -r _; do :; done
