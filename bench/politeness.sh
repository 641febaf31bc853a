#!/usr/bin/env bash
# The operations budget and the latency guard through slowfs (see politeness.py).
#   bash bench/politeness.sh [--files 100000] [--budget 5000] [--threads 32] [--guard-ms 10]
# Needs root (FUSE mounts).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SCANJOB_CACHE:-$HOME/.cache/scanjob}
FILES=100000 ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --files) FILES=$2; shift 2 ;;
    *) ARGS+=("$1" "$2"); shift 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
(cd "$REPO/testkit/slowfs" && CARGO_TARGET_DIR=$CACHE/slowfs-target cargo build --release --locked -q)
(cd "$REPO" && cargo build --release --locked -q --workspace --all-targets)
export TREE=/tmp/slow-tree-$FILES MNT=/tmp/slow-mnt TRUTH=/tmp/slow-tree-$FILES.truth.json
export SLOWFS=$CACHE/slowfs-target/release/slowfs SCANJOB=$CARGO_TARGET_DIR/release/scanjob
if [ ! -f "$TREE.complete" ]; then
  rm -rf "$TREE"
  python3 "$REPO/testkit/mktree.py" "$TREE" --files "$FILES" --seed 3 --summary "$TRUTH" >/dev/null
  touch "$TREE.complete"
fi
python3 "$REPO/bench/politeness.py" "${OUT:-/tmp/scanjob-politeness}" --budget 5000 "${ARGS[@]}"
