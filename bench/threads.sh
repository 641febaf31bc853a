#!/usr/bin/env bash
# Where `scanjob run`'s CPU goes, by thread: the walker threads (the listing and the stats in
# the kernel, the rows in user space), the main thread (the shard writer: Parquet encoding and
# ZSTD) and the runtime's workers (the merge's DataFusion queries). Needs root (`perf record`).
#
#   bash bench/threads.sh TREE [--threads N] [--out DIR]
#
# One warm-up run, three runs timed alone (user + system CPU from getrusage; the median's), one
# run under `perf record -F 1999`; each thread group's share of the samples, kernel and user
# apart, times the median run's CPU gives seconds. Prints a Markdown table. Asserts nothing.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TREE=${1:?usage: bash bench/threads.sh TREE [--threads N] [--out DIR]}
shift
THREADS=2 OUT=/tmp/scanjob-threads
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v perf >/dev/null || { echo "perf is missing (Debian: linux-perf)" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${SCANJOB_CACHE:-$HOME/.cache/scanjob}/target}
(cd "$REPO" && cargo build --release --locked -q --workspace --all-targets)
SCANJOB=$CARGO_TARGET_DIR/release/scanjob
rm -rf "$OUT" && mkdir -p "$OUT"
run() { rm -rf "$OUT/toc"; "$@" "$SCANJOB" run "$TREE" --out "$OUT/toc" --threads "$THREADS" >/dev/null 2>&1; }
run env
cpu=$(python3 - "$SCANJOB" "$TREE" "$OUT/toc" "$THREADS" <<'PY'
import os, resource, shutil, subprocess, sys, time
scanjob, tree, out, threads = sys.argv[1:]
runs, before = [], 0.0
for _ in range(3):
    shutil.rmtree(out, ignore_errors=True)
    t = time.monotonic()
    subprocess.run([scanjob, "run", tree, "--out", out, "--threads", threads],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.monotonic() - t
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs.append((r.ru_utime + r.ru_stime - before, wall))
    before = r.ru_utime + r.ru_stime
cpu, wall = sorted(runs)[1]
print(f"{cpu:.3f} {wall:.3f}")
PY
)
run perf record -q -F 1999 -o "$OUT/perf.data" --
perf report -i "$OUT/perf.data" --sort comm,dso --stdio 2>/dev/null | grep '%' >"$OUT/comm-dso.txt"
# shellcheck disable=SC2086 # two numbers, split on purpose
python3 - "$OUT/comm-dso.txt" $cpu <<'PY'
import re, sys
path, cpu, wall = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
groups = {}
names = {"walk": "walker threads (list, stat, rows)", "scanjob": "main thread (shard writer: Parquet, ZSTD)",
         "tokio-rt-worker": "runtime workers (the merge's queries)"}
for line in open(path):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(.+?)\s*$", line)
    if not m:
        continue
    share, comm, dso = float(m[1]) / 100, m[2], m[3]
    group = names["walk"] if comm.startswith("walk-") else names.get(comm, "other: " + comm)
    side = "kernel" if "kernel" in dso else "user"
    groups.setdefault(group, {"kernel": 0.0, "user": 0.0})[side] += share
print(f"the median of 3 runs: {wall:.3f} s wall, {cpu:.2f} CPU-s (user + system)\n")
print("| threads | kernel CPU-s | user CPU-s | share of CPU |")
print("|---|---:|---:|---:|")
for group, s in sorted(groups.items(), key=lambda g: -sum(g[1].values())):
    print(f"| {group} | {s['kernel'] * cpu:.2f} | {s['user'] * cpu:.2f} | {100 * (s['kernel'] + s['user']):.1f} % |")
PY
