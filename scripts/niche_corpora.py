#!/usr/bin/env python3
"""Writes the niche corpora of the contextual self-check (issue 23), in the shape
of the seed talk's card corpus: several entities described by the same templates, a
topic per template, queries that name the entity and queries that only describe it.
A document is relevant to a query when it has the query's entity and topic.

  tests/data/niche_airlines.json  held-out TEST set (never looked at while tuning)
  tests/data/niche_phones.json    TUNING set (other entities, other templates)
  tests/data/niche_banks.json     second held-out TEST set (10 banks x 8 topics, 3,200
                                  documents), written after the airline set had been
                                  looked at
  tests/data/niche_hotels.json    TUNING (fifth session: 6 hotel groups x 6 topics)
  tests/data/niche_insurers.json  TUNING (fifth session: 5 insurers x 5 topics)
  tests/data/niche_telecoms.json  held-out TEST (fifth session: 5 carriers x 6 topics)
  tests/data/niche_carmakers.json held-out TEST (fifth session: 6 carmakers x 6 topics)

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


BANKS = {
    "chase": dict(name="JPMorgan Chase Bank", short="Chase", app="Chase Mobile app", rewards="Ultimate Rewards",
                  city="New York", checking="Chase Total Checking", card="Sapphire card",
                  describe="the bank headquartered on Park Avenue in New York"),
    "wells": dict(name="Wells Fargo Bank", short="Wells Fargo", app="Wells Fargo Mobile app", rewards="Go Far Rewards",
                  city="San Francisco", checking="Everyday Checking", card="Active Cash card",
                  describe="the San Francisco bank with the stagecoach logo"),
    "bofa": dict(name="Bank of America", short="Bank of America", app="BofA app with Erica", rewards="Preferred Rewards",
                 city="Charlotte", checking="Advantage Plus Banking", card="Customized Cash card",
                 describe="the bank based in Charlotte, North Carolina"),
    "citi": dict(name="Citibank", short="Citi", app="Citi Mobile app", rewards="ThankYou Points",
                 city="Manhattan", checking="Citi Regular Checking", card="Double Cash card",
                 describe="the bank whose card points are called ThankYou"),
    "capone": dict(name="Capital One Bank", short="Capital One", app="Capital One Mobile app", rewards="Capital One Miles",
                   city="McLean, Virginia", checking="360 Checking", card="Venture card",
                   describe="the Virginia bank that advertises with 'What's in your wallet'"),
    "pnc": dict(name="PNC Bank", short="PNC", app="PNC Mobile app", rewards="PNC points",
                city="Pittsburgh", checking="Virtual Wallet", card="Cash Rewards card",
                describe="the Pittsburgh bank"),
    "usbank": dict(name="U.S. Bank", short="U.S. Bank", app="U.S. Bank Mobile app", rewards="Altitude points",
                   city="Minneapolis", checking="Smartly Checking", card="Altitude Go card",
                   describe="the bank headquartered in Minneapolis"),
    "td": dict(name="TD Bank", short="TD", app="TD Bank app", rewards="TD Rewards",
               city="Cherry Hill, New Jersey", checking="TD Convenience Checking", card="TD Double Up card",
               describe="the American arm of the Toronto-Dominion group"),
    "truist": dict(name="Truist Bank", short="Truist", app="Truist Mobile app", rewards="Truist Loyalty",
                   city="Charlotte", checking="Truist One Checking", card="Truist Enjoy card",
                   describe="the bank formed by merging BB&T and SunTrust"),
    "ally": dict(name="Ally Bank", short="Ally", app="Ally Mobile app", rewards="Ally Rewards",
                 city="Detroit", checking="Ally Spending Account", card="Ally Unlimited card",
                 describe="the online-only bank from Detroit with no branches"),
}

BANK_TOPICS = {
    "overdraft": [
        "{short} charges an overdraft fee of {a1} dollars when a payment takes your {checking} below zero.",
        "Overdraft protection at {name} moves money from your savings to cover a shortfall for {a2} dollars.",
        "Bring your {checking} balance back above zero within {d1} business days and {short} waives the overdraft fee.",
        "{short} customers with {rewards} status get up to {c1} overdraft fees refunded a year.",
        "Turn off overdraft coverage for debit card purchases in the {app} under account settings.",
    ],
    "deposit": [
        "Deposit a check by photographing both sides in the {app}; funds arrive in {d1} business days.",
        "The mobile check deposit limit at {short} is {a3} dollars a day for most {checking} accounts.",
        "Write 'For mobile deposit only at {short}' under your signature before scanning a check.",
        "Keep a mobile-deposited check for {d2} days, then destroy it, {name} advises.",
        "A rejected mobile deposit at {short} usually means the photo was blurry or the check was unsigned.",
    ],
    "wires": [
        "An outgoing domestic wire from {name} costs {a1} dollars; international wires cost {a2} dollars.",
        "Send a wire transfer in the {app} before {h1} p.m. Eastern for same-day delivery from {short}.",
        "Incoming wires to a {checking} account at {short} are free for {rewards} members.",
        "{short} needs the recipient's routing number and SWIFT code to wire money abroad.",
        "Wire transfers from {short} cannot be cancelled once the receiving bank accepts them.",
    ],
    "lostcard": [
        "Lock a lost {short} debit card instantly in the {app}, then order a replacement.",
        "A replacement {card} from {name} arrives in {d1} business days, or {d3} with rush delivery for {a1} dollars.",
        "Report a stolen {short} card at once: you are not liable for purchases made after the report.",
        "{short} can send a digital card number to your phone wallet while the new {card} is in the mail.",
        "Call the number on the back of any {short} card, open day and night, if your wallet is stolen.",
    ],
    "mortgage": [
        "{name} offers thirty-year fixed mortgages from {r1} percent APR for strong credit.",
        "{rewards} clients get a {r2} percent discount on {short} mortgage rates.",
        "{short} can preapprove a home loan online in about {m1} minutes with your income and assets.",
        "A down payment of {c2} percent lets you avoid private mortgage insurance on a {short} loan.",
        "Closing on a {short} mortgage typically takes {d2} days after the application.",
    ],
    "savings": [
        "The {short} savings account pays {r2} percent APY on balances above {a3} dollars.",
        "Link savings to your {checking} to avoid the {a1} dollar monthly fee at {name}.",
        "{short} limits savings withdrawals to {c1} a month before charging a fee.",
        "Certificates of deposit at {short} pay up to {r1} percent for a {m2} month term.",
        "Set up automatic transfers to savings each payday in the {app}.",
    ],
    "fraud": [
        "{short} never asks for your password or one-time code by phone or text message.",
        "Turn on fraud alerts in the {app} to get a text for every purchase above {a1} dollars.",
        "If a charge on your {card} looks wrong, dispute it with {short} within {d2} days.",
        "{name} reimburses unauthorized transactions reported within {d1} days under its zero liability policy.",
        "Scammers pretending to be {short} often ask you to move money to a 'safe account'.",
    ],
    "branches": [
        "Most {short} branches open at {h2} a.m. and close at {h1} p.m. on weekdays.",
        "Book an appointment with a banker at a {short} branch in the {app}.",
        "{name} has its headquarters in {city} and branches across the region.",
        "Saturday hours at {short} branches run until {h3} p.m. in most cities.",
        "Find the nearest {short} branch or ATM with the locator in the {app}.",
    ],
}

BANK_QUERIES = {
    "overdraft": ["{e} overdraft fee and how to avoid it", "what happens if my {e} account goes negative"],
    "deposit": ["deposit a check with my phone at {e}", "{e} mobile deposit limit"],
    "wires": ["send money abroad with {e}", "cost of a wire transfer at {e}"],
    "lostcard": ["I lost my {e} debit card", "replace a stolen {e} credit card"],
    "mortgage": ["{e} home loan interest rates", "get preapproved for a house with {e}"],
    "savings": ["best savings account interest at {e}", "{e} CD rates"],
    "fraud": ["someone used my {e} card without permission", "is this text from {e} a scam"],
    "branches": ["{e} opening hours on Saturday", "make an appointment at a {e} branch"],
}


# Written in the fifth session, before any run on them. Hotels and insurers join the
# TUNING set (the self-check's rule is chosen on them); telecoms and carmakers are
# held-out TEST sets, run once at the end.

HOTELS = {
    "marriott": dict(name="Marriott Bonvoy hotels", short="Marriott", program="Marriott Bonvoy", app="Marriott Bonvoy app",
                     tier="Titanium Elite", brand="Ritz-Carlton", city="Bethesda",
                     describe="the hotel group headquartered in Bethesda, Maryland"),
    "hilton": dict(name="Hilton Hotels & Resorts", short="Hilton", program="Hilton Honors", app="Hilton Honors app",
                   tier="Diamond", brand="Waldorf Astoria", city="McLean",
                   describe="the hotel chain founded by Conrad in Texas"),
    "hyatt": dict(name="Hyatt Hotels", short="Hyatt", program="World of Hyatt", app="World of Hyatt app",
                  tier="Globalist", brand="Park Hyatt", city="Chicago",
                  describe="the Chicago-based hotel company run by the Pritzker family"),
    "ihg": dict(name="IHG Hotels & Resorts", short="IHG", program="IHG One Rewards", app="IHG One Rewards app",
                tier="Diamond Elite", brand="InterContinental", city="Windsor",
                describe="the British hotel group behind Holiday Inn"),
    "accor": dict(name="Accor hotels", short="Accor", program="ALL Accor Live Limitless", app="ALL app",
                  tier="Platinum", brand="Sofitel", city="Paris",
                  describe="the French hotel group based near Paris"),
    "wyndham": dict(name="Wyndham Hotels & Resorts", short="Wyndham", program="Wyndham Rewards", app="Wyndham app",
                    tier="Diamond member", brand="Ramada", city="Parsippany",
                    describe="the budget hotel franchisor from New Jersey"),
}

HOTEL_TOPICS = {
    "checkin": [
        "Check-in at {short} properties starts at {t1} p.m.; {tier} members may arrive earlier on request.",
        "Skip the front desk: check in to any {name} property with the digital key in the {app}.",
        "Late checkout until {t2} p.m. is free for {program} members with {tier} status.",
        "Guests checking in at a {brand} hotel need a card for a deposit of {u1} dollars a night.",
    ],
    "cancel": [
        "Most {short} rates can be cancelled for free until {u2} hours before arrival.",
        "Prepaid {short} rates save {u3} percent but cannot be refunded after booking.",
        "Cancel a {program} reservation in the {app} and the points return at once.",
        "A no-show at a {brand} hotel is charged one night plus tax, {short} says.",
    ],
    "points": [
        "{program} members earn {u4} points per dollar spent on rooms at {short} hotels.",
        "A free night at a {brand} hotel costs from {u5} thousand {program} points.",
        "Points in {program} expire after {u6} months without any activity at {short}.",
        "Transfer {program} points to airline miles at a ratio of {u4} to one.",
    ],
    "pets": [
        "Many {short} hotels welcome dogs for a cleaning fee of {u1} dollars per stay.",
        "Service animals stay free at every {name} property.",
        "Cats and dogs under {u7} pounds are allowed at pet-friendly {brand} hotels.",
        "Filter for pet-friendly {short} hotels when you search in the {app}.",
    ],
    "parking": [
        "Self-parking at {short} city hotels costs about {u1} dollars a night.",
        "Valet parking at the {brand} runs {u8} dollars a day including in-and-out privileges.",
        "{tier} members of {program} do not get free parking at {short}, except at resorts.",
        "Electric car chargers are at {u3} percent of {name} properties in the United States.",
    ],
    "breakfast": [
        "Breakfast is included for {tier} members of {program} at most {short} hotels.",
        "The breakfast buffet at a {brand} hotel costs {u2} dollars per adult.",
        "Children under {u7} eat breakfast free at {short} family hotels.",
        "Order room service breakfast through the {app} the night before.",
    ],
}

HOTEL_QUERIES = {
    "checkin": ["what time is check-in at {e}", "{e} mobile key and early check in"],
    "cancel": ["cancel my {e} hotel booking", "{e} hotel cancellation policy"],
    "points": ["how many points for a free night at {e}", "do {e} reward points expire"],
    "pets": ["can I bring my dog to a {e} hotel", "{e} pet fee"],
    "parking": ["{e} hotel parking cost", "is valet parking free at {e}"],
    "breakfast": ["is breakfast included at {e}", "{e} breakfast price"],
}

INSURERS = {
    "geico": dict(name="GEICO", short="GEICO", app="GEICO Mobile app", mascot="the gecko", city="Chevy Chase",
                  perk="military discount", describe="the insurer with the gecko mascot"),
    "progressive": dict(name="Progressive Insurance", short="Progressive", app="Progressive app", mascot="Flo",
                        city="Mayfield Village", perk="Snapshot program",
                        describe="the Ohio insurer whose ads feature Flo"),
    "statefarm": dict(name="State Farm", short="State Farm", app="State Farm app", mascot="Jake",
                      city="Bloomington", perk="Drive Safe & Save",
                      describe="the Illinois insurer that is like a good neighbor"),
    "allstate": dict(name="Allstate", short="Allstate", app="Allstate mobile app", mascot="Mayhem",
                     city="Northbrook", perk="Drivewise",
                     describe="the insurer that asks if you are in good hands"),
    "liberty": dict(name="Liberty Mutual", short="Liberty Mutual", app="Liberty Mutual app", mascot="LiMu Emu",
                    city="Boston", perk="RightTrack",
                    describe="the Boston insurer with an emu in its ads"),
}

INSURER_TOPICS = {
    "claims": [
        "File a car insurance claim with {short} in the {app} in about {v1} minutes.",
        "{name} sends an adjuster within {v2} days of a reported accident.",
        "Upload photos of the damage to your {short} claim to speed up the payment.",
        "{short} pays approved claims by direct deposit in {v3} business days.",
    ],
    "discounts": [
        "Safe drivers save up to {v4} percent with the {perk} from {short}.",
        "Bundle home and auto with {name} to save {v5} percent on both policies.",
        "{short} offers a good student discount for grades of B or better.",
        "Paying the full {short} premium upfront saves about {v5} percent.",
    ],
    "roadside": [
        "{short} roadside assistance tows your car up to {v6} miles for a flat fee.",
        "Request a jump start or a tire change from {name} in the {app}.",
        "Roadside help from {short} costs about {v7} dollars a year added to a policy.",
        "A locksmith sent by {short} opens a locked car at no extra charge.",
    ],
    "renters": [
        "Renters insurance from {short} starts at {v7} dollars a month.",
        "{name} renters policies cover stolen laptops and bikes up to the limit.",
        "Add {v8} thousand dollars of liability coverage to a {short} renters policy.",
        "Your landlord's insurance does not cover your things; {short} renters insurance does.",
    ],
    "cancelpolicy": [
        "Cancel a {short} policy by phone or in the {app} at any time.",
        "{name} refunds the unused premium when you cancel mid-term, minus a fee of {v7} dollars.",
        "Switching insurers? Start the new policy before cancelling {short} to avoid a gap.",
        "{short} may cancel a policy for non-payment after a grace period of {v2} days.",
    ],
}

INSURER_QUERIES = {
    "claims": ["file an accident claim with {e}", "how long does {e} take to pay a claim"],
    "discounts": ["{e} safe driver discount", "save money on my {e} car insurance"],
    "roadside": ["{e} towing and roadside help", "flat tire help from {e}"],
    "renters": ["{e} renters insurance price", "does {e} cover my stolen laptop in an apartment"],
    "cancelpolicy": ["how do I cancel my {e} policy", "{e} refund after cancelling insurance"],
}

TELECOMS = {
    "verizon": dict(name="Verizon Wireless", short="Verizon", app="My Verizon app", plan="Unlimited Ultimate",
                    network="5G Ultra Wideband", store="Verizon store", city="New York",
                    describe="the wireless carrier with the red check mark logo"),
    "att": dict(name="AT&T Wireless", short="AT&T", app="myAT&T app", plan="Unlimited Premium",
                network="5G+", store="AT&T store", city="Dallas",
                describe="the Dallas phone company that grew out of Bell"),
    "tmobile": dict(name="T-Mobile", short="T-Mobile", app="T-Life app", plan="Go5G Plus",
                    network="5G Ultra Capacity", store="T-Mobile store", city="Bellevue",
                    describe="the magenta carrier from Bellevue, Washington"),
    "mint": dict(name="Mint Mobile", short="Mint", app="Mint Mobile app", plan="Unlimited plan",
                 network="T-Mobile network", store="online shop", city="Costa Mesa",
                 describe="the prepaid carrier part-owned by Ryan Reynolds"),
    "cricket": dict(name="Cricket Wireless", short="Cricket", app="myCricket app", plan="Unlimited More",
                    network="AT&T network", store="Cricket store", city="Atlanta",
                    describe="the prepaid brand owned by AT&T"),
}

TELECOM_TOPICS = {
    "roaming": [
        "Using a {short} phone abroad costs {w1} dollars a day with the travel pass.",
        "The {plan} from {name} includes data in {w2} countries at no extra cost.",
        "Turn on international roaming for your {short} line in the {app} before you fly.",
        "Calls from Canada and Mexico are included on most {short} plans.",
    ],
    "unlock": [
        "{short} unlocks a paid-off phone after {w3} days of active service.",
        "Request a phone unlock from {name} in the {app} under device settings.",
        "A locked {short} phone works only with a {short} SIM card.",
        "Military members deployed abroad can unlock a {short} phone early.",
    ],
    "billing": [
        "The {plan} at {short} costs {w4} dollars a month per line with autopay.",
        "Autopay with a bank account knocks {w5} dollars off each {short} line.",
        "Pay your {name} bill in the {app} or at any {store}.",
        "{short} charges a late fee of {w1} dollars if the bill is unpaid after the due date.",
    ],
    "coverage": [
        "The {network} of {short} reaches about {w6} percent of Americans.",
        "Check {short} coverage at your address on the map at the {store} or online.",
        "Wi-Fi calling on {name} keeps calls going where the signal is weak.",
        "{short} adds new towers each year to strengthen its {network}.",
    ],
    "switching": [
        "Bring your number to {short}: porting takes about {w3} hours.",
        "{name} pays off up to {w7} dollars of your old phone when you switch.",
        "Order a {short} eSIM in the {app} and keep your phone when you switch carriers.",
        "Switching to {short} needs your old account number and a transfer PIN.",
    ],
    "hotspot": [
        "The {plan} from {short} includes {w8} gigabytes of hotspot data each month.",
        "After the hotspot allowance, {short} slows tethering to {w5} hundred kilobits per second.",
        "Turn on the mobile hotspot of a {short} phone in its settings; no extra app is needed.",
        "{name} sells a separate hotspot device plan for {w4} dollars a month.",
    ],
}

TELECOM_QUERIES = {
    "roaming": ["use my {e} phone in Europe", "{e} international travel pass price"],
    "unlock": ["how to unlock my {e} phone", "{e} phone unlock policy"],
    "billing": ["{e} monthly bill and autopay discount", "pay my {e} bill"],
    "coverage": ["{e} 5G coverage map", "does {e} have good signal in rural areas"],
    "switching": ["switch my number to {e}", "{e} deal for switching carriers"],
    "hotspot": ["{e} hotspot data limit", "tethering on {e} unlimited plan"],
}

CARMAKERS = {
    "toyota": dict(brand="Toyota", model="Camry", app="Toyota app", warranty="ToyotaCare", hybrid="Hybrid Synergy Drive",
                   dealer="Toyota dealer", country="Japan",
                   describe="the Japanese carmaker from Aichi that builds the Prius"),
    "ford": dict(brand="Ford", model="F-150", app="FordPass app", warranty="Ford Protect", hybrid="PowerBoost hybrid",
                 dealer="Ford dealer", country="the United States",
                 describe="the Detroit carmaker founded by Henry"),
    "honda": dict(brand="Honda", model="Civic", app="HondaLink app", warranty="Honda Care", hybrid="e:HEV hybrid",
                  dealer="Honda dealer", country="Japan",
                  describe="the Japanese maker of the Civic and Accord"),
    "tesla": dict(brand="Tesla", model="Model 3", app="Tesla app", warranty="Tesla Extended Service Agreement",
                  hybrid="electric drivetrain", dealer="Tesla service center", country="the United States",
                  describe="the electric carmaker led by Elon Musk"),
    "bmw": dict(brand="BMW", model="3 Series", app="My BMW app", warranty="BMW Ultimate Care", hybrid="plug-in hybrid",
                dealer="BMW center", country="Germany",
                describe="the Bavarian luxury carmaker from Munich"),
    "hyundai": dict(brand="Hyundai", model="Elantra", app="MyHyundai app", warranty="Hyundai Assurance",
                    hybrid="hybrid powertrain", dealer="Hyundai dealer", country="South Korea",
                    describe="the South Korean carmaker from Seoul"),
}

CARMAKER_TOPICS = {
    "maintenance": [
        "Change the oil of a {brand} {model} every {k1} thousand miles.",
        "{warranty} covers scheduled maintenance on a new {brand} for {k2} years.",
        "Book a service appointment at your {dealer} in the {app}.",
        "A {brand} {model} needs new brake pads after about {k3} thousand miles.",
    ],
    "warranty": [
        "The {brand} powertrain warranty lasts {k4} years or {k5} thousand miles.",
        "Extend the factory warranty of a {brand} with {warranty}.",
        "Rust through the body of a {brand} {model} is covered for {k4} years.",
        "Warranty repairs on a {brand} must be done at an authorised {dealer}.",
    ],
    "recall": [
        "Check open recalls on your {brand} by entering the VIN in the {app}.",
        "{brand} fixes recalled parts on a {model} for free at any {dealer}.",
        "A {brand} recall letter arrives by mail within {k6} days of the announcement.",
        "{brand} recalled {k7} thousand {model} cars in {country} last year for an airbag fault.",
    ],
    "financing": [
        "{brand} Financial offers {k8} percent APR on a new {model} for qualified buyers.",
        "Lease a {brand} {model} for {k9} dollars a month with {k1} thousand down.",
        "Apply for {brand} financing online before visiting the {dealer}.",
        "Loan terms for a {brand} run from {k2} to {k4} years.",
    ],
    "charging": [
        "The {brand} {hybrid} charges to eighty percent in about {k6} minutes on a fast charger.",
        "See charging stations for your {brand} on the map in the {app}.",
        "A home wall charger fills a {brand} {model} battery overnight.",
        "{brand} includes {k2} years of free public charging with some new cars.",
    ],
    "tires": [
        "Rotate the tires of a {brand} {model} every {k1} thousand miles.",
        "Tire pressure for a {brand} {model} is printed on the driver's door frame.",
        "{dealer} technicians replace worn {model} tires for about {k9} dollars each.",
        "Winter tires improve braking on a {brand} in snow by about {k8} percent.",
    ],
}

CARMAKER_QUERIES = {
    "maintenance": ["how often to change oil in a {e}", "{e} service schedule"],
    "warranty": ["{e} powertrain warranty length", "is rust covered by the {e} warranty"],
    "recall": ["check recalls on my {e}", "{e} airbag recall"],
    "financing": ["{e} lease deals and APR", "finance a new {e}"],
    "charging": ["how fast does a {e} charge", "{e} home charger"],
    "tires": ["{e} tire pressure", "when to rotate tires on a {e}"],
}


def new_numbers(rng):
    """Slot numbers for the fifth session's templates."""
    return dict(t1=rng.choice([2, 3, 4]), t2=rng.choice([1, 2, 4]), u1=rng.choice([25, 50, 75, 100, 150]),
                u2=rng.choice([24, 48, 72]), u3=rng.choice([10, 15, 20, 25]), u4=rng.choice([2, 3, 5, 10]),
                u5=rng.choice([10, 25, 40, 60]), u6=rng.choice([12, 18, 24]), u7=rng.choice([12, 25, 40]),
                u8=rng.choice([45, 55, 65]),
                v1=rng.choice([5, 10, 15]), v2=rng.choice([2, 3, 7, 10]), v3=rng.choice([2, 3, 5]),
                v4=rng.choice([10, 20, 30, 40]), v5=rng.choice([5, 8, 10, 15]), v6=rng.choice([10, 15, 50, 100]),
                v7=rng.choice([10, 15, 20, 50]), v8=rng.choice([100, 300, 500]),
                w1=rng.choice([5, 10, 12, 15]), w2=rng.choice([100, 200, 210]), w3=rng.choice([60, 45, 2, 24]),
                w4=rng.choice([30, 45, 65, 90]), w5=rng.choice([5, 10, 6]), w6=rng.choice([70, 80, 90, 98]),
                w7=rng.choice([650, 800, 1000]), w8=rng.choice([15, 30, 50, 60]),
                k1=rng.choice([5, 7, 10]), k2=rng.choice([2, 3, 4]), k3=rng.choice([30, 40, 50, 70]),
                k4=rng.choice([5, 8, 10]), k5=rng.choice([60, 100]), k6=rng.choice([10, 20, 30, 60]),
                k7=rng.choice([20, 90, 150, 400]), k8=rng.choice([2.9, 3.9, 4.9, 5.9]),
                k9=rng.choice([199, 299, 349, 399]))


