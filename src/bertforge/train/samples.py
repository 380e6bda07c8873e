"""Fill-mask samples during pretraining: a few fixed validation sentences with one word masked,
and the model's top-3 guesses for it at every evaluation, so a user watches the guesses improve.

The sentences are picked once, from the validation shards alone, with a generator of their own
seeded by `train.eval_seed`: picking and predicting never touch the training RNG streams (the
model runs in eval mode, where dropout draws nothing), so exact resume is kept. Rank 0 predicts
and logs; under FSDP, whose forward is a collective, the samples are left out.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import BertforgeError
from ..infer import LoadedRun, fill_mask_batch
from ..shards import PackedShards
from ..tokenizer import TextTokenizer, load_tokenizer
from .distributed import is_sharded

log = logging.getLogger(__name__)

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
WORD = re.compile(r"\b[A-Za-z]{3,}\b")
TOP_K = 3
SCAN_SEQUENCES = 200  # validation sequences read to find candidate sentences


def candidate_sentences(tokenizer: TextTokenizer, rows: np.ndarray, max_tokens: int) -> list[str]:
    """Whole sentences of the packed rows: capitalised, ending in . ! or ?, 5 to 30 words, short
    enough for the model. Rows are cut apart at special tokens (document boundaries) first."""
    out: list[str] = []
    special = set(tokenizer.special_ids)
    for row in rows:
        pieces, current = [], []
        for i in row.tolist():
            if i in special:
                pieces.append(current)
                current = []
            else:
                current.append(i)
        pieces.append(current)
        for ids in pieces:
            sentences = SENTENCE_END.split(tokenizer.decode(ids).strip())
            for s in sentences[1:-1] if len(sentences) > 2 else []:  # the first and last may be cut off
                s = " ".join(s.split())
                if s[:1].isupper() and s[-1:] in ".!?" and 5 <= len(s.split()) <= 30:
                    if len(tokenizer.encode(s)) <= max_tokens:
                        out.append(s)
    return list(dict.fromkeys(out))  # unique, in reading order


def mask_one_word(tokenizer: TextTokenizer, sentence: str, rng: np.random.Generator) -> dict | None:
    """The sentence with one word that is a single token replaced by the mask, and that word."""
    spans = [m.span() for m in WORD.finditer(sentence)]
    for k in rng.permutation(len(spans)).tolist():
        a, b = spans[k]
        masked = sentence[:a] + tokenizer.mask_token + sentence[b:]
        ids, original = tokenizer.encode(masked), tokenizer.encode(sentence)
        if len(ids) == len(original) and sum(x != y for x, y in zip(ids, original)) == 1:
            return {"text": masked, "answer": sentence[a:b]}
    return None


def pick_samples(tokenizer: TextTokenizer, shards, count: int, seed: int, max_tokens: int) -> list[dict]:
    """`count` sentences of the validation split, each with one masked word; the same every time."""
    rows = shards[: min(len(shards), SCAN_SEQUENCES)]
    candidates = candidate_sentences(tokenizer, rows, max_tokens)
    rng = np.random.default_rng(seed)
    samples = []
    for i in rng.permutation(len(candidates)).tolist():
        sample = mask_one_word(tokenizer, candidates[i], rng)
        if sample is not None:
            samples.append(sample)
        if len(samples) == count:
            break
    return samples


@functools.lru_cache(maxsize=8)
def _samples_for(data_dir: str, count: int, seed: int, max_tokens: int) -> tuple[TextTokenizer, list[dict]]:
    tokenizer = load_tokenizer(Path(data_dir) / "tokenizer")
    samples = pick_samples(tokenizer, PackedShards(data_dir, "validation"), count, seed, max_tokens)
    if not samples:
        log.info("no whole sentences found in the validation split: no fill-mask samples are logged")
    return tokenizer, samples


@torch.no_grad()
def predict_samples(model, tokenizer: TextTokenizer, config, samples: list[dict], device) -> list[dict]:
    """Each sample with its top-3 guesses: [{token, score}], scores as probabilities."""
    was_training = model.training
    model.eval()  # no dropout: nothing is drawn from the RNG
    try:
        run = LoadedRun(config, model, tokenizer, Path(), device)
        answers = fill_mask_batch(run, [s["text"] for s in samples], TOP_K)
    finally:
        model.train(was_training)
    return [
        {**s, "predictions": [{"token": c["token"], "score": round(c["score"], 4)} for c in answer[0]]}
        for s, answer in zip(samples, answers)
    ]


def as_markdown(samples: list[dict]) -> str:
    """A table for TensorBoard's text tab."""
    lines = ["| sentence | answer | 1st | 2nd | 3rd |", "|---|---|---|---|---|"]
    for s in samples:
        guesses = [f"{p['token']} ({p['score']:.3f})" for p in s["predictions"]]
        cells = [s["text"], s["answer"], *guesses, *[""] * (TOP_K - len(guesses))]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def log_samples(t) -> None:
    """At an evaluation: the samples' guesses into metrics.jsonl (split "samples") and TensorBoard.

    `t` is the loop's Trainer. Rank 0 only; nothing on FSDP or without samples."""
    count = t.cfg.train.fill_mask_samples
    if not count or t.val_data is None or not t.world.is_main or is_sharded(t.model):
        return
    try:
        tokenizer, samples = _samples_for(str(t.val_data.data_dir), count, t.cfg.train.eval_seed, t.cfg.model.max_seq_len)
        if not samples:
            return
        predicted = predict_samples(t.model, tokenizer, t.cfg, samples, t.device)
    except BertforgeError as e:  # a sample the model cannot read: never stop training for it
        log.warning("fill-mask samples skipped: %s", e)
        return
    t.metrics.write("samples", t.state.step, {"samples": predicted})
    t.metrics.text("fill_mask", as_markdown(predicted), t.state.step)
