"""Validation metrics: MLM loss, perplexity, masked-token top-1 / top-5 accuracy; for a causal LM
(train.objective=clm) the same over next-token predictions (`next_token_accuracy`).

`bits_per_byte` is the same loss per byte of the predicted tokens' text instead of per token (in
bits): loss and perplexity depend on the tokenizer (a 4k vocabulary predicts easier, smaller
pieces than a 32k one), bits per byte compares runs whose tokenizers differ.

Masks come from a fixed seed and the standard recipe (15%, 80/10/10), whatever the training
recipe, so two evaluations of a run, or of two runs, compare like with like. A sequence's mask
depends only on the seed and its index, so the metrics do not depend on the batch size nor on
how the sequences are split over ranks: under torchrun each rank evaluates its own batches and
the loop adds up the *sums* (`evaluate_sums`), never averages of averages.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .config import MaskingConfig
from .masking import MaskingVocab, causal_labels, mask_tokens, sequence_seeds
from .model import MaskedLM
from .pairs import pair_inputs
from .runtime import autocast

EVAL_MASKING = MaskingConfig()
SUM_KEYS = ("loss_sum", "masked_tokens", "correct", "correct5")
PAIR_SUM_KEYS = ("sentence_loss_sum", "sentence_correct", "sentence_pairs")  # mlm+nsp / mlm+sop
# electra: the discriminator's detection over every real token, and its hits on the replaced ones
RTD_SUM_KEYS = ("rtd_loss_sum", "rtd_correct", "rtd_tokens", "replaced_correct", "replaced_tokens")
# top-1 accuracy's name per objective
ACCURACY_KEY = {
    "mlm": "masked_accuracy", "clm": "next_token_accuracy", "mlm+nsp": "masked_accuracy", "mlm+sop": "masked_accuracy",
    "electra": "masked_accuracy",  # of the generator; the discriminator's is `detection_accuracy`
}


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 50 else float("inf")


def attention_mask_for(ids: np.ndarray, pad_id: int, eos_id: int | None = None) -> torch.Tensor | None:
    """(B, T) 1/0 mask, or None for fully packed batches (then SDPA runs unmasked).

    With `eos_id` (data.isolate_documents): the number of each token's document instead, 1, 2, ...
    counted along the row (0 on padding). A packed row is `bos doc1 eos doc2 eos ... eos`; a
    document's eos closes it, so a token belongs to 1 + the number of eos strictly before it."""
    pads = ids == pad_id
    if eos_id is None:
        return None if not pads.any() else torch.from_numpy(~pads)
    closed = np.cumsum(ids == eos_id, axis=1) - (ids == eos_id)  # eos strictly before each position
    return torch.from_numpy(np.where(pads, 0, closed + 1))


@torch.no_grad()
def evaluate_sums(
    model: torch.nn.Module,
    shards,
    vocab: MaskingVocab,
    batch_size: int,
    num_sequences: int,
    seed: int = 1234,
    device: torch.device = torch.device("cpu"),
    amp_dtype: torch.dtype | None = None,
    rank: int = 0,
    world_size: int = 1,
    lockstep: bool = False,
    objective: str = "mlm",
    loss_on: str = "all",
    isolate_documents: bool = False,
) -> dict[str, float]:
    """Summed loss, masked-token count and top-1/top-5 hits over the first `num_sequences` sequences.

    Batch b (of `batch_size` sequences) is evaluated by rank b % world_size. With `lockstep`
    (FSDP, whose forward is a collective) every rank runs the same number of forwards: a rank
    without a batch left evaluates batch 0 again and drops the result.
    """
    was_training = model.training
    model.eval()
    extra_keys = (PAIR_SUM_KEYS if getattr(shards, "pairs", "") else ()) + (RTD_SUM_KEYS if objective == "electra" else ())
    extra_keys += ("predicted_bytes",) if vocab.byte_length is not None else ()
    sums = dict.fromkeys(SUM_KEYS + extra_keys, 0.0)
    num_batches = math.ceil(num_sequences / batch_size)
    rounds = math.ceil(num_batches / world_size) if lockstep else None
    mine = list(range(rank, num_batches, world_size))
    for i in range(rounds if lockstep else len(mine)):
        start = (mine[i] if i < len(mine) else 0) * batch_size
        indices = np.arange(start, min(num_sequences, start + batch_size))
        batch = batch_sums(model, shards, vocab, indices, seed, device, amp_dtype, objective, loss_on, isolate_documents)
        if i < len(mine):
            sums = {k: sums[k] + batch[k] for k in sums}
    model.train(was_training)
    return sums


