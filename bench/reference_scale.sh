#!/usr/bin/env bash
# The whole pipeline at the reference store's shape, step by step, on this machine: slowfs'
# synthetic tree (16 M files, ~510 k directories, its biggest directory over a million files)
# served from memory, two nights (churn 0, then 0.005), each as `scanjob plan`, 16 × `scanjob
# scan` and `scanjob merge` (the steps the operator's pods run), every step under
# /usr/bin/time for its wall time and peak RSS, with the objects and bytes it wrote. Then the
# tables are checked against slowfs' ground truth (bench/reference_check.py). With
# `--merge-pods "1 2 4"`, the second night is merged once per count from the same scanned state
# (a hard-linked copy of the output before its merge): with K > 1 as K `scanjob join`
# partitions, each timed alone as its pod would run, then the merge; the checks read the last.
# `--remerge` does only that, again, from the scanned state an interrupted run left in OUT.scanned.
#   bash bench/reference_scale.sh [--files 16M] [--shards 16] [--threads 16] [--latency-us 0]
#                                 [--merge-pods "1"] [--remerge] [--out DIR]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
FILES=16M SHARDS=16 THREADS=16 LAT=0 OUT=/tmp/scanjob-reference MERGE_PODS=1 REMERGE=0
while [ $# -gt 0 ]; do
  case $1 in
    --files) FILES=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --latency-us) LAT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --merge-pods) MERGE_PODS=$2; shift 2 ;;
    --remerge) REMERGE=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
build_scanjob_and_slowfs
bash "$REPO/tests/cluster/install.sh" >/dev/null
MNT=/tmp/reference-mnt
[ "$REMERGE" = 1 ] || { rm -rf "$OUT" && mkdir -p "$OUT/bench"; }
STEPS=$OUT/bench/steps.tsv
[ "$REMERGE" = 1 ] || printf 'night\tstep\tseconds\tpeak_rss_kib\tobjects\tbytes\n' >"$STEPS"
SLOWFS_PID=
unmount() {
  [ -z "$SLOWFS_PID" ] || { kill "$SLOWFS_PID" 2>/dev/null || true; wait "$SLOWFS_PID" 2>/dev/null || true; }
  SLOWFS_PID=
  mountpoint -q "$MNT" && umount -l "$MNT" || true
}
trap unmount EXIT
objects() { find "$OUT" -path "$OUT/bench" -prune -o -type f -printf '%s\n' | awk '{n++; b+=$1} END {print n+0, b+0}'; }
# step NIGHT NAME COMMAND...: runs it under /usr/bin/time and records what it wrote.
step() {
  local night=$1 name=$2; shift 2
  read -r n0 b0 < <(objects)
  /usr/bin/time -f '%e %M' -o "$OUT/bench/time" "$@" >>"$OUT/bench/$night.log" 2>&1 \
    || { echo "$night $name failed:" >&2; tail -20 "$OUT/bench/$night.log" >&2; exit 1; }
  read -r n1 b1 < <(objects)
  read -r secs rss <"$OUT/bench/time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$night" "$name" "$secs" "$rss" $((n1 - n0)) $((b1 - b0)) >>"$STEPS"
  echo "$night $name: ${secs} s, peak RSS $((rss / 1024)) MiB, $((n1 - n0)) objects, $((b1 - b0)) bytes"
}
# merge_trials RUN: the night merged once per count of MERGE_PODS, each from the same scanned
# state in $OUT.scanned (hard links: a merge only adds and removes files, so the copies do not
# touch each other; the bench files are appended to in place and shared).
merge_trials() {
  local run=$1
  for k in $MERGE_PODS; do
    rm -rf "$OUT" && cp -al "$OUT.scanned" "$OUT"
    if [ "$k" -gt 1 ]; then
      for i in $(seq 0 $((k - 1))); do
        step "$run" "join $i/$k" env RUST_LOG=info "$SCANJOB" join --run "$OUT/runs/$run" \
          --index "$i" --count "$k"
      done
    fi
    step "$run" "merge ($k pods)" env RUST_LOG=info "$SCANJOB" merge --run "$OUT/runs/$run"
  done
}
if [ "$REMERGE" = 1 ]; then
  [ -d "$OUT.scanned" ] || { echo "--remerge needs $OUT.scanned from an interrupted run" >&2; exit 1; }
  merge_trials n2
  rm -rf "$OUT.scanned"
  "$CACHE/venv/bin/python" "$REPO/bench/reference_check.py" "$OUT"
  exit 0
fi
for night in 1 2; do
  churn=$([ "$night" = 1 ] && echo 0 || echo 0.005)
  run=n$night
  mount_synthetic "$MNT" "files=$FILES,seed=42,churn=$churn" "$OUT/bench/slowfs$night.log" \
    --latency-us "$LAT" --summary "$OUT/bench/truth$night.json" --stats "$OUT/bench/stats$night.json"
  step "$run" plan "$SCANJOB" plan "$MNT" --shards "$SHARDS" --out "$OUT" --previous "$OUT" \
    --run "$run" --threads "$THREADS" --json
  for i in $(seq 0 $((SHARDS - 1))); do
    step "$run" "scan $i" "$SCANJOB" scan --plan "$OUT/runs/$run/plan.json" --index "$i" \
      --threads "$THREADS" --progress-seconds 0
  done
  if [ "$night" = 1 ]; then
    step "$run" merge env RUST_LOG=info "$SCANJOB" merge --run "$OUT/runs/$run"
  else
    # Kept until the script ends well, for --remerge.
    rm -rf "$OUT.scanned" && cp -al "$OUT" "$OUT.scanned"
    merge_trials "$run"
  fi
  unmount
done
rm -rf "$OUT.scanned"
"$CACHE/venv/bin/python" "$REPO/bench/reference_check.py" "$OUT"
