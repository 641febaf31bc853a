#!/usr/bin/env bash
# scanjob beside its peers, in one run, on this machine.
#
#   bench/run.sh [-n RUNS] [-o OUTDIR] [--files N] [--skip REGEX]
#
# 1. installs the peers (bench/peers/setup.sh: fd, diskus, dua, pdu, a venv with dask,
#    pandas, pyarrow; the 2-thread stat-walk "floor"),
# 2. generates the 1 M-file reference tree (mktree.py --files 1000000 --seed 42) and a single
#    directory of 200 k entries, once, under $BENCH_TREES (default /tmp),
# 3. builds scanjob (release) and runs bench/peers/peers.sh on each tree with scanjob added
#    (`scanjob run TREE --out DIR --threads 2 --json`, a fresh output directory per run); the
#    talk's dask scanner runs DASK_RUNS times (--dask-runs, default 1) beside the floor,
# 4. runs the planner at reference scale (16 M files, 510 k directories, no files created),
# 5. writes OUTDIR/report.md: the peers table of each tree, scanjob's Parquet bytes per row, and
#    the planner table.
# Timings are medians of RUNS (default 3) after a warm-up; peers.sh retries a run that another
# process contended. Nothing here asserts a timing.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
RUNS=3
OUT=/tmp/scanjob-bench
FILES=1000000
SKIP='py-dask2|py-walk|py-pool2|du-s$|du-s-inodes|fd-u-tf-j2-S|diskus-j2$|dua-t2$'
FLAT_ONLY='floor-1t|floor-2t$|find-printf>file|pdu-threads2$|py-scandir\+parquet|scanjob'
DASK_RUNS=1
while [ $# -gt 0 ]; do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --skip) SKIP=$2; shift 2 ;;
    --dask-runs) DASK_RUNS=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
TREES=${BENCH_TREES:-/tmp}
SCANJOB_CACHE=${SCANJOB_CACHE:-$HOME/.cache/scanjob}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCANJOB_CACHE/target}
mkdir -p "$OUT"

bash "$HERE/peers/setup.sh" >&2
(cd "$REPO" && cargo build --release --locked -q --workspace --all-targets)
SCANJOB=$CARGO_TARGET_DIR/release/scanjob

tree=$TREES/bench-tree-$((FILES / 1000))k
if [ ! -f "$tree.summary.json" ]; then
  rm -rf "$tree"
  python3 "$REPO/testkit/mktree.py" "$tree" --files "$FILES" --seed 42 --summary "$tree.summary.json" >/dev/null
fi
flat=$TREES/bench-flat-200k
if [ ! -f "$flat/.complete" ]; then
  rm -rf "$flat" && mkdir -p "$flat/d"
  python3 - "$flat/d" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(200_000):
    open(os.path.join(d, "frame_%06d.dat" % i), "w").close()
PY
  touch "$flat/.complete"
fi

scanjob_tool="scanjob-2t|tail|$SCANJOB run \"\$T\" --out \"\$O/toc/\$(date +%s%N)\" --threads 2 --json"
rm -rf "$OUT/$(basename "$tree")/toc" "$OUT/$(basename "$flat")/toc"
bash "$HERE/peers/peers.sh" "$tree" -n "$RUNS" -o "$OUT/$(basename "$tree")" --skip "$SKIP" --add "$scanjob_tool" >&2
# The talk's dask scanner takes minutes per run: fewer runs, same tree, same session.
[ "$DASK_RUNS" -gt 0 ] && bash "$HERE/peers/peers.sh" "$tree" -n "$DASK_RUNS" -o "$OUT/dask" --only 'floor-2t$|py-dask2\+parquet' >&2
bash "$HERE/peers/peers.sh" "$flat" -n "$RUNS" -o "$OUT/$(basename "$flat")" --only "$FLAT_ONLY" --add "$scanjob_tool" >&2

python3 "$REPO/bench/reference_dirs.py" "$OUT/reference-dirs.tsv" 2>"$OUT/reference-dirs.log"
"$CARGO_TARGET_DIR/release/examples/plan_scale" "$OUT/reference-dirs.tsv" 16 64 256 >"$OUT/plan.md"
# The same store reshaped to the worst case: one 10 M-file subtree holding a 2 M-file directory.
python3 "$REPO/bench/reference_dirs.py" "$OUT/reference-skew.tsv" --big-subtree 10000000 --huge-dir 2000000 2>"$OUT/reference-skew.log"
"$CARGO_TARGET_DIR/release/examples/plan_scale" "$OUT/reference-skew.tsv" 16 64 256 >"$OUT/plan-skew.md"

python3 - "$OUT" "$(basename "$tree")" "$(basename "$flat")" >"$OUT/report.md" <<'PY'
import glob, json, os, sys
out, trees = sys.argv[1], sys.argv[2:]
print("# scanjob beside its peers\n")
print(open(os.path.join(out, trees[0], "env.txt")).read().strip().replace("\n", "  \n"), "\n")
for t in trees + (["dask"] if os.path.exists(os.path.join(out, "dask", "results.md")) else []):
    print(f"## {t}\n")
    print(open(os.path.join(out, t, "results.md")).read().strip(), "\n")
    runs = sorted(glob.glob(os.path.join(out, t, "scanjob-2t.run*.out")))
    if not runs:
        continue
    s = json.loads(open(runs[-1]).read().strip().splitlines()[-1])
    print(f"scanjob output: {s['entries']} rows, {s['output_bytes']} bytes of Parquet = "
          f"{s['output_bytes'] / max(s['entries'], 1):.1f} bytes/row; {s['errors']} errors\n")
print("## planner at reference scale (previous snapshot of 16 M files, no files created)\n")
print(open(os.path.join(out, "reference-dirs.log")).read().strip(), "\n")
print(open(os.path.join(out, "plan.md")).read().strip(), "\n")
print("## planner, worst case: a 10 M-file subtree with a 2 M-file directory\n")
print(open(os.path.join(out, "reference-skew.log")).read().strip(), "\n")
print(open(os.path.join(out, "plan-skew.md")).read().strip())
PY
cat "$OUT/report.md"
