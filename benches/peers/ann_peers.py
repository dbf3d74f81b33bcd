#!/usr/bin/env python3
"""ANN peers: hnswlib and faiss (IndexHNSWFlat) on a data set made by scripts/ann_data.py.

Same parameters as Engram's side (benches/src/bin/ann.rs): M, ef_construction and a
list of ef values. For each engine and ef it prints one JSON line:

  {"engine": "hnswlib", "dataset": "glove-50-angular", "m": 16, "ef_construction": 200,
   "ef": 40, "k": 10, "recall@10": 0.87, "qps": 12345.6, "build_s": 61.2,
   "build_threads": 2, "search_threads": 1, "n": 390000, "n_test": 10000}

- build: all vectors inserted with `--build-threads` threads (default 2, this machine's
  cores); build_s is wall time of the insert.
- search: single thread (hnswlib set_num_threads(1), faiss.omp_set_num_threads(1)); the
  whole test set is passed in one call so the loop over queries runs in C++ (no Python
  per-query overhead, like Engram's Rust loop). qps = n_test / seconds, median of
  `--passes` (3) passes over all test queries.
- recall@10: mean over queries of |returned top-10 ∩ exact top-10| / 10 (ids).
- cosine data sets are stored L2-normalised, so hnswlib uses space "ip" and faiss
  METRIC_INNER_PRODUCT (identical ranking to cosine); euclidean uses "l2" / METRIC_L2.

Run (inside the venv from benches/setup.sh):
  ~/.cache/engram/venv/bin/python benches/peers/ann_peers.py \
      --dataset ~/.cache/engram/bench/glove-50-angular [--engines hnswlib,faiss]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def load(dataset: Path):
    meta = json.loads((dataset / "meta.json").read_text())
    n, nt, dim = meta["n"], meta["n_test"], meta["dim"]
    train = np.fromfile(dataset / "train.f32", dtype="<f4").reshape(n, dim)
    test = np.fromfile(dataset / "test.f32", dtype="<f4").reshape(nt, dim)
    gt = np.fromfile(dataset / "gt.i32", dtype="<i4").reshape(nt, meta["k"])
    return meta, train, test, gt


def recall(found: np.ndarray, gt: np.ndarray, k: int) -> float:
    hits = 0
    for row, truth in zip(found[:, :k], gt[:, :k]):
        hits += len(set(row.tolist()) & set(truth.tolist()))
    return hits / (k * gt.shape[0])


def timed_passes(fn, passes: int):
    times, out = [], None
    for _ in range(passes):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


class Hnswlib:
    name = "hnswlib"

    def __init__(self, metric: str, dim: int):
        import hnswlib
        self.hnswlib = hnswlib
        self.index = hnswlib.Index(space="ip" if metric == "cosine" else "l2", dim=dim)

    def build(self, train, m, efc, threads):
        self.index.init_index(max_elements=train.shape[0], ef_construction=efc, M=m,
                              random_seed=100)
        self.index.set_num_threads(threads)
        self.index.add_items(train, np.arange(train.shape[0]), num_threads=threads)
        self.index.set_num_threads(1)

    def search(self, test, k, ef):
        self.index.set_ef(max(ef, k))
        labels, _ = self.index.knn_query(test, k=k, num_threads=1)
        return labels


class Faiss:
    name = "faiss"

    def __init__(self, metric: str, dim: int):
        import faiss
        self.faiss = faiss
        fm = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        self.dim, self.fm = dim, fm
        self.index = None

    def build(self, train, m, efc, threads):
        self.faiss.omp_set_num_threads(threads)
        self.index = self.faiss.IndexHNSWFlat(self.dim, m, self.fm)
        self.index.hnsw.efConstruction = efc
        self.index.add(train)
        self.faiss.omp_set_num_threads(1)

    def search(self, test, k, ef):
        self.index.hnsw.efSearch = max(ef, k)
        _, labels = self.index.search(test, k)
        return labels


ENGINES = {"hnswlib": Hnswlib, "faiss": Faiss}


def main() -> None:
    ap = argparse.ArgumentParser(description="hnswlib / faiss HNSW recall-QPS sweep")
    ap.add_argument("--dataset", type=Path, required=True, help="folder made by scripts/ann_data.py")
    ap.add_argument("--engines", default="hnswlib,faiss")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", default="10,20,40,80,120,200,400")
    ap.add_argument("--k", type=int, default=10, help="neighbours asked for (recall is at 10)")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--build-threads", type=int, default=2)
    args = ap.parse_args()

    meta, train, test, gt = load(args.dataset.expanduser())
    efs = [int(e) for e in args.ef.split(",") if e]
    for name in args.engines.split(","):
        eng = ENGINES[name](meta["metric"], meta["dim"])
        print(f"[{name}] building {meta['name']} n={meta['n']} dim={meta['dim']} "
              f"M={args.m} efC={args.ef_construction} threads={args.build_threads}",
              file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        eng.build(train, args.m, args.ef_construction, args.build_threads)
        build_s = time.perf_counter() - t0
        for ef in efs:
            labels, secs = timed_passes(lambda: eng.search(test, args.k, ef), args.passes)
            row = {"engine": name, "dataset": meta["name"], "m": args.m,
                   "ef_construction": args.ef_construction, "ef": ef, "k": args.k,
                   "recall@10": round(recall(np.asarray(labels), gt, 10), 4),
                   "qps": round(test.shape[0] / secs, 1), "build_s": round(build_s, 2),
                   "build_threads": args.build_threads, "search_threads": 1,
                   "n": meta["n"], "n_test": meta["n_test"]}
            print(json.dumps(row), flush=True)
        del eng


if __name__ == "__main__":
    main()
