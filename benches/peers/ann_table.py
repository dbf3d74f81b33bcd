#!/usr/bin/env python3
"""Summarise ANN sweep JSON lines (from bin/ann and ann_peers.py) into one table.

For each engine (and data set): the lowest ef whose recall@10 reaches the target
(default 0.95), the QPS there, and the build time; then the ratios Engram/hnswlib
and Engram/faiss. Because the lowest ef of a coarse sweep can land two engines
at different recalls, each ratio is also given at *equal* recall: Engram's QPS
interpolated on its own curve (log QPS linear in recall between the two sweep
points around it) at exactly the recall the peer reached at its operating point.
When the sweep was repeated (several JSON lines for the same
engine and ef), QPS, recall and build time are the medians over the repeats.
Standard library only.

Usage: python3 benches/peers/ann_table.py RESULTS.jsonl [--target 0.95]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict


def qps_at(curve: list[dict], recall: float) -> float | None:
    """QPS at `recall` on a sweep curve (ordered by ef), log-linear between the
    two neighbouring points; None where the curve never reaches it."""
    for lo, hi in zip(curve, curve[1:]):
        if lo["recall"] <= recall <= hi["recall"] and hi["recall"] > lo["recall"]:
            t = (recall - lo["recall"]) / (hi["recall"] - lo["recall"])
            return math.exp(math.log(lo["qps"]) + t * (math.log(hi["qps"]) - math.log(lo["qps"])))
    exact = [c["qps"] for c in curve if c["recall"] == recall]
    return max(exact) if exact else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--target", type=float, default=0.95)
    args = ap.parse_args()

    runs: dict[tuple[str, str], dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for path in args.files:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                if "ef" in r and "qps" in r:
                    runs[(r["dataset"], r["engine"])][r["ef"]].append(r)
    if not runs:
        sys.exit("no results")

    summary: dict[tuple[str, str], dict] = {}
    for (ds, eng), by_ef in runs.items():
        curve = []
        for ef in sorted(by_ef):
            rs = by_ef[ef]
            curve.append({"ef": ef,
                          "recall": statistics.median(r["recall@10"] for r in rs),
                          "qps": statistics.median(r["qps"] for r in rs),
                          "build_s": statistics.median(r["build_s"] for r in rs),
                          "build_threads": rs[0].get("build_threads"),
                          "repeats": len(rs)})
        hit = next((c for c in curve if c["recall"] >= args.target), None)
        summary[(ds, eng)] = {"curve": curve, "at": hit,
                              "best_recall": max(c["recall"] for c in curve)}

    datasets = sorted({ds for ds, _ in summary})
    order = {"engram": 0, "engram-f32": 1, "engram-int8": 1, "hnswlib": 2, "faiss": 3}
    for ds in datasets:
        engines = sorted((e for d, e in summary if d == ds), key=lambda e: (order.get(e, 9), e))
        print(f"\n== {ds}: full sweep (recall@10 / QPS, single-thread search) ==")
        efs = sorted({c["ef"] for e in engines for c in summary[(ds, e)]["curve"]})
        print("ef".rjust(6) + "".join(f"{e:>22}" for e in engines))
        for ef in efs:
            cells = []
            for e in engines:
                c = next((c for c in summary[(ds, e)]["curve"] if c["ef"] == ef), None)
                cells.append(f"{c['recall']:.4f} / {c['qps']:>9.1f}" if c else "-")
            print(f"{ef:>6}" + "".join(f"{c:>22}" for c in cells))

        print(f"\n== {ds}: lowest ef with recall@10 >= {args.target} ==")
        print(f"{'engine':<13}{'ef':>6}{'recall@10':>11}{'QPS':>11}{'build_s':>10}{'threads':>9}")
        for e in engines:
            s = summary[(ds, e)]
            at = s["at"]
            b = s["curve"][0]
            if at is None:
                print(f"{e:<13}{'-':>6}{'max ' + format(s['best_recall'], '.4f'):>11}{'-':>11}"
                      f"{b['build_s']:>10.2f}{b['build_threads'] or '?':>9}")
            else:
                print(f"{e:<13}{at['ef']:>6}{at['recall']:>11.4f}{at['qps']:>11.1f}"
                      f"{at['build_s']:>10.2f}{at['build_threads'] or '?':>9}")
        for ours in (e for e in engines if e.startswith("engram")):
            eg = summary[(ds, ours)]
            for peer in ("hnswlib", "faiss"):
                p = summary.get((ds, peer))
                if p is None:
                    continue
                qps = (f"{eg['at']['qps'] / p['at']['qps']:.2f}x"
                       if eg["at"] and p["at"] else "n/a (target not reached)")
                equal = "n/a"
                if p["at"]:
                    mine = qps_at(eg["curve"], p["at"]["recall"])
                    if mine is not None:
                        equal = (f"{mine / p['at']['qps']:.2f}x "
                                 f"({mine:.1f} QPS at recall {p['at']['recall']:.4f})")
                build = eg["curve"][0]["build_s"] / p["curve"][0]["build_s"]
                print(f"{ours}/{peer}: QPS at recall>={args.target} {qps}; "
                      f"at equal recall {equal}; build time {build:.2f}x")


if __name__ == "__main__":
    main()
