"""`bertforge bench downstream`: what N minutes of pretraining buy on a labelled task.

Pretrain for a budget (the `pretrain --budget` recipe), then fine-tune that model and the same shape from
random init with the same settings on a seeded train/eval slice of a labelled file, beside TF-IDF + logistic
regression (tuned on the eval split's validation role) and the majority class: one table.
"""

from __future__ import annotations

import csv
import random
import logging
from pathlib import Path

from ..api import pretrain
from ..checkpoint import latest_checkpoint
from ..errors import DataError
from ..files import read_json
from ..finetune import comparison_table, finetune
from ..finetune.data import read_table
from ..finetune.search import parse_search
from .speed import REPO_DATA


def default_paths() -> tuple[Path, Path]:
    """(labelled file, pretraining corpus) of the repository's tests/data."""
    return REPO_DATA / "reviews" / "train.tsv", REPO_DATA / "kant" / "kant.txt"


def read_rows(path: Path, text_column: str, label_column: str) -> list[dict]:
    """Rows of a labelled CSV/TSV/JSON-lines file, read as fine-tuning reads it; the columns must exist."""
    columns = {"text_column": text_column, "label_column": label_column}
    rows = [{"text": r["text_column"], "label": r["label_column"]} for r in read_table(path, columns) if r["text_column"]]
    if len(rows) < 4:
        raise DataError(f"{path}: {len(rows)} labelled rows; need at least 4 to split train/eval")
    return rows


def split_rows(rows: list[dict], train_examples: int, eval_examples: int, seed: int) -> tuple[list, list]:
    """A seeded shuffle, then the first `train_examples` to train and the next `eval_examples` to score."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    eval_n = min(eval_examples, len(order) // 4) if eval_examples else len(order) // 4
    eval_rows, rest = order[:eval_n], order[eval_n:]
    return rest[:train_examples], eval_rows


def write_tsv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["text", "label"])
        writer.writerows([[r["text"].replace("\t", " "), r["label"]] for r in rows])
    return path


def pretrain_budget(corpus: Path, out: Path, budget: str, preset: str | None, sets: list[str]) -> None:
    """The same path as `bertforge pretrain --corpus C --budget B`: tokenizer, shards, recipe, training."""
    bertforge = logging.getLogger("bertforge")
    level = bertforge.level
    bertforge.setLevel(logging.WARNING)  # the table is the output; the run's own lines would bury it
    try:
        pretrain(corpus=str(corpus), out=out, budget=budget, preset=preset, settings=sets, progress=False)
    finally:
        bertforge.setLevel(level)


def bench_downstream(
    labelled: Path, corpus: Path, work_dir: Path, minutes: float, text_column: str = "sentence",
    label_column: str = "label", train_examples: int = 1000, eval_examples: int = 500, seed: int = 0,
    preset: str | None = None, pretrain_sets: list[str] | None = None, finetune_sets: list[str] | None = None,
    finetune_search: list[str] | None = None,
) -> dict:
    """Pretrain, then fine-tune pretrained and random init alike, with the baselines; returns the metrics."""
    parse_search(finetune_search)  # a bad grid fails now, not after the pretraining minutes
    rows = read_rows(labelled, text_column, label_column)
    train, evaluation = split_rows(rows, train_examples, eval_examples, seed)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_tsv, eval_tsv = write_tsv(work_dir / "train.tsv", train), write_tsv(work_dir / "eval.tsv", evaluation)
    run = work_dir / "pretrained"
    pretrain_budget(Path(corpus), run, f"{minutes * 60:g}s", preset, pretrain_sets or [])
    settings = ["finetune.text_column=text", "finetune.label_column=label", f"finetune.seed={seed}",
                *(finetune_sets or [])]
    metrics = finetune(run, train_tsv, eval_tsv, work_dir / "finetuned", settings=settings, baselines=True,
                       progress=False, search=finetune_search)
    return {"minutes": minutes, "labelled": str(labelled), "corpus": str(corpus),
            "examples": {"train": len(train), "eval": len(evaluation)},
            "pretrain_steps": pretrain_steps(run), "metrics": metrics}


def pretrain_steps(run: Path) -> int:
    """Optimizer steps the pretraining took (from its latest checkpoint)."""
    return int(read_json(latest_checkpoint(run) / "trainer.json")["step"])


def format_downstream(result: dict) -> str:
    """One table: pretrained and random-init fine-tuning, TF-IDF + LR (tuned), majority class."""
    m = result["metrics"]
    tuned = m["baselines"].get("tfidf_logreg", {}).get("setting", {})
    head = (f"downstream after {result['minutes']:g} min of pretraining ({result['pretrain_steps']} steps); "
            f"fine-tuning on {result['examples']['train']} examples, scored on {result['examples']['eval']} "
            f"held out (the 'validation' columns); pretrained {m['epochs'][-1]['step']} steps, "
            f"random init {m['baselines']['random_init']['steps']} steps; "
            f"TF-IDF tuned: {tuned.get('features')} n-grams, C={tuned.get('C')}")
    return head + "\n" + comparison_table(m)
