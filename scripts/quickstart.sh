#!/usr/bin/env bash
# The main job, locally: the seed tutorial (KubeDB Elasticsearch auto-backup with KubeStash) run by
# kstash on this machine, no cluster needed.
#
#   scripts/quickstart.sh                 # build, start everything, back up, restore, print tables
#   scripts/quickstart.sh --stop          # stop what it started (state is kept under .kstash/)
#   scripts/quickstart.sh --reset         # stop and delete the state (.kstash/quickstart)
#   scripts/quickstart.sh --es-url https://my-es:9200 --es-user elastic --es-password … [--es-ca ca.crt]
#                                         # back up a real Elasticsearch instead of the emulator
#                                         # (the restore then goes to a second emulator)
#   scripts/quickstart.sh --operator-image localhost/kstash:dev
#                                         # run the operator from kstash's OCI image (podman,
#                                         # read-only root, user 65532) instead of in `kstash up`
#                                         # (build it with engine/deploy/image/build.sh)
#
# What runs (all on 127.0.0.1, state in .kstash/quickstart, logs in .kstash/quickstart/logs):
#   - moto        a local S3 server (the tutorial's bucket `esbackup`)
#   - es-source   the Elasticsearch EMULATOR (kstash-es-emulator; TLS + basic auth, 3 indices of
#                 sample documents) standing in for the tutorial's KubeDB `es-quickstart`
#   - es-restore  a second, empty emulator: the restore target
#   - kstash up   the embedded Kubernetes API server + the kstash operator, one process
#                 (with --operator-image: the API server only, the operator in a container)
# Running it again reuses what is still running (and restarts what is not).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="${KSTASH_QUICKSTART_DIR:-$ROOT/.kstash/quickstart}"
LOGS="$STATE/logs"
NS=demo
ES_USER=elastic
ES_URL="" ES_CA="" ES_PASSWORD=""
OPERATOR_IMAGE="${KSTASH_OPERATOR_IMAGE:-}"
CONTAINER=kstash-quickstart-operator
# crun 1.8 (Debian 12) refuses hosts with hybrid cgroups; runc runs there and everywhere else.
OCI_RUNTIME="${KSTASH_OCI_RUNTIME:-$(command -v runc >/dev/null 2>&1 && echo runc || echo crun)}"
ACTION=run

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'quickstart: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --stop) ACTION=stop ;;
    --reset) ACTION=reset ;;
    --es-url) ES_URL="$2"; shift ;;
    --es-user) ES_USER="$2"; shift ;;
    --es-password) ES_PASSWORD="$2"; shift ;;
    --es-ca) ES_CA="$2"; shift ;;
    --operator-image) OPERATOR_IMAGE="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

stop_all() {
  if command -v podman >/dev/null 2>&1 && podman container exists "$CONTAINER" 2>/dev/null; then
    podman logs "$CONTAINER" >"$LOGS/operator-image.log" 2>&1 || true
    podman --runtime "$OCI_RUNTIME" rm -f -t 10 "$CONTAINER" >/dev/null 2>&1 || true
    echo "stopped $CONTAINER (container)"
  fi
  for p in kstash-up es-restore es-source moto; do
    if alive "$p"; then
      pid="$(cat "$STATE/$p.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
      echo "stopped $p (pid $pid)"
    fi
    rm -f "$STATE/$p.pid"
  done
}

case "$ACTION" in
  stop) stop_all; echo "state kept in $STATE (scripts/quickstart.sh --reset deletes it)"; exit 0 ;;
  reset) stop_all; rm -rf "$STATE"; echo "deleted $STATE"; exit 0 ;;
esac

mkdir -p "$STATE" "$LOGS"
if [ -n "$ES_URL" ] && [ -z "$ES_PASSWORD" ]; then die "--es-url needs --es-password (and --es-user, default elastic)"; fi

say "tools (scripts/ensure-tools.sh: moto, kubectl, wasm32-wasip2)"
scripts/ensure-tools.sh wasm moto kubectl
KUBECTL_BIN="$ROOT/.tools/bin/kubectl"
MOTO="$ROOT/.tools/venv/bin/moto_server"

say "building kstash, the ES emulator and the addons (the first build on a fresh machine takes a while)"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
# KSTASH_BIN / KSTASH_ES_EMULATOR_BIN: use binaries built elsewhere (skips the cargo build).
if [ -z "${KSTASH_BIN:-}" ] || [ -z "${KSTASH_ES_EMULATOR_BIN:-}" ]; then
  cargo build --locked -p kstash -p kstash-es-emulator --bins
