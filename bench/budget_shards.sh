#!/usr/bin/env bash
# An operations budget shared by all of a run's shards at once, as the operator splits it:
# slowfs' synthetic tree, one plan of SHARDS shards, every shard's `scanjob scan` started at the
# same time with --max-ops-per-second BUDGET/SHARDS (what the operator passes at parallelism =
# shards). Reports the calls the shards made, the FUSE requests slowfs counted, the rate over
# the wall time of the whole step and the request rate while all shards ran (slowfs' counters
# sampled every second, up to the first shard's end), against the budget. With --seconds S the
# shards stop at S s (their --deadline-seconds): the rate of a long step while all shards run,
# without waiting for its end (the shards' own call counts are then not reported).
#   bash bench/budget_shards.sh [--files 1M] [--shards 16] [--budget 40000] [--latency-us 200]
#       [--seconds S]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
FILES=1M SHARDS=16 BUDGET=40000 LAT=200 LIMIT=
while [ $# -gt 0 ]; do
  case $1 in
    --files) FILES=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --latency-us) LAT=$2; shift 2 ;;
    --seconds) LIMIT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
build_scanjob_and_slowfs
MNT=/tmp/budget-shards-mnt STATS=/tmp/budget-shards-stats.json WORK=$(mktemp -d)
trap 'kill $SLOWFS_PID ${SAMPLER:-} 2>/dev/null; rm -rf "$WORK"' EXIT
mount_synthetic "$MNT" "files=$FILES" "$WORK/slowfs.log" --latency-us "$LAT" --stats "$STATS"
PER_POD=$((BUDGET / SHARDS))
"$SCANJOB" plan "$MNT" --shards "$SHARDS" --out "$WORK/out" --run r1 --threads 16 \
  --max-ops-per-second "$BUDGET" >/dev/null
before=$(slowfs_requests "$STATS")
start=$(date +%s.%N)
# slowfs' request count every second while the shards run: "seconds requests" lines.
(while :; do
  python3 -c 'import json, sys, time; print(time.time(), json.load(open(sys.argv[1]))["total"])' \
    "$STATS" 2>/dev/null || true
  sleep 1
done) >"$WORK/samples.txt" &
SAMPLER=$!
for i in $(seq 0 $((SHARDS - 1))); do
  "$SCANJOB" --json scan --plan "$WORK/out/runs/r1/plan.json" --index "$i" --threads 16 \
    --max-ops-per-second "$PER_POD" --progress-seconds 0 ${LIMIT:+--deadline-seconds "$LIMIT"} \
    >"$WORK/scan-$i.json" 2>"$WORK/scan-$i.err" &
done
wait $(jobs -p | grep -v -e "^$SLOWFS_PID$" -e "^$SAMPLER$") 2>/dev/null || true
end=$(date +%s.%N)
kill "$SAMPLER"
after=$(slowfs_requests "$STATS")
python3 - "$WORK" "$SHARDS" "$BUDGET" "$PER_POD" "$before" "$after" "$start" "$end" "$FILES" "$LAT" "$LIMIT" <<'PY'
import json, sys
from datetime import datetime
work, shards, budget, per_pod, before, after, start, end, files, lat, limit = sys.argv[1:]
shards, budget, per_pod = int(shards), int(budget), int(per_pod)
wall = float(end) - float(start)
def shard(i):
    try:
        return json.load(open(f"{work}/scan-{i}.json"))
    except ValueError:
        return None  # stopped at --seconds
done = [shard(i) for i in range(shards)]
calls = None if None in done else sum(s["politeness"]["calls"] for s in done)
requests = int(after) - int(before)
# While all shards ran: from the first sample to the last one before the first shard ended.
ends = [float(start) + float(limit)] if limit else []
for s in done:
    if s is not None:
        started = datetime.fromisoformat(s["started"].replace("Z", "+00:00")[:26] + "+00:00")
        ends.append(started.timestamp() + s["duration_seconds"])
samples = [tuple(map(float, l.split())) for l in open(f"{work}/samples.txt") if len(l.split()) == 2]
inside = [x for x in samples if x[0] <= min(ends)]
(t0, n0), (t1, n1) = inside[0], inside[-1]
all_ran = (n1 - n0) / (t1 - t0)
print(f"slowfs --synthetic files={files} at {lat} µs; {shards} shards at once, "
      f"--max-ops-per-second {per_pod} each (a budget of {budget:,})\n")
print("| wall s | scanjob calls | calls/s | budget | FUSE requests | requests/s | requests/s while all shards ran |")
print("|---:|---:|---:|---:|---:|---:|---:|")
shown = f"{wall:.1f} (stopped) | — | —" if calls is None else f"{wall:.1f} | {calls:,} | {calls / wall:,.0f}"
print(f"| {shown} | {budget:,} | {requests:,} | {requests / wall:,.0f} | {all_ran:,.0f} ({t1 - t0:.0f} s) |")
PY
