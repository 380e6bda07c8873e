"""Use a trained run: load it, fill in masked words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import RunConfig, load_config
from .errors import DataError
from .finite import check_finite_model
from .folders import RUN, RUN_CONFIG, folder_kind
from .model import MaskedLM, build_model
from .runtime import resolve_device
from .tokenizer import TextTokenizer, load_tokenizer
from .checkpoint import latest_intact_checkpoint, load_model_weights

MASK_SPELLINGS = re.compile(r"\[MASK\]|<mask>")


@dataclass
class LoadedRun:
    config: RunConfig
    model: MaskedLM
    tokenizer: TextTokenizer
    checkpoint: Path
    device: torch.device


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """The latest checkpoint of a run, in eval mode, with its tokenizer."""
    run_dir = Path(run_dir)
    folder_kind(run_dir, (RUN,), "")
    config = load_config(run_dir / RUN_CONFIG)
    checkpoint = latest_intact_checkpoint(run_dir)
    torch_device = resolve_device(device)
    model = build_model(config.model)
    load_model_weights(model, checkpoint)
    check_finite_model(model, checkpoint)
    model.to(torch_device).eval()
    return LoadedRun(config, model, load_tokenizer(run_dir / "tokenizer"), checkpoint, torch_device)


def encode_with_masks(run: LoadedRun, text: str) -> list[int]:
    """Token ids of `text` where `[MASK]` or `<mask>` become the run's own mask token."""
    if not MASK_SPELLINGS.search(text):
        raise DataError(f"no mask in {text!r}: write [MASK] or <mask> where a word is missing")
    ids = run.tokenizer.encode(MASK_SPELLINGS.sub(run.tokenizer.mask_token, text))
    if len(ids) > run.config.model.max_seq_len:
        raise DataError(f"the text is {len(ids)} tokens long; this model reads at most {run.config.model.max_seq_len}")
    return ids


def fill_mask(run: LoadedRun, text: str, top_k: int = 5) -> list[list[dict]]:
    """For each mask in `text`, the `top_k` most likely tokens with their probabilities."""
    return fill_mask_batch(run, [text], top_k)[0]


@torch.no_grad()
def fill_mask_batch(run: LoadedRun, texts: list[str], top_k: int = 5, batch_size: int = 32) -> list[list[list[dict]]]:
    """`fill_mask` for many texts: similar lengths batched together, the decoder only at the masks."""
    ids = [encode_with_masks(run, text) for text in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # little padding inside a batch
    answers: list = [None] * len(ids)
    names: dict[int, str] = {}  # decoded tokens, reused across sentences
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, answer in zip(chunk, _fill_padded(run, [ids[i] for i in chunk], top_k, names)):
            answers[i] = answer
    return answers


def _fill_padded(run: LoadedRun, ids: list[list[int]], top_k: int, names: dict[int, str]) -> list[list[list[dict]]]:
    pad, mask_id = run.tokenizer.pad_id, run.tokenizer.mask_id
    width = max(len(x) for x in ids)
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=run.device)  # (B, T)
    attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=run.device)
    where = input_ids == mask_id  # (B, T)
    logits = run.model.masked_logits(input_ids, attention, where)  # (masks, V)
    top = logits.float().softmax(dim=-1).topk(min(top_k, logits.shape[-1]), dim=-1)
    rows = [
        [{"token": _name(run, i, names), "token_id": i, "score": p} for p, i in zip(ps, js)]
        for ps, js in zip(top.values.tolist(), top.indices.tolist())
    ]
    counts = where.sum(dim=1).tolist()
    starts = np.cumsum([0, *counts])
    return [rows[a:b] for a, b in zip(starts[:-1], starts[1:])]


def _name(run: LoadedRun, token_id: int, names: dict[int, str]) -> str:
    if token_id not in names:
        names[token_id] = run.tokenizer.decode_token(token_id)
    return names[token_id]


@torch.no_grad()
def embed(run: LoadedRun, texts: list[str], pooling: str = "mean", batch_size: int = 32) -> np.ndarray:
    """(len(texts), hidden) sentence vectors: the mean of the real tokens' final states, or `<s>`/`[CLS]`'s."""
    if pooling not in ("mean", "cls"):
        raise DataError(f"pooling must be mean or cls, got {pooling!r}")
    if not texts or not all(t.strip() for t in texts):
        raise DataError("empty text: give at least one non-empty line to embed")
    max_len = run.config.model.max_seq_len
    ids = [run.tokenizer.encode(text)[:max_len] for text in texts]  # longer texts are cut to the positions
    out = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        width = max(map(len, chunk))
        batch = torch.tensor([x + [run.tokenizer.pad_id] * (width - len(x)) for x in chunk], device=run.device)
        mask = (batch != run.tokenizer.pad_id).long()  # (B, T)
        h = run.model.encoder(batch, mask).float()  # (B, T, H)
        if pooling == "cls":
            out.append(h[:, 0])
        else:
            out.append((h * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True))
    return torch.cat(out).cpu().numpy()


def word_pieces(run: LoadedRun, word: str) -> list[int]:
    """The token ids of `word` as it appears inside a sentence: byte-level BPE spells that with
    the space before it (`Ġreason`), its own vocabulary entry, not the pieces of `reason`."""
    if run.tokenizer.kind == "bytelevel-bpe" and not word.startswith(" "):
        word = " " + word
    return run.tokenizer.encode(word, add_special_tokens=False)


@torch.no_grad()
def similar(run: LoadedRun, word: str, top_k: int = 10) -> list[dict]:
    """Tokens whose input embeddings are closest (cosine) to `word`'s (the mean of its pieces, as
    inside a sentence)."""
    pieces = word_pieces(run, word)
    if not word.strip() or not pieces:
        raise DataError("give a word to look up")
    table = run.model.encoder.embeddings.tokens.weight.float()  # (V, H)
    query = table[pieces].mean(dim=0)
    scores = torch.nn.functional.cosine_similarity(table, query[None], dim=-1)  # (V,)
    scores[pieces + run.tokenizer.special_ids] = -2.0  # neither the word itself nor special tokens
    top = scores.topk(min(top_k, len(scores)))
    return [
        {"token": run.tokenizer.decode_token(int(i)), "token_id": int(i), "score": float(s)}
        for s, i in zip(top.values, top.indices)
    ]
