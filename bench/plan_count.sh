#!/usr/bin/env bash
# A first run's plan (no earlier snapshot: a budgeted count of the tree's top levels) over
# slowfs' synthetic tree at a fixed latency per request: planning time by threads, and with an
# operations budget, the calls scanjob made against the FUSE requests slowfs counted.
#   bash bench/plan_count.sh [--files 100k] [--latency-us 1000] [--shards 8] [--budget 500]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
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
build_scanjob_and_slowfs
MNT=/tmp/plan-count-mnt STATS=/tmp/plan-count-stats.json WORK=$(mktemp -d)
trap 'kill $SLOWFS_PID; rm -rf "$WORK"' EXIT
mount_synthetic "$MNT" "files=$FILES" "$WORK/slowfs.log" --latency-us "$LAT" --stats "$STATS"

echo "slowfs --synthetic files=$FILES at ${LAT} µs per request; scanjob plan --shards $SHARDS (a first run)"
echo
echo "| threads | budget (calls/s) | planning s | scanjob calls | FUSE requests | calls/s |"
echo "|---:|---:|---:|---:|---:|---:|"
run() {
  local threads=$1 budget=$2 before after
  local args=(plan "$MNT" --shards "$SHARDS" --out "$WORK/out-$threads-$budget" --run r1 --threads "$threads" --json)
  [ "$budget" = "-" ] || args+=(--max-ops-per-second "$budget")
  before=$(slowfs_requests "$STATS")
  "$SCANJOB" "${args[@]}" >"$WORK/plan.json"
  after=$(slowfs_requests "$STATS")
  python3 - "$WORK/plan.json" "$threads" "$budget" "$((after - before))" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
secs, calls = s["planning_seconds"], s["planning_calls"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {secs:.2f} | {calls:,} | {int(sys.argv[4]):,} | {calls / secs:,.0f} |")
PY
}
for threads in 1 2 4 8 16; do run "$threads" -; done
run 16 "$BUDGET"
