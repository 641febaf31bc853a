#!/usr/bin/env bash
# A first run's plan (no earlier snapshot: a budgeted count of the tree's top levels) over
# slowfs' synthetic tree at a fixed latency per request: planning time by threads, and with an
# operations budget, the calls scanjob made against the FUSE requests slowfs counted.
#   bash bench/plan_count.sh [--files 100k] [--latency-us 1000] [--shards 8] [--budget 500]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(cd "$REPO/../shared" && pwd)
CACHE=${SCANJOB_CACHE:-$HOME/.cache/scanjob}
FILES=100k LAT=1000 SHARDS=8 BUDGET=500
while [ $# -gt 0 ]; do
  case $1 in
    --files) FILES=$2; shift 2 ;;
    --latency-us) LAT=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
(cd "$SHARED/bench/slowfs" && CARGO_TARGET_DIR=$CACHE/slowfs-target cargo build --release -q)
(cd "$REPO" && cargo build --release --locked -q --workspace --bins)
SCANJOB=$CARGO_TARGET_DIR/release/scanjob
MNT=/tmp/plan-count-mnt STATS=/tmp/plan-count-stats.json WORK=$(mktemp -d)
mkdir -p "$MNT"
"$CACHE/slowfs-target/release/slowfs" --synthetic "files=$FILES" "$MNT" --latency-us "$LAT" \
  --stats "$STATS" >"$WORK/slowfs.log" 2>&1 &
SLOWFS_PID=$!
trap 'kill $SLOWFS_PID; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
requests() { sleep 0.25; python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$STATS"; }

echo "slowfs --synthetic files=$FILES at ${LAT} µs per request; scanjob plan --shards $SHARDS (a first run)"
echo
echo "| threads | budget (calls/s) | planning s | scanjob calls | FUSE requests | calls/s |"
echo "|---:|---:|---:|---:|---:|---:|"
run() {
  local threads=$1 budget=$2 before after
  local args=(plan "$MNT" --shards "$SHARDS" --out "$WORK/out-$threads-$budget" --run r1 --threads "$threads" --json)
  [ "$budget" = "-" ] || args+=(--max-ops-per-second "$budget")
  before=$(requests)
  "$SCANJOB" "${args[@]}" >"$WORK/plan.json"
  after=$(requests)
  python3 - "$WORK/plan.json" "$threads" "$budget" "$((after - before))" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
secs, calls = s["planning_seconds"], s["planning_calls"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {secs:.2f} | {calls:,} | {int(sys.argv[4]):,} | {calls / secs:,.0f} |")
PY
}
for threads in 1 2 4 8 16; do run "$threads" -; done
run 16 "$BUDGET"
