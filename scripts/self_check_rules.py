#!/usr/bin/env python3
"""Replays the self-check's decision under other rules from an `engram eval
contextual-sizes --out` file (issue 23): for each candidate list, with and without the
every-kind rule, and for several z, which variant would have gone live on each
collection and what that gains over MiniLM on the real queries. Files written from the
sixth session on also hold the pair queries: centring goes live on their bound alone
when no candidate passes on the cut kinds (`embedder/src/self_check.rs`).

The file records each variant's mean gain on the pseudo-queries and its lower bound at
the run's z, so the bound at any other z follows. Used on the TUNING corpora only:
  python3 scripts/self_check_rules.py benches/results/eval_contextual_sizes_tuning.json
"""
import json
import sys

CANDIDATES = {
    "default (learned, whiten, center)": ["learned", "whiten", "center"],
    "every variant": None,
    "default + idf-center": ["learned", "whiten", "center", "idf-center"],
}


def at_z(gain, lower_bound, z, run_z):
    return gain - z * (gain - lower_bound) / run_z


def live(figure, z, run_z, candidates, every_kind, pair_route=True):
    """What goes live: the best bound of the candidates passing on the cut kinds; else
    (files from the sixth session on, which hold pair queries) center on its pair bound."""
    best, pair = None, None
    for s in figure["pseudo_query_scores"]:
        name = s["encoder"].removeprefix("contextual-")
        if candidates is not None and name not in candidates:
            continue
        bound = at_z(s["gain"], s["lower_bound"], z, run_z)
        cut = [k for k in s["by_kind"] if k["kind"] != "pair"]
        if bound > 0 and (not every_kind or all(k["gain"] >= 0 for k in cut)):
            if best is None or bound > best[1]:
                best = (name, bound)
        for k in s["by_kind"]:
            if name == "center" and k["kind"] == "pair" and at_z(k["gain"], k["lower_bound"], z, run_z) > 0:
                pair = name
    return best[0] if best else (pair if pair_route else None)


def real(figure, name):
    encoder = "minilm" if name is None else "contextual-" + name
    return next(r["ndcg_at_10"] for r in figure["rows"] if r["encoder"] == encoder)


def main():
    data = json.load(open(sys.argv[1]))
    figures, run_z = data["figures"], data["z"]
    for label, candidates in CANDIDATES.items():
        for every_kind in (True, False):
            for z in (0, 1, 1.5, 2, 2.5, 3):
                chosen = [live(f, z, run_z, candidates, every_kind) for f in figures]
                gains = [100 * (real(f, c) - real(f, None)) for f, c in zip(figures, chosen)]
                cells = " ".join(f"{c or '-'}:{g:+.1f}" for c, g in zip(chosen, gains))
                print(f"{label}, every kind {every_kind}, z {z}: mean {sum(gains) / len(gains):+.2f}, "
                      f"worst {min(gains):+.2f} | {cells}")


if __name__ == "__main__":
    main()
