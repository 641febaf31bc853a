#!/usr/bin/env bash
# Two scanjob binaries side by side, interleaved, on one tree: wall time and peak RSS of
# `scanjob run TREE --out FRESH --threads 2 --json`, after one warm-up run each.
#
#   bench/ab.sh BINARY_A BINARY_B TREE [RUNS]      (RUNS default 5; a and b in the output)
#
# Prints one line per run: which binary, wall seconds, peak RSS in KiB (/usr/bin/time). Both
# binaries are copied first and run from the copies: a binary's peak RSS depends on how its
# file's pages sit in the page cache (a freshly written copy of the same binary peaked 10–15 MB
# higher than an older one), so both must be equally fresh.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,7p' "$0"; exit 2; }
TREE=$3 RUNS=${4:-5}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cp "$1" "$OUT/a" && cp "$2" "$OUT/b"
A=$OUT/a B=$OUT/b
for bin in "$A" "$B"; do
  "$bin" run "$TREE" --out "$OUT/warm" --threads 2 --json >/dev/null
  rm -rf "$OUT/warm"
done
for _ in $(seq "$RUNS"); do
  for bin in "$A" "$B"; do
    rm -rf "$OUT/toc"
    /usr/bin/time -f "${bin##*/} wall=%e rss_kb=%M" "$bin" run "$TREE" --out "$OUT/toc" --threads 2 --json 2>&1 >/dev/null | tail -1
  done
done
