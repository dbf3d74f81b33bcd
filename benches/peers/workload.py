"""The text workload shared by the end-to-end benchmarks (Engram over HTTP and
chromadb embedded): the first N Quoref passages, their questions, and latency
statistics, so both sides measure exactly the same thing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def load_quoref(path: Path, n_docs: int, n_queries: int) -> tuple[list[dict], list[tuple[str, str]]]:
    """The first `n_docs` passages and up to `n_queries` (question, passage id) pairs."""
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line))
            if len(docs) == n_docs:
                break
    questions = [(q["question"], d["id"]) for d in docs for q in d["questions"]][:n_queries]
    return docs, questions


def stats(lat_s: list[float]) -> dict:
    """p50 / p99 / mean latency in ms and throughput of one-at-a-time calls."""
    ms = np.asarray(lat_s) * 1e3
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2), "per_s": round(len(ms) / sum(lat_s), 1)}
