#!/usr/bin/env bash
# Builds the `scanjob` wheel (the CLI binary, stripped, for this machine's architecture) with
# maturin into OUTDIR: the recipe of the release workflow and of tests/wheel.sh.
#
#   bash release/wheel.sh OUTDIR
#
# maturin comes from $MATURIN (default: `maturin` on PATH; tests/cluster/install.sh puts one in
# the test venv). It builds `-p scanjob-worker --bin scanjob` alone; the workspace-hack crate
# (.config/hakari.toml) gives that build the features of the whole workspace's, so with a shared
# CARGO_TARGET_DIR it reuses every dependency the release build compiled.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: bash release/wheel.sh OUTDIR" >&2; exit 2; }
OUT=$1
MATURIN=${MATURIN:-maturin}
mkdir -p "$OUT"
cd "$ROOT"
"$MATURIN" build --release --out "$OUT" >&2
ls "$OUT"/scanjob-*.whl
