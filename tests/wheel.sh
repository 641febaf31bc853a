#!/usr/bin/env bash
# The wheel as a Python user meets it: built by release/wheel.sh, installed with pip into a fresh
# venv that has nothing else, and the main job run with the `scanjob` it puts on PATH. The table
# of contents must hold every file and directory of a generated tree (its ground truth), and
# the run's report its entries and bytes; and the wheel's build must have reused the release
# build's dependencies. Run by tests/run after the tests; exits non-zero on
# any difference.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/tests/cluster/lib.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SCANJOB_CACHE/target}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
MATURIN=$VENV/bin/maturin bash "$ROOT/release/wheel.sh" "$WORK/dist" >/dev/null 2>"$WORK/build.log" \
  || { cat "$WORK/build.log" >&2; die "wheel: release/wheel.sh failed"; }
# After the workspace's release build, the wheel's build of `scanjob` alone compiles only the
# worker crate: any dependency compiled again means the features differ, i.e. the
# workspace-hack crate is out of date.
others=$(sed -n 's/^ *Compiling \([^ ]*\) .*/\1/p' "$WORK/build.log" | grep -vx 'scanjob-worker' | tr '\n' ' ' || true)
[ -z "$others" ] || die "wheel: building scanjob alone compiled ${others}again: the workspace-hack crate is stale; run \`cargo hakari generate\` (cargo install cargo-hakari)"
wheels=("$WORK"/dist/scanjob-*.whl)
[ ${#wheels[@]} -eq 1 ] || die "wheel: expected one wheel, got: ${wheels[*]}"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index "${wheels[0]}"
# The venv's bin is where pip put the CLI, as `pip install scanjob` would.
found=$(PATH="$WORK/venv/bin:/usr/bin:/bin" command -v scanjob)
[ "$found" = "$WORK/venv/bin/scanjob" ] || die "wheel: scanjob on PATH is '$found', not the venv's"
python3 "$ROOT/testkit/mktree.py" "$WORK/tree" --files 3000 --seed 29 \
  --summary "$WORK/truth.json" >/dev/null 2>&1
"$found" run "$WORK/tree" --out "$WORK/out" --json >"$WORK/run.json" 2>"$WORK/run.log" \
  || { cat "$WORK/run.log" >&2; die "wheel: scanjob run failed"; }
"$VENV/bin/python" "$ROOT/worker/tests/delta_neighbour.py" "$WORK/out/toc" state >"$WORK/toc.json"
python3 - "$WORK/truth.json" "$WORK/run.json" "$WORK/toc.json" "${wheels[0]}" <<'PY'
import json, os, sys
truth, run, toc = (json.load(open(p)) for p in sys.argv[1:4])
entries = sum(truth["kinds"].values())
want = {"toc rows": entries, "run entries": entries, "run files": truth["kinds"]["regular"],
        "run directories": truth["dirs"], "run bytes": truth["total_apparent_bytes"], "run errors": 0}
got = {"toc rows": toc["rows"], "run entries": run["entries"], "run files": run["files"],
       "run directories": run["directories"], "run bytes": run["bytes"], "run errors": run["errors"]}
if got != want:
    sys.exit(f"wheel: the installed scanjob's run differs from the tree's ground truth:\n  got  {got}\n  want {want}")
print(f"wheel: {os.path.basename(sys.argv[4])} ({os.path.getsize(sys.argv[4]) / 2**20:.1f} MiB) "
      f"installed in a fresh venv; scanjob run wrote {toc['rows']} rows, as the tree holds")
PY
