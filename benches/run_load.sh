#!/usr/bin/env bash
# Mixed load on one Engram server over loopback: hybrid queries, single-document
# inserts and rag answers at increasing concurrency (benches/src/bin/load.rs), each
# level for a fixed time, after a reference level without answers. Prints p50/p99,
# refusals (429 from the generation gate) and errors per level and operation, and the
# server's RSS over time. Bounded: (levels + 1) x seconds, plus loading 300 passages.
#
# Usage: bash benches/run_load.sh [--seconds 20] [--levels 1,2,4,8] [--answer-tokens 64]
#                                 [--config engram.toml]
#        bash benches/run_load.sh --baseline   # the issue's shape: 6 hybrid-query and 2
#                                              # short-insert threads for 40 s, no answers
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ENGRAM_CACHE:-$HOME/.cache/engram}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/engram/target}"
SECONDS_PER_LEVEL=20; LEVELS=1,2,4,8; TOKENS=64; CONFIG=(); BASELINE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_LEVEL="$2"; shift 2 ;;
    --levels) LEVELS="$2"; shift 2 ;;
    --answer-tokens) TOKENS="$2"; shift 2 ;;
    --config) CONFIG=(--config "$2"); shift 2 ;;
    --baseline) BASELINE=(--baseline); SECONDS_PER_LEVEL=40; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
source "$ROOT/benches/quoref_data.sh"
QUOREF="$(quoref_data 300 --docs)"
cargo build --release --workspace --bins >&2
DATA="$(mktemp -d)"; PORT=6398
# One candle thread per generation: two generations with two spinning threads each
# collapse on two cores (see the language model section of the README).
CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}" "$CARGO_TARGET_DIR/release/engram" serve \
  --data-dir "$DATA" --port "$PORT" "${CONFIG[@]}" >"$DATA.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null && wait $PID 2>/dev/null; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 600); do curl -sf "localhost:$PORT/healthz" >/dev/null && break; sleep 0.2; done
# The language model loads in the background at start-up; wait for it.
curl -sf "localhost:$PORT/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"hi"}],"max_tokens":1}' >/dev/null
"$CARGO_TARGET_DIR/release/load" --url "http://127.0.0.1:$PORT" --data "$QUOREF" --pid "$PID" \
  --levels "$LEVELS" --seconds "$SECONDS_PER_LEVEL" --answer-tokens "$TOKENS" "${BASELINE[@]}"
curl -s "localhost:$PORT/metrics" | grep '^engram_generation'
