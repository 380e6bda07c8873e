"""`make demo`: a small end-to-end pretraining that needs no download.

The corpus is the reference documentation that ships inside CPython (`pydoc_data.topics`,
the text behind `help("if")`): real English prose about Python, about 1 MB.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from .config import CorpusConfig, build_config
from .files import atomic_write_text
from .infer import LoadedRun, fill_mask, load_run
from .model import MaskedLM

log = logging.getLogger(__name__)

# Sentences of the demo's own text (Python's help topics, quotes as written there), one word masked:
# the first run should show a model that learned its text, and a user can check each answer.
DEMO_SENTENCES = (
    ('The "<mask>" statement is used for conditional execution.', "if"),
    ('The "for" statement is used to iterate over the elements of a <mask>.', "sequence"),
    ('The "while" statement is used for repeated <mask> as long as an expression is true.', "execution"),
    ("Changed in <mask> 3.1: Support for multiple context expressions.", "version"),  # 109 "in version" notes
)


def python_docs_corpus(out: Path) -> Path:
    """Write Python's bundled help topics as plain text, one blank line between paragraphs."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name].strip() for name in sorted(topics))
    path = out / "python-docs.txt"
    atomic_write_text(path, text + "\n")
    return path


def run_demo(out: Path, corpus: str | None = None, max_steps: int = 2000, progress: bool = True) -> list:
    """Tokenizer, shards, pretraining and fill-mask on a small model; prints the answers."""
    from .corpus import iter_documents
    from .shards import prepare
    from .tokenizer import train_tokenizer
    from .checkpoint import checkpoint_dirs
    from .train.loop import pretrain

    if corpus is not None:  # a bad --corpus is one error line before anything is written
        next(iter_documents([corpus], CorpusConfig()), None)
    out.mkdir(parents=True, exist_ok=True)
    source = corpus or str(python_docs_corpus(out))
    cfg = build_config(
        preset="tiny",
        overrides={
            "tokenizer": {"vocab_size": 4000},
            "data": {"seq_len": 64},
            # Pre-LN without dropout at a high LR: what learns fastest in a two-minute budget
            # (on this corpus: validation loss 6.30 post-LN/dropout/1e-3 vs 6.07 after 600 steps).
            "model": {"hidden_size": 128, "num_heads": 4, "intermediate_size": 512, "vocab_size": 4000,
                      "norm": "pre", "hidden_dropout": 0.0, "attention_dropout": 0.0},
            "train": {"max_steps": max_steps, "batch_size": 32, "lr": 2e-3, "warmup_steps": 100,
                      "eval_every_steps": 500, "save_every_steps": 1000},
        },
    )
    run_dir = out / "run"
    tokenizer = train_tokenizer(iter_documents([source], cfg.corpus), cfg.tokenizer, out / "tokenizer")
    data_dir = prepare([source], tokenizer, cfg.data, cfg.corpus, out / "data", progress=progress)
    if checkpoint_dirs(run_dir):
        log.info("%s already trained; delete it to train again", run_dir)
    else:
        pretrain(cfg, data_dir, run_dir, progress=progress)
    trained = load_run(run_dir)
    untrained = replace(trained, model=untrained_model(trained))
    return show_answers(untrained, trained)


def untrained_model(run: LoadedRun) -> MaskedLM:
    """The same shape freshly initialised with the run's seed: what the model answered before training."""
    torch.manual_seed(run.config.train.seed)
    return MaskedLM(run.config.model).to(run.device).eval()


def show_answers(before: LoadedRun, after: LoadedRun) -> list:
    """Top-5 guesses for each demo sentence before and after training, side by side; returns the trained ones."""
    answers, right = [], 0
    for sentence, word in DEMO_SENTENCES:
        old, new = fill_mask(before, sentence, top_k=5)[0], fill_mask(after, sentence, top_k=5)[0]
        answers.append(new)
        found = word in [c["token"].strip() for c in new]
        right += found
        print(f"{sentence}   (answer: {word})")
        print(f"    before training: {guesses(old)}")
        print(f"    after training:  {guesses(new)}   {'right word in the top 5' if found else ''}".rstrip())
    print(f"right word in the top 5 for {right} of {len(DEMO_SENTENCES)} sentences")
    return answers


def guesses(top: list[dict]) -> str:
    return ", ".join(f"{c['token'].strip() or repr(c['token'])} ({c['score']:.2f})" for c in top)
