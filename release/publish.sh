#!/usr/bin/env bash
# Publishes a release's images and chart to an OCI registry: the one recipe of the release
# workflow and of the test cluster's registry.
#
#   bash release/publish.sh --registry HOST[:PORT]/NAMESPACE --tag TAG [--plain-http]
#                           [--images DIR ... | --bin-dir DIR]
#
# The images are the Containerfile's runtime stages, built by tests/cluster/images.py from this
# machine's release binaries in --bin-dir (default $CARGO_TARGET_DIR/release), or taken as built
# from each --images DIR (one per architecture, each built on a machine of that architecture by
# `images.py build --no-pause`). Each stage is pushed as NAMESPACE/<stage>:TAG (scanjob,
# scanjob-operator), an image index over the architectures given; the chart is packaged and
# pushed as oci://HOST/NAMESPACE/charts/scanjob at its own version. Credentials:
# REGISTRY_USER and REGISTRY_PASSWORD when set (helm registry login and the image pushes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REGISTRY= TAG= PLAIN_HTTP= IMAGES=() BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
while [ $# -gt 0 ]; do
  case $1 in
  --registry) REGISTRY=$2; shift 2 ;;
  --tag) TAG=$2; shift 2 ;;
  --plain-http) PLAIN_HTTP=--plain-http; shift ;;
  --images) IMAGES+=("$2"); shift 2 ;;
  --bin-dir) BIN_DIR=$2; shift 2 ;;
  *) echo "publish.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$REGISTRY" ] && [ -n "$TAG" ] || { echo "publish.sh: --registry and --tag are required" >&2; exit 2; }
HELM=${HELM:-helm}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ ${#IMAGES[@]} -eq 0 ]; then
  IMAGES=("$WORK/images")
  python3 "$ROOT/tests/cluster/images.py" build --containerfile "$ROOT/Containerfile" \
    --bin-dir "$BIN_DIR" --tag "$TAG" --out "$WORK/images" --no-pause >/dev/null
fi
for stage in scanjob scanjob-operator; do
  archives=()
  for dir in "${IMAGES[@]}"; do archives+=(--archive "$dir/$stage.tar"); done
  python3 "$ROOT/tests/cluster/images.py" push "${archives[@]}" \
    --ref "$REGISTRY/$stage:$TAG" $PLAIN_HTTP
done
host=${REGISTRY%%/*}
if [ -n "${REGISTRY_USER:-}" ]; then
  printf '%s' "${REGISTRY_PASSWORD:-}" | "$HELM" registry login "$host" --username "$REGISTRY_USER" \
    --password-stdin $PLAIN_HTTP
fi
"$HELM" package "$ROOT/charts/scanjob" --destination "$WORK/chart" >/dev/null
"$HELM" push "$WORK"/chart/scanjob-*.tgz "oci://$REGISTRY/charts" $PLAIN_HTTP 2>&1 | sed -n 's/^Pushed: /{"pushed chart": "/p' | sed 's/$/"}/'
