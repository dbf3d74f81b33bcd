#!/usr/bin/env bash
# The test command (README and CI): one profile (release) so RocksDB's C++ is
# built once; the target dir lives under ~/.cache so later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/engram/target}"
cargo test --release --workspace "$@"
