#!/usr/bin/env python3
"""Writes inverter/data/names.txt: the attacker's name dictionary (lowercased first
and last names, one a line), from Faker's person lists in many locales (ASCII
letters only). A public name list is what a real attacker would bring; the
evaluation set's names were chosen by hand without looking at it, and how many of
them it happens to contain is reported next to every measured figure.
Run once with Faker installed (see make_pii_tune.py); the output is committed.
"""
import importlib
import sys

LOCALES = ["en_US", "en_GB", "en_IE", "en_IN", "de_DE", "nl_NL", "sv_SE", "no_NO",
           "da_DK", "fi_FI", "it_IT", "es_ES", "pt_BR", "pt_PT", "fr_FR", "pl_PL",
           "cs_CZ", "hu_HU", "ro_RO", "hr_HR", "tr_TR", "ja_JP", "yo_NG", "zu_ZA"]


def words(attr):
    if isinstance(attr, dict):
        return list(attr.keys())
    return list(attr)


def main():
    names = set()
    for loc in LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        except ImportError:
            continue
        for field in ("first_names", "last_names", "first_names_male",
                      "first_names_female", "first_romanized_names",
                      "last_romanized_names"):
            for w in words(getattr(provider, field, ())):
                if w.isascii() and w.isalpha() and len(w) >= 2:
                    names.add(w.lower())
    sys.stdout.write("".join(f"{w}\n" for w in sorted(names)))


if __name__ == "__main__":
    main()
