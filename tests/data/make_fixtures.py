"""Writes the test data that this project made itself (reviews/, tweets/, ner/, instructions/, pydoc-wiki/).

Run once from the repository root with a fixed seed; the outputs are committed, so the tests never run
this. The files stand in for datasets whose licenses forbid copying them here (SST-2, the Twitter entity
sentiment set, CoNLL-2003, Stanford Alpaca) and for WikiText's layout: the same formats and quirks,
sentences written from the word lists below. kant/ and tinystories/ are slices of public text; see their
PROVENANCE.md.

    python tests/data/make_fixtures.py
"""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------- reviews (SST-2 style)

GOOD = ["wonderful", "gripping", "funny", "moving", "charming", "brilliant", "clever", "warm", "touching", "smart",
        "beautiful", "delightful", "fresh", "engaging", "sharp", "tender", "lively", "honest", "rich", "witty"]
BAD = ["dull", "boring", "tedious", "clumsy", "flat", "lifeless", "predictable", "silly", "shallow", "messy",
       "tiresome", "bland", "awkward", "pointless", "stale", "empty", "hollow", "sloppy", "ugly", "lazy"]
THINGS = ["film", "movie", "story", "script", "cast", "direction", "ending", "plot", "dialogue", "picture",
          "performance", "soundtrack", "camera work", "comedy", "drama", "thriller", "romance", "documentary"]
PEOPLE = ["the director", "the lead actor", "the writer", "the young star", "the whole cast", "the composer"]
INTENSE = ["", "", "very ", "truly ", "rather ", "quite ", "so ", "deeply ", "surprisingly "]
GOOD_VERBS = ["loved", "enjoyed", "admired", "adored", "cherished"]
BAD_VERBS = ["hated", "disliked", "regretted", "endured", "resented"]
DO = {True: "do n't miss", False: "do n't bother with"}
FILLER = ["", "", "", "from start to finish", "for most of its running time", "in the second half",
          "despite its length", "in every scene", "at least for me", "on the big screen"]


def review(rng: random.Random, positive: bool) -> str:
    adj = lambda good: rng.choice(INTENSE) + rng.choice(GOOD if good else BAD)  # noqa: E731
    thing = rng.choice(THINGS)
    forms = [
        lambda: f"a {adj(positive)} , {rng.choice(GOOD if positive else BAD)} {thing} {rng.choice(FILLER)}",
        lambda: f"the {thing} is {adj(positive)} {rng.choice(FILLER)}",
        lambda: f"i {rng.choice(GOOD_VERBS if positive else BAD_VERBS)} this {thing}",
        lambda: f"{rng.choice(PEOPLE)} makes the {thing} {adj(positive)}",
        lambda: f"the {thing} is {adj(not positive)} , but {rng.choice(PEOPLE)} is {adj(positive)}",
        lambda: f"it 's {'not' if not positive else 'never'} {rng.choice(GOOD if not positive else BAD)} , "
                f"and the {thing} is {adj(positive)}",
        lambda: f"{DO[positive]} this {adj(positive)} {thing}",
    ]
    text = re.sub(r" +", " ", rng.choice(forms)()).strip()
    return text + (" " if rng.random() < 0.6 else "")  # SST-2 rows often end with a space before the tab


def write_reviews(rng: random.Random) -> None:
    folder = HERE / "reviews"
    folder.mkdir(exist_ok=True)
    for name, rows, share in (("train.tsv", 3000, 0.55), ("dev.tsv", 300, 0.52)):
        labels = [1] * round(rows * share) + [0] * (rows - round(rows * share))
        rng.shuffle(labels)
        with open(folder / name, "w", encoding="utf-8", newline="\n") as f:
            f.write("sentence\tlabel\n")
            for label in labels:
                f.write(f"{review(rng, bool(label))}\t{label}\n")


# ---------------------------------------------------------------- tweets (Twitter entity sentiment style)

ENTITIES = ["Borderlands", "Nvidia", "Overwatch", "Xbox", "PlayStation", "Fortnite", "Amazon", "Google",
            "Microsoft", "Verizon", "FIFA", "Dota2"]
SENTIMENTS = {
    "Positive": ["I love {e} so much", "{e} just made my day", "best update from {e} in years",
                 "can't stop playing {e} tonight", "big thanks to {e} support, fixed in minutes"],
    "Negative": ["{e} crashed again, so annoying", "why is {e} this slow today", "done with {e}, never again",
                 "{e} servers are down AGAIN", "worst patch {e} has ever shipped"],
    "Neutral": ["{e} announced a new event for next week", "anyone know when {e} updates?",
                "reading about {e} earnings this morning", "{e} stream starts at 8", "new {e} trailer is out"],
    "Irrelevant": ["my cat sat on the keyboard while {e} was open", "coffee first, {e} later maybe",
                   "rainy day, watching old movies", "{e} reminds me of my brother lol", "pizza night with friends"],
}
TAILS = ["", "", " :)", " lol", " #gaming", " pic.twitter.com/x1y2z3", " !!", " ..."]