fi
KSTASH="${KSTASH_BIN:-$TARGET/kstash}"
EMU="${KSTASH_ES_EMULATOR_BIN:-$TARGET/kstash-es-emulator}"
scripts/build-addons.sh -q
MODULES="$ROOT/addons/target/wasm32-wasip2/release"

# A port per service, chosen once and kept in the state directory (so a re-run reuses them).
port_of() {
  local f="$STATE/$1.port"
  if [ ! -s "$f" ]; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' >"$f"
  fi
  cat "$f"
}
wait_port() { # name port
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    alive "$1" || die "$1 exited; see $LOGS/$1.log"
    sleep 0.2
  done
  die "$1 did not listen on 127.0.0.1:$2; see $LOGS/$1.log"
}
start() { # name port cmd...
  local name="$1" port="$2"; shift 2
  if alive "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; return; fi
  "$@" >"$LOGS/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
  wait_port "$name" "$port"
  echo "$name: started (pid $!, 127.0.0.1:$port)"
}

count() { # url user password ca
  local ca=(); [ -n "$4" ] && ca=(--cacert "$4")
  curl -sf "${ca[@]}" -u "$2:$3" "$1/_cat/indices?h=index,docs.count&s=index" | awk '$1 !~ /^\./'
}

say "local S3 server (moto) and the Elasticsearch stand-ins"
MOTO_PORT="$(port_of moto)"
# moto keeps the bucket in memory: when it has to be started, the bucket is empty, and the
# API objects kept by a previous `kstash up` (Repositories, Snapshots) would point at data that is
# gone. Start kstash's state afresh with it.
MOTO_FRESH=0
alive moto || MOTO_FRESH=1
start moto "$MOTO_PORT" "$MOTO" -H 127.0.0.1 -p "$MOTO_PORT"
S3="http://127.0.0.1:$MOTO_PORT"
curl -sf -X PUT "$S3/esbackup" >/dev/null || die "creating bucket esbackup on $S3"

if [ -z "$ES_URL" ]; then
  ES_PASSWORD="$(cat "$STATE/es-password" 2>/dev/null || (head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' | tee "$STATE/es-password"))"
  SRC_PORT="$(port_of es-source)"
  echo "NOTE: es-source is kstash's Elasticsearch EMULATOR (tests/es-emulator), a stand-in for the"
  echo "      tutorial's KubeDB Elasticsearch: same REST API for backup/restore, in memory, seeded with"
  echo "      sample documents. Use --es-url to back up a real Elasticsearch instead."
  start es-source "$SRC_PORT" "$EMU" --listen "127.0.0.1:$SRC_PORT" --tls-dir "$STATE/es-source-tls" \
    --user "$ES_USER" --password "$ES_PASSWORD" --seed-docs 2000 --seed-indices 3 --seed-large-doc-bytes 65536
  ES_URL="https://127.0.0.1:$SRC_PORT"
  ES_CA="$STATE/es-source-tls/ca.crt"
fi
RESTORE_PASSWORD="$(cat "$STATE/es-restore-password" 2>/dev/null || (head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' | tee "$STATE/es-restore-password"))"
RST_PORT="$(port_of es-restore)"
start es-restore "$RST_PORT" "$EMU" --listen "127.0.0.1:$RST_PORT" --tls-dir "$STATE/es-restore-tls" \
  --user elastic --password "$RESTORE_PASSWORD"
RESTORE_URL="https://127.0.0.1:$RST_PORT"
RESTORE_CA="$STATE/es-restore-tls/ca.crt"

say "kstash up (embedded Kubernetes API + operator; data in $STATE/up)"
API_PORT="$(port_of kstash-up)"
if [ "$MOTO_FRESH" = 1 ] && [ -d "$STATE/up" ]; then
  if alive kstash-up; then kill "$(cat "$STATE/kstash-up.pid")"; sleep 2; rm -f "$STATE/kstash-up.pid"; fi
  echo "the S3 server started empty: starting kstash's state afresh (removing $STATE/up)"
  rm -rf "$STATE/up"
fi
UP_FLAGS=()
[ -n "$OPERATOR_IMAGE" ] && UP_FLAGS=(--no-operator)
if ! alive kstash-up; then
  KSTASH_LOG="${KSTASH_LOG:-info}" "$KSTASH" up --data-dir "$STATE/up" --listen "127.0.0.1:$API_PORT" \
    --module-dir "$MODULES" --addons "$ROOT/examples/addons" --metrics-addr "127.0.0.1:$(port_of metrics)" \
    "${UP_FLAGS[@]}" >"$LOGS/kstash-up.log" 2>&1 &
  echo $! >"$STATE/kstash-up.pid"