def batch_sums(
    model: torch.nn.Module, shards, vocab: MaskingVocab, indices: np.ndarray, seed: int, device, amp_dtype,
    objective: str = "mlm", loss_on: str = "all", isolate_documents: bool = False,
) -> dict[str, float]:
    """The sums of `evaluate_sums` for the sequences `indices`, masked by (seed, index) or, for a
    causal LM, predicting every next token (only the responses' with loss_on=response)."""
    ids = shards[indices]  # (B, T)
    if objective == "clm":
        loss_mask = torch.from_numpy(shards.loss_mask(indices)) if loss_on == "response" else None
        inputs = torch.from_numpy(ids)
        labels = causal_labels(inputs, shards.pad_id, loss_mask)
    else:
        inputs, labels = mask_tokens(torch.from_numpy(ids), vocab, EVAL_MASKING, sequence_seeds(seed, 0, indices))
    mask = attention_mask_for(ids, shards.pad_id, shards.eos_id if isolate_documents else None)
    extra = pair_inputs(shards, indices, device) if getattr(model, "sentence", None) is not None else {}
    with autocast(device, amp_dtype):
        out = model(inputs.to(device), None if mask is None else mask.to(device), labels.to(device), **extra)
    logits, targets = out.logits.float().reshape(-1, out.logits.shape[-1]), out.labels.reshape(-1)
    keep = targets != -100
    logits, targets = logits[keep], targets[keep]
    top5 = logits.topk(5, dim=-1).indices
    sums = {
        "loss_sum": F.cross_entropy(logits, targets, reduction="sum").item(),
        "masked_tokens": targets.numel(),
        "correct": (top5[:, 0] == targets).sum().item(),
        "correct5": (top5 == targets[:, None]).any(dim=-1).sum().item(),
    }
    if vocab.byte_length is not None:  # the text bytes behind the predicted tokens, for bits per byte
        sums["predicted_bytes"] = vocab.byte_length[targets.cpu()].sum().item()
    if extra:  # the sentence task: NSP / SOP accuracy on the first token's head
        sentence_logits, sentence_labels = out.sentence_logits.float(), extra["sentence_labels"]
        sums["sentence_loss_sum"] = F.cross_entropy(sentence_logits, sentence_labels, reduction="sum").item()
        sums["sentence_correct"] = (sentence_logits.argmax(-1) == sentence_labels).sum().item()
        sums["sentence_pairs"] = sentence_labels.numel()
    if out.rtd_logits is not None:
        sums.update(detection_sums(out.rtd_logits.float(), out.rtd_labels))
    return sums


def detection_sums(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """ELECTRA's discriminator on one batch: summed loss and hits over real tokens, hits on replaced ones."""
    real = labels != -100
    logits, labels = logits[real], labels[real].float()
    hits = (logits > 0).float() == labels
    return {
        "rtd_loss_sum": F.binary_cross_entropy_with_logits(logits, labels, reduction="sum").item(),
        "rtd_correct": hits.sum().item(),
        "rtd_tokens": labels.numel(),
        "replaced_correct": hits[labels == 1].sum().item(),
        "replaced_tokens": (labels == 1).sum().item(),
    }


def metrics_from_sums(sums: dict[str, float], objective: str = "mlm") -> dict:
    total = max(sums["masked_tokens"], 1)
    loss = sums["loss_sum"] / total
    pairs = {}
    if sums.get("sentence_pairs"):
        pairs = {
            "sentence_loss": sums["sentence_loss_sum"] / sums["sentence_pairs"],
            "sentence_accuracy": sums["sentence_correct"] / sums["sentence_pairs"],
        }
    if sums.get("rtd_tokens"):
        pairs = {
            "detection_loss": sums["rtd_loss_sum"] / sums["rtd_tokens"],
            "detection_accuracy": sums["rtd_correct"] / sums["rtd_tokens"],
            "replaced_recall": sums["replaced_correct"] / max(sums["replaced_tokens"], 1),
        }
    per_byte = {}
    if sums.get("predicted_bytes"):
        per_byte = {"bits_per_byte": sums["loss_sum"] / sums["predicted_bytes"] / math.log(2)}
    return {
        **pairs,
        "loss": loss,
        "perplexity": perplexity(loss),
        **per_byte,
        ACCURACY_KEY[objective]: sums["correct"] / total,
        "top5_accuracy": sums["correct5"] / total,
        "predicted_tokens" if objective == "clm" else "masked_tokens": int(sums["masked_tokens"]),
    }


def evaluate_split(
    model: MaskedLM,
    shards,
    vocab: MaskingVocab,
    batch_size: int,
    max_batches: int = 0,
    seed: int = 1234,
    device: torch.device = torch.device("cpu"),
    amp_dtype: torch.dtype | None = None,
    objective: str = "mlm",
    loss_on: str = "all",
    isolate_documents: bool = False,
) -> dict:
    """Metrics over the first `max_batches` batches of `shards` (all of it when 0), in one process."""
    count = eval_sequences(len(shards), batch_size, max_batches)
    sums = evaluate_sums(
        model, shards, vocab, batch_size, count, seed, device, amp_dtype, objective=objective, loss_on=loss_on,
        isolate_documents=isolate_documents,
    )
    return metrics_from_sums(sums, objective)


def eval_sequences(available: int, batch_size: int, max_batches: int) -> int:
    """How many sequences `max_batches` batches cover (all of them when 0)."""
    return min(available, max_batches * batch_size) if max_batches else available
