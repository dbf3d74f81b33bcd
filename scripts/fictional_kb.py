#!/usr/bin/env python3
"""Writes two fictional knowledge bases for `engram eval weights` (issue 22): short
documents about invented entities (names built from random syllables, so no model can
have seen them), each with questions phrased unlike the documents and their answers.

  tests/data/fictional_tuning.jsonl    TUNING KB: invented companies (founder, year,
                                       town, head count). Settings are chosen here.
  tests/data/fictional_heldout.jsonl   HELD-OUT KB: invented observatories (director,
                                       opening year, mountain, altitude), other
                                       entities, other document and question
                                       templates; run once with the chosen setting.

Both were split before any tuning: they share no entity, no name and no template.
Each fact has two questions in two phrasings, one after the other: `engram eval
weights` asks the even-numbered one through rag as a user would (logged; its gold
answer is never read) and holds the odd-numbered one out as the test, so the test
asks, in other words, a fact a user asked about before. Gold answers are used only
for scoring.

The format is the Quoref extract's (one JSON object per line: {"id", "text",
"questions": [{"question", "answer", "answers"}]}). Deterministic (seeded); rerun to
regenerate: python3 scripts/fictional_kb.py
"""
import json
import os
import random

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")

ONSETS = ["br", "k", "v", "th", "m", "z", "gr", "l", "d", "sk", "p", "f", "h", "n", "tr", "w"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ou", "y"]
CODAS = ["n", "r", "l", "sk", "th", "m", "x", "nd", "v", "rt"]


def word(rng, syllables):
    parts = []
    for _ in range(syllables):
        parts.append(rng.choice(ONSETS) + rng.choice(VOWELS))
    parts.append(rng.choice(CODAS))
    return "".join(parts).capitalize()


def person(rng, used):
    while True:
        name = f"{word(rng, 1)}{rng.choice(['a', 'o', 'ie', 'en'])} {word(rng, 2)}"
        if name not in used:
            used.add(name)
            return name


def unique(rng, used, make):
    while True:
        name = make()
        if name not in used:
            used.add(name)
            return name


# Tuning KB: companies. Two document templates, two question phrasings per fact.
COMPANY_DOCS = [
    "{name} was founded in {year} by {founder} in the town of {town}. Today the firm employs {staff} people and sells {product}.",
    "Based in {town}, {name} makes {product}. {founder} started the business in {year}, and its payroll now counts {staff} employees.",
]
COMPANY_FACTS = [
    ("founder", ["Who is the person that set up {name}?", "Which entrepreneur launched {name}?"]),
    ("year", ["In what year did {name} begin operating?", "When was {name} established?"]),
    ("town", ["Where does {name} have its base?", "In which town is {name} located?"]),
    ("staff", ["How many workers does {name} have?", "What is the size of the workforce at {name}?"]),
]
PRODUCTS = ["ceramic roof tiles", "bicycle lamps", "pickled herring", "wool blankets",
            "clock springs", "rope ladders", "glass buttons", "canvas tents", "copper kettles",
            "paper lanterns"]

# Held-out KB: observatories. Other templates for documents and questions.
OBSERVATORY_DOCS = [
    "High on Mount {mountain}, at {altitude} metres, stands the {name}. It opened its dome in {year}, and {director} was the first scientist to lead it.",
    "The {name} was inaugurated in {year} under its founding director {director}. The telescope sits {altitude} metres above sea level on the slopes of Mount {mountain}.",
]
OBSERVATORY_FACTS = [
    ("director", ["Name the astronomer who first ran the {name}.", "The {name} had which scientist as its first head?"]),
    ("year", ["Since which year has the {name} been open?", "The {name} started observing in what year?"]),
    ("mountain", ["On which peak was the {name} built?", "The {name} can be found on what mountain?"]),
    ("altitude", ["At what height above the sea is the {name}?", "How many metres up is the {name}?"]),
]


def company(rng, used, i):
    name = unique(rng, used, lambda: f"{word(rng, 2)} {rng.choice(['Works', 'Industries', 'Trading', 'Supply'])}")
    facts = dict(
        name=name,
        founder=person(rng, used),
        year=str(rng.randint(1901, 1999)),
        town=unique(rng, used, lambda: word(rng, 2) + rng.choice(["by", "holm", "stad", "ford"])),
        staff=str(rng.randint(12, 4900)),
        product=PRODUCTS[i % len(PRODUCTS)],
    )
    return facts, COMPANY_DOCS[i % len(COMPANY_DOCS)], COMPANY_FACTS


def observatory(rng, used, i):
    facts = dict(
        name=unique(rng, used, lambda: f"{word(rng, 2)} Observatory"),
        director=person(rng, used),
        year=str(rng.randint(1850, 1990)),
        mountain=unique(rng, used, lambda: word(rng, 2)),
        altitude=str(rng.randint(800, 4800)),
    )
    return facts, OBSERVATORY_DOCS[i % len(OBSERVATORY_DOCS)], OBSERVATORY_FACTS


def kb(prefix, make, count, seed, used):
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        facts, doc, questions = make(rng, used, i)
        qs = []
        for key, phrasings in questions:
            for p in phrasings:  # even index: logged (asked through rag); odd: test
                answer = facts[key]
                qs.append({"question": p.format(**facts), "answer": answer, "answers": [answer]})
        lines.append({"id": f"{prefix}-{i}", "text": doc.format(**facts), "questions": qs})
    return lines


def write(name, lines):
    path = os.path.join(ROOT, name)
    with open(path, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    print(f"{path}: {len(lines)} documents, {sum(len(l['questions']) for l in lines)} questions")


def main():
    used = set()  # no name is shared between (or within) the two knowledge bases
    write("fictional_tuning.jsonl", kb("co", company, 8, 22, used))
    write("fictional_heldout.jsonl", kb("obs", observatory, 8, 2022, used))


if __name__ == "__main__":
    main()