fi
for _ in $(seq 600); do
  grep -q '^export KUBECONFIG=' "$LOGS/kstash-up.log" 2>/dev/null && break
  alive kstash-up || die "kstash up exited; see $LOGS/kstash-up.log"
  sleep 0.2
done
grep -q '^export KUBECONFIG=' "$LOGS/kstash-up.log" || die "kstash up did not start; see $LOGS/kstash-up.log"
grep '^addons:\|^metrics:\|^modules:' "$LOGS/kstash-up.log" || true
export KUBECONFIG="$STATE/up/kubeconfig"
k() { "$KUBECTL_BIN" "$@"; }

# The operator from the image: the host's network (the API server, S3 and Elasticsearch are on
# 127.0.0.1), a read-only root, user 65532, the module cache in a 0700 directory of that user
# (the pod's emptyDir), the kubeconfig as a read-only file only that user can read.
operator_alive() {
  [ -z "$OPERATOR_IMAGE" ] || [ "$(podman inspect -f '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" = true ]
}
if [ -n "$OPERATOR_IMAGE" ]; then
  say "the operator from image $OPERATOR_IMAGE (podman --runtime $OCI_RUNTIME, read-only root, user 65532)"
  command -v podman >/dev/null || die "--operator-image needs podman (scripts/ensure-tools.sh image)"
  podman image exists "$OPERATOR_IMAGE" || die "image $OPERATOR_IMAGE not found (build it: engine/deploy/image/build.sh)"
  if ! operator_alive; then
    install -m 0600 -o 65532 -g 65532 "$KUBECONFIG" "$STATE/operator-kubeconfig"
    install -d -m 0700 -o 65532 -g 65532 "$STATE/operator-data"
    # This host may not raise rlimits (no CAP_SYS_RESOURCE): give the container limits no higher
    # than ours instead of podman's defaults.
    podman --runtime "$OCI_RUNTIME" run -d --replace --name "$CONTAINER" --read-only --network host \
      --ulimit "nofile=$(ulimit -n):$(ulimit -n)" --ulimit nproc=4096:4096 \
      -v "$STATE/operator-data:/var/lib/kstash:rw" --tmpfs /tmp:rw,mode=1777 \
      -v "$STATE/operator-kubeconfig:/etc/kstash/kubeconfig:ro" -e KSTASH_LOG="${KSTASH_LOG:-info}" \
      "$OPERATOR_IMAGE" operator --kubeconfig /etc/kstash/kubeconfig \
      --module-dir /usr/lib/kstash/addons --metrics-addr off --identity kstash-image >/dev/null \
      || die "podman could not start the operator from $OPERATOR_IMAGE"
  fi
  sleep 1
  operator_alive || { podman logs "$CONTAINER" 2>&1 | tail -20; die "the operator container exited"; }
  echo "operator: $(podman inspect -f '{{.Config.User}} read-only={{.HostConfig.ReadonlyRootfs}}' "$CONTAINER") in $CONTAINER"
fi

say "the tutorial's objects (examples/auto-backup), storage pointed at the local S3 server"
k get ns "$NS" >/dev/null 2>&1 || k create ns "$NS"
k -n "$NS" create secret generic s3-secret --from-literal=AWS_ACCESS_KEY_ID=kstash \
  --from-literal=AWS_SECRET_ACCESS_KEY=kstash-secret --dry-run=client -o yaml | k apply -f -
k -n "$NS" create secret generic encrypt-secret --from-literal=RESTIC_PASSWORD=changeit \
  --dry-run=client -o yaml | k apply -f -
# What KubeDB would create for `es-quickstart`: the auth secret and the AppBinding.
ab() { # name url user password cafile
  k -n "$NS" create secret generic "$1-elastic-cred" --from-literal=username="$3" \
    --from-literal=password="$4" --dry-run=client -o yaml | k apply -f -
  local ca=""
  [ -n "$5" ] && ca="    caBundle: $(base64 -w0 <"$5")"
  k apply -f - <<EOF
apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata:
  name: $1
  namespace: $NS
spec:
  appRef: {apiGroup: kubedb.com, kind: Elasticsearch, name: $1, namespace: $NS}
  type: kubedb.com/elasticsearch
  version: 8.15.0
  clientConfig:
    url: $2
$ca
  secret:
    name: $1-elastic-cred
EOF
}
ab es-quickstart "$ES_URL" "$ES_USER" "$ES_PASSWORD" "$ES_CA"
sed -e "s#endpoint: .*#endpoint: $S3#" examples/auto-backup/backupstorage.yaml | k apply -f -
k apply -f examples/auto-backup/retentionpolicy.yaml -f examples/auto-backup/default-backupblueprint.yaml \
  -f examples/auto-backup/sample-es.yaml

