#!/usr/bin/env python3
"""Writes the two niche corpora of the contextual self-check (issue 23), in the shape
of the seed talk's card corpus: several entities described by the same templates, a
topic per template, queries that name the entity and queries that only describe it.
A document is relevant to a query when it has the query's entity and topic.

  tests/data/niche_airlines.json  held-out TEST set (never looked at while tuning)
  tests/data/niche_phones.json    TUNING set (other entities, other templates)

Deterministic (seeded); rerun to regenerate: python3 scripts/niche_corpora.py
"""
import json
import os
import random

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")

AIRLINES = {
    "delta": dict(name="Delta Air Lines", short="Delta", program="SkyMiles", lounge="Delta Sky Club",
                  hub="Atlanta", tier="Diamond Medallion", app="Fly Delta app",
                  describe="the airline whose main hub is Atlanta"),
    "united": dict(name="United Airlines", short="United", program="MileagePlus", lounge="United Club",
                   hub="Chicago O'Hare", tier="Premier 1K", app="United app",
                   describe="the Chicago-based carrier"),
    "american": dict(name="American Airlines", short="American", program="AAdvantage", lounge="Admirals Club",
                     hub="Dallas Fort Worth", tier="Executive Platinum", app="American Airlines app",
                     describe="the carrier headquartered at Dallas Fort Worth"),
    "lufthansa": dict(name="Lufthansa", short="Lufthansa", program="Miles & More", lounge="Lufthansa Senator Lounge",
                      hub="Frankfurt", tier="HON Circle", app="Lufthansa app",
                      describe="the German flag carrier based in Frankfurt"),
}

AIRLINE_TOPICS = {
    "baggage": [
        "On {name} flights the first checked bag costs {n1} dollars and a second bag costs {n2} dollars.",
        "{short} allows one carry-on bag and one personal item; checked bags over {n3} pounds pay an overweight fee.",
        "Members of {program} with {tier} status check up to three bags free on {short}.",
        "If {short} loses your suitcase, file a report at the {hub} baggage office within {n4} hours.",
    ],
    "refunds": [
        "{name} refunds a cancelled flight to the original form of payment within {n4} days.",
        "If {short} cancels your trip, you can rebook for free in the {app} or ask for a refund.",
        "Nonrefundable {short} fares can be changed for a credit that expires after {n5} months.",
        "{program} award tickets on {short} can be cancelled and the miles returned to the account.",
    ],
    "upgrades": [
        "{short} clears complimentary upgrades for {tier} members up to {n4} days before departure.",
        "Bid for a seat upgrade on {name} in the {app}; offers close {n3} hours before the flight.",
        "{program} members can spend miles to upgrade from economy to business class on {short}.",
        "Extra legroom seats on {short} cost from {n1} dollars, free for {tier} travellers.",
    ],
    "lounges": [
        "A day pass to the {lounge} costs {n2} dollars for passengers flying {short}.",
        "The {lounge} at {hub} offers showers, hot food and quiet rooms.",
        "{tier} members of {program} may bring {n6} guests into the {lounge}.",
        "Business class tickets on {name} include entry to the {lounge} before departure.",
    ],
    "miles": [
        "{program} members earn {n6} miles per dollar spent on {name} tickets.",
        "Miles earned in {program} never expire as long as the account stays active with {short}.",
        "Reaching {tier} in {program} takes about {n7} qualifying dollars a year on {short}.",
        "Partner airlines also credit flights to {program}, the loyalty program of {short}.",
    ],
    "pets": [
        "{short} accepts small cats and dogs in the cabin for a fee of {n1} dollars each way.",
        "Pets travelling with {name} must stay in a carrier under the seat for the whole flight.",
        "Trained service dogs fly free on {short}; submit the form in the {app} {n3} hours ahead.",
        "{short} does not carry pets in the hold on flights from {hub} during summer heat.",
    ],
}

AIRLINE_QUERIES = {
    "baggage": ["how much does a checked bag cost on {e}", "{e} luggage allowance and lost suitcase"],
    "refunds": ["get my money back when {e} cancels a flight", "{e} refund policy for cancelled tickets"],
    "upgrades": ["upgrade to business class on {e}", "how do seat upgrades work with {e}"],
    "lounges": ["{e} airport lounge access and day pass", "can I bring a guest into the {e} lounge"],
    "miles": ["earning frequent flyer miles with {e}", "do miles expire in the {e} loyalty program"],
    "pets": ["flying with a dog on {e}", "{e} pet policy for cats in the cabin"],
}

PHONES = {
    "iphone": dict(brand="Apple", phone="iPhone", os="iOS", store="Apple Store", cloud="iCloud",
                   care="AppleCare+", chip="A-series chip", describe="the phone made in Cupertino"),
    "galaxy": dict(brand="Samsung", phone="Galaxy", os="One UI", store="Samsung Experience Store",
                   cloud="Samsung Cloud", care="Samsung Care+", chip="Exynos chip",
                   describe="the Korean-made Android flagship"),
    "pixel": dict(brand="Google", phone="Pixel", os="Android", store="Google Store", cloud="Google One",
                  care="Preferred Care", chip="Tensor chip", describe="the phone made by the search company"),
}

