#!/usr/bin/env bash
# What publishing the night as Delta Lake tables costs the merge: two scanjob binaries, the one
# before the tables (BEFORE) and one after (AFTER), merge the same second night of a 1 M-file
# mktree tree (a previous snapshot to join and diff with, 0.5 % of the files churned), in turn.
#
#   bench/table_commit.sh BEFORE AFTER [-n RUNS] [--files N] [-o OUTDIR]
#
# For each binary: its own output location, night r1 (`scanjob run --threads 2`), then r2
# planned from r1 and scanned; that state is kept, and every measured merge of r2 starts from a
# fresh copy of it (a merge retried after it committed would only publish). Measured (median
# of RUNS, default 3, interleaved): the merge's wall time and peak RSS (bench/peers/
# measure.py), the bytes it wrote (the output's size after minus before), and, for AFTER, the
# seconds its log gives to reading the tables' logs and to each table's commit ("read the
# tables' logs", "committed to the table"). Writes
# OUTDIR/table_commit.md and prints it. Nothing here asserts a timing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -ge 2 ] || { sed -n '2,14p' "$0"; exit 2; }
BEFORE=$(realpath "$1")
AFTER=$(realpath "$2")
shift 2
RUNS=3
FILES=1000000
OUT=/tmp/scanjob-bench
while [ $# -gt 0 ]; do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
TREE=${BENCH_TREES:-/tmp}/bench-tree-$((FILES / 1000))k
mkdir -p "$OUT"
if [ ! -f "$TREE.summary.json" ]; then
  rm -rf "$TREE"
  python3 "$MKTREE" "$TREE" --files "$FILES" --seed 42 --jobs 2 \
    --summary "$TREE.summary.json" >/dev/null
fi
churn=$((FILES / 200))
trap 'rm -rf "$TREE/.bench-churn-a" "$TREE/.bench-churn-b"' EXIT

# prepare NAME BINARY: nights r1 and r2 (scanned, not merged) in $OUT/NAME.base.
prepare() {
  local base=$OUT/$1.base bin=$2
  rm -rf "$base" "$TREE/.bench-churn-a" "$TREE/.bench-churn-b"
  make_files "$TREE/.bench-churn-a" "$churn"
  "$bin" run "$TREE" --out "$base" --run r1 --threads 2 --json >/dev/null
  rm -rf "$TREE/.bench-churn-a"
  make_files "$TREE/.bench-churn-b" "$churn"
  "$bin" plan "$TREE" --out "$base" --previous "$base" --run r2 >/dev/null
  "$bin" scan --plan "$base/runs/r2/plan.json" --index 0 --threads 2 --progress-seconds 0 >/dev/null
  rm -rf "$TREE/.bench-churn-b"
}
prepare before "$BEFORE"
prepare after "$AFTER"

# merge NAME BINARY RUN: one measured merge of r2 from a fresh copy; appends a JSON line.
merge() {
  local name=$1 bin=$2 out=$OUT/$1.out log=$OUT/$1.log
  rm -rf "$out"
  cp -a "$OUT/$name.base" "$out"
  local before_bytes
  before_bytes=$(du -sb "$out" | cut -f1)
  python3 "$PEERS/measure.py" -- \
    "RUST_LOG=scanjob_worker=info $bin merge --run $out/runs/r2 2>$log" >"$OUT/$name.json"
  python3 -c '
import json, re, sys
m = json.loads(sys.stdin.read())
log = open(sys.argv[1]).read()
commits = [float(x) for x in re.findall(r"committed to the table.*?seconds=([0-9.e-]+)", log)]
reads = [float(x) for x in re.findall(r"read the tables. logs.*?seconds=([0-9.e-]+)", log)]
m.update(name=sys.argv[2], commit_s=sum(commits) + sum(reads), commits=len(commits),
         written=int(sys.argv[4]) - int(sys.argv[3]))
print(json.dumps(m))' "$log" "$name" "$before_bytes" "$(du -sb "$out" | cut -f1)" <"$OUT/$name.json"
}
results=$OUT/table_commit.jsonl
: >"$results"
for _ in $(seq "$RUNS"); do
  merge before "$BEFORE" >>"$results"
  merge after "$AFTER" >>"$results"
done
python3 - "$results" "$RUNS" >"$OUT/table_commit.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
bad = [r for r in rows if r["rc"] != 0]
if bad:
    sys.exit("a merge failed: %s" % bad[0])
print("| binary | merge wall (median) | range | peak RSS | bytes written | table commits | commit time | commit share |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name in ("before", "after"):
    r = [x for x in rows if x["name"] == name]
    wall = statistics.median(x["wall_s"] for x in r)
    commit = statistics.median(x["commit_s"] for x in r)
    print("| %s | %.3f s | %.3f–%.3f s | %.0f MiB | %.1f MiB | %d | %.3f s | %.1f %% |" % (
        name, wall, min(x["wall_s"] for x in r), max(x["wall_s"] for x in r),
        statistics.median(x["maxrss_kb"] for x in r) / 1024,
        statistics.median(x["written"] for x in r) / 2**20,
        r[0]["commits"], commit, 100 * commit / wall))
print()
print("runs: %s each, interleaved" % sys.argv[2])
PY
cat "$OUT/table_commit.md"
