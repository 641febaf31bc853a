#!/usr/bin/env bash
# Years of nights: the Delta tables after 10, 100 and 1,000 nights. A small tree (200 files,
# some of them changed every night) is published NIGHTS times (default 1000) into one output
# with no retention, so every commit stays in the log, as for a table kept for years.
#
#   bench/delta_years.sh [--nights N] [--at 10,100,1000] [-o OUTDIR]
#
# At each night of --at: the seconds the merge's log gives to reading the previous state of
# all its tables ("read the tables' logs": newest checkpoint + later commits, 16 tables), and
# the seconds DuckDB (delta_scan count), Polars (scan_delta, row count) and deltalake
# (DeltaTable, its files) take to open the newest version of the ToC in a new process
# (median of 3). Writes OUTDIR/delta_years.md and prints it. Nothing here asserts a timing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NIGHTS=1000
AT=10,100,1000
OUT=/tmp/scanjob-bench
while [ $# -gt 0 ]; do
  case "$1" in
    --nights) NIGHTS=$2; shift 2 ;;
    --at) AT=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
PYTHON=${SCANJOB_PYTHON:-$CACHE/venv/bin/python}
work=$(mktemp -d /tmp/delta-years.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT" "$work/tree"
for d in $(seq 0 9); do
  mkdir -p "$work/tree/d$d"
  for f in $(seq 0 19); do head -c $((f * 10)) /dev/zero >"$work/tree/d$d/f$f"; done
done
open_newest() {
  "$PYTHON" - "$1" <<'PY'
import json, os, pathlib, statistics, sys, time
table = sys.argv[1]
def best(f):
    times = []
    for _ in range(3):
        start = time.perf_counter(); f(); times.append(time.perf_counter() - start)
    return statistics.median(times)
import duckdb, polars as pl, deltalake
m = __import__("duckdb_extension_delta")
ext = str(next(pathlib.Path(m.__file__).parent.glob("extensions/*/*.duckdb_extension")))
def duck():
    con = duckdb.connect(); con.load_extension(ext)
    con.execute(f"SELECT count(*) FROM delta_scan('{table}')").fetchall()
res = {
    "duckdb": best(duck),
    "polars": best(lambda: pl.scan_delta(table).select(pl.len()).collect()),
    "deltalake": best(lambda: deltalake.DeltaTable(table).file_uris()),
}
print(json.dumps(res), flush=True)
os._exit(0)
PY
}
report="$OUT/delta_years.md"
{
  echo "| night | merge: read the previous state of 16 tables (s) | DuckDB open (s) | Polars open (s) | deltalake open (s) | log objects of toc |"
  echo "|---:|---:|---:|---:|---:|---:|"
} >"$report"
started=$(date +%s)
for n in $(seq 1 "$NIGHTS"); do
  # A few files change every night, so every night differs.
  echo "$n" >"$work/tree/d$((n % 10))/changed"
  run=$(printf 'n%05d' "$n")
  RUST_LOG=info "$SCANJOB" run "$work/tree" --out "$work/out" --run "$run" --threads 2 \
    >/dev/null 2>"$work/log"
  if [[ ",$AT," == *",$n,"* ]]; then
    read_s=$(grep "read the tables' logs" "$work/log" | sed -E 's/.*seconds=([0-9.e-]+).*/\1/')
    opened=$(open_newest "$work/out/toc")
    objects=$(ls "$work/out/toc/_delta_log" | wc -l)
    echo "$opened" | "$PYTHON" -c '
import json, sys
o = json.loads(sys.stdin.read())
n, r, objects = sys.argv[1], float(sys.argv[2]), sys.argv[3]
cells = [n, "%.3f" % r] + ["%.3f" % o[k] for k in ("duckdb", "polars", "deltalake")] + [objects]
print("| " + " | ".join(cells) + " |")
' "$n" "$read_s" "$objects" >>"$report"
    echo "night $n done after $(( $(date +%s) - started )) s" >&2
  fi
done
cat "$report"
