#!/usr/bin/env bash
# Builds kstash's OCI image with buildah, from a `kstash` binary built elsewhere and the addon
# modules `scripts/build-addons.sh` made — no Docker engine, no registry, no second compile:
#
#   engine/deploy/image/build.sh --kstash target/release/kstash \
#     --modules addons/target/wasm32-wasip2/release --tag localhost/kstash:0.1.0
#
# The image is `scratch` plus:
#   /usr/bin/kstash                 the binary (entrypoint), and the shared libraries `ldd` names
#   /usr/lib/kstash/addons/*.wasm   every module a shipped Function pins (examples/addons), checked
#                                   against its pinned sha256 here: a module with another digest
#                                   fails the build, so the image and the manifests cannot drift
#   /etc/ssl/certs/ca-certificates.crt   the build machine's CA bundle (for S3/GCS/Azure over TLS)
#   /etc/passwd, /etc/group         user and group 65532 (`kstash`); the image runs as 65532
# and nothing writable: run it with a read-only root filesystem, a volume (or tmpfs) on
# /var/lib/kstash (the module cache, `--data-dir`) and /tmp. Needs root (buildah on the host's
# storage) or a rootless buildah setup.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
KSTASH="" MODULES="" TAG="localhost/kstash:dev" MANIFESTS="$ROOT/examples/addons"
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --kstash) KSTASH="$2"; shift ;;
    --modules) MODULES="$2"; shift ;;
    --manifests) MANIFESTS="$2"; shift ;;
    --tag) TAG="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[ -x "$KSTASH" ] || die "--kstash: '$KSTASH' is not an executable file"
[ -d "$MODULES" ] || die "--modules: '$MODULES' is not a directory (run scripts/build-addons.sh)"
command -v buildah >/dev/null || die "buildah is not installed (scripts/ensure-tools.sh image)"
"$KSTASH" --version >/dev/null || die "$KSTASH does not run on this machine"

ROOTFS="$(mktemp -d)"
trap 'rm -rf "$ROOTFS"' EXIT
mkdir -p "$ROOTFS"/usr/bin "$ROOTFS"/usr/lib/kstash/addons "$ROOTFS"/etc/ssl/certs \
  "$ROOTFS"/var/lib/kstash "$ROOTFS"/tmp
install -m 0755 "$KSTASH" "$ROOTFS/usr/bin/kstash"

# The dynamic loader and every library the binary links, at the paths the binary asks for.
ldd "$KSTASH" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
  while read -r lib; do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
  done

# The modules the shipped Functions pin: `location: builtin:<name>` followed by `sha256: "<hex>"`.
pins="$(awk '/location: builtin:/ {sub(/.*builtin:/, ""); name=$0}
             /sha256:/ && name != "" {gsub(/[" ]/, "", $2); print name, $2; name=""}' \
        "$MANIFESTS"/*.yaml | sort -u)"
[ -n "$pins" ] || die "no builtin module pins found in $MANIFESTS/*.yaml"
while read -r name pin; do
  src="$MODULES/$name.wasm"
  [ -f "$src" ] || src="$MODULES/${name}_addon.wasm"
  [ -f "$src" ] || die "module builtin:$name: neither $MODULES/$name.wasm nor ${name}_addon.wasm exists"
  got="$(sha256sum "$src" | cut -d' ' -f1)"
  [ "$got" = "$pin" ] || die "module builtin:$name: $src has sha256 $got, the Functions in $MANIFESTS pin $pin (rebuild with scripts/build-addons.sh, or update the pins)"
  install -m 0644 "$src" "$ROOTFS/usr/lib/kstash/addons/$name.wasm"
done <<<"$pins"
(cd "$ROOTFS/usr/lib/kstash/addons" && sha256sum -- *.wasm > SHA256SUMS)

[ -f /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt is missing (apt-get install ca-certificates)"
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nkstash:x:65532:65532:kstash:/var/lib/kstash:/sbin/nologin\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nkstash:x:65532:\n' > "$ROOTFS/etc/group"
chown 65532:65532 "$ROOTFS/var/lib/kstash" && chmod 0700 "$ROOTFS/var/lib/kstash"
chmod 1777 "$ROOTFS/tmp"
# UTC as the local time zone (the image has no time zone database).
[ -f /usr/share/zoneinfo/Etc/UTC ] && cp -L /usr/share/zoneinfo/Etc/UTC "$ROOTFS/etc/localtime"

version="$("$KSTASH" --version | awk '{print $2}')"
ctr="$(buildah from scratch)"
buildah copy --quiet "$ctr" "$ROOTFS" / >/dev/null
buildah config \
  --entrypoint '["/usr/bin/kstash"]' \
  --cmd '["operator", "--module-dir=/usr/lib/kstash/addons"]' \
  --user 65532:65532 \
  --env KSTASH_DATA_DIR=/var/lib/kstash \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --label org.opencontainers.image.title=kstash \
  --label org.opencontainers.image.version="$version" \
  --label io.kstash.modules="$(tr '\n' ' ' < "$ROOTFS/usr/lib/kstash/addons/SHA256SUMS" | sed 's/  */ /g')" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$TAG" >/dev/null
echo "image: $TAG (kstash $version, $(wc -l < "$ROOTFS/usr/lib/kstash/addons/SHA256SUMS") modules, $(du -sh "$ROOTFS" | cut -f1))"
