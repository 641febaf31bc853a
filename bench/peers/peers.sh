#!/usr/bin/env bash
# peers.sh — time the metadata-scan peers side by side on one tree.
#
#   ./peers.sh TREE [-n RUNS] [-o OUTDIR] [--only REGEX] [--skip REGEX]
#              [--add 'NAME|KIND|COMMAND']... [--retries N] [--max-others C]
#
# Every tool: one untimed warm-up run (its stdout kept in OUTDIR for the
# sanity check), then RUNS timed runs (default 3) under measure.py
# (wall, user+sys, max RSS of the largest process, sampled PSS peak of the
# whole process tree, CPU used by the rest of the machine meanwhile).
# A timed run during which the rest of the machine used more than C cores
# (default 0.15) counts as contended and is retried (default 3 times,
# after 5 s); the last try is kept either way and flagged.
# Results: OUTDIR/runs.jsonl (every kept run), OUTDIR/results.tsv and
# OUTDIR/results.md (medians; ratio to floor-2t's median wall).
#
# A tool is 'NAME|KIND|COMMAND'.  COMMAND is bash; "$T" is the tree and
# "$O" is OUTDIR (for files a tool writes).  KIND says what its stdout is:
#   lines      a file listing: timed runs send it to /dev/null, the check
#              counts the warm-up's lines (= files found)
#   tail       a short report: kept for every run, the check shows its tail
#   file:PATH  the command writes PATH itself; the check counts its lines
# Slot a new scanner in with e.g.
#   ./peers.sh /tmp/bench-tree-1m --add 'myscan|tail|/path/myscan --threads 2 -o "$O/my.parquet" "$T"'
#
# Tool locations (override with env): BENCH_TOOLS (cargo-installed fd,
# diskus, dua, pdu; default /tmp/bench-tools/bin), BENCH_VENV (python venv
# with dask[distributed], pandas, pyarrow; default /tmp/bench-venv).
# The floor binary (bench/floor, FLOOR) is built into the workspace's
# target directory (CARGO_TARGET_DIR, default ~/.cache/scanjob/target) if
# missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=${BENCH_TOOLS:-/tmp/bench-tools/bin}
VENV=${BENCH_VENV:-/tmp/bench-venv}
PY=$VENV/bin/python
REPO=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${SCANJOB_CACHE:-$HOME/.cache/scanjob}/target}
FLOOR=${FLOOR:-$CARGO_TARGET_DIR/release/floor}
SCAN=$HERE/talk_scanners.py

T=""
RUNS=3
O=/tmp/peers-out
ONLY=""
SKIP=""
EXTRA=()
RETRIES=3         # re-run a timed run up to this often when it was contended
MAX_OTHERS=0.15   # contended: the rest of the machine used > this many cores
while [ $# -gt 0 ]; do
  case "$1" in
    --retries) RETRIES=$2; shift 2 ;;
    --max-others) MAX_OTHERS=$2; shift 2 ;;
    -n) RUNS=$2; shift 2 ;;
    -o) O=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --skip) SKIP=$2; shift 2 ;;
    --add) EXTRA+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) T=$1; shift ;;
  esac
done
[ -n "$T" ] && [ -d "$T" ] || { echo "usage: $0 TREE [options] (see --help)" >&2; exit 2; }
T=$(cd "$T" && pwd)
mkdir -p "$O"
load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" 'BEGIN{exit !(l > 0.5)}'; then
  echo "WARNING: 1-min load average is $load1: other work is running, timings will be noisy" >&2
  ps -eo pcpu,pid,comm --sort=-pcpu | head -5 >&2
fi
export T O

if [ ! -x "$FLOOR" ]; then
  (cd "$REPO" && cargo build --release --locked -q -p scanjob-floor)
fi

