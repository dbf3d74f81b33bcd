#!/usr/bin/env python3
"""Training-free contextual variants prototyped on cached MiniLM vectors (issue 23).

Centring is the only shipped variant that gains on the templated niche corpora (+0.90
nDCG@10 points over the 12 tuning collections). This script tries other transforms
fitted on a collection's own documents, each scored exactly as `engram eval
contextual-sizes` scores a variant: collections of 50, 100, 300, 1,000 and 3,000
documents drawn evenly, nDCG@10 of the real queries with exact search (the MiniLM and
center columns reproduce the eval's to the third decimal). Families: document-side
neighbour smoothing, query-side pseudo-relevance feedback (Rocchio), per-dimension
standardisation with shrinkage, hubness correction (CSLS), mixing MiniLM's and
centring's scores, removing near-duplicate residual directions, and powers of the
covariance spectrum (negative: whitening-like; positive: the `stretch` variant).

With --agreement it also asks, for the variants named there, whether the self-check's
pseudo-queries (title, span, pair; `scripts/pseudo_query_agreement.py`'s cutter) see
the real gain. TUNING corpora only (choose there):

  ~/.cache/engram/venv/bin/python scripts/contextual_variants.py \\
      --out benches/results/contextual_variants_tuning.json \\
      --agreement center,stretch phones hotels insurers      # ~10 min on the loaded machine

Held out, once, the chosen variant only (after the choice):

  ~/.cache/engram/venv/bin/python scripts/contextual_variants.py --only center,stretch \\
      --out benches/results/contextual_variants_heldout.json telecoms carmakers airlines banks

Other pseudo-query kinds (--kinds; the name-swap and name-topic kinds of
`scripts/swap_queries.py`), eighth session, tuning only; --replay re-prints a run's
summary and what a check deciding on each kind alone would have put live:

  ~/.cache/engram/venv/bin/python scripts/contextual_variants.py --only center,stretch \
      --agreement center,stretch --kinds name-topic,name-topic2 \
      --out benches/results/contextual_variants_tuning_nametopic.json phones hotels insurers
  ~/.cache/engram/venv/bin/python scripts/contextual_variants.py --agreement center,stretch \
      --kinds name-topic,name-topic2 --replay benches/results/contextual_variants_tuning_nametopic.json

MiniLM vectors are cached under ~/.cache/engram/ctx4/ (NAME_docs.npy, NAME_queries.npy).
"""
import argparse
import json
import math
import os

import numpy as np

MODEL = "/root/.cache/engram/models/all-minilm-l6-v2"
CACHE = os.path.expanduser("~/.cache/engram/ctx4")
SIZES = (50, 100, 300, 1000, 3000)
Z = 1.5


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def ndcg(S, rel):
    out = []
    for i, rs in enumerate(rel):
        top = np.argsort(-S[i], kind="stable")[:10]
        rs = set(rs)
        dcg = sum(1 / math.log2(p + 2) for p, d in enumerate(top) if d in rs)
        out.append(dcg / sum(1 / math.log2(p + 2) for p in range(min(10, len(rs)))))
    return np.array(out)


_model = None


def encode(texts):
    global _model
    if _model is None:
        import torch
        from sentence_transformers import SentenceTransformer
        torch.set_num_threads(1)
        _model = SentenceTransformer(MODEL, device="cpu")
    return _model.encode(texts, batch_size=64, convert_to_numpy=True)


