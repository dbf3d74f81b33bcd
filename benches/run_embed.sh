#!/usr/bin/env bash
# Embedding throughput side by side in one run: Engram's MiniLM on candle vs
# onnxruntime and sentence-transformers with the same weights, on the same
# Quoref passages (truncated to 256 tokens), 2 threads each. Prints texts/s and
# the ratios Engram / peer.
#
# Usage: bash benches/run_embed.sh [--n 2000]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ENGRAM_CACHE:-$HOME/.cache/engram}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/engram/target}"
PY="$CACHE/venv/bin/python"
N=2000
[ "${1:-}" = "--n" ] && N="$2"
[ -x "$PY" ] || bash "$ROOT/benches/setup.sh"
source "$ROOT/benches/quoref_data.sh"
QUOREF="$(quoref_data "$N" --n)"
cargo build --release -p engram-benches --bin embed >&2
OUT="$(mktemp)"
"$CARGO_TARGET_DIR/release/embed" --data "$QUOREF" --n "$N" --passes 1 | tee -a "$OUT"
"$PY" "$ROOT/benches/peers/embed_peers.py" --data "$QUOREF" --n "$N" 2>/dev/null | tee -a "$OUT"
"$PY" - "$OUT" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
rate = {r["engine"]: r["texts_per_s"] for r in rows}
ours = rate.pop("engram-candle")
print(f"\nengram-candle {ours:.2f} texts/s")
for eng, r in rate.items():
    print(f"{eng:<22} {r:.2f} texts/s   Engram/{eng} = {ours / r:.2f}x")
PYEOF
