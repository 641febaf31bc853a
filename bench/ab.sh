#!/usr/bin/env bash
# Two scanjob binaries side by side, interleaved, on one tree: wall time and peak RSS of
# `scanjob run TREE --out FRESH --threads 2 --json`, after one warm-up run each.
#
#   bench/ab.sh BINARY_A BINARY_B TREE [RUNS]      (RUNS default 5)
#
# Prints one line per run: which binary, wall seconds, peak RSS in KiB (/usr/bin/time).
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,7p' "$0"; exit 2; }
A=$1 B=$2 TREE=$3 RUNS=${4:-5}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for bin in "$A" "$B"; do
  "$bin" run "$TREE" --out "$OUT/warm" --threads 2 --json >/dev/null
  rm -rf "$OUT/warm"
done
for _ in $(seq "$RUNS"); do
  for bin in "$A" "$B"; do
    rm -rf "$OUT/toc"
    /usr/bin/time -f "$bin wall=%e rss_kb=%M" "$bin" run "$TREE" --out "$OUT/toc" --threads 2 --json 2>&1 >/dev/null | tail -1
  done
done
