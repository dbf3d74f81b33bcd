#!/usr/bin/env python3
"""Writes inverter/data/domains.txt: the attacker's e-mail domain dictionary (the
free-mail domains of Faker's internet providers, every locale), one a line. Like
names.txt, a public list a real attacker would bring; the evaluation set's domains
were chosen by hand without looking at it. Run once with Faker installed (see
make_pii_tune.py); the output is committed.
"""
import importlib
import pkgutil
import sys

import faker.providers.internet as internet


def main():
    domains = set()
    for m in pkgutil.iter_modules(internet.__path__):
        try:
            provider = importlib.import_module(f"{internet.__name__}.{m.name}").Provider
        except ImportError:
            continue
        domains.update(d.lower() for d in getattr(provider, "free_email_domains", ()))
    sys.stdout.write("".join(f"{d}\n" for d in sorted(domains)))


if __name__ == "__main__":
    main()
