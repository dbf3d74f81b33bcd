#!/usr/bin/env bash
# Exact top-k: engram GPU vs torch.topk(q @ x.T) on the same GPU vs engram CPU.
# Usage: gpu_topk.sh GPU_TOPK_BINARY OUT_DIR  (the binary from
#   cargo build --release -p engram-kernels --features cuda --example gpu_topk)
set -euo pipefail
bin=$1 out=$2 here=$(dirname "$0")
mkdir -p "$out"
run() { # N DIM METRIC BATCHES KS CPU_QUERIES
  local tag=$1x$2-$3
  "$bin" "$@" >"$out/ours-$tag.jsonl"
  python3 "$here/torch_topk.py" "$1" "$2" "$3" "$4" "$5" "$out/ours-$tag.jsonl" >"$out/torch-$tag.txt"
  sed -n '/^==/,$p' "$out/torch-$tag.txt"
}
run 1000000 384 dot 1,16,128,1024 10,100 16
run 60000 784 l2 1,16,128,1024,10000 10,100 128
