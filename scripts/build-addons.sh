#!/usr/bin/env bash
# Builds every guest (addons/, target wasm32-wasip2) once, in release, and prints each component's
# path and sha256 digest. Idempotent: cargo rebuilds nothing when no source changed (~1 s).
#
#   scripts/build-addons.sh            # build all guests
#   scripts/build-addons.sh -q         # build, print nothing but errors
#
# Output lines: `<sha256>  <path>` (sha256sum format), for pinning digests in tests and objects.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUIET=0
[ "${1:-}" = "-q" ] && QUIET=1

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "[build-addons] adding rust target wasm32-wasip2" >&2
  rustup target add wasm32-wasip2
fi

cd "$ROOT/addons"
# The guests have their own workspace and target dir; never inherit the host's.
unset CARGO_TARGET_DIR
export CARGO_TARGET_DIR="$ROOT/addons/target"
cargo build --release --target wasm32-wasip2 --quiet

OUT="$CARGO_TARGET_DIR/wasm32-wasip2/release"
if [ "$QUIET" = 0 ]; then
  for f in "$OUT"/*.wasm; do
    sha256sum "$f"
  done
fi
