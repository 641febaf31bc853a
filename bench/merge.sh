#!/usr/bin/env bash
# The merge step with everything it derives (first_seen join, diff, rollups, age histograms,
# atime check, directory tree, duplicate files and trees, summary, report.html), at growing
# sizes: wall time and peak RSS.
#
#   bench/merge.sh [-n RUNS] [--sizes "100000 300000 1000000"] [-o OUTDIR]
#
# For each size: a mktree tree (--seed 42, under $BENCH_TREES, default /tmp, made once), a
# first snapshot r1 (`scanjob run --threads 2`), then run r2 planned from r1 and scanned, so
# its merge has a previous snapshot of the same size to join and diff with. Between the two
# runs 0.5 % of the files go and as many new ones come (a directory `.bench-churn-a` that only
# r1 sees, `.bench-churn-b` that only r2 sees; both are removed afterwards), so the diff has
# rows to write. Measured (median of RUNS, default 3, each a fresh merge of r2):
# `scanjob merge --run OUT/runs/r2`; the same with `--merge-memory` 256 MiB (the joins run in
# passes once a build side would not fit half of it: 2 passes at 1 M rows); and, for
# comparison, the merge of a first snapshot (r1 again: no previous, no join, no diff). Memory
# is the merge process's peak RSS (/usr/bin/time, via bench/peers/measure.py).
# Writes OUTDIR/merge.md and prints it. Nothing here asserts a timing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=3
SIZES="100000 300000 1000000"
OUT=/tmp/scanjob-bench
while [ $# -gt 0 ]; do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
TREES=${BENCH_TREES:-/tmp}
mkdir -p "$OUT"
(cd "$REPO" && cargo build --release --locked -q --workspace --all-targets)

measure() { python3 "$PEERS/measure.py" -- "$1"; }
# Median of RUNS measurements of command $1: "wall_s maxrss_mib".
median_of() {
  local cmd=$1 i
  for i in $(seq "$RUNS"); do
    measure "$cmd"
  done | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
bad = [r for r in rows if r["rc"] != 0]
if bad: sys.exit("a merge failed: %s" % bad[0])
print("%.3f %.1f" % (statistics.median(r["wall_s"] for r in rows),
                     statistics.median(r["maxrss_kb"] for r in rows) / 1024))'
}

report=$OUT/merge.md
{
  echo "| ToC rows | files | added (and removed) | merge with previous: wall | peak RSS | same, --merge-memory 256 MiB: wall | peak RSS | first snapshot: wall | peak RSS | derived tables |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$report"
for files in $SIZES; do
  tree=$TREES/bench-tree-$((files / 1000))k
  if [ ! -f "$tree.summary.json" ]; then
    rm -rf "$tree"
    python3 "$MKTREE" "$tree" --files "$files" --seed 42 --jobs 2 \
      --summary "$tree.summary.json" >/dev/null
  fi
  toc=$(mktemp -d "$OUT/merge-toc-XXXX")
  churn=$((files / 200))
  trap 'rm -rf "$tree/.bench-churn-a" "$tree/.bench-churn-b"' EXIT
  make_files "$tree/.bench-churn-a" "$churn"
  "$SCANJOB" run "$tree" --out "$toc" --run r1 --threads 2 --json >"$OUT/merge-r1.json"
  rm -rf "$tree/.bench-churn-a"
  make_files "$tree/.bench-churn-b" "$churn"
  "$SCANJOB" plan "$tree" --out "$toc" --previous "$toc" --run r2 >/dev/null
  "$SCANJOB" scan --plan "$toc/runs/r2/plan.json" --index 0 --threads 2 --progress-seconds 0 >/dev/null
  # Each measured merge derives its night again: without the manifest it is not a retry of a
  # merge that already wrote its night (which would only publish it).
  again() { echo "rm -f $toc/snapshots/$1/manifest.json; $SCANJOB merge $2 --run $toc/runs/$1"; }
  read -r wall rss < <(median_of "$(again r2 "")")
  read -r wallp rssp < <(median_of "$(again r2 "--merge-memory $((256 << 20))")")
  read -r wall1 rss1 < <(median_of "$(again r1 "")")
  rows=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sum(f["rows"] for f in m["toc_files"]))' \
    "$toc/snapshots/r2/manifest.json")
  tables=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(len(m["derived"]))' \
    "$toc/snapshots/r2/manifest.json")
  added=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["growth"]["diff"]["added"])' \
    "$toc/snapshots/r2/summary.json")
  echo "| $rows | $files | $added | $wall s | $rss MiB | $wallp s | $rssp MiB | $wall1 s | $rss1 MiB | $tables |" >>"$report"
  echo "merge bench: $files files done" >&2
  rm -rf "$toc" "$tree/.bench-churn-b"
done
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); runs: $RUNS" >>"$report"
cat "$report"