say "waiting for the first Snapshot (the BackupConfiguration's initial backup)"
snap_ok() { k get snapshots -n "$NS" -l kubestash.com/repo-name=s3-elasticsearch-repo \
  -o jsonpath='{range .items[?(@.status.phase=="Succeeded")]}{.metadata.name}{"\n"}{end}' 2>/dev/null | head -1; }
SNAP=""
for i in $(seq 600); do
  SNAP="$(snap_ok)"
  [ -n "$SNAP" ] && break
  alive kstash-up || die "kstash up exited; see $LOGS/kstash-up.log"
  operator_alive || { podman logs "$CONTAINER" 2>&1 | tail -20; die "the operator container exited"; }
  [ $((i % 30)) = 0 ] && k get backupsession -n "$NS" 2>/dev/null | tail -n +2 || true
  sleep 1
done
[ -n "$SNAP" ] || { k get backupconfiguration,backupsession,snapshots -n "$NS" -o wide || true; die "no Succeeded Snapshot after 10 minutes; see $LOGS/kstash-up.log"; }

for what in backupconfiguration backupsession repo; do
  say "kubectl get $what -n $NS"
  k get "$what" -n "$NS"
done
say "kubectl get snapshots -n $NS -l=kubestash.com/repo-name=s3-elasticsearch-repo"
k get snapshots -n "$NS" -l=kubestash.com/repo-name=s3-elasticsearch-repo

say "restore the latest Snapshot into a second Elasticsearch (es-restore, an empty emulator)"
# A re-run restores again: empty the restore target first (a restore refuses to load documents
# into an index that already has some, unless its overwrite parameter is set).
for idx in $(count "$RESTORE_URL" elastic "$RESTORE_PASSWORD" "$RESTORE_CA" | awk '{print $1}'); do
  curl -sf --cacert "$RESTORE_CA" -u "elastic:$RESTORE_PASSWORD" -X DELETE "$RESTORE_URL/$idx" >/dev/null \
    || die "emptying the restore target: DELETE $RESTORE_URL/$idx"
  echo "es-restore: deleted index $idx from the previous run"
done
ab restore-es "$RESTORE_URL" elastic "$RESTORE_PASSWORD" "$RESTORE_CA"
RS="restore-$(date +%s)"
k apply -f - <<EOF
apiVersion: core.kubestash.com/v1alpha1
kind: RestoreSession
metadata:
  name: $RS
  namespace: $NS
spec:
  target: {apiGroup: appcatalog.appscode.com, kind: AppBinding, name: restore-es, namespace: $NS}
  dataSource:
    repository: s3-elasticsearch-repo
    snapshot: latest
    encryptionSecret: {name: encrypt-secret, namespace: $NS}
  addon:
    name: elasticsearch-addon
    tasks:
      - name: logical-backup-restore
EOF
PHASE=""
for _ in $(seq 600); do
  PHASE="$(k get restoresession -n "$NS" "$RS" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  case "$PHASE" in Succeeded|Failed|Invalid|Unknown) break ;; esac
  sleep 1
done
k get restoresession -n "$NS" "$RS"
[ "$PHASE" = Succeeded ] || die "RestoreSession $RS ended $PHASE: kubectl get restoresession -n $NS $RS -o yaml"

SRC="$(count "$ES_URL" "$ES_USER" "$ES_PASSWORD" "$ES_CA")"
DST="$(count "$RESTORE_URL" elastic "$RESTORE_PASSWORD" "$RESTORE_CA")"
say "document counts (index, docs): source | restored"
paste <(echo "$SRC") <(echo "$DST") | column -t
[ -n "$SRC" ] && [ "$SRC" = "$DST" ] || die "the restored indices differ from the source"
echo "restore check passed: every index has the same document count"

say "kstash is running. Explore it with kubectl:"
echo "export KUBECONFIG=$KUBECONFIG"
echo "export PATH=$ROOT/.tools/bin:\$PATH"
echo "kubectl get backupconfiguration,backupsession,repo,snapshots -n $NS"
echo "curl -s http://127.0.0.1:$(port_of metrics)/metrics | grep ^kstash_"
echo "logs: $LOGS    stop: scripts/quickstart.sh --stop    start over: scripts/quickstart.sh --reset"
