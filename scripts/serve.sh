#!/usr/bin/env bash
# The main job (README's first command): build and serve on the built-in default
# configuration (http://127.0.0.1:6363, data in ./engram-data); the model is fetched
# into ~/.cache/engram/models on first use. Shares the test command's build
# directory, so RocksDB's C++ is compiled once for both. Extra arguments go to
# `engram serve` (see `engram serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/engram/target}"
exec cargo run --release -p engram-db --bin engram -- serve "$@"
