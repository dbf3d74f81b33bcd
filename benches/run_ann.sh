#!/usr/bin/env bash
# Side-by-side ANN benchmark: Engram's index vs hnswlib vs faiss (HNSW), same data,
# same M / ef_construction / ef sweep, in one run, then a summary table.
#
# Usage: bash benches/run_ann.sh [DATASET] [--m 16] [--ef-construction 200]
#                                [--ef 10,20,40,80,120,200,400] [--repeat 1] [--target 0.95]
#   DATASET: glove-50-angular (default) | fashion-mnist-784-euclidean
# Environment: CARGO_TARGET_DIR (default ~/.cache/engram/target), ENGRAM_CACHE
#   (default ~/.cache/engram), SKIP_BUILD=1 to reuse the built binary,
#   ENGINES (default "engram,engram-f32,hnswlib,faiss"; engram is the default index,
#   walking int8 codes; engram-f32 has the collection setting "quantization": "none").
# Prepares on first use: the venv (benches/setup.sh) and the data set with exact
# ground truth (scripts/ann_data.py). Raw JSON lines go to
# $ENGRAM_CACHE/results/ann-<dataset>-<time>.jsonl; the table is printed at the end.
# Build runs with every core (2 here) for all engines; search runs on one thread.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ENGRAM_CACHE:-$HOME/.cache/engram}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/engram/target}"
PY="$CACHE/venv/bin/python"

DATASET=glove-50-angular
M=16
EFC=200
EF=10,20,40,80,120,200,400
REPEAT=1
TARGET=0.95
ENGINES="${ENGINES:-engram,engram-f32,hnswlib,faiss}"
while [ $# -gt 0 ]; do
  case "$1" in
    --m) M="$2"; shift 2 ;;
    --ef-construction) EFC="$2"; shift 2 ;;
    --ef) EF="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --target) TARGET="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) DATASET="$1"; shift ;;
  esac
done

[ -x "$PY" ] || bash "$ROOT/benches/setup.sh"
DATA="$CACHE/bench/$DATASET"
[ -f "$DATA/meta.json" ] || "$PY" "$ROOT/scripts/ann_data.py" --dataset "$DATASET"

BIN="$CARGO_TARGET_DIR/release/ann"
if [[ ",$ENGINES," == *",engram"* ]] && [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p engram-benches --bin ann)
fi

mkdir -p "$CACHE/results"
OUT="$CACHE/results/ann-$DATASET-$(date +%Y%m%d-%H%M%S).jsonl"
PEERS=$(echo "$ENGINES" | tr ',' '\n' | grep -v '^engram' | paste -sd, - || true)
echo "dataset $DATASET  M=$M efC=$EFC ef=$EF repeat=$REPEAT  -> $OUT" >&2
for i in $(seq 1 "$REPEAT"); do
  # One engine at a time: they never compete for the cores.
  if [[ ",$ENGINES," == *",engram,"* ]]; then
    "$BIN" --dataset "$DATA" --m "$M" --ef-construction "$EFC" --ef "$EF" | tee -a "$OUT"
  fi
  if [[ ",$ENGINES," == *",engram-f32,"* ]]; then
    "$BIN" --dataset "$DATA" --m "$M" --ef-construction "$EFC" --ef "$EF" --f32 | tee -a "$OUT"
  fi
  if [ -n "$PEERS" ]; then
    "$PY" "$ROOT/benches/peers/ann_peers.py" --dataset "$DATA" --engines "$PEERS" \
      --m "$M" --ef-construction "$EFC" --ef "$EF" --build-threads "$(nproc)" | tee -a "$OUT"
  fi
done
"$PY" "$ROOT/benches/peers/ann_table.py" "$OUT" --target "$TARGET"
