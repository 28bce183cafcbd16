#!/usr/bin/env bash
# The addons' pure logic (option parsing, file formats, paging and bulk state machines) is plain
# Rust that also compiles for the host: lint and test it there, with an in-memory fake
# Elasticsearch. The components themselves are exercised through the engine's tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/addons"
export CARGO_TARGET_DIR="$ROOT/target/addons-host"
cargo clippy --locked -p elasticsearch-addon --all-targets -- -D warnings
cargo test --locked -p elasticsearch-addon
# PostgreSQL addon: its logic against real PostgreSQL 15 servers (started by the tests).
"$ROOT/scripts/ensure-tools.sh" postgres
cargo clippy --locked -p postgres-addon --all-targets -- -D warnings
cargo test --locked -p postgres-addon
