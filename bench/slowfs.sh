#!/usr/bin/env bash
# scanjob on a latency-bound file system: slowfs (testkit/slowfs: FUSE, a fixed latency per
# metadata request, any number in flight) over a generated tree; files/s by thread count for
# scanjob, the stat-walk floor and pdu, as a table and a plot.
#   bash bench/slowfs.sh [--files 20000] [--latency-us 1000] [--threads 1,2,4,...,128]
# Needs root (FUSE mounts); bench/peers/setup.sh installs pdu.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SCANJOB_CACHE:-$HOME/.cache/scanjob}
FILES=20000 LAT=1000 THREADS=1,2,4,8,16,32,64,128
while [ $# -gt 0 ]; do
  case $1 in
    --files) FILES=$2; shift 2 ;;
    --latency-us) LAT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
OUT=${OUT:-/tmp/scanjob-slowfs}
mkdir -p "$OUT"

bash "$REPO/bench/peers/setup.sh" >"$OUT/setup.log" 2>&1
(cd "$REPO/testkit/slowfs" && CARGO_TARGET_DIR=$CACHE/slowfs-target cargo build --release --locked -q)
(cd "$REPO" && cargo build --release --locked -q --workspace --bin scanjob --bin floor)
[ -x "$CACHE/plot-venv/bin/python" ] || python3 -m venv "$CACHE/plot-venv"
"$CACHE/plot-venv/bin/python" -c 'import matplotlib' 2>/dev/null || "$CACHE/plot-venv/bin/pip" install -q matplotlib

export TREE=/tmp/slow-tree-$FILES MNT=/tmp/slow-mnt TRUTH=/tmp/slow-tree-$FILES.truth.json
export SLOWFS=$CACHE/slowfs-target/release/slowfs FLOOR=$CARGO_TARGET_DIR/release/floor
export PDU=${BENCH_TOOLS:-/tmp/bench-tools}/bin/pdu SCANJOB=$CARGO_TARGET_DIR/release/scanjob
if [ ! -f "$TREE.complete" ]; then
  rm -rf "$TREE"
  python3 "$REPO/testkit/mktree.py" "$TREE" --files "$FILES" --seed 3 --summary "$TRUTH" >/dev/null
  touch "$TREE.complete"
fi
"$CACHE/plot-venv/bin/python" "$REPO/bench/slowfs_curve.py" "$OUT" --latency-us "$LAT" --threads "$THREADS"
echo "table: $OUT/curve.md  plot: $OUT/curve.png"