def bank_numbers(rng):
    return dict(a1=rng.choice([15, 25, 30, 34, 35, 45]), a2=rng.choice([10, 12, 35, 40, 50]),
                a3=rng.choice([500, 1000, 2500, 5000, 10000]), d1=rng.choice([1, 2, 3, 5]),
                d2=rng.choice([14, 30, 45, 60]), d3=rng.choice([1, 2]), c1=rng.choice([3, 4, 6]),
                c2=rng.choice([10, 15, 20]), h1=rng.choice([4, 5, 6]), h2=rng.choice([8, 9, 10]),
                h3=rng.choice([12, 1, 2]), r1=rng.choice([5.8, 6.1, 6.4, 6.9, 7.2]),
                r2=rng.choice([0.25, 0.5, 1.5, 3.9, 4.2]), m1=rng.choice([10, 15, 20, 30]),
                m2=rng.choice([6, 12, 18, 24]))


def default_numbers(rng):
    """Slot numbers for the airline and phone templates."""
    return dict(n1=rng.choice([30, 35, 40, 45, 50, 75]), n2=rng.choice([40, 50, 60, 70, 100]),
                n3=rng.choice([12, 24, 48, 50, 70]), n4=rng.choice([5, 7, 10, 14, 21]),
                n5=rng.choice([6, 12, 18, 24]), n6=rng.choice([1, 2, 3, 5]),
                n7=rng.choice([5000, 15000, 20000, 28000]),
                p1=rng.choice([10, 15, 20, 80, 85]), p2=rng.choice([300, 400, 500, 800, 1000]),
                p3=rng.choice([49, 69, 89, 99, 129, 279, 329]), p4=rng.choice([15, 20, 25, 30, 45]),
                p5=rng.choice([2, 3, 5, 7]), p6=rng.choice([150, 300, 450, 630, 700]))


