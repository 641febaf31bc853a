#!/usr/bin/env bash
# The operator's own numbers on the test cluster: kubectl apply → Job creation latency, and its
# memory with 100 ScanJobs. Starts the test cluster (tests/cluster/up.sh) and stops it after.
#   bash bench/operator.sh [--latency-only]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
start_test_cluster
"$CARGO_TARGET_DIR/release/examples/operator_bench" "$@"
