"""Validation metrics: MLM loss, perplexity, masked-token top-1 / top-5 accuracy.

Masks come from a fixed seed and the standard recipe (15%, 80/10/10), whatever the training
recipe, so two evaluations of a run, or of two runs, compare like with like.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .config import MaskingConfig
from .masking import MaskingVocab, mask_tokens, step_generator
from .model import MaskedLM
from .runtime import autocast
from .train.metrics import perplexity

EVAL_MASKING = MaskingConfig()


def attention_mask_for(ids: np.ndarray, pad_id: int) -> torch.Tensor | None:
    """(B, T) 1/0 mask, or None for fully packed batches (then SDPA runs unmasked)."""
    pads = ids == pad_id
    return None if not pads.any() else torch.from_numpy(~pads)


@torch.no_grad()
def evaluate_split(
    model: MaskedLM,
    shards,
    vocab: MaskingVocab,
    batch_size: int,
    max_batches: int = 0,
    seed: int = 1234,
    device: torch.device = torch.device("cpu"),
    amp_dtype: torch.dtype | None = None,
) -> dict:
    """Metrics over the first `max_batches` batches of `shards` (all of it when 0)."""
    was_training = model.training
    model.eval()
    total_loss, total, correct, correct5 = 0.0, 0, 0, 0
    num_batches = math.ceil(len(shards) / batch_size)
    if max_batches:
        num_batches = min(num_batches, max_batches)
    for b in range(num_batches):
        ids = shards[np.arange(b * batch_size, min(len(shards), (b + 1) * batch_size))]
        inputs, labels = mask_tokens(torch.from_numpy(ids), vocab, EVAL_MASKING, step_generator(seed, b))
        mask = attention_mask_for(ids, shards.pad_id)
        with autocast(device, amp_dtype):
            out = model(inputs.to(device), None if mask is None else mask.to(device), labels.to(device))
        logits, targets = out.logits.float().reshape(-1, out.logits.shape[-1]), out.labels.reshape(-1)
        keep = targets != -100
        logits, targets = logits[keep], targets[keep]
        total_loss += F.cross_entropy(logits, targets, reduction="sum").item()
        top5 = logits.topk(5, dim=-1).indices
        correct += (top5[:, 0] == targets).sum().item()
        correct5 += (top5 == targets[:, None]).any(dim=-1).sum().item()
        total += targets.numel()
    model.train(was_training)
    loss = total_loss / max(total, 1)
    return {
        "loss": loss,
        "perplexity": perplexity(loss),
        "masked_accuracy": correct / max(total, 1),
        "top5_accuracy": correct5 / max(total, 1),
        "masked_tokens": total,
    }
