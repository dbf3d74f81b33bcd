#!/usr/bin/env python3
"""Engram side of the end-to-end benchmark: the same workload as chroma_peer.py,
through Engram's REST API (a real client over loopback HTTP, one keep-alive
connection), against a running `engram serve`.

  insert  one passage per request: POST /collections/quoref/documents; the server
          embeds it (all 64-token windows of the whole passage, not just the first
          256 tokens) and syncs the RocksDB WAL before answering.
  query   one question per request: POST /collections/quoref/query, k=10, text in.

Prints JSON lines of the same shape as chroma_peer.py.
Run: ~/.cache/engram/venv/bin/python benches/peers/engram_http.py --url http://127.0.0.1:6363 [--docs 1000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from workload import load_quoref, stats

CACHE = Path.home() / ".cache" / "engram"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:6363")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--data", type=Path, default=CACHE / "data" / "quoref.jsonl")
    args = ap.parse_args()
    u = urlparse(args.url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)

    def call(method: str, path: str, body=None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        text = r.read()
        if r.status >= 300:
            sys.exit(f"{method} {path}: {r.status} {text[:300]!r}")
        return json.loads(text) if text else {}

    docs, questions = load_quoref(args.data, args.docs, args.queries)

    call("PUT", "/collections/quoref", {})
    lat = []
    for d in docs:
        t0 = time.perf_counter()
        call("POST", "/collections/quoref/documents", {"documents": [{"id": d["id"], "text": d["text"]}]})
        lat.append(time.perf_counter() - t0)
    info = call("GET", "/collections/quoref")
    print(json.dumps({"engine": "engram", "op": "insert",
                      "unit": "one document per request over HTTP, text in (embedding of every window included), WAL synced",
                      "vectors": info["vectors"], **stats(lat)}), flush=True)
    if info["documents"] != len(docs):
        sys.exit(f"collection has {info['documents']} documents, expected {len(docs)}")

    lat, hits, rr = [], 0, 0.0
    for q, want in questions:
        t0 = time.perf_counter()
        res = call("POST", "/collections/quoref/query", {"text": q, "k": 10, "include": []})
        lat.append(time.perf_counter() - t0)
        ids = [h["id"] for h in res["hits"]]
        if want in ids:
            hits += 1
            rr += 1.0 / (ids.index(want) + 1)
    print(json.dumps({"engine": "engram", "op": "query",
                      "unit": "one question per request over HTTP, text in (embedding included), top-10",
                      "corpus": len(docs), **stats(lat),
                      "hit@10": round(hits / len(questions), 4), "mrr@10": round(rr / len(questions), 4)}),
          flush=True)


if __name__ == "__main__":
    main()
