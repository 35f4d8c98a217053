"""Writes src/llmasos/toolchain/data/tickets.jsonl: support tickets labelled by team.

The classification set `llmasos finetune` is measured on (docs/benchmarks.md). Each ticket
joins an opening, a problem and a closing, written by hand per team (billing, technical,
account, shipping), and each problem belongs to one split (a `split` column, which
`llmasos data prep` keeps), so the test tickets describe problems training never saw; the
combinations are drawn with a fixed seed, so re-running this script
writes the same file. Run: python scripts/make_tickets.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OPENINGS = [
    "Hi,",
    "Hello team,",
    "Good morning.",
    "Hey there,",
    "Dear support,",
    "Quick question:",
    "I need help.",
    "Urgent:",
    "Not sure who to ask, but",
    "Following up on my last email,",
    "",
    "",
]
CLOSINGS = [
    "Thanks.",
    "Please advise.",
    "Can you look into it?",
    "Thank you in advance.",
    "Let me know what you need from me.",
    "This is getting frustrating.",
    "Cheers",
    "",
    "",
]
PROBLEMS = {
    "billing": [
        "I was charged twice for my subscription this month",
        "my invoice shows a price higher than the plan I signed up for",
        "I cancelled last week but my card was still billed",
        "can I get a refund for the unused months on my annual plan",
        "the VAT number is missing from my latest invoice",
        "my payment keeps getting declined even though the card is valid",
        "please switch me from monthly to yearly billing",
        "there is an unknown charge of 49 dollars on my statement",
        "I need a copy of the receipts for the last three quarters",
        "the discount code I entered was not applied to the bill",
        "why did the price of my plan go up without notice",
        "I want to pay by bank transfer instead of credit card",
    ],
    "technical": [
        "the app crashes every time I open the settings page",
        "uploads fail with an error 500 after about ten seconds",
        "the dashboard has been loading forever since this morning",
        "your API returns a timeout for every request to the export endpoint",
        "the sync between my phone and laptop stopped working",
        "search results are empty even for files I just created",
        "the mobile app freezes when I rotate the screen",
        "I get a certificate warning when I open your website",
        "notifications are not delivered on Android anymore",
        "the integration with my calendar throws an authentication error",
        "exported CSV files have broken characters in every accented name",
        "the desktop client uses all my CPU after the last update",
    ],
    "account": [
        "I forgot my password and the reset email never arrives",
        "please change the email address on my profile",
        "how do I delete my account and all my data",
        "my account was locked after too many login attempts",
        "I want to add two colleagues to our team workspace",
        "two factor authentication codes are rejected when I log in",
        "can you merge my two accounts into one",
        "I need to transfer ownership of the workspace to my manager",
        "someone else seems to have logged into my profile",
        "how can I change my username",
        "I never received the verification link for my new account",
        "please remove a former employee from our organisation",
    ],
    "shipping": [
        "my package was marked delivered but it is not here",
        "the tracking number you sent does not work",
        "my order has been stuck in customs for two weeks",
        "the box arrived damaged and the item inside is broken",
        "can I change the delivery address of an order I placed yesterday",
        "I received the wrong size in my parcel",
        "how long does delivery to Canada usually take",
        "the courier left my order with a neighbour I do not know",
        "one item is missing from the package I received",
        "do you ship to post office boxes",
        "I would like to return the order and get a shipping label",
        "my express delivery took nine days instead of two",
    ],
}


SPLITS = (("train", 7, 4), ("validation", 2, 2), ("test", 3, 3))
"""(split, problems per team, tickets per problem): no problem is in two splits."""


def main() -> None:
    rng = random.Random(18)
    rows = []
    for label, problems in PROBLEMS.items():
        start = 0
        for split, count, variants in SPLITS:
            for problem in problems[start : start + count]:
                for _ in range(variants):
                    opening, closing = rng.choice(OPENINGS), rng.choice(CLOSINGS)
                    sentence = problem[0].upper() + problem[1:] + "."
                    text = " ".join(p for p in (opening, sentence, closing) if p)
                    rows.append({"text": text, "label": label, "split": split})
            start += count
    rng.shuffle(rows)
    target = (
        Path(__file__).parent.parent / "src" / "llmasos" / "toolchain" / "data" / "tickets.jsonl"
    )
    target.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} rows -> {target}")


if __name__ == "__main__":
    main()
