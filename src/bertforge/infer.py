"""Use a trained run: load it, fill in masked words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import RunConfig, load_config
from .errors import DataError
from .model import MaskedLM
from .runtime import resolve_device
from .tokenizer import TextTokenizer, load_tokenizer
from .train.checkpoint import latest_checkpoint, load_model_weights

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
    if not (run_dir / "config.yaml").is_file():
        raise DataError(f"{run_dir} is not a bertforge run folder (no config.yaml); train one with `bertforge pretrain`")
    config = load_config(run_dir / "config.yaml")
    checkpoint = latest_checkpoint(run_dir)
    torch_device = resolve_device(device)
    model = MaskedLM(config.model)
    load_model_weights(model, checkpoint)
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


@torch.no_grad()
def fill_mask(run: LoadedRun, text: str, top_k: int = 5) -> list[list[dict]]:
    """For each mask in `text`, the `top_k` most likely tokens with their probabilities."""
    ids = encode_with_masks(run, text)
    input_ids = torch.tensor([ids], device=run.device)
    logits = run.model(input_ids).logits[0]  # (T, V)
    positions = (input_ids[0] == run.tokenizer.mask_id).nonzero().flatten()
    probs = logits[positions].float().softmax(dim=-1)  # (masks, V)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [{"token": run.tokenizer.decode_token(int(i)), "score": float(p)} for p, i in zip(row_p, row_i)]
        for row_p, row_i in zip(top.values, top.indices)
    ]
