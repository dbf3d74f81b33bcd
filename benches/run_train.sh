#!/usr/bin/env bash
# LoRA training throughput, side by side on CPU: Engram's trainer (candle) vs torch + peft,
# same SmolLM2 weights, same sequences, same LoRA config. Usage:
#   benches/run_train.sh [STEPS] [ACCUM] [RANK]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-10}; ACCUM=${2:-4}; RANK=${3:-16}
OUT=${OUT:-benches/results/train}
PY=${PY:-$HOME/.cache/engram/venv/bin/python}
# Threads of both sides (THREADS=1 gives a fair comparison on a busy machine).
if [ -n "${THREADS:-}" ]; then export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS; fi
mkdir -p "$OUT"
cargo run --release -q -p engram-trainer --example train_bench -- "$OUT" "$STEPS" "$ACCUM" "$RANK"
"$PY" benches/train_peer.py "$OUT" "$STEPS" "$ACCUM" "$RANK"
"$PY" - "$OUT" <<'PYEOF'
import json, sys, os
out = sys.argv[1]
a = json.load(open(os.path.join(out, "engram.json")))
b = json.load(open(os.path.join(out, "peer.json")))
print(f"{'impl':<18} {'tokens/s':>10} {'first loss':>11} {'last loss':>10}")
for r in (a, b):
    print(f"{r['impl']:<18} {r['tokens_per_s']:>10.1f} {r['first_loss']:>11.4f} {r['last_loss']:>10.4f}")
print(f"ratio engram / torch+peft: {a['tokens_per_s'] / b['tokens_per_s']:.2f}x")
PYEOF
