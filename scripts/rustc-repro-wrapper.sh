#!/usr/bin/env bash
# RUSTC_WRAPPER used by scripts/build-addons.sh so the addon modules do not depend on where the
# repository is checked out.
#
# Cargo's `-C metadata` hash (which seeds symbol mangling and so the function order in the final
# module) includes the absolute path of path dependencies outside the building workspace (the
# SDK is `../sdk` for the addons workspace), and every dependent's hash includes its
# dependencies'. For crates whose sources are in this repository, this wrapper replaces that
# value with a hash of path-independent inputs only: the crate's path relative to the
# repository, its name, type, edition and `--cfg` flags. Registry crates are left as cargo
# built them (their hashes are already path-independent). The paths embedded in the code are
# handled by `--remap-path-prefix` (set by build-addons.sh).
set -euo pipefail
rustc="$1"
shift
root="${KSTASH_REPRO_ROOT:?set by scripts/build-addons.sh}"
src=""
for a in "$@"; do
  case "$a" in *.rs) src="$a" ;; esac
done
case "$src" in
  "$root"/*) rel="${src#"$root"/}" ;;
  /*) exec "$rustc" "$@" ;;
  "") exec "$rustc" "$@" ;;
  *) rel="addons/$src" ;; # workspace members are passed relative to the addons workspace
esac
stable=("$rel")
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --crate-name | --crate-type | --edition | --cfg) stable+=("${args[$i]}" "${args[$((i + 1))]:-}") ;;
    --edition=*) stable+=("${args[$i]}") ;;
  esac
done
meta="$(printf '%s\n' "${stable[@]}" | sha256sum | cut -c1-16)"
out=()
for ((i = 0; i < ${#args[@]}; i++)); do
  a="${args[$i]}"
  if [ "$a" = "-C" ] && [[ "${args[$((i + 1))]:-}" == metadata=* ]]; then
    out+=("-C" "metadata=$meta")
    i=$((i + 1))
  elif [[ "$a" == -Cmetadata=* ]]; then
    out+=("-Cmetadata=$meta")
  else
    out+=("$a")
  fi
done
exec "$rustc" "${out[@]}"
