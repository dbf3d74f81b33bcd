#!/usr/bin/env bash
# End-to-end text-in latency, side by side in one run: Engram (real server, real
# HTTP) vs chromadb embedded (in-process, no HTTP), same MiniLM, same Quoref
# passages and questions. Prints both and the ratios (Engram / chroma).
#
# Usage: bash benches/run_e2e.sh [--docs 300] [--queries 600]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ENGRAM_CACHE:-$HOME/.cache/engram}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/engram/target}"
PY="$CACHE/venv/bin/python"
DOCS=300; QUERIES=600
while [ $# -gt 0 ]; do
  case "$1" in
    --docs) DOCS="$2"; shift 2 ;;
    --queries) QUERIES="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$PY" ] || bash "$ROOT/benches/setup.sh"
source "$ROOT/benches/quoref_data.sh"
QUOREF="$(quoref_data "$DOCS" --docs)"
cargo build --release -p engram-db --bin engram >&2
DATA="$(mktemp -d)"; PORT=6399
OUT="$(mktemp)"
"$CARGO_TARGET_DIR/release/engram" serve --data-dir "$DATA" --port "$PORT" >"$DATA.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 600); do curl -sf "localhost:$PORT/healthz" >/dev/null && break; sleep 0.2; done
"$PY" "$ROOT/benches/peers/engram_http.py" --url "http://127.0.0.1:$PORT" --data "$QUOREF" --docs "$DOCS" --queries "$QUERIES" | tee -a "$OUT"
kill $PID
"$PY" "$ROOT/benches/peers/chroma_peer.py" --data "$QUOREF" --docs "$DOCS" --queries "$QUERIES" 2>/dev/null | tee -a "$OUT"
"$PY" - "$OUT" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {(r["engine"], r["op"]): r for r in rows}
print(f"\n{'op':<8}{'engine':<10}{'p50 ms':>9}{'p99 ms':>9}{'per s':>8}{'hit@10':>8}")
for op in ("insert", "query"):
    for eng in ("engram", "chromadb"):
        r = by[(eng, op)]
        print(f"{op:<8}{eng:<10}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['per_s']:>8.1f}{r.get('hit@10', ''):>8}")
    e, c = by[("engram", op)], by[("chromadb", op)]
    print(f"{op:<8}{'ratio':<10}{e['p50_ms']/c['p50_ms']:>9.2f}{e['p99_ms']/c['p99_ms']:>9.2f}   (Engram/chroma latency; <1 is faster)")
PYEOF
