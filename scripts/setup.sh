#!/usr/bin/env bash
# One-time set-up that both README commands (serve.sh, test.sh) run first, so each
# works on a fresh machine: the system packages the build needs. Quick and silent
# when everything is already there.
#
#   libclang-dev   bindgen (inside librocksdb-sys) parses RocksDB's C header with it
#                  at build time; without it the build stops with "Unable to find
#                  libclang" after minutes of compiling.
#
# Rust itself (cargo, rustc) is the machine's; models and Python clients are fetched
# on first use into ~/.cache/engram by the commands that need them. The pinned NATS
# server of cluster mode (and of its tests) is installed by scripts/nats-server.sh.
set -euo pipefail

"$(dirname "$0")/nats-server.sh" >/dev/null

PACKAGES=(libclang-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing system packages: ${missing[*]}; install them (a Debian-like system has apt-get)" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then SUDO=(); elif command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
  echo "error: missing system packages: ${missing[*]}; run as root or install sudo" >&2
  exit 1
fi
echo "installing ${missing[*]} (needed to build RocksDB's bindings)" >&2
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