def fill(rng, entities, topics, queries, name_key, variants=4, numbers=default_numbers):
    docs, qs = [], []
    for ent, slots in entities.items():
        for topic, templates in topics.items():
            for t, template in enumerate(templates):
                for v in range(variants):
                    nums = numbers(rng)
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
        write(fname, docs, qs)
    # Written in the fourth session, before any run on it: the second held-out test set,
    # large enough for the 1,000 and 3,000-document rows.
    docs, qs = fill(random.Random(31), BANKS, BANK_TOPICS, BANK_QUERIES, "short",
                    variants=8, numbers=bank_numbers)
    write("niche_banks.json", docs, qs)
    # Written in the fifth session, before any run on them (see the data above).
    for fname, entities, topics, queries, key, seed in [
        ("niche_hotels.json", HOTELS, HOTEL_TOPICS, HOTEL_QUERIES, "short", 37),
        ("niche_insurers.json", INSURERS, INSURER_TOPICS, INSURER_QUERIES, "short", 41),
        ("niche_telecoms.json", TELECOMS, TELECOM_TOPICS, TELECOM_QUERIES, "short", 43),
        ("niche_carmakers.json", CARMAKERS, CARMAKER_TOPICS, CARMAKER_QUERIES, "brand", 47),
    ]:
        docs, qs = fill(random.Random(seed), entities, topics, queries, key,
                        variants=8, numbers=new_numbers)
        write(fname, docs, qs)


def write(fname, docs, qs):
    with open(os.path.join(ROOT, fname), "w") as f:
        json.dump(dict(name=fname[:-5], documents=docs, queries=qs), f, indent=0)
        f.write("\n")
    print(fname, len(docs), "documents,", len(qs), "queries")


if __name__ == "__main__":
    main()