PHONE_TOPICS = {
    "battery": [
        "Battery health on a {phone} drops below {p1} percent after about {p2} charge cycles.",
        "To make a {brand} {phone} battery last longer, turn on the low power mode in {os}.",
        "A worn {phone} battery can be swapped at the {store} for {p3} dollars.",
        "Fast charging a {phone} to fifty percent takes about {p4} minutes with a {brand} charger.",
    ],
    "screen": [
        "A cracked {phone} screen costs {p3} dollars to replace, less with {care}.",
        "The {store} repairs broken {brand} {phone} displays in about {p4} minutes.",
        "Screen protectors for the {phone} reduce scratches but not cracks from drops.",
        "Dead pixels on a new {phone} display are covered by the {brand} warranty.",
    ],
    "updates": [
        "{brand} ships {os} security updates to the {phone} for {p5} years.",
        "Install the latest {os} version on your {phone} from the settings menu over Wi-Fi.",
        "Back up the {phone} to {cloud} before a major {os} update.",
        "The {chip} in recent {phone} models runs the newest {os} features on the device.",
    ],
    "tradein": [
        "Trade in an old {phone} at the {store} for credit of up to {p6} dollars.",
        "{brand} gives trade-in credit for a {phone} only if the screen turns on.",
        "Erase the {phone} and sign out of {cloud} before sending it for trade-in.",
        "Trade-in value for a {phone} falls by about {p1} percent each year.",
    ],
    "warranty": [
        "Every {brand} {phone} comes with a one-year limited warranty.",
        "{care} extends the {phone} warranty to {p5} years and covers accidental damage.",
        "Water damage to a {phone} is not covered by the standard {brand} warranty.",
        "Check the warranty status of a {phone} on the {brand} support site with its serial number.",
    ],
}

PHONE_QUERIES = {
    "battery": ["{e} battery drains fast", "replace the battery of my {e}"],
    "screen": ["fix a cracked {e} screen", "{e} display repair cost"],
    "updates": ["how long does {e} get software updates", "update the operating system on my {e}"],
    "tradein": ["trade in my old {e}", "how much credit for an {e} trade-in"],
    "warranty": ["is my {e} still under warranty", "{e} warranty and accidental damage"],
}


def fill(rng, entities, topics, queries, name_key):
    docs, qs = [], []
    for ent, slots in entities.items():
        for topic, templates in topics.items():
            for t, template in enumerate(templates):
                for v in range(4):
                    nums = dict(n1=rng.choice([30, 35, 40, 45, 50, 75]), n2=rng.choice([40, 50, 60, 70, 100]),
                                n3=rng.choice([12, 24, 48, 50, 70]), n4=rng.choice([5, 7, 10, 14, 21]),
                                n5=rng.choice([6, 12, 18, 24]), n6=rng.choice([1, 2, 3, 5]),
                                n7=rng.choice([5000, 15000, 20000, 28000]),
                                p1=rng.choice([10, 15, 20, 80, 85]), p2=rng.choice([300, 400, 500, 800, 1000]),
                                p3=rng.choice([49, 69, 89, 99, 129, 279, 329]), p4=rng.choice([15, 20, 25, 30, 45]),
                                p5=rng.choice([2, 3, 5, 7]), p6=rng.choice([150, 300, 450, 630, 700]))
                    text = template.format(**slots, **nums)
                    docs.append(dict(id=f"{ent}-{topic}-{t}-{v}", entity=ent, topic=topic, text=text))
    for ent, slots in entities.items():
        for topic, qts in queries.items():
            for qt in qts:
                qs.append(dict(text=qt.format(e=slots[name_key]), entity=ent, topic=topic, kind="named"))
            qs.append(dict(text=qts[0].format(e=slots["describe"]), entity=ent, topic=topic, kind="described"))
    rng.shuffle(docs)
    return docs, qs


def main():
    for fname, entities, topics, queries, key, seed in [
        ("niche_airlines.json", AIRLINES, AIRLINE_TOPICS, AIRLINE_QUERIES, "short", 23),
        ("niche_phones.json", PHONES, PHONE_TOPICS, PHONE_QUERIES, "phone", 29),
    ]:
        docs, qs = fill(random.Random(seed), entities, topics, queries, key)
        with open(os.path.join(ROOT, fname), "w") as f:
            json.dump(dict(name=fname[:-5], documents=docs, queries=qs), f, indent=0)
            f.write("\n")
        print(fname, len(docs), "documents,", len(qs), "queries")


if __name__ == "__main__":
    main()