def collections(names):
    """(corpus, size, unit doc vectors, unit query vectors, relevant, doc texts) per size."""
    os.makedirs(CACHE, exist_ok=True)
    for name in names:
        d = json.load(open(f"tests/data/niche_{name}.json"))
        docs = d["documents"]
        vecs = {}
        for part, texts in (("docs", [x["text"] for x in docs]), ("queries", [q["text"] for q in d["queries"]])):
            path = f"{CACHE}/{name}_{part}.npy"
            if not os.path.exists(path):
                np.save(path, encode(texts))
            vecs[part] = np.load(path)
        n = len(docs)
        rel = [[i for i, x in enumerate(docs) if (x["entity"], x["topic"]) == (q["entity"], q["topic"])]
               for q in d["queries"]]
        for size in sorted(set(min(s, n) for s in SIZES)):
            keep = list(range(n)) if size >= n else [i * n // size for i in range(size)]
            new = {o: j for j, o in enumerate(keep)}
            qi = [k for k, r in enumerate(rel) if any(x in new for x in r)]
            R = [[new[x] for x in rel[k] if x in new] for k in qi]
            yield name, size, unit(vecs["docs"][keep]), unit(vecs["queries"][qi]), R, [docs[i]["text"] for i in keep]


# ---- variants: f(D, Q) -> scores (queries x documents); D, Q unit rows ----

def knn(D, k, X=None):
    """Mean of the k nearest documents to each row of X (D itself, self excluded) and their sims."""
    own = X is None
    S = D @ D.T if own else X @ D.T
    if own:
        np.fill_diagonal(S, -np.inf)
    idx = np.argsort(-S, axis=1)[:, :k]
    return D[idx].mean(1), np.take_along_axis(S, idx, 1)


def centred(D, Q, a=1.0):
    mu = D.mean(0)
    return unit(D - a * mu), unit(Q - a * mu)


def v_center(D, Q, a=1.0):
    Dc, Qc = centred(D, Q, a)
    return Qc @ Dc.T


def v_neighbours(D, Q, k, b, cen):
    """Document-side smoothing: d + b * mean of its k nearest documents."""
    M, _ = knn(D, k)
    D2 = unit(D + b * M)
    if cen:
        mu = D.mean(0)
        return unit(Q - mu) @ unit(D2 - mu).T
    return Q @ D2.T


def v_rocchio(D, Q, m, a, cen):
    """Query-side pseudo-relevance feedback: q + a * mean of its top-m documents."""
    if cen:
        D, Q = centred(D, Q)
    M, _ = knn(D, m, Q)
    return unit(Q + a * M) @ D.T


def v_standardise(D, Q, lam):
    """Centre, divide each dimension by its standard deviation shrunk toward the mean variance."""
    mu = D.mean(0)
    var = ((D - mu) ** 2).mean(0)
    s = np.sqrt((1 - lam) * var + lam * var.mean())
    return unit((Q - mu) / s) @ unit((D - mu) / s).T


def v_csls(D, Q, k, beta, cen):
    """Hubness correction: cosine minus beta * the document's mean similarity to its k neighbours."""
    if cen:
        D, Q = centred(D, Q)
    _, s = knn(D, k)
    return Q @ D.T - beta * s.mean(1)[None, :]


def v_mix(D, Q, w):
    return (1 - w) * (Q @ D.T) + w * v_center(D, Q)


def v_nn_residual(D, Q, r):
    """Centre, project out the top r directions of the documents' nearest-neighbour residuals."""
    S = D @ D.T
    np.fill_diagonal(S, -np.inf)
    _, _, vt = np.linalg.svd(D - D[S.argmax(1)], full_matrices=False)
    v, mu = vt[:r], D.mean(0)
    f = lambda X: unit((X - mu) - (X - mu) @ v.T @ v)
    return f(Q) @ f(D).T


def v_top_stretch(D, Q, r, g):
    """Centre, then add g times the projection on the top r principal directions."""
    mu = D.mean(0)
    _, _, vt = np.linalg.svd(D - mu, full_matrices=False)
    v = vt[:r]
    f = lambda X: unit((X - mu) + g * (X - mu) @ v.T @ v)
    return f(Q) @ f(D).T


def ledoit_wolf(X):
    """Engram's `context::ledoit_wolf` on centred rows X."""
    n, d = X.shape
    S = X.T @ X / n
    mu = np.trace(S) / d
    frob = (S ** 2).sum()
    dist = frob - d * mu * mu
    spread = max(((X ** 2).sum(1) ** 2).sum() / (n * n) - frob / n, 0.0)
    return min(spread, dist) / dist if dist > 0 else 1.0


def v_spectrum(D, Q, power, lam=None):
    """Centre, scale each principal direction by its shrunk eigenvalue to `power` (-1/2
    whitens). lam None: Engram's whitening shrinkage, max(0.3, d/(d+n), Ledoit-Wolf)."""
    mu = D.mean(0)
    X = D - mu
    n, d = X.shape
    if lam is None:
        lam = max(0.3, d / (d + n), ledoit_wolf(X))
    w, U = np.linalg.eigh(X.T @ X / n)
    w = (1 - lam) * np.maximum(w, 0) + lam * np.maximum(w, 0).mean()
    W = U @ np.diag(np.maximum(w, 1e-12) ** power) @ U.T
    return unit((Q - mu) @ W) @ unit((D - mu) @ W).T


def variants():
    V = {"minilm": lambda D, Q: Q @ D.T, "center": v_center}
    for a in (0.5, 1.5):
        V[f"center x{a}"] = lambda D, Q, a=a: v_center(D, Q, a)
    for k in (3, 5, 10):
        for b in (0.5, 1.0):
            for c in (0, 1):
                V[f"neighbours k{k} b{b}{' +center' if c else ''}"] = lambda D, Q, k=k, b=b, c=c: v_neighbours(D, Q, k, b, c)
    for m in (3, 5, 10):
        for a in (0.5, 1.0):
            for c in (0, 1):
                V[f"rocchio m{m} a{a}{' +center' if c else ''}"] = lambda D, Q, m=m, a=a, c=c: v_rocchio(D, Q, m, a, c)
    for lam in (0.1, 0.3, 0.5, 0.8):
        V[f"standardise shrink {lam}"] = lambda D, Q, lam=lam: v_standardise(D, Q, lam)
    for k in (5, 10):
        for beta in (0.5, 1.0):
            for c in (0, 1):
                V[f"csls k{k} b{beta}{' +center' if c else ''}"] = lambda D, Q, k=k, beta=beta, c=c: v_csls(D, Q, k, beta, c)
    V["mix minilm/center 0.5"] = lambda D, Q: v_mix(D, Q, 0.5)
    for r in (1, 4, 16):
        V[f"nn-residual r{r} removed"] = lambda D, Q, r=r: v_nn_residual(D, Q, r)
    for r in (4, 8, 16, 32):
        for g in (0.5, 1.0, 2.0):
            V[f"top-{r} stretched x{1 + g}"] = lambda D, Q, r=r, g=g: v_top_stretch(D, Q, r, g)
    for p in (-0.5, -0.25, 0.0625, 0.125, 0.1875, 0.25, 0.375, 0.5):
        for lam in (0.3, 0.7, None):
            tag = "engram shrink" if lam is None else f"shrink {lam}"
            name = "stretch" if (p, lam) == (0.125, 0.7) else f"spectrum^{p} {tag}"
            V[name] = lambda D, Q, p=p, lam=lam: v_spectrum(D, Q, p, lam)
    return V


def cutter(kind):
    """The pseudo-query cutter of `kind`: the swap kinds' (`swap_queries.py`) or the
    title/span/pair/... ones (`pseudo_query_agreement.py`)."""
    import swap_queries
    from pseudo_query_agreement import cut
    return swap_queries.cut if kind in swap_queries.KINDS else cut


def agreement(colls, V, names, kinds=("title", "span", "pair")):
    """Per collection: real gain and each kind's pseudo-query gain with its bound."""
    out = []
    for name, size, D, Q, R, texts in colls:
        rng = np.random.default_rng(23)
        pq = {k: cutter(k)(texts, k, rng) for k in kinds}
        P = {k: unit(encode(v[0])) for k, v in pq.items() if v[0]}
        for vn in names:
            f = V[vn]
            cell = {"corpus": name, "documents": size, "variant": vn,
                    "real_gain": float(ndcg(f(D, Q), R).mean() - ndcg(Q @ D.T, R).mean()), "kinds": {}}
            for k, X in P.items():
                diff = ndcg(f(D, X), pq[k][1]) - ndcg(X @ D.T, pq[k][1])
                se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("inf")
                cell["kinds"][k] = {"queries": len(diff), "gain": float(diff.mean()), "lower_bound": float(diff.mean() - Z * se)}
            out.append(cell)
            print(f"{vn:10s} {name:9s} {size:5d} real {100 * cell['real_gain']:+5.1f} | " + " ".join(
                f"{k} {100 * c['gain']:+.1f} (bound {100 * c['lower_bound']:+.1f})" for k, c in cell["kinds"].items()), flush=True)
    summarise(out, names, kinds)
    return out


def summarise(out, names, kinds):
    """Per variant and kind: sign agreement, rank correlation, where the bound clears 0;
    per kind: what a self-check deciding on that kind alone would put live (of `names`,
    the highest bound above 0, else MiniLM) and the real gain that gives."""
    for vn in names:
        cells = [c for c in out if c["variant"] == vn]
        for k in kinds:
            have = [c for c in cells if k in c["kinds"]]
            agree = sum(1 for c in have if (c["kinds"][k]["gain"] > 0) == (c["real_gain"] > 0))
            live = [c["real_gain"] for c in have if c["kinds"][k]["lower_bound"] > 0]
            rho = spearman([c["kinds"][k]["gain"] for c in have], [c["real_gain"] for c in have])
            print(f"{vn}: {k} sign agrees on {agree}/{len(cells)} (rank correlation {rho:+.2f}); bound > 0 on "
                  f"{len(live)}, real gain there {' '.join(f'{100 * g:+.1f}' for g in live) or '-'}")
    rows = sorted({(c["corpus"], c["documents"]) for c in out}, key=lambda r: [(c["corpus"], c["documents"]) for c in out].index(r))
    for k in kinds:
        gains, picks = [], []
        for row in rows:
            cells = [c for c in out if (c["corpus"], c["documents"]) == row and c["variant"] in names
                     and k in c["kinds"] and c["kinds"][k]["lower_bound"] > 0]
            best = max(cells, key=lambda c: c["kinds"][k]["lower_bound"], default=None)
            gains.append(best["real_gain"] if best else 0.0)
            picks.append(best["variant"] if best else "minilm")
        print(f"chosen on {k} alone: mean {100 * np.mean(gains):+.2f}, worst {100 * min(gains):+.1f} over {len(rows)} rows ("
              + ", ".join(f"{r[0][:2]}{r[1]} {p}" for r, p in zip(rows, picks) if p != "minilm") + ")")


def spearman(a, b):
    """Rank correlation of two equal-length lists (nan below 3 items)."""
    if len(a) < 3:
        return float("nan")
    ra, rb = (np.argsort(np.argsort(x)) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main():
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("corpora", nargs="*", help="niche corpus names (tests/data/niche_NAME.json)")
    ap.add_argument("--out")
    ap.add_argument("--agreement", default="", help="comma-separated variants to check pseudo-queries for")
    ap.add_argument("--kinds", default="title,span,pair", help="pseudo-query kinds --agreement asks (swap kinds: swap_queries.py)")
    ap.add_argument("--replay", help="only summarise the agreement in this --out file (no model, no scoring)")
    ap.add_argument("--only", default="", help="comma-separated variants to score (held-out runs: the chosen ones)")
    args = ap.parse_args()
    if args.replay:
        agree = json.load(open(args.replay))["agreement"]
        summarise(agree, [a for a in args.agreement.split(",") if a], args.kinds.split(","))
        return
    colls = list(collections(args.corpora))
    V = variants()
    if args.only:
        V = {n: V[n] for n in ["minilm"] + args.only.split(",")}
    base = [ndcg(c[3] @ c[2].T, c[4]).mean() for c in colls]
    print(f"{'variant':34s} " + " ".join(f"{c[0][:2]}{c[1]:<5d}" for c in colls) + "   mean  worst")
    table = []
    for vn, f in V.items():
        g = [100 * (ndcg(f(c[2], c[3]), c[4]).mean() - b) for c, b in zip(colls, base)]
        table.append({"variant": vn, "gain_points": g, "mean": float(np.mean(g)), "worst": float(min(g))})
        print(f"{vn:34s} " + " ".join(f"{x:+7.1f}" for x in g) + f"  {np.mean(g):+5.2f} {min(g):+6.1f}", flush=True)
    agree = agreement(colls, V, [a for a in args.agreement.split(",") if a], args.kinds.split(",")) if args.agreement else []
    if args.out:
        json.dump({"collections": [{"corpus": c[0], "documents": c[1], "queries": len(c[3]), "minilm": float(b)}
                                   for c, b in zip(colls, base)],
                   "variants": table, "agreement": agree, "z": Z}, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
