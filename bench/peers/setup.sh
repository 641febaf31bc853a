#!/usr/bin/env bash
# setup.sh — install what peers.sh compares against (idempotent).
#   BENCH_TOOLS (default /tmp/bench-tools): cargo --root for fd, diskus, dua, pdu
#   BENCH_VENV  (default /tmp/bench-venv):  venv with dask[distributed], pandas, pyarrow
# Needs: cargo, python3 (with venv), GNU find/du, /usr/bin/time (apt: time).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=${BENCH_TOOLS:-/tmp/bench-tools}
VENV=${BENCH_VENV:-/tmp/bench-venv}
[ -x /usr/bin/time ] || { apt-get update -q && apt-get install -y -q time; }
mkdir -p "$TOOLS"
for c in fd-find:fd diskus:diskus dua-cli:dua parallel-disk-usage:pdu; do
  crate=${c%%:*}; bin=${c#*:}
  if [ ! -x "$TOOLS/bin/$bin" ]; then
    /usr/bin/time -f "$crate install: %e s wall, %U s user, %S s sys" \
      cargo install --locked --root "$TOOLS" "$crate"
  fi
done
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "dask[distributed]" pandas pyarrow
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${SCANJOB_CACHE:-$HOME/.cache/scanjob}/target}
(cd "$HERE/../.." && cargo build --release --locked -q -p scanjob-floor)
echo "ok: $TOOLS/bin: $(ls "$TOOLS/bin" | tr '\n' ' '); venv: $VENV; floor: $CARGO_TARGET_DIR/release/floor"
