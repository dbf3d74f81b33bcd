#!/usr/bin/env python3
"""Writes inverter/data/pii_eval.jsonl: the held-out PII evaluation set.

Short texts with planted secrets (full names, e-mail addresses, phone and account
numbers), built from the templates and name lists below and nothing else. Written
once, before any tuning; the tuning set (make_pii_tune.py) uses other templates and
Faker's name lists, so nothing here is tuned on. Stdlib only, seeded: rerunning it
writes the same file.

Each line: {"id", "text", "secrets": [{"kind": "name"|"email"|"phone"|"number",
"value"}]} with every value a substring of the text.
"""
import json
import random
import sys

FIRST = [
    "Dmitri", "Ingrid", "Tomasz", "Aiko", "Rafael", "Sunniva", "Kwame", "Oksana",
    "Matteo", "Priya", "Henrik", "Leilani", "Bogdan", "Yusuf", "Marisol", "Anneke",
    "Florin", "Chiara", "Ravi", "Solveig", "Emeka", "Greta", "Lorcan", "Noor",
    "Vasco", "Hania", "Callum", "Zofia", "Tariq", "Beatriz", "Ansel", "Ilse",
    "Joaquin", "Minna", "Desmond", "Keiko", "Stellan", "Amara", "Ruairi", "Jelena",
]
LAST = [
    "Lindqvist", "Okonkwo", "Brezina", "Halvorsen", "Castellano", "Nakamura",
    "Vukovic", "Thorsby", "Adebayo", "Marchetti", "Kowalczyk", "Fairbanks",
    "Achterberg", "Quintero", "Haddad", "Sorensen", "Petrescu", "Mbeki", "Dunleavy",
    "Varga", "Ishikawa", "Moreau", "Albrecht", "Oyelaran", "Kristiansen", "Baptiste",
    "Ferreira", "Novak", "Whitcombe", "Rasmussen", "Delacroix", "Abernathy",
    "Szabo", "Gallagher", "Esposito", "Lindgren", "Obi", "Yamamoto", "Hartley",
    "Zeller",
]
DOMAINS = [
    "fabrikam.com", "contoso.org", "northwind.net", "tailspin.io", "adatum.co",
    "litware.com", "proseware.net", "wingtip.org",
]
TEMPLATES = [
    "Please wire the deposit to {name} at {email} before Friday.",
    "Patient {name} was discharged today; follow-up calls go to {phone}.",
    "Refund approved for account {account}, holder {name}, contact {email}.",
    "Ticket escalated: {name} cannot log in, reach them on {phone} or {email}.",
    "Invoice for {name} is overdue; the card on file ends with account {account}.",
    "Our new hire {name} starts Monday, desk phone {phone}.",
    "Lab results for {name} were sent to {email} this morning.",
    "Transfer of 4,200 euros from account {account} was flagged; owner {name}.",
    "Reminder: {name} asked to be called back at {phone} after lunch.",
    "Loan application from {name}, e-mail {email}, account {account}.",
]


def phone(rng):
    form = rng.randrange(3)
    if form == 0:
        return f"+1 {rng.randint(201, 989)} {rng.randint(200, 999)} {rng.randint(0, 9999):04d}"
    if form == 1:
        return f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
    return f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"


def account(rng):
    return "".join(str(rng.randrange(10)) for _ in range(rng.choice([8, 10, 12])))


def email(rng, first, last):
    f, l = first.lower(), last.lower()
    local = rng.choice([f"{f}.{l}", f"{f[0]}{l}", f"{f}_{l}", f"{f}{l}"])
    return f"{local}@{rng.choice(DOMAINS)}"


def main(n=40, seed=2026):
    rng = random.Random(seed)
    firsts, lasts = FIRST[:], LAST[:]
    rng.shuffle(firsts)
    rng.shuffle(lasts)
    out = []
    for i in range(n):
        first, last = firsts[i % len(firsts)], lasts[i % len(lasts)]
        name = f"{first} {last}"
        values = {"name": name, "email": email(rng, first, last),
                  "phone": phone(rng), "account": account(rng)}
        template = TEMPLATES[i % len(TEMPLATES)]
        text = template.format(**values)
        secrets = []
        for key in ("name", "email", "phone", "account"):
            if "{" + key + "}" in template:
                kind = "number" if key == "account" else key
                assert values[key] in text
                secrets.append({"kind": kind, "value": values[key]})
        out.append({"id": f"pii-eval-{i:03d}", "text": text, "secrets": secrets})
    for row in out:
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
