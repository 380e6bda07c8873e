"""Build the pretraining text of the README's fine-tuning table: one document per line.

General text (Kant, WikiText-2, TinyStories, AG News) plus the *training* texts of the four
fine-tuning tasks without their labels (SST-2, Twitter entity sentiment, CoLA, CoNLL-2003):
task-adaptive pretraining (Gururangan et al., 2020). No validation, dev or test text is used.

    python benchmarks/task_corpus.py [DATA_DIR] corpus.txt

DATA_DIR (else $BERTFORGE_DATA, else the repository's tests/data) is either a folder laid out like
the development machines' shared data (the README's figures: `../shared/data`, ~14 MB out) or the
repository's tests/data, whose small stand-ins (reviews, tweets, ner) give a ~1 MB smoke-test corpus.
"""

import csv
import os
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
    with (data / "ag_news/test.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            yield f"{row[1]}. {row[2]}".replace("\\", " ")
    yield from column(data / "sst2/train.tsv", 0, "\t", header=True)
    yield from column(data / "twitter-entity-sentiment/twitter_training_one_per_id.csv", 3)
    yield from column(data / "cola/in_domain_train.tsv", 3, "\t")
    yield from conll_sentences(data / "conll2003/train.txt")


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


def main(data: str, out: str) -> None:
    count = 0
    with open(out, "w", encoding="utf-8") as f:
        for doc in documents(Path(data)):
            f.write(" ".join(doc.split()) + "\n")
            count += 1
    print(f"{count:,} documents -> {out} ({Path(out).stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (1, 2):
        sys.exit("usage: python benchmarks/task_corpus.py [DATA_DIR] OUT.txt")
    main(args[0] if len(args) == 2 else os.environ.get("BERTFORGE_DATA") or str(REPO_DATA), args[-1])