FMT='%h\t%f\t%s\t%U\t%G\t%C@\t%T@\t%A@\n'
DEFAULT_TOOLS=(
  "floor-1t|tail|$FLOOR -j 1 \"\$T\""
  "floor-2t|tail|$FLOOR -j 2 \"\$T\""
  "floor-2t-pathstat|tail|$FLOOR -j 2 --stat path \"\$T\""
  "floor-2t-getdents-only|tail|$FLOOR -j 2 --stat none \"\$T\""
  "find-printf>null|lines|find \"\$T\" -type f -printf '$FMT'"
  "find-printf>file|file:\$O/find.tsv|find \"\$T\" -type f -printf '$FMT' > \"\$O/find.tsv\""
  "du-s|tail|du -s \"\$T\""
  "du-s-inodes|tail|du -s --inodes \"\$T\""
  "du-sb-apparent|tail|du -sb \"\$T\""
  "fd-u-tf-j2|lines|$TOOLS/fd -u -t f -j 2 . \"\$T\""
  "fd-u-tf-j2-S+0b|lines|$TOOLS/fd -u -t f -j 2 -S +0b . \"\$T\""
  "diskus-j2|tail|$TOOLS/diskus -j 2 \"\$T\""
  "diskus-j2-apparent|tail|$TOOLS/diskus -j 2 -b \"\$T\""
  "dua-t2|tail|$TOOLS/dua -t 2 -f bytes \"\$T\""
  "dua-t2-apparent|tail|$TOOLS/dua -t 2 -A -f bytes \"\$T\""
  "pdu-threads2|tail|$TOOLS/pdu --threads 2 \"\$T\""
  "pdu-threads2-apparent|tail|$TOOLS/pdu --threads 2 -q apparent-size -b plain -d 1 \"\$T\""
  "py-walk|tail|$PY $SCAN walk \"\$T\""
  "py-scandir|tail|$PY $SCAN scandir \"\$T\""
  "py-pool2|tail|$PY $SCAN pool \"\$T\""
  "py-dask2|tail|$PY $SCAN dask \"\$T\""
  "py-walk+parquet|tail|$PY $SCAN walk \"\$T\" --parquet \"\$O/py-walk.parquet\""
  "py-scandir+parquet|tail|$PY $SCAN scandir \"\$T\" --parquet \"\$O/py-scandir.parquet\""
  "py-pool2+parquet|tail|$PY $SCAN pool \"\$T\" --parquet \"\$O/py-pool.parquet\""
  "py-dask2+parquet|tail|$PY $SCAN dask \"\$T\" --parquet \"\$O/py-dask.parquet\""
)
ALL=("${DEFAULT_TOOLS[@]}" "${EXTRA[@]}")

RUNSJ=$O/runs.jsonl
CHECKS=$O/checks.tsv
: > "$RUNSJ"
: > "$CHECKS"
: > "$O/commands.tsv"
{
  echo "# peers.sh run $(date -u +%FT%TZ) on $(hostname), $(nproc) cores, kernel $(uname -r)"
  echo "# tree: $T"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$O/env.txt"
for b in fd diskus dua pdu; do
  [ -x "$TOOLS/$b" ] && echo "# $("$TOOLS/$b" --version 2>&1 | head -1)" >> "$O/env.txt"
done
echo "# $(find --version | head -1); $(du --version | head -1)" >> "$O/env.txt"
[ -x "$PY" ] && echo "# $("$PY" -c 'import sys,dask,distributed,pandas,pyarrow;print("python",sys.version.split()[0],"dask",dask.__version__,"distributed",distributed.__version__,"pandas",pandas.__version__,"pyarrow",pyarrow.__version__)')" >> "$O/env.txt"

for spec in "${ALL[@]}"; do
  name=${spec%%|*}; rest=${spec#*|}
  kind=${rest%%|*}; cmd=${rest#*|}
  if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then continue; fi
  if [ -n "$SKIP" ] && [[ $name =~ $SKIP ]]; then continue; fi
  echo "== $name: $cmd" >&2
  printf '%s\t%s\n' "$name" "$cmd" >> "$O/commands.tsv"
  # warm-up, output kept for the check
  warm=$O/$name.warm.out
  python3 "$HERE/measure.py" --stdout "$warm" -- "$cmd" > "$O/$name.warm.json" 2>"$O/$name.warm.err" || true
  case "$kind" in
    lines) check="lines=$(wc -l < "$warm")"; rm -f "$warm" ;;
    file:*) f=$(eval echo "${kind#file:}"); check="lines=$(wc -l < "$f")" ;;
    *) check=$(tail -n 2 "$warm" | tail -c 300 | iconv -c -f utf-8 -t utf-8 | tr '\n\t' '  ' | sed 's/  */ /g') ;;
  esac
  printf '%s\t%s\n' "$name" "$check" >> "$CHECKS"
  echo "   check: $check" >&2
  for r in $(seq 1 "$RUNS"); do
    if [ "$kind" = tail ]; then so=(--stdout "$O/$name.run$r.out"); else so=(); fi
    for a in $(seq 0 "$RETRIES"); do
      j=$(python3 "$HERE/measure.py" "${so[@]}" -- "$cmd" 2>>"$O/$name.err")
      c=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print(int(m["others_cpu_s"] > float(sys.argv[2]) * max(m["wall_s"], 0.2)))' "$j" "$MAX_OTHERS")
      echo "   run $r try $a: $j" >&2
      [ "$c" = 0 ] && break
      [ "$a" -lt "$RETRIES" ] && sleep 5
    done
    printf '{"tool": "%s", "run": %d, "tries": %d, "contended": %s, "m": %s}\n' "$name" "$r" "$((a+1))" "$([ "$c" = 1 ] && echo true || echo false)" "$j" >> "$RUNSJ"
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/env.txt"

