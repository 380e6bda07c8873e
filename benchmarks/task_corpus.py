"""Build the pretraining text of the README's fine-tuning table: one document per line.

General text (Kant, WikiText-2, TinyStories) plus the *training* texts of the fine-tuning tasks
without their labels (SST-2, Twitter entity sentiment, CoLA, CoNLL-2003, AG News): task-adaptive
pretraining (Gururangan et al., 2020). No validation, dev or test text is used: AG News has only
its test file here, so its 1,000-row evaluation slice (`ag_news_slices`, seed 0) is left out.

    python benchmarks/task_corpus.py [DATA_DIR] corpus.txt [SLICES_DIR]

With SLICES_DIR it also writes the labelled slices the budget benchmark fine-tunes on
(benchmarks/budget.sh): ag_news-train-1000.csv / ag_news-eval.csv and sst2-train-1000.tsv.

DATA_DIR (else $BERTFORGE_DATA, else the repository's tests/data) is either a folder laid out like
the development machines' shared data (the README's figures: `../shared/data`, ~14 MB out) or the
repository's tests/data, whose small stand-ins (reviews, tweets, ner) give a ~1 MB smoke-test corpus.
"""

import csv
import os
import random
import sys
from pathlib import Path

REPO_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def paragraphs(path: Path):
    """Blank-line separated paragraphs, their hard line breaks joined."""
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        text = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if text:
            yield text


def column(path: Path, index: int, delimiter: str = ",", header: bool = False):
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        if header:
            next(rows)
        for row in rows:
            if len(row) > index and row[index].strip():
                yield row[index].strip()


def conll_sentences(path: Path):
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                yield " ".join(words)
            words = []
        else:
            words.append(line.split()[0])


def documents(data: Path):
    if not (data / "sst2/train.tsv").is_file():  # the repository's tests/data
        yield from repository_documents(data)
        return
    yield from paragraphs(data / "kant/kant.txt")
    for name in ("wiki.valid.raw", "wiki.test.raw"):
        for line in (data / "wikitext-2" / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.strip().startswith("="):
                yield line.strip()
    for name in ("tinystories_train_head.txt", "tinystories_valid_head.txt"):
        yield from paragraphs(data / "tinystories" / name)
    held_out = {tuple(row) for row in ag_news_slices(data)[1]}
    for row in ag_news_rows(data):
        if tuple(row) not in held_out:
            yield ag_news_text(row)
    yield from column(data / "sst2/train.tsv", 0, "\t", header=True)
    yield from column(data / "twitter-entity-sentiment/twitter_training_one_per_id.csv", 3)
    yield from column(data / "cola/in_domain_train.tsv", 3, "\t")
    yield from conll_sentences(data / "conll2003/train.txt")


def ag_news_rows(data: Path) -> list[list[str]]:
    with (data / "ag_news/test.csv").open(encoding="utf-8", newline="") as f:
        return [row for row in csv.reader(f) if len(row) == 3]


def ag_news_text(row: list[str]) -> str:
    """Title and description as one text; the file writes line breaks as a backslash."""
    return f"{row[1]}. {row[2]}".replace("\\", " ")


def ag_news_slices(data: Path, seed: int = 0, size: int = 1000) -> tuple[list, list]:
    """(train, eval) of the AG News test file: a seeded shuffle, eval = the first `size`, train = the next."""
    rows = ag_news_rows(data)
    random.Random(seed).shuffle(rows)
    return rows[size:2 * size], rows[:size]


def write_slices(data: Path, out: Path) -> None:
    """The labelled slices of the budget benchmark: AG News 1,000 / 1,000 and 1,000 SST-2 sentences (seed 0)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in zip(("train-1000", "eval"), ag_news_slices(data)):
        with (out / f"ag_news-{name}.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([[ag_news_text(row), row[0]] for row in rows])
    lines = (data / "sst2/train.tsv").read_text(encoding="utf-8").splitlines()
    body = lines[1:]
    random.Random(0).shuffle(body)
    (out / "sst2-train-1000.tsv").write_text("\n".join([lines[0], *body[:1000]]) + "\n", encoding="utf-8")


def repository_documents(data: Path):
    yield from paragraphs(data / "kant/kant.txt")
    for name in ("wiki.valid.raw", "wiki.test.raw"):
        for line in (data / "pydoc-wiki" / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.strip().startswith("="):
                yield line.strip()
    yield from paragraphs(data / "tinystories/tinystories_valid_head.txt")
    yield from column(data / "reviews/train.tsv", 0, "\t", header=True)
    yield from column(data / "tweets/training.csv", 3)
    yield from conll_sentences(data / "ner/train.txt")


def main(data: str, out: str, slices: str | None = None) -> None:
    count = 0
    with open(out, "w", encoding="utf-8") as f:
        for doc in documents(Path(data)):
            f.write(" ".join(doc.split()) + "\n")
            count += 1
    print(f"{count:,} documents -> {out} ({Path(out).stat().st_size / 1e6:.1f} MB)")
    if slices:
        write_slices(Path(data), Path(slices))
        print(f"labelled slices -> {slices}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (1, 2, 3):
        sys.exit("usage: python benchmarks/task_corpus.py [DATA_DIR] OUT.txt [SLICES_DIR]")
    if len(args) == 1:
        args = [os.environ.get("BERTFORGE_DATA") or str(REPO_DATA), *args]
    main(*args)
