# Shared by the bench scripts; sourced, not run. Sets REPO, CACHE and CARGO_TARGET_DIR, the
# tools (MKTREE, the tree generator; PEERS, the folder of the peer comparison; the release
# binaries SCANJOB, SLOWFS and FLOOR), and the helpers below.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SCANJOB_CACHE:-$HOME/.cache/scanjob}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
MKTREE=$REPO/testkit/mktree.py
PEERS=$REPO/bench/peers
SCANJOB=$CARGO_TARGET_DIR/release/scanjob
SLOWFS=$CACHE/slowfs-target/release/slowfs
FLOOR=$CARGO_TARGET_DIR/release/floor

# build_scanjob_and_slowfs: the release binaries (scanjob, floor; slowfs, built on its own),
# built if anything changed. Every bench script builds the workspace's every target, as
# tests/run does: a narrower build unifies the dependencies' features differently and would
# rebuild arrow and DataFusion each time the two alternate.
build_scanjob_and_slowfs() {
  (cd "$REPO/testkit/slowfs" && CARGO_TARGET_DIR=$CACHE/slowfs-target cargo build --release --locked -q)
  (cd "$REPO" && cargo build --release --locked -q --workspace --all-targets)
}

# mount_synthetic MNT SPEC LOG [SLOWFS OPTION...]: slowfs' synthetic tree SPEC (files=N,...)
# at MNT in the background, its pid in SLOWFS_PID; returns once it is mounted (a --summary of
# 16 M files comes first and takes a while), fails if it never is.
mount_synthetic() {
  local mnt=$1 spec=$2 log=$3
  shift 3
  mkdir -p "$mnt"
  "$SLOWFS" --synthetic "$spec" "$mnt" "$@" >"$log" 2>&1 &
  SLOWFS_PID=$!
  for _ in $(seq 600); do mountpoint -q "$mnt" && return 0; sleep 0.5; done
  echo "slowfs did not mount at $mnt (log: $log)" >&2
  return 1
}

# slowfs_requests STATS: the FUSE requests slowfs has counted so far (its --stats file is
# rewritten every 100 ms, so wait a little longer for the last ones).
slowfs_requests() {
  sleep 0.25
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["total"])' "$1"
}

# make_files DIR N: N small files of assorted sizes in DIR.
make_files() {
  python3 - "$1" "$2" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
for i in range(n):
    with open(os.path.join(d, "f%d.dat" % i), "wb") as f:
        f.write(b"x" * (i % 4096))
PY
}

# start_test_cluster: what the test cluster needs installed, the release binaries and examples
# built, the cluster started (and stopped again when the script exits) and its env.sh read.
start_test_cluster() {
  (cd "$REPO" && bash tests/cluster/install.sh &&
    cargo build --release --locked --workspace --all-targets)
  bash "$REPO/tests/cluster/up.sh" >/dev/null
  trap 'bash "$REPO/tests/cluster/down.sh" >/dev/null 2>&1 || true' EXIT
  . "$CACHE/run/env.sh"
}