python3 - "$O" <<'EOF'
import json, statistics as st, sys, os
O = sys.argv[1]
runs = {}
rawruns = {}
order = []
for line in open(os.path.join(O, "runs.jsonl")):
    r = json.loads(line)
    if r["tool"] not in runs:
        order.append(r["tool"])
    runs.setdefault(r["tool"], []).append(r["m"])
    rawruns.setdefault(r["tool"], []).append(r)
checks = dict(l.rstrip("\n").split("\t", 1) for l in open(os.path.join(O, "checks.tsv"), errors="replace"))
# files in the tree: from the floor's report when it ran, else from find
nfiles = None
for t in ("floor-2t", "floor-1t"):
    p = os.path.join(O, t + ".warm.out")
    if os.path.exists(p):
        nfiles = json.loads(open(p).read().strip().splitlines()[-1])["files"]
        break
def med(xs):
    return st.median(xs)
floor = med([m["wall_s"] for m in runs["floor-2t"]]) if "floor-2t" in runs else None
rows = []
for t in order:
    ms = runs[t]
    wall = med([m["wall_s"] for m in ms])
    us = med([m["user_s"] + m["sys_s"] for m in ms])
    rss = med([m["maxrss_kb"] or 0 for m in ms])
    pss = max(m["tree_pss_peak_kb"] for m in ms)
    rows.append({
        "tool": t, "runs": len(ms), "wall_s_median": round(wall, 3),
        "wall_s_min": round(min(m["wall_s"] for m in ms), 3),
        "wall_s_max": round(max(m["wall_s"] for m in ms), 3),
        "files_per_s": round(nfiles / wall) if nfiles else None,
        "user_s": round(med([m["user_s"] for m in ms]), 2),
        "sys_s": round(med([m["sys_s"] for m in ms]), 2),
        "user_plus_sys_s": round(us, 2),
        "maxrss_mib": round(rss / 1024, 1),
        "tree_pss_peak_mib": round(pss / 1024, 1),
        "x_floor_2t": round(wall / floor, 1) if floor else None,
        "rc": sorted({m["rc"] for m in ms}),
        "contended_runs": sum(1 for r in rawruns[t] if r["contended"]),
        "others_cpu_s_max": max(m.get("others_cpu_s", 0) for m in ms),
        "disk_read_mib_max": round(max(m.get("disk_read_kb", 0) for m in ms) / 1024, 1),
        "check": checks.get(t, ""),
    })
cols = list(rows[0].keys()) if rows else []
with open(os.path.join(O, "results.tsv"), "w") as f:
    f.write("\t".join(cols) + "\n")
    for r in rows:
        f.write("\t".join(str(r[c]) for c in cols) + "\n")
with open(os.path.join(O, "results.md"), "w") as f:
    f.write("files in tree: %s; floor-2t median wall: %s s\n\n" % (nfiles, floor))
    f.write("| tool | wall s (median) [min-max] | files/s | user+sys s | max RSS MiB (largest proc) | tree PSS peak MiB | x floor-2t | contended runs | disk read MiB (max) | check (warm-up output) |\n")
    f.write("|---|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        f.write("| %s | %.3f [%.3f-%.3f] | %s | %.2f | %.1f | %.1f | %s | %d/%d | %s | %s |\n" % (
            r["tool"], r["wall_s_median"], r["wall_s_min"], r["wall_s_max"],
            "{:,}".format(r["files_per_s"]) if r["files_per_s"] else "-",
            r["user_plus_sys_s"], r["maxrss_mib"], r["tree_pss_peak_mib"],
            r["x_floor_2t"], r["contended_runs"], r["runs"],
            r["disk_read_mib_max"], r["check"].replace("|", "/")[:160]))
print(open(os.path.join(O, "results.md")).read())
EOF
