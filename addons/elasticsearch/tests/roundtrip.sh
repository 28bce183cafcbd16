#!/usr/bin/env bash
# End-to-end tests of the Elasticsearch addon (see roundtrip.py for what they check).
# Uses prebuilt binaries when given, else builds them:
#   KSTASH_BIN        kstash CLI with the `addon` feature
#   ES_EMULATOR_BIN   kstash-es-emulator
#   ADDON_WASM        elasticsearch_addon.wasm
# KEEP_TMP=1 keeps the dumps and request logs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
TOOLS="$ROOT/.tools"
PY="$TOOLS/venv/bin/python"
MED="$TOOLS/node/node_modules/.bin/multielasticdump"
die() { echo "roundtrip.sh: $*" >&2; exit 1; }
[ -x "$PY" ] || die "missing $PY (run scripts/ensure-tools.sh)"
[ -x "$MED" ] || die "missing $MED (run scripts/ensure-tools.sh)"
export MULTIELASTICDUMP="$MED"
export KSTASH_ES_SPEC_DIR="${KSTASH_ES_SPEC_DIR:-$ROOT/tests/es-emulator/rest-api-spec}"
[ -d "$KSTASH_ES_SPEC_DIR/elasticsearch" ] || die "the REST spec is not at $KSTASH_ES_SPEC_DIR (elasticsearch/, supplement/)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${ADDON_WASM:-}" ]; then
  (cd "$ROOT/addons" && CARGO_TARGET_DIR="$ROOT/addons/target" cargo build --release --target wasm32-wasip2 -p elasticsearch-addon)
  ADDON_WASM="$ROOT/addons/target/wasm32-wasip2/release/elasticsearch_addon.wasm"
fi
if [ -z "${ES_EMULATOR_BIN:-}" ]; then
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build -p kstash-es-emulator)
  ES_EMULATOR_BIN="$TARGET/debug/kstash-es-emulator"
fi
if [ -z "${KSTASH_BIN:-}" ]; then
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build -p kstash --no-default-features --features addon)
  KSTASH_BIN="$TARGET/debug/kstash"
fi
for f in "$ADDON_WASM" "$ES_EMULATOR_BIN" "$KSTASH_BIN"; do [ -f "$f" ] || die "missing $f"; done
export ADDON_WASM ES_EMULATOR_BIN KSTASH_BIN
exec "$PY" "$HERE/roundtrip.py"
