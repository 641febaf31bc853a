#!/usr/bin/env bash
# What a query on one subtree reads of a night's ToC: the files a reader keeps by the add
# actions' statistics, and what DuckDB's delta_scan reads (EXPLAIN ANALYZE).
#
#   bench/toc_layout.sh [--files N] [--join-rows ROWS] [--subtrees "A/ B/"] [-o OUTDIR]
#
# A mktree tree (--files, default 1,000,000, --seed 42, under $BENCH_TREES, default /tmp, made
# once), published twice (`scanjob run --threads 2`): night 1 is the scan's own files, night 2
# the merge's, written in path order in passes of --join-rows rows (default 100,000: the passes
# a night of ten times as many files makes in a 1 GiB merge pod; `--merge-join-rows`). For each
# night and each subtree (default: instruments_003/, 0.6 % of the rows, and datasets_007/,
# 11 %): the night's files and rows, the subtree's rows, the files whose path_display bounds
# can hold the subtree (deltalake's add actions), and what DuckDB's delta_scan reads of
# `count(*)` over the subtree written as a range (`path_display >= 'A/' AND < 'A0'`): the files
# its EXPLAIN ANALYZE says it read, and the query's wall (median of 3, the extension loaded). Writes OUTDIR/toc_layout.md and prints it. Nothing here asserts a timing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
FILES=1000000
JOIN_ROWS=100000
SUBTREES="instruments_003/ datasets_007/"
OUT=/tmp/scanjob-bench
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --join-rows) JOIN_ROWS=$2; shift 2 ;;
    --subtrees) SUBTREES=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
PYTHON=${SCANJOB_PYTHON:-$CACHE/venv/bin/python}
TREES=${BENCH_TREES:-/tmp}
mkdir -p "$OUT"
(cd "$REPO" && cargo build --release --locked -q --workspace --all-targets)
tree=$TREES/bench-tree-$((FILES / 1000))k
if [ ! -f "$tree.summary.json" ]; then
  rm -rf "$tree"
  python3 "$MKTREE" "$tree" --files "$FILES" --seed 42 --jobs 2 \
    --summary "$tree.summary.json" >/dev/null
fi
work=$(mktemp -d /tmp/toc-layout.XXXXXX)
trap 'rm -rf "$work"' EXIT
for run in r1 r2; do
  "$SCANJOB" run "$tree" --out "$work/out" --run "$run" --threads 2 \
    --merge-join-rows "$JOIN_ROWS" >/dev/null
done
"$PYTHON" - "$work/out/toc" "$SUBTREES" >"$OUT/toc_layout.md" <<'PY'
import pathlib, re, sys, time
import deltalake, duckdb, pyarrow as pa

table, subtrees = sys.argv[1], sys.argv[2].split()
m = __import__("duckdb_extension_delta")
ext = str(next(pathlib.Path(m.__file__).parent.glob("extensions/*/*.duckdb_extension")))
print("| night | files | rows | subtree (its rows) | files whose bounds can hold it | DuckDB: files read | DuckDB: wall |")
print("|---|---:|---:|---|---:|---:|---:|")
for night, version in ((1, 0), (2, 1)):
    dt = deltalake.DeltaTable(table, version=version)
    adds = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    rows = sum(a["num_records"] for a in adds)
    for sub in subtrees:
        # The subtree as a range: '0' is the character after '/'.
        low, high = sub, sub[:-1] + "0"
        keep = sum(1 for a in adds if a["max.path_display"] >= low and a["min.path_display"] < high)
        con = duckdb.connect()
        con.load_extension(ext)
        query = (f"SELECT count(*) FROM delta_scan('{table}', version => {version}) "
                 f"WHERE path_display >= '{low}' AND path_display < '{high}'")
        walls = []
        for _ in range(3):
            started = time.perf_counter()
            answer = con.execute(query).fetchone()[0]
            walls.append(time.perf_counter() - started)
        plan = "\n".join(r[1] for r in con.execute("EXPLAIN ANALYZE " + query).fetchall())
        read = re.search(r"Total Files Read: (\d+)", plan)
        print(f"| {night} | {len(adds)} | {rows:,} | `{sub}` ({answer:,}) | {keep} | "
              f"{read.group(1) if read else '?'} | {sorted(walls)[1]:.3f} s |")
PY
echo "tree: $FILES files (mktree --seed 42); --merge-join-rows $JOIN_ROWS; $(nproc) cores" >>"$OUT/toc_layout.md"
cat "$OUT/toc_layout.md"
