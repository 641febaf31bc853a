#!/usr/bin/env bash
# An operations budget shared by all of a run's shards at once, as the operator splits it:
# slowfs' synthetic tree, one plan of SHARDS shards, every shard's `scanjob scan` started at the
# same time with --max-ops-per-second BUDGET/SHARDS (what the operator passes at parallelism =
# shards). Reports the calls the shards made, the FUSE requests slowfs counted, and the rate
# over the wall time of the whole step, against the budget.
#   bash bench/budget_shards.sh [--files 1M] [--shards 16] [--budget 40000] [--latency-us 200]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(cd "$REPO/../shared" && pwd)
CACHE=${SCANJOB_CACHE:-$HOME/.cache/scanjob}
FILES=1M SHARDS=16 BUDGET=40000 LAT=200
while [ $# -gt 0 ]; do
  case $1 in
    --files) FILES=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --latency-us) LAT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
(cd "$SHARED/bench/slowfs" && CARGO_TARGET_DIR=$CACHE/slowfs-target cargo build --release -q)
(cd "$REPO" && cargo build --release --locked -q --workspace --bins)
SCANJOB=$CARGO_TARGET_DIR/release/scanjob
MNT=/tmp/budget-shards-mnt STATS=/tmp/budget-shards-stats.json WORK=$(mktemp -d)
mkdir -p "$MNT"
"$CACHE/slowfs-target/release/slowfs" --synthetic "files=$FILES" "$MNT" --latency-us "$LAT" \
  --stats "$STATS" >"$WORK/slowfs.log" 2>&1 &
SLOWFS_PID=$!
trap 'kill $SLOWFS_PID; rm -rf "$WORK"' EXIT
for _ in $(seq 600); do mountpoint -q "$MNT" && break; sleep 0.5; done
requests() { sleep 0.25; python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$STATS"; }
PER_POD=$((BUDGET / SHARDS))
"$SCANJOB" plan "$MNT" --shards "$SHARDS" --out "$WORK/out" --run r1 --threads 16 \
  --max-ops-per-second "$BUDGET" >/dev/null
before=$(requests)
start=$(date +%s.%N)
for i in $(seq 0 $((SHARDS - 1))); do
  "$SCANJOB" --json scan --plan "$WORK/out/runs/r1/plan.json" --index "$i" --threads 16 \
    --max-ops-per-second "$PER_POD" --progress-seconds 0 >"$WORK/scan-$i.json" &
done
wait $(jobs -p | grep -v "^$SLOWFS_PID$") 2>/dev/null || true
end=$(date +%s.%N)
after=$(requests)
python3 - "$WORK" "$SHARDS" "$BUDGET" "$PER_POD" "$before" "$after" "$start" "$end" "$FILES" "$LAT" <<'PY'
import json, sys
work, shards, budget, per_pod, before, after, start, end, files, lat = sys.argv[1:]
shards, budget, per_pod = int(shards), int(budget), int(per_pod)
wall = float(end) - float(start)
calls = 0
for i in range(shards):
    s = json.load(open(f"{work}/scan-{i}.json"))
    calls += s["politeness"]["calls"]
requests = int(after) - int(before)
print(f"slowfs --synthetic files={files} at {lat} µs; {shards} shards at once, "
      f"--max-ops-per-second {per_pod} each (a budget of {budget:,})\n")
print("| wall s | scanjob calls | calls/s | budget | FUSE requests | requests/s |")
print("|---:|---:|---:|---:|---:|---:|")
print(f"| {wall:.1f} | {calls:,} | {calls / wall:,.0f} | {budget:,} | {requests:,} | {requests / wall:,.0f} |")
PY
