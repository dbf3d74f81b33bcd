#!/usr/bin/env bash
# Language-model speed side by side in one run: Engram's SmolLM2 on candle vs
# llama.cpp (llama-cpp-python) on the same GGUF file and the same prompt token ids:
# prefill time of a --prompt-tokens prompt (Quoref passages) and greedy decode
# tokens/s, at each thread count in THREADS. Prints medians and Engram / llama.cpp.
#
# Usage: bash benches/run_generate.sh [--prompt-tokens 1024] [--decode 128] [--repeat 3]
#        THREADS="1 2" WEIGHTS="q8_0" DENSE="f32" (Engram's options, see bin/generate)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ENGRAM_CACHE:-$HOME/.cache/engram}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/engram/target}"
PY="$CACHE/venv/bin/python"
ARGS=("$@")
THREADS="${THREADS:-1 2}"
[ -x "$PY" ] || bash "$ROOT/benches/setup.sh"
if ! "$PY" -c "import llama_cpp" 2>/dev/null; then
  echo "llama-cpp-python is missing; install it (compiles llama.cpp, ~15 min on 2 cores):" >&2
  echo "  CMAKE_ARGS=\"-DGGML_NATIVE=ON -DGGML_BLAS=OFF\" $PY -m pip install llama-cpp-python==0.3.36" >&2
  exit 1
fi
cd "$ROOT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p engram-benches --bin generate >&2
OUT="$CACHE/results/generate-$(date +%Y%m%d-%H%M%S).jsonl"
mkdir -p "$(dirname "$OUT")"
IDS="$(mktemp)"
DECODE=128; REPEAT=3
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  case "${ARGS[$i]}" in
    --decode) DECODE="${ARGS[$((i + 1))]}" ;;
    --repeat) REPEAT="${ARGS[$((i + 1))]}" ;;
  esac
done
for t in $THREADS; do
  CANDLE_NUM_THREADS=$t RAYON_NUM_THREADS=$t "$CARGO_TARGET_DIR/release/generate" "${ARGS[@]}" \
    --weights "${WEIGHTS:-q8_0}" --dense "${DENSE:-f32}" --ids-out "$IDS" | tee -a "$OUT"
  "$PY" "$ROOT/benches/peers/llm_peer.py" --ids "$IDS" --threads "$t" --decode "$DECODE" --repeat "$REPEAT" | tee -a "$OUT"
done
"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"\nresults: {sys.argv[1]} (medians)")
print(f"{'threads':>7}  {'engine':<14} {'weights':<28} {'prefill ms':>10} {'decode tok/s':>12}")
for t in sorted({r["threads"] for r in rows}):
    med = {}
    for eng in ("engram-candle", "llama.cpp"):
        rs = [r for r in rows if r["threads"] == t and r["engine"] == eng]
        if not rs:
            continue
        med[eng] = (statistics.median(r["prefill_ms"] for r in rs), statistics.median(r["decode_tokens_per_s"] for r in rs))
        print(f"{t:>7}  {eng:<14} {rs[0]['weights']:<28} {med[eng][0]:>10.0f} {med[eng][1]:>12.1f}   ({rs[0]['prompt_tokens']}-token prompt)")
    if len(med) == 2:
        (pe, de), (pl, dl) = med["engram-candle"], med["llama.cpp"]
        print(f"{'':>7}  Engram / llama.cpp: prefill time {pe / pl:.2f}x (target <= 2x), decode speed {de / dl:.2f}x (target >= 0.5x)")
PYEOF
rm -f "$IDS"
