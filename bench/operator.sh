#!/usr/bin/env bash
# The operator's own numbers on the test cluster: kubectl apply → Job creation latency, and its
# memory with 100 ScanJobs. Starts the test cluster (tests/cluster/up.sh) and stops it after.
#   bash bench/operator.sh [--latency-only]
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
cd "$HERE"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/scanjob/target}
bash tests/cluster/install.sh
cargo build --release --locked --workspace --examples --bins
bash tests/cluster/up.sh >/dev/null
trap 'bash tests/cluster/down.sh >/dev/null 2>&1 || true' EXIT
. "${SCANJOB_CACHE:-$HOME/.cache/scanjob}/run/env.sh"
"$CARGO_TARGET_DIR/release/examples/operator_bench" "$@"
