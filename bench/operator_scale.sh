#!/usr/bin/env bash
# The operator at the reference scale: slowfs' synthetic tree on the test node, one ScanJob per
# parallelism, two nights each, every step a Job of pods on the node (tests/examples/
# operator_scale.rs). Starts the test cluster (tests/cluster/up.sh) and stops it after.
#   bash bench/operator_scale.sh [--files 16M] [--shards 16] [--parallelism "2 4 8"]
#       [--latency-us 0] [--churn 0.005] [--merge-pods 1] [--out DIR]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
start_test_cluster
"$CARGO_TARGET_DIR/release/examples/operator_scale" "$@"
