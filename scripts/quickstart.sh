#!/usr/bin/env bash
# The main job, locally: builds kstash and runs it on the seed tutorial's objects.
# Today that is the blueprint dry run: the tutorial's custom BackupBlueprint rendered for the
# annotated Elasticsearch `es-quickstart-2`, exactly as KubeStash's auto-backup would create it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
echo "==> building kstash (first build on a fresh machine takes a while)" >&2
cargo build --locked -p kstash >&2
KSTASH="${CARGO_TARGET_DIR:-$ROOT/target}/debug/kstash"
for pair in "default-backupblueprint.yaml sample-es.yaml" "custom-backup-blueprint.yaml sample-es-2.yaml"; do
  set -- $pair
  echo "==> kstash render --blueprint examples/auto-backup/$1 --target examples/auto-backup/$2" >&2
  "$KSTASH" render --blueprint "examples/auto-backup/$1" --target "examples/auto-backup/$2"
  echo "---"
done