def tweet(rng: random.Random, entity: str, sentiment: str) -> str:
    text = rng.choice(SENTIMENTS[sentiment]).format(e=entity) + rng.choice(TAILS)
    roll = rng.random()
    if roll < 0.15:  # quoted text with line breaks, as in the original validation file
        text += "\n" + rng.choice(SENTIMENTS[sentiment]).format(e=entity)
    elif roll < 0.25:  # long enough to be truncated at 48 tokens
        text = " ".join([text] + [rng.choice(SENTIMENTS[sentiment]).format(e=entity) for _ in range(4)])
    return text


def write_tweets(rng: random.Random) -> None:
    folder = HERE / "tweets"
    folder.mkdir(exist_ok=True)
    names = list(SENTIMENTS)
    training, tweet_id = [], 2401
    for entity in ENTITIES:  # grouped by entity, as the original training file is
        for _ in range(100):
            sentiment = rng.choice(names)
            text = "" if rng.random() < 0.015 else tweet(rng, entity, sentiment)
            training.append([str(tweet_id), entity, sentiment, text])
            tweet_id += 1
    validation = [["3364", "Facebook", "Irrelevant",
                   "I mentioned on Facebook that I was struggling for motivation to go for a run the other day"]]
    for _ in range(199):
        entity, sentiment = rng.choice(ENTITIES), rng.choice(names)
        validation.append([str(rng.randrange(1, 13200)), entity, sentiment, tweet(rng, entity, sentiment)])
    for name, rows in (("training.csv", training), ("validation.csv", validation)):
        with open(folder / name, "w", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\r\n").writerows(rows)  # no header, CRLF


# ---------------------------------------------------------------- NER (CoNLL-2003 columns)

FIRST = ["Peter", "Maria", "John", "Anna", "Hans", "Elena", "Ahmed", "Yuki", "Carlos", "Ingrid", "Tom", "Sara"]
LAST = ["Blackburn", "Schmidt", "Rossi", "Novak", "Okafor", "Tanaka", "Larsen", "Dubois", "Kowalski", "Silva"]
ORGS = [["European", "Commission"], ["United", "Nations"], ["Acme", "Corp"], ["Reuters"], ["Siemens"],
        ["Bank", "of", "Lisbon"], ["Real", "Madrid"], ["World", "Health", "Organisation"], ["Nokia"]]
LOCS = [["Brussels"], ["Paris"], ["Berlin"], ["New", "York"], ["Tokyo"], ["Lagos"], ["Lima"], ["Oslo"],
        ["South", "Africa"], ["Germany"], ["Brazil"]]
MISC = [["German"], ["British"], ["French"], ["Olympic"], ["Japanese"], ["Euro", "2024"], ["Nobel"]]
VERBS = ["said", "rejected", "visited", "joined", "criticised", "praised", "left", "met"]
NOUNS = ["ban", "plan", "deal", "talks", "report", "match", "offer", "vote"]


def tagged(words: list[str], kind: str, pos: str = "NNP") -> list[tuple[str, str, str, str]]:
    out = []
    for i, word in enumerate(words):
        ner = "O" if kind == "O" else ("B-" if i == 0 else "I-") + kind
        out.append((word, pos, ("B-NP" if i == 0 else "I-NP"), ner))
    return out


def ner_sentence(rng: random.Random) -> list[tuple[str, str, str, str]]:
    person = tagged([rng.choice(FIRST), rng.choice(LAST)][: rng.choice([1, 2, 2])], "PER")
    org, loc, misc = tagged(rng.choice(ORGS), "ORG"), tagged(rng.choice(LOCS), "LOC"), tagged(rng.choice(MISC), "MISC", "JJ")
    verb = [(rng.choice(VERBS), "VBD", "B-VP", "O")]
    the = [("the", "DT", "B-NP", "O")]
    noun = [(rng.choice(NOUNS), "NN", "I-NP", "O")]
    in_ = [("in", "IN", "B-PP", "O")]
    forms = [
        person + verb + the + misc + noun + in_ + loc,
        org + verb + the + noun + in_ + loc,
        person + [("of", "IN", "B-PP", "O")] + org + verb + the + noun,
        the + misc + noun + verb + person + in_ + loc,
        loc + verb + the + noun + [("with", "IN", "B-PP", "O")] + org,
        person + verb + org + [("on", "IN", "B-PP", "O"), ("Monday", "NNP", "B-NP", "O")],
    ]
    return rng.choice(forms) + [(".", ".", "O", "O")]


def write_ner(rng: random.Random) -> None:
    folder = HERE / "ner"
    folder.mkdir(exist_ok=True)
    for name, sentences in (("train.txt", 400), ("valid.txt", 100), ("test.txt", 80)):
        lines = []
        for i in range(sentences):
            if i % 20 == 0:
                lines += ["-DOCSTART- -X- -X- O", ""]
            lines += [" ".join(row) for row in ner_sentence(rng)] + [""]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- instructions (Alpaca style)

WORDS = ["apple", "river", "window", "garden", "pencil", "cloud", "bridge", "candle", "forest", "ladder",
         "mirror", "orange", "planet", "rocket", "saddle", "tiger", "violin", "wallet", "yogurt", "zebra"]
OPPOSITES = {"hot": "cold", "early": "late", "light": "heavy", "open": "closed", "happy": "sad", "fast": "slow",
             "full": "empty", "young": "old", "strong": "weak", "loud": "quiet"}


def instruction(rng: random.Random) -> dict:
    kind = rng.randrange(6)
    if kind == 0:
        a, b = rng.randrange(2, 99), rng.randrange(2, 99)
        return {"instruction": "Add the two numbers.", "input": f"{a} and {b}", "output": f"The sum is {a + b}."}
    if kind == 1:
        words = rng.sample(WORDS, 4)
        return {"instruction": "Sort these words alphabetically.", "input": ", ".join(words),
                "output": ", ".join(sorted(words))}
    if kind == 2:
        word = rng.choice(list(OPPOSITES))
        return {"instruction": f"Give the opposite of the word \"{word}\".", "input": "",
                "output": f"The opposite of \"{word}\" is \"{OPPOSITES[word]}\"."}
    if kind == 3:
        word = rng.choice(WORDS)
        return {"instruction": f"Spell the word \"{word}\" backwards.", "input": "", "output": word[::-1]}
    if kind == 4:
        words = rng.sample(WORDS, 3)
        return {"instruction": "Write one sentence that uses all of these words.", "input": " ".join(words),
                "output": f"The {words[0]} lay next to the {words[1]}, far from the {words[2]}."}
    n = rng.randrange(2, 6)
    return {"instruction": f"Name {n} things you might find in a house.", "input": "",
            "output": "\n".join(f"{i + 1}. {w.capitalize()}" for i, w in enumerate(rng.sample(WORDS, n)))}


def write_instructions(rng: random.Random) -> None:
    folder = HERE / "instructions"
    folder.mkdir(exist_ok=True)
    records = [instruction(rng) for _ in range(300)]
    (folder / "instructions.json").write_text(json.dumps(records, indent=4, ensure_ascii=False), encoding="utf-8")
    seeds = []
    for i in range(40):
        record = instruction(rng)
        seeds.append({"id": f"seed_task_{i}", "name": f"task_{i}", "instruction": record["instruction"],
                      "instances": [{"input": record["input"], "output": record["output"]}],
                      "is_classification": False})
    with open(folder / "seed_tasks.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(seed, ensure_ascii=False) + "\n" for seed in seeds)


# ---------------------------------------------------------------- WikiText layout from Python's own docs

UNDERLINES = {"*": 1, "=": 2, "-": 3}


def wiki_lines(topic: str) -> list[str]:
    """A pydoc topic as WikiText raw lines: ` = Title = `, ` = = Section = = `, one paragraph a line."""
    out, block = [], []
    lines = topic.splitlines() + [""]

    def flush():
        if block:
            out.extend([" " + " ".join(part.strip() for part in block) + " ", " "])
            block.clear()

    for i, line in enumerate(lines):
        below = lines[i + 1] if i + 1 < len(lines) else ""
        if below and set(below) <= set(UNDERLINES) and len(below) >= len(line.strip()) > 0:
            flush()
            marks = " ".join("=" * UNDERLINES[below[0]])
            out.extend([f" {marks} {line.strip()} {marks} ", " "])
        elif line and set(line) <= set(UNDERLINES):
            continue
        elif not line.strip():
            flush()
        else:
            block.append(line)
    flush()
    return out


def write_wiki() -> None:
    import pydoc_data.topics

    folder = HERE / "pydoc-wiki"
    folder.mkdir(exist_ok=True)
    topics = pydoc_data.topics.topics
    for name, keys in (("wiki.valid.raw", ["assert", "assignment", "binary", "calls", "class", "compound"]),
                       ("wiki.test.raw", ["for", "if", "import", "lambda", "while"])):
        lines = [" "]
        for key in keys:
            lines += wiki_lines(topics[key])
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit("pydoc-wiki/ was written from Python 3.11's pydoc_data; run this with Python 3.11")
    write_reviews(random.Random(15))
    write_tweets(random.Random(16))
    write_ner(random.Random(17))
    write_instructions(random.Random(18))
    write_wiki()


if __name__ == "__main__":
    main()
