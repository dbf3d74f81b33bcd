"""Name-swap pseudo-queries for the self-check study (issue 23): no model, no labels.

Why: the shipped kinds (title, sentence, span, pair) ask for their own document by its
own words, so they reward whatever keeps a document's exact wording close: centring and
stretch lose on them while gaining on the real queries (sign agreement 2 to 5 of 12 on
the tuning rows). A real query on a templated corpus names an entity and a topic and
wants every document about both, in any template's words. A swap query takes a
document, drops its names and puts in the name of a *sibling* (a document sharing at
least half its lower-case words: the same template, most often another entity); every
sibling holding that name is relevant, and the source itself is not. Copying the
source's wording does not win: the encoder must weigh the name over the words shared.

Names: words with a capital letter seen mid-sentence somewhere in the collection. The
name put in: the sibling's name in most documents among those the source lacks.
"""
import math
import re
from collections import Counter

WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'&.-]*[A-Za-z0-9]|[A-Za-z0-9]")
STOP = set("a an the of to in on for and or is are be by with at from your you it its as this that can if not".split())
KINDS = ("swap", "swap-short", "keep", "name-topic", "name-topic2", "name-topic3", "name-topic2h")


def starts_sentence(text, at):
    before = text[:at].rstrip(" \"'(")
    return not before or before[-1] in ".?!:;"


def cut(texts, kind, rng, most=300, share=0.5):
    """Pseudo-queries of `kind` from up to `most` of `texts` and their relevant documents.

    swap: another name + the source's words without its names; swap-short: that name +
    the source's two rarest lower-case words (longer than 3 letters), relevant where all
    three occur; keep: the source's own most widespread name + its other words (the
    control: the source and its siblings with that name relevant)."""
    n = len(texts)
    W = [WORD.findall(t) for t in texts]
    L = [set(w.lower() for w in ws) for ws in W]
    df = Counter(w for s in L for w in s)
    names = {m.group().lower() for t in texts for m in WORD.finditer(t)
             if any(c.isupper() for c in m.group()) and not starts_sentence(t, m.start())}
    names = {w for w in names if df[w] >= 2 and w not in STOP}
    words = [{w for w in s if w not in names and w not in STOP and df[w] >= 2 and not w[0].isdigit()} for s in L]
    qs, rel = [], []
    for d in range(n) if n <= most else [i * n // most for i in range(most)]:
        own = words[d]
        if len(own) < 2:
            continue
        need = math.ceil(share * len(own))
        siblings = [j for j in range(n) if j != d and len(words[j] & own) >= need]
        rest = [w for w in W[d] if w.lower() not in names]
        if kind == "keep":
            mine = sorted((w for w in L[d] if w in names), key=lambda w: (-df[w], w))
            if not mine:
                continue
            name = mine[0]
        else:
            choices = []
            for j in siblings:
                new = sorted((w for w in L[j] - L[d] if w in names), key=lambda w: (-df[w], w))
                if new:
                    choices.append(new[0])
            if not choices:
                continue
            name = choices[rng.integers(len(choices))]
        shown = Counter(w for ws in W for w in ws if w.lower() == name).most_common(1)[0][0]
        if kind in ("swap-short", "name-topic", "name-topic2", "name-topic3", "name-topic2h"):
            if kind == "swap-short":
                two = sorted((w for w in own if len(w) > 3), key=lambda w: (df[w], w))[:2]
            else:  # the most widespread words under a quarter of the documents: topic-like
                cap = n / 2 if kind == "name-topic2h" else n / 4
                wide = sorted((w for w in own if len(w) > 3 and df[w] <= cap), key=lambda w: (-df[w], w))
                two = {"name-topic": wide[:1] * 2, "name-topic3": wide[:3]}.get(kind, wide[:2])
            if len(two) < 2:
                continue
            q = " ".join([shown] + sorted(set(two)))
            r = [j for j in range(n) if name in L[j] and set(two) <= L[j]]
        else:
            q = " ".join([shown] + rest)
            r = [j for j in siblings + [d] if name in L[j]]
        if r:
            qs.append(q)
            rel.append(sorted(r))
    return qs, rel
