#!/usr/bin/env bash
# The exact sequence behind README's table (about 75 minutes on 2 cores).
# Needs: slowfs and floor built (bench/lib.sh's build_scanjob_and_slowfs; see bench.py for
# where it looks), pdu in /tmp/bench-tools/bin (bench/peers/setup.sh), and
#   python3 testkit/mktree.py /tmp/slow-tree --files 100000 --seed 3 > /tmp/slow-tree.truth.json
set -euo pipefail
B="python3 $(cd "$(dirname "$0")" && pwd)/bench.py"
O=/tmp/slowfs-bench; mkdir -p $O
ALL="find py pdu-2 pdu-64 floor-1 floor-2 floor-8 floor-32 floor-64 floor-128"

# latency 0 and 200 us: every tool alone, one warm-up run + 3 timed runs
$B mount 0;   $B run $O/lat0.jsonl $ALL
$B mount 200; $B run $O/lat200.jsonl $ALL

# latency 1000 us. Phase A: the latency-bound configurations (1-2 scanner
# threads, ~1 request per ms each) run at the same time, 3 runs each, no
# warm-up (every request goes to FUSE anyway); py and pdu-2 as 3 parallel
# single runs. About 13 requests in flight in all: ~15 % of one core.
$B mount 1000
for t in floor-1 floor-2 find; do
  $B run $O/lat1000.jsonl $t --runs 3 --warmup 0 --tag concurrent > $O/lat1000-$t.log &
done
for i in 1 2 3; do
  $B run $O/lat1000.jsonl py --runs 1 --warmup 0 --tag concurrent > $O/lat1000-py-$i.log &
  $B run $O/lat1000.jsonl pdu-2 --runs 1 --warmup 0 --tag concurrent > $O/lat1000-pdu2-$i.log &
done
wait
# Phase B: the many-thread configurations alone, warm-up + 3 runs
$B run $O/lat1000.jsonl floor-8 floor-32 floor-64 floor-128 pdu-64
# Phase C: control, one solo run of two phase-A tools (interference check)
$B run $O/lat1000-control.jsonl floor-1 find --runs 1 --warmup 0 --tag solo-control
$B umount
$B table $O/lat0.jsonl $O/lat200.jsonl $O/lat1000.jsonl
