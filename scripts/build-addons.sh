#!/usr/bin/env bash
# Builds every guest (addons/, target wasm32-wasip2) once, in release, and prints each component's
# path and sha256 digest. Idempotent: cargo rebuilds nothing when no source changed (~1 s).
#
#   scripts/build-addons.sh            # build all guests
#   scripts/build-addons.sh -q         # build, print nothing but errors
#   scripts/build-addons.sh --pin      # build, then rewrite the sha256 of every `builtin:` module
#                                      # in examples/addons/*.yaml to the built module's digest
#   scripts/build-addons.sh --check    # build, then fail if a manifest pins another digest
#
# Output lines: `<sha256>  <path>` (sha256sum format), for pinning digests in tests and objects.
#
# Reproducible: the digests do not depend on where the repository or the cargo home is. Paths
# embedded in the modules (panic locations of the addons, the SDK and registry crates) are
# remapped to `/kstash` and `/cargo`, so two clones in different directories build
# byte-identical modules (and the digests in examples/addons stay valid). The flags are passed
# through CARGO_ENCODED_RUSTFLAGS (safe with spaces in paths); they replace any RUSTFLAGS of the
# caller for this build only. Cargo's `-C metadata` hash of the repository's own crates also
# depends on the checkout's path (it seeds symbol names, and so the function order in the
# module): scripts/rustc-repro-wrapper.sh (RUSTC_WRAPPER) replaces it by a path-independent one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUIET=0
MODE=build
case "${1:-}" in
  -q) QUIET=1 ;;
  --pin) MODE=pin ;;
  --check) MODE=check ;;
  "") ;;
  *) echo "usage: $0 [-q|--pin|--check]" >&2; exit 2 ;;
esac

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "[build-addons] adding rust target wasm32-wasip2" >&2
  rustup target add wasm32-wasip2
fi

CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
CARGO_HOME_DIR="$(cd "$CARGO_HOME_DIR" 2>/dev/null && pwd || echo "$CARGO_HOME_DIR")"
unset RUSTFLAGS
# (`-Cdebug-assertions=off` is release's default; it is here so that cargo, which does not
# fingerprint RUSTC_WRAPPER, rebuilds modules built before the wrapper existed.)
export CARGO_ENCODED_RUSTFLAGS="--remap-path-prefix=$ROOT=/kstash"$'\x1f'"--remap-path-prefix=$CARGO_HOME_DIR=/cargo"$'\x1f'"-Cdebug-assertions=off"
# Cargo's `-C metadata` of path crates depends on the checkout's path: see the wrapper.
export RUSTC_WRAPPER="$ROOT/scripts/rustc-repro-wrapper.sh"
export KSTASH_REPRO_ROOT="$ROOT"

cd "$ROOT/addons"
# The guests have their own workspace and target dir; never inherit the host's.
unset CARGO_TARGET_DIR
export CARGO_TARGET_DIR="$ROOT/addons/target"
cargo build --release --target wasm32-wasip2 --quiet

OUT="$CARGO_TARGET_DIR/wasm32-wasip2/release"
if [ "$QUIET" = 0 ] && [ "$MODE" = build ]; then
  for f in "$OUT"/*.wasm; do
    sha256sum "$f"
  done
fi

if [ "$MODE" != build ]; then
  # For each `location: builtin:<name>` in examples/addons/*.yaml, the module is
  # <OUT>/<name>.wasm or <OUT>/<name>_addon.wasm (as the operator resolves it); the next
  # `sha256:` line of the same module block gets its digest.
  python3 - "$MODE" "$OUT" "$ROOT"/examples/addons/*.yaml <<'PY'
import hashlib, os, re, sys
mode, out, files = sys.argv[1], sys.argv[2], [f for f in sys.argv[3:] if os.path.isfile(f)]
if not files:
    sys.exit("[build-addons] no examples/addons/*.yaml to pin")
bad = 0
for path in files:
    lines = open(path).read().split("\n")
    changed = False
    pending = None  # (name, digest) waiting for its sha256 line
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)location:\s*[\"']?builtin:([A-Za-z0-9_-]+)[\"']?\s*$", line)
        if m:
            name = m.group(2)
            cands = [os.path.join(out, n) for n in (name + ".wasm", name + "_addon.wasm", name.replace("-", "_") + "_addon.wasm")]
            mod = next((c for c in cands if os.path.isfile(c)), None)
            if mod is None:
                sys.exit(f"[build-addons] {path}: no module for builtin:{name} in {out}")
            pending = (name, hashlib.sha256(open(mod, "rb").read()).hexdigest())
            continue
        m = re.match(r"^(\s*)sha256:\s*[\"']?([0-9a-fA-F]*)[\"']?\s*$", line)
        if m and pending:
            name, digest = pending
            pending = None
            if m.group(2) != digest:
                if mode == "pin":
                    lines[i] = f"{m.group(1)}sha256: \"{digest}\""
                    changed = True
                    print(f"[build-addons] {os.path.relpath(path)}: builtin:{name} -> {digest}")
                else:
                    bad += 1
                    print(f"[build-addons] {os.path.relpath(path)}: builtin:{name} pins {m.group(2) or 'nothing'}, built module is {digest}", file=sys.stderr)
            else:
                print(f"[build-addons] {os.path.relpath(path)}: builtin:{name} {digest} (up to date)")
    if changed:
        open(path, "w").write("\n".join(lines))
if bad:
    sys.exit(f"[build-addons] {bad} digest(s) out of date: run scripts/build-addons.sh --pin")
PY
fi
