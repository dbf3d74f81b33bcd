#!/usr/bin/env python3
"""Replays the self-check's decision under other rules from an `engram eval
contextual-sizes --out` file (issue 23): for each candidate list, with and without the
every-kind rule, and for several z, which variant would have gone live on each
collection and what that gains over MiniLM on the real queries.

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


def live(figure, z, run_z, candidates, every_kind):
    best = None
    for s in figure["pseudo_query_scores"]:
        name = s["encoder"].removeprefix("contextual-")
        if candidates is not None and name not in candidates:
            continue
        se = (s["gain"] - s["lower_bound"]) / run_z
        bound = s["gain"] - z * se
        if bound > 0 and (not every_kind or all(k["gain"] >= 0 for k in s["by_kind"])):
            if best is None or bound > best[1]:
                best = (name, bound)
    return best and best[0]


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
