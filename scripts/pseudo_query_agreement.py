#!/usr/bin/env python3
"""Does a kind of pseudo-query agree with the real queries on templated corpora? (issue 23)

The self-check (`embedder/src/self_check.rs`) can only put a context live where its
pseudo-queries say it gains. On the templated niche corpora centring gains on the real
queries while the shipped kinds (title, sentence, span) say it loses. This script tries
other kinds, built from what tells a document apart within its collection, and for
each kind and candidate transform reports, per collection, the real-query gain and the
pseudo-query gain with its lower bound (z 1.5), how often their signs agree, and what
a self-check on that kind alone would have put live and gained on the real queries.

Stage one is real MiniLM (sentence-transformers, the model Engram ships in
~/.cache/engram/models); the niche documents are one sentence each, so its vectors are
the ones Engram's one-window pooling gives (the MiniLM column reproduces
`eval contextual-sizes`' to the third decimal). Candidates are numpy transforms of
them: `center` is Engram's contextual-center; the others are prototypes, not variants
Engram has. Run on the TUNING corpora only (choose there):

  ~/.cache/engram/venv/bin/python scripts/pseudo_query_agreement.py \
      --out benches/results/pseudo_query_agreement_tuning.json phones hotels insurers
"""
import argparse
import json
import math
import re

import numpy as np

MODEL = "/root/.cache/engram/models/all-minilm-l6-v2"
SIZES = (50, 100, 300, 1000, 3000)
Z = 1.5
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'&.-]*[A-Za-z0-9]|[A-Za-z0-9]")
STOP = set("a an the of to in on for and or is are be by with at from your you it its as this that can if not".split())
KINDS = ["title", "span", "idf3", "pair", "pairmid", "strip", "strip-multi", "docq", "docq-ent"]


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def transforms(D, spans):
    """Candidate transforms fitted on the collection's document vectors `D` (and, for
    center-q, on the span pseudo-queries' vectors `spans`)."""
    mu = D.mean(0)
    out = {"center": lambda X: unit(X - mu), "half-center": lambda X: unit(X - mu / 2)}
    qmu = spans.mean(0)
    out["center-q"] = (lambda X: unit(X - mu), lambda X: unit(X - qmu))
    _, _, vt = np.linalg.svd(D - mu, full_matrices=False)
    for k in (1, 2, 4):
        v = vt[:k]
        out[f"top{k}-removed"] = lambda X, v=v: unit((X - mu) - (X - mu) @ v.T @ v)
    return {n: f if isinstance(f, tuple) else (f, f) for n, f in out.items()}


def ndcg(S, rel):
    out = []
    for i, rs in enumerate(rel):
        top = np.argsort(-S[i])[:10]
        dcg = sum(1 / math.log2(p + 2) for p, d in enumerate(top) if d in rs)
        out.append(dcg / sum(1 / math.log2(p + 2) for p in range(min(10, len(rs)))))
    return np.array(out)


