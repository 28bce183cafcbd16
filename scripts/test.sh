#!/usr/bin/env bash
# The whole test suite, as on a fresh machine: installs what it needs, checks formatting and lints,
# builds the WASM addons once, then runs every test. Fails loudly; never skips a test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
# Tests run several servers each; two test binaries at a time is what two cores sustain.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

# A clean CI build gains nothing from incremental caches, which double the target directory's size.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi

step() { printf '\n==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
start=$(date +%s)

# The debug build of the workspace and its test binaries needs about 10 GiB; say so before cargo
# fails half-way with "No space left on device".
TARGET_FOR_DF="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$TARGET_FOR_DF"
free_kib=$(df -Pk "$TARGET_FOR_DF" | awk 'NR==2 {print $4}')
printf 'disk: %s GiB free under %s\n' "$(( free_kib / 1048576 ))" "$TARGET_FOR_DF"
if [ "$free_kib" -lt $(( 8 * 1048576 )) ]; then
  echo "error: less than 8 GiB free under $TARGET_FOR_DF; the build needs about 10 GiB" >&2
  exit 1
fi

step "tools (restic, moto, elasticdump, python client, kubectl, helm, wasm32-wasip2, postgresql, redis, buildah/podman)"
scripts/ensure-tools.sh all

step "formatting"
cargo fmt --all -- --check
if [ -f addons/Cargo.toml ]; then (cd addons && cargo fmt --all -- --check); fi
if [ -f sdk/Cargo.toml ]; then (cd sdk && cargo fmt -- --check); fi

step "WASM addons (built once for every test)"
scripts/build-addons.sh

step "lints (clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
if [ -f addons/Cargo.toml ]; then
  (cd addons && cargo clippy --workspace --target wasm32-wasip2 --release --locked -- -D warnings)
fi

step "tests"
cargo test --workspace --locked --no-fail-fast

step "addon logic on the host"
scripts/test-addons-host.sh

step "Elasticsearch addon end to end: the WASM component via kstash addon run, the emulator, multielasticdump, Elastic's REST spec"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
KSTASH_BIN="$TARGET/debug/kstash" \
ES_EMULATOR_BIN="$TARGET/debug/kstash-es-emulator" \
ADDON_WASM="$ROOT/addons/target/wasm32-wasip2/release/elasticsearch_addon.wasm" \
  addons/elasticsearch/tests/roundtrip.sh

step "the README's main command: scripts/quickstart.sh (tutorial backup + restore check), then --stop"
QS_DIR="$(mktemp -d)"
export KSTASH_QUICKSTART_DIR="$QS_DIR"
qs_stop() { scripts/quickstart.sh --stop >/dev/null 2>&1 || true; }
trap qs_stop EXIT
KSTASH_BIN="$TARGET/debug/kstash" KSTASH_ES_EMULATOR_BIN="$TARGET/debug/kstash-es-emulator" \
  scripts/quickstart.sh
scripts/quickstart.sh --stop
trap - EXIT
rm -rf "$QS_DIR"

step "the OCI image: built from this build's kstash (engine/deploy/image/build.sh), the tutorial again with the operator inside it (podman, read-only root, user 65532)"
IMAGE=localhost/kstash:test-$$
engine/deploy/image/build.sh --kstash "$TARGET/debug/kstash" \
  --modules addons/target/wasm32-wasip2/release --tag "$IMAGE"
QS_DIR="$(mktemp -d)"
export KSTASH_QUICKSTART_DIR="$QS_DIR"
img_stop() { scripts/quickstart.sh --stop >/dev/null 2>&1 || true; podman rmi -f "$IMAGE" >/dev/null 2>&1 || true; }
trap img_stop EXIT
KSTASH_BIN="$TARGET/debug/kstash" KSTASH_ES_EMULATOR_BIN="$TARGET/debug/kstash-es-emulator" \
  scripts/quickstart.sh --operator-image "$IMAGE"
scripts/quickstart.sh --stop
# The backup and the restore were the container's work: `kstash up` ran no operator.
grep -q "no operator (--no-operator)" "$QS_DIR/logs/kstash-up.log" \
  || { echo "error: kstash up ran its own operator" >&2; exit 1; }
grep -q "kstash_operator" "$QS_DIR/logs/operator-image.log" \
  || { echo "error: the operator container logged nothing" >&2; exit 1; }
img_stop
trap - EXIT
rm -rf "$QS_DIR"

du -sh "$TARGET_FOR_DF" 2>/dev/null | sed 's/^/target size: /' || true
printf '\n==> all green in %ss\n' "$(( $(date +%s) - start ))"
