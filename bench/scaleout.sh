#!/usr/bin/env bash
# Scale-out across pods over a latency-bound file system: slowfs (testkit/slowfs) at
# 1 ms over a 100 k-file tree, one ScanJob of 8 shards run at parallelism 1, 2, 4, 8 on the test
# cluster (pods are local processes of the kubelet stand-in).
#   bash bench/scaleout.sh [--files 100000] [--latency-us 1000] [--threads 2]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SCANJOB_CACHE:-$HOME/.cache/scanjob}
FILES=100000 LAT=1000 THREADS=2
while [ $# -gt 0 ]; do
  case $1 in
    --files) FILES=$2; shift 2 ;;
    --latency-us) LAT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
TREE=/tmp/slow-tree-$FILES MNT=/tmp/slow-mnt-scaleout
(cd "$REPO/testkit/slowfs" && CARGO_TARGET_DIR=$CACHE/slowfs-target cargo build --release --locked -q)
bash "$REPO/tests/cluster/install.sh"
(cd "$REPO" && cargo build --release --locked -q --workspace --all-targets)
if [ ! -f "$TREE.complete" ]; then
  rm -rf "$TREE"
  python3 "$REPO/testkit/mktree.py" "$TREE" --files "$FILES" --seed 3 --summary "$TREE.truth.json" >/dev/null
  touch "$TREE.complete"
fi
mkdir -p "$MNT"
"$CACHE/slowfs-target/release/slowfs" "$TREE" "$MNT" --latency-us "$LAT" >/tmp/slowfs-scaleout.log 2>&1 &
SLOWFS_PID=$!
if [ -z "${SCANJOB_KEEP_CLUSTER:-}" ]; then
  bash "$REPO/tests/cluster/up.sh" >/dev/null
  trap 'kill $SLOWFS_PID; bash "$REPO/tests/cluster/down.sh" >/dev/null 2>&1 || true' EXIT
else
  trap 'kill $SLOWFS_PID' EXIT
fi
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
. "$CACHE/run/env.sh"
OUT=${OUT:-/tmp/scanjob-scaleout}
mkdir -p "$OUT"
SCALEOUT_MNT=$MNT SCALEOUT_TRUTH=$TREE.truth.json SCALEOUT_THREADS=$THREADS \
  CARGO_MANIFEST_DIR=$REPO/tests "$CARGO_TARGET_DIR/release/examples/scaleout_bench" | tee "$OUT/scaleout.md"
[ -x "$CACHE/plot-venv/bin/python" ] || python3 -m venv "$CACHE/plot-venv"
"$CACHE/plot-venv/bin/python" -c 'import matplotlib' 2>/dev/null || "$CACHE/plot-venv/bin/pip" install -q matplotlib
"$CACHE/plot-venv/bin/python" "$REPO/bench/scaleout_plot.py" "$OUT/scaleout.md" "$OUT/scaleout.png"
echo "table: $OUT/scaleout.md  plot: $OUT/scaleout.png"
