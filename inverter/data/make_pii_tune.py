#!/usr/bin/env python3
"""Writes inverter/data/pii_tune.jsonl: the PII tuning set (settings are chosen here,
never on pii_eval.jsonl).

Other templates than the evaluation set's, and names, e-mail addresses, phone and
account numbers from the Faker package (several locales, ASCII names only). Any
record whose first or last name occurs in the evaluation set's lists is skipped, so
the two sets share no name. Run once with Faker installed
(`python3 -m venv ~/.cache/engram/faker-venv && ~/.cache/engram/faker-venv/bin/pip
install faker`); the output is committed and nothing at test time needs Faker.
"""
import json
import sys

from faker import Faker

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import make_pii_eval  # noqa: E402  (its name lists, to keep the sets apart)

LOCALES = ["en_US", "en_GB", "de_DE", "nl_NL", "sv_SE", "it_IT", "es_ES", "pl_PL"]
TEMPLATES = [
    "Hi team, {name} from accounts says the statement went to {email}.",
    "Call {name} on {phone} to confirm the appointment.",
    "Customer {name} disputes a charge on account {account}.",
    "Nurse note: {name} reports mild pain, daughter reachable at {phone}.",
    "Send the signed contract to {email}, attention {name}.",
    "Payroll updated for {name}, salary now paid into {account}.",
    "Support case 17: {name} ({email}) wants a callback on {phone}.",
    "The landlord, {name}, listed {phone} as the emergency number.",
]
BANNED = {w.lower() for w in make_pii_eval.FIRST + make_pii_eval.LAST}


def ascii_name(s):
    return s.isascii() and s.replace("-", "").isalpha()


def main(n=200, seed=7):
    fakers = [Faker(loc) for loc in LOCALES]
    for i, f in enumerate(fakers):
        f.seed_instance(seed + i)
    out, i = [], 0
    while len(out) < n:
        fk = fakers[i % len(fakers)]
        i += 1
        first, last = fk.first_name(), fk.last_name()
        if not (ascii_name(first) and ascii_name(last)):
            continue
        if first.lower() in BANNED or last.lower() in BANNED:
            continue
        name = f"{first} {last}"
        local = fk.random_element([f"{first}.{last}", f"{first[0]}{last}", f"{first}{last}"])
        values = {
            "name": name,
            "email": f"{local.lower()}@{fk.free_email_domain()}",
            "phone": fk.phone_number(),
            "account": fk.bban() if fk.random_int(0, 1) else fk.msisdn(),
        }
        template = TEMPLATES[len(out) % len(TEMPLATES)]
        text = template.format(**values)
        secrets = []
        for key in ("name", "email", "phone", "account"):
            if "{" + key + "}" in template:
                secrets.append({"kind": "number" if key == "account" else key,
                                "value": values[key]})
        out.append({"id": f"pii-tune-{len(out):03d}", "text": text, "secrets": secrets})
    for row in out:
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
