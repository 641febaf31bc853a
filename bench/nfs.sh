#!/usr/bin/env bash
# The NFS source at added round trips, side by side in one run: the crate's lister
# (scanjob-nfs-ls: READDIRPLUS pipelined over a few connections), the whole scan over NFS
# (`scanjob run nfs://…`: rows, Parquet, the Delta commit), the mounted path through slowfs at
# the same latency per request (the kernel's FUSE client with attribute caching off: one
# request per LOOKUP, GETATTR or READDIR), libnfs' `nfs-ls -R` (one call at a time), and the
# arithmetic limit (READDIRPLUS calls / calls in flight * round trip). The server is
# nfs-ganesha in a network namespace (tests/nfs/ganesha.sh, on 10.99.0.0/24); the round trip is
# added by scanjob-nfs-relay on the host side of the veth pair.
#   bash bench/nfs.sh [--tree DIR] [--files 1000000] [--rtt-ms 0,0.2,1,5] [--connections 4]
#                     [--in-flight 64] [--peer-max-rtt-ms 1] [--no-peer]
#                     [--mounted-max-rtt-ms 1] [--no-scan] [--shards 1[,4…]]
# Without --tree, generates mktree's tree (--seed 42) under $SCANJOB_CACHE. Needs root and the
# packages of tests/cluster/install.sh; the tree generator is the test kit's
# testkit/mktree.py. Raw output in $OUT (default /tmp/scanjob-nfs-bench). With --shards 1,4 the
# scan over NFS runs once per count, planned into that many shards (a first night: a count of the export's top levels,
# whose calls and seconds the row names) and runs them one after another, each a client of its
# own, as `scanjob run` does.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
TREE= FILES=1000000 RTTS=0,0.2,1,5 CONNECTIONS=4 IN_FLIGHT=64 PEER=1 PEER_MAX_RTT=1
SCAN=1 MOUNTED_MAX_RTT=1 SHARDS=1
while [ $# -gt 0 ]; do
  case $1 in
  --tree) TREE=$2; shift 2 ;;
  --files) FILES=$2; shift 2 ;;
  --rtt-ms) RTTS=$2; shift 2 ;;
  --connections) CONNECTIONS=$2; shift 2 ;;
  --in-flight) IN_FLIGHT=$2; shift 2 ;;
  --no-peer) PEER=; shift ;;
  # nfs-ls makes ~0.23 calls per entry one at a time: 1 M entries at 5 ms would take 20 min.
  --peer-max-rtt-ms) PEER_MAX_RTT=$2; shift 2 ;;
  # The mounted path makes ~2.3 requests per entry, 16 at a time: 1 M entries at 5 ms ~12 min.
  --mounted-max-rtt-ms) MOUNTED_MAX_RTT=$2; shift 2 ;;
  --no-scan) SCAN=; shift ;;
  --shards) SHARDS=$2; shift 2 ;;
  *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
# MKTREE comes from lib.sh: the test kit's tree generator.
OUT=${OUT:-/tmp/scanjob-nfs-bench}
mkdir -p "$OUT"
: >"$OUT/relay.out"
if [ -z "$TREE" ]; then
  TREE=$CACHE/nfs-tree-$FILES
  [ -d "$TREE" ] || python3 "$MKTREE" "$TREE" --files "$FILES" --seed 42 >"$OUT/mktree.log"
fi
TREE=$(realpath "$TREE")
build_scanjob_and_slowfs
LS=$CARGO_TARGET_DIR/release/scanjob-nfs-ls
RELAY=$CARGO_TARGET_DIR/release/scanjob-nfs-relay