def cut(texts, kind, rng, most=300):
    """Pseudo-queries of one kind and their relevant documents (indices)."""
    n = len(texts)
    W = [WORD.findall(t) for t in texts]
    L = [set(w.lower() for w in ws) for ws in W]
    df = {}
    for s in L:
        for w in s:
            df[w] = df.get(w, 0) + 1

    def idf(w):
        return math.log(1 + (n - df[w.lower()] + 0.5) / (df[w.lower()] + 0.5))

    def entity_like(ws):
        return [w for w in ws[1:] if w[0].isupper() and df[w.lower()] >= 2 and w.lower() not in STOP]

    qs, rel = [], []
    for d in range(n) if n <= most else [i * n // most for i in range(most)]:
        ws = W[d]
        if len(ws) < 4:
            continue
        r = [d]
        if kind == "title":  # the shipped kind: at most 16 words, a third dropped
            k = [w for w in ws[:16] if rng.random() >= 1 / 3]
            q = " ".join(k if len(k) >= 2 else ws[:16])
        elif kind == "span":  # the shipped kind: 3 to 6 consecutive words
            length = 3 + rng.integers(4)
            s = rng.integers(max(1, len(ws) - length + 1))
            q = " ".join(ws[s:s + length])
        elif kind == "idf3":  # the document's 3 words of highest collection idf
            top = sorted(range(len(ws)), key=lambda i: -idf(ws[i]))[:3]
            q = " ".join(ws[i] for i in sorted(top))
        elif kind in ("pair", "pairmid"):  # entity-like token + topic-like word; relevant: docs with both
            caps = entity_like(ws)
            low = [w for w in ws if w[0].islower() and w.lower() not in STOP and len(w) > 3 and df[w.lower()] >= 2]
            if not caps or not low:
                continue
            if kind == "pair":
                a, b = caps[rng.integers(len(caps))], low[rng.integers(len(low))]
            else:
                a, b = max(caps, key=lambda w: df[w.lower()]), min(low, key=lambda w: df[w.lower()])
            q = f"{a} {b}"
            r = [j for j in range(n) if a.lower() in L[j] and b.lower() in L[j]]
        elif kind in ("strip", "strip-multi"):  # template words (in > 1/20 of docs) dropped
            keep = [w for w in ws if df[w.lower()] <= max(2, n // 20) or w[0].isupper()]
            if len(keep) < 2:
                continue
            q = " ".join(keep)
            if kind == "strip-multi":  # relevant: docs holding at least half of what is kept
                ks = set(w.lower() for w in keep)
                r = [j for j in range(n) if len(ks & L[j]) >= len(ks) * 0.5]
        else:  # docq / docq-ent: relevant: other docs with its entity-like tokens and rarer words
            caps = set(w.lower() for w in entity_like(ws))
            rare = set(w.lower() for w in ws if df[w.lower()] <= max(2, n // 10) and w.lower() not in STOP) - caps
            if kind == "docq":
                q = texts[d]
                r = [j for j in range(n) if j != d and caps <= L[j] and len(rare & L[j]) >= max(1, len(rare) // 2)]
            else:
                q = " ".join(w for w in ws if w.lower() in caps or w.lower() in rare)
                r = [j for j in range(n) if j != d and caps and caps <= L[j] and rare & L[j]]
            if not r:
                continue
        qs.append(q)
        rel.append(r)
    return qs, rel


def corpus(name):
    d = json.load(open(f"tests/data/niche_{name}.json"))
    texts = [x["text"] for x in d["documents"]]
    rel = [[i for i, x in enumerate(d["documents"]) if (x["entity"], x["topic"]) == (q["entity"], q["topic"])]
           for q in d["queries"]]
    return texts, [q["text"] for q in d["queries"]], rel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpora", nargs="+", help="niche corpus names (tests/data/niche_NAME.json)")
    ap.add_argument("--out")
    args = ap.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(1)
    model = SentenceTransformer(MODEL, device="cpu")
    cache = {}

    def embed(texts):
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        for t, v in zip(new, model.encode(new, batch_size=64, convert_to_numpy=True) if new else []):
            cache[t] = v
        return np.stack([cache[t] for t in texts])

    rows = []
    for name in args.corpora:
        texts, queries, rel = corpus(name)
        n_all = len(texts)
        for size in sorted(set(min(s, n_all) for s in SIZES)):
            keep = list(range(n_all)) if size >= n_all else [i * n_all // size for i in range(size)]
            new = {o: j for j, o in enumerate(keep)}
            real = [(q, [new[d] for d in r if d in new]) for q, r in zip(queries, rel)]
            real = [(q, r) for q, r in real if r]
            sub = [texts[i] for i in keep]
            D, Q = embed(sub), embed([q for q, _ in real])
            rng = np.random.default_rng(23)
            pq = {k: cut(sub, k, rng) for k in KINDS}
            P = {k: embed(v[0]) for k, v in pq.items() if v[0]}
            base_real = ndcg(unit(Q) @ unit(D).T, [r for _, r in real])
            base_pq = {k: ndcg(unit(P[k]) @ unit(D).T, pq[k][1]) for k in P}
            row = {"corpus": name, "documents": size, "queries": len(real), "minilm": base_real.mean(), "candidates": {}}
            for cand, (fd, fq) in transforms(D, P["span"]).items():
                Dt = fd(D)
                cell = {"real_gain": ndcg(fq(Q) @ Dt.T, [r for _, r in real]).mean() - base_real.mean(), "kinds": {}}
                for k in P:
                    diff = ndcg(fq(P[k]) @ Dt.T, pq[k][1]) - base_pq[k]
                    se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("inf")
                    cell["kinds"][k] = {"queries": len(diff), "gain": diff.mean(), "lower_bound": diff.mean() - Z * se}
                row["candidates"][cand] = cell
                print(f"{name:9s} {size:5d} {cand:13s} minilm {base_real.mean():.3f} real {100 * cell['real_gain']:+5.1f} | "
                      + " ".join(f"{k}:{100 * c['gain']:+.1f}" for k, c in cell["kinds"].items()), flush=True)
            rows.append(row)
    summary = []
    for cand in rows[0]["candidates"]:
        for k in KINDS:
            cells = [(r["candidates"][cand]["real_gain"], r["candidates"][cand]["kinds"].get(k)) for r in rows]
            agree = sum(1 for g, c in cells if c and (g > 0) == (c["gain"] > 0))
            live = [g if c and c["lower_bound"] > 0 else 0.0 for g, c in cells]
            s = {"candidate": cand, "kind": k, "rows": len(cells), "sign_agrees": agree,
                 "live_on": sum(1 for g, c in cells if c and c["lower_bound"] > 0),
                 "mean_gain_if_this_kind_decides": float(np.mean(live)), "worst": float(min(live))}
            summary.append(s)
            print(f"{cand:13s} {k:12s} sign agrees on {agree}/{len(cells)} rows; live on {s['live_on']}: "
                  f"mean {100 * s['mean_gain_if_this_kind_decides']:+.2f}, worst {100 * s['worst']:+.2f} points")
    if args.out:
        json.dump({"z": Z, "rows": rows, "summary": summary}, open(args.out, "w"), indent=1, default=float)


if __name__ == "__main__":
    main()
