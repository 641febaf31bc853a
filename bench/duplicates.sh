#!/usr/bin/env bash
# What confirming duplicates by content costs: a tree of NGROUPS sets of three true copies and
# NGROUPS pairs of decoys (same size and name, one byte apart between the sampled blocks), each
# file SIZE_MIB MiB, among FILLER small files; two nights of `scanjob run --hash-bytes`, the
# second over the unchanged tree. Prints, per night, the hash step's wall time, files sampled
# and read whole, bytes read, and bytes and seconds per confirmed group.
#   bash bench/duplicates.sh [--groups 40] [--size-mib 16] [--filler 20000]
# The page cache is dropped before each night when /proc/sys/vm/drop_caches is writable (the
# first line says whether it was); otherwise reads come from memory.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
NGROUPS=40 SIZE_MIB=16 FILLER=20000
while [ $# -gt 0 ]; do
  case $1 in
    --groups) NGROUPS=$2; shift 2 ;;
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    --filler) FILLER=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
(cd "$REPO" && cargo build --release --locked -q --workspace --all-targets)
WORK=$(mktemp -d /var/tmp/scanjob-dups.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK/tree" "$NGROUPS" "$SIZE_MIB" <<'PY'
import os, random, sys
root, groups, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
for g in range(groups):
    data = bytearray(random.Random(g).randbytes(size))
    for c in range(3):
        d = os.path.join(root, f"project{c}", f"run{g:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "model.bin"), "wb") as f:
            f.write(data)
    data[0] ^= 1
    for c in range(2):
        if c == 1:
            data[size // 2 + 3 * 16384] ^= 0xff
        d = os.path.join(root, f"decoys{c}", f"run{g:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "result.h5"), "wb") as f:
            f.write(data)
PY
make_files "$WORK/tree/small" "$FILLER"
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo warm; }
echo "tree: $NGROUPS x 3 copies + $NGROUPS decoy pairs of $SIZE_MIB MiB, $FILLER small files; page cache: $(drop)"
printf '%-6s %8s %8s %8s %12s %12s %10s %14s %12s\n' night hash_s sampled whole bytes_read cache_hits confirmed bytes/group s/group
for night in r1 r2; do
  cache=$(drop)
  "$SCANJOB" run "$WORK/tree" --out "$WORK/toc" --run "$night" --json --threads 16 \
    --hash-bytes $((1 << 40)) >"$WORK/$night.json"
  python3 - "$WORK/toc/snapshots/$night/summary.json" "$night" "$cache" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
d = s["duplicates"]; h = d["hashing"]
confirmed = next(t for t in d["stages"] if t["stage"] == "confirmed")["groups"]
per = lambda v: v / confirmed if confirmed else 0
print(f'{sys.argv[2]:<6} {h["seconds"]:8.2f} {h["files_sampled"]:8d} {h["files_hashed"]:8d} '
      f'{h["bytes_read"]:12d} {h["cache_hits"]:12d} {confirmed:10d} {per(h["bytes_read"]):14.0f} '
      f'{per(h["seconds"]):12.4f}  (cache {sys.argv[3]})')
PY
done