RELAY_PID= MOUNTED_PID=
MNT=$OUT/mnt
cleanup() {
  stop_relay
  stop_mounted
  # Closing the server script's stdin stops ganesha and removes the namespace.
  if [ -n "${SERVER_PID:-}" ]; then
    eval "exec ${SERVER[1]}>&-"
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
coproc SERVER { bash "$REPO/tests/nfs/ganesha.sh" --net 10.99.0 "$TREE" 2>"$OUT/ganesha.err"; }
read -r ready SERVER_IP HOST_IP _ <&"${SERVER[0]}" || true
[ "${ready:-}" = ready ] || { cat "$OUT/ganesha.err" >&2; exit 1; }
echo "exporting $TREE from $SERVER_IP; $(nproc) cores"

# relay RTT_MS: a relay adding RTT_MS per round trip in front of the server; ADDR is the address
# to use (the server itself at 0).
relay() {
  ADDR=$SERVER_IP
  [ "$1" = 0 ] && return
  local one_way_us
  one_way_us=$(python3 -c "print(round($1 * 1000 / 2))")
  "$RELAY" "$HOST_IP" "$SERVER_IP" "$one_way_us" 111 2049 20048 >"$OUT/relay.out" 2>&1 &
  RELAY_PID=$!
  for _ in $(seq 50); do grep -q "relay up" "$OUT/relay.out" && break; sleep 0.1; done
  grep -q "relay up" "$OUT/relay.out" || { cat "$OUT/relay.out" >&2; return 1; }
  ADDR=$HOST_IP
}
# mounted RTT_MS: slowfs serving the tree at $MNT with RTT_MS added to every request.
mounted() {
  local us
  us=$(python3 -c "print(round($1 * 1000))")
  mkdir -p "$MNT"
  "$SLOWFS" "$TREE" "$MNT" --latency-us "$us" --stats "$OUT/slowfs-stats.json" >"$OUT/slowfs.log" 2>&1 &
  MOUNTED_PID=$!
  for _ in $(seq 100); do mountpoint -q "$MNT" && return 0; sleep 0.1; done
  cat "$OUT/slowfs.log" >&2
  return 1
}
stop_mounted() {
  if [ -n "$MOUNTED_PID" ]; then
    kill "$MOUNTED_PID"
    wait "$MOUNTED_PID" 2>/dev/null || true
    MOUNTED_PID=
  fi
}
# scan_row KIND RTT JSON TIME [CALLS]: entries/s, calls and calls per entry, wall, CPU and peak
# RSS of one `scanjob run --json`. Calls are the run's own count (RPCs over NFS) unless CALLS
# (the requests the FUSE server saw) is given.
scan_row() {
  python3 - "$@" <<'PY'
import json, sys
import glob
kind, rtt, run_json, times = sys.argv[1:5]
run = json.load(open(run_json))
if run["shards"] > 1:
    # The plan's own calls (the top-level count) are not the shards': named beside them.
    out = run["output"].removeprefix("file://")
    plan = json.load(open(glob.glob(f"{out}/runs/{run['run']}/plan.json")[0]))
    kind += (f" --shards {run['shards']} (plan: {plan['planning_calls']:,} calls, "
             f"{plan['planning_seconds']:.2f} s)")
wall, user, system, rss_kib = open(times).read().split()[-4:]
entries = run["entries"]
calls = int(sys.argv[5]) if len(sys.argv) > 5 else run["politeness"]["calls"]
print(f"| {kind} | {float(rtt):g} ms | {entries:,} | {calls:,} | {calls / entries:.4f} "
      f"| {float(wall):.1f} s | **{entries / float(wall):,.0f}** "
      f"| {float(user) + float(system):.1f} s | {int(rss_kib) // 1024} MiB |")
PY
}
stop_relay() {
  if [ -n "$RELAY_PID" ]; then
    kill "$RELAY_PID"
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=
  fi
}

LS_ARGS=(--uid 0 --gid 0 --connections "$CONNECTIONS" --in-flight "$IN_FLIGHT" --ping 200)
# One unreported listing first: ganesha's caches and the page cache warm up.
"$LS" "$SERVER_IP" "$TREE" "${LS_ARGS[@]}" >"$OUT/warmup.txt"
ROWS=() SCANS=()
for rtt in ${RTTS//,/ }; do
  relay "$rtt"
  /usr/bin/time -o "$OUT/ls-$rtt.cpu" -f "%U %S" "$LS" "$ADDR" "$TREE" "${LS_ARGS[@]}" >"$OUT/ls-$rtt.txt"
  peer_seconds=- peer_entries=- peer_calls=-
  if [ -n "$PEER" ] && python3 -c "import sys; sys.exit(not $rtt <= $PEER_MAX_RTT)"; then
    # libnfs' nfs-ls: one call at a time; through the relay, which counts its calls.
    seen=$(wc -l <"$OUT/relay.out" 2>/dev/null || echo 0)
    start=$(date +%s.%N)
    peer_entries=$(nfs-ls -R "nfs://$ADDR$TREE?uid=0&gid=0" | wc -l)
    peer_seconds=$(python3 -c "print($(date +%s.%N) - $start)")
    if [ "$rtt" != 0 ]; then
      sleep 0.5
      peer_calls=$(tail -n +$((seen + 1)) "$OUT/relay.out" | awk -F'calls=' '/^closed 2049 /{n += $2} END {print n + 0}')
    fi
  fi
  if [ -n "$SCAN" ]; then
    # (a) the whole scan over NFS, through the same relay.
    for shards in ${SHARDS//,/ }; do
      rm -rf "$OUT/toc-nfs"
      /usr/bin/time -o "$OUT/scan-nfs-$rtt-$shards.time" -f "%e %U %S %M" "$SCANJOB" run "nfs://$ADDR$TREE" \
        --out "$OUT/toc-nfs" --nfs-uid 0 --nfs-gid 0 --shards "$shards" --json >"$OUT/scan-nfs-$rtt-$shards.json"
      SCANS+=("$(scan_row "scanjob run nfs://" "$rtt" "$OUT/scan-nfs-$rtt-$shards.json" "$OUT/scan-nfs-$rtt-$shards.time")")
      echo "${SCANS[-1]}"
    done
    # (b) the mounted path: the same tree through slowfs at the same latency per request.
    if python3 -c "import sys; sys.exit(not $rtt <= $MOUNTED_MAX_RTT)"; then
      mounted "$rtt"
      before=$(slowfs_requests "$OUT/slowfs-stats.json")
      rm -rf "$OUT/toc-mounted"
      /usr/bin/time -o "$OUT/scan-mounted-$rtt.time" -f "%e %U %S %M" "$SCANJOB" run "$MNT" \
        --out "$OUT/toc-mounted" --json >"$OUT/scan-mounted-$rtt.json"
      requests=$(($(slowfs_requests "$OUT/slowfs-stats.json") - before))
      stop_mounted
      SCANS+=("$(scan_row "scanjob run (slowfs mount)" "$rtt" "$OUT/scan-mounted-$rtt.json" "$OUT/scan-mounted-$rtt.time" "$requests")")
      echo "${SCANS[-1]}"
    fi
  fi
  stop_relay
  ROWS+=("$(python3 - "$OUT/ls-$rtt.txt" "$rtt" "$IN_FLIGHT" "$peer_seconds" "$peer_entries" "$peer_calls" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
user, system = map(float, open(sys.argv[1][:-4] + ".cpu").read().split()[-2:])
rtt, in_flight = float(sys.argv[2]), int(sys.argv[3])
peer_seconds, peer_entries, peer_calls = sys.argv[4:7]
head = dict(kv.split("=") for kv in text.splitlines()[0].split())
rdp = re.search(r"READDIRPLUS\s+calls=(\d+).*p50=(\S+) p90=(\S+) p99=(\S+)", text)
calls, entries = int(rdp.group(1)), int(head["entries"])
# Waiting alone: every call a round trip, in_flight of them at once.
floor = calls / in_flight * rtt / 1000
limit = f"{entries / floor:,.0f}" if floor else "—"
peer = "—"
if peer_seconds != "-":
    peer = f"{int(peer_entries) / float(peer_seconds):,.0f}"
    if peer_calls != "-":
        peer += f" ({int(peer_calls) / int(peer_entries):.3f})"
print(f"| {rtt:g} ms | {head['round_trip_p50']} | {entries:,} | {int(head['calls']):,} "
      f"| {float(head['calls_per_entry']):.4f} | {float(head['seconds']):.1f} s "
      f"| **{float(head['entries_per_s']):,.0f}** | {rdp.group(2)} / {rdp.group(3)} / {rdp.group(4)} "
      f"| {user + system:.1f} s | {floor:.2f} s → {limit} | {peer} |")
PY
)")
  echo "${ROWS[-1]}"
done
echo
echo "connections=$CONNECTIONS in_flight=$IN_FLIGHT tree=$TREE"
echo "| added round trip | NULL round trip p50 | entries | RPCs | RPCs per entry | wall | entries/s | READDIRPLUS p50 / p90 / p99 | client CPU | latency limit: calls / in flight × RTT → entries/s | nfs-ls -R entries/s (RPCs per entry) |"
echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|"
printf '%s\n' "${ROWS[@]}"
if [ -n "$SCAN" ]; then
  echo
  echo "| scan | added round trip | entries | calls | calls per entry | wall | entries/s | CPU | peak RSS |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${SCANS[@]}"
fi
