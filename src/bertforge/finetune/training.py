"""Training and evaluating a classifier: the context, epochs, evaluation and the best-epoch fit."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..console import live_progress
from ..model import IGNORE_INDEX
from ..runtime import autocast
from ..train.optim import build_optimizer, optimizer_step, set_lr
from ..train.schedule import lr_factor
from .config import FinetuneConfig, FinetuneRunConfig
from .data import Encoded, collate, length_grouped_batches
from .metrics import brief, scalars, classify_metrics, ner_metrics
from .model import Classifier, layer_lr_scales

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- training


@dataclass
class Context:
    """What training and evaluation share."""

    cfg: FinetuneRunConfig
    labels: list
    pad_id: int
    device: torch.device
    amp_dtype: torch.dtype | None
    class_weight: torch.Tensor | None = None

    @property
    def task(self) -> str:
        return self.cfg.finetune.task


def balanced_weights(train: Encoded, num_labels: int) -> torch.Tensor:
    """n / (classes x count) per class, as scikit-learn's class_weight="balanced"."""
    flat = np.array([x for row in train.labels for x in row] if train.first_pieces is not None else train.labels)
    counts = np.bincount(flat[flat != IGNORE_INDEX], minlength=num_labels).astype(np.float64)
    return torch.tensor(counts.sum() / (num_labels * np.maximum(counts, 1)), dtype=torch.float32)


def loss_of(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy in fp32 over (B, C) or (B, T, C) logits; IGNORE_INDEX positions do not count."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(flat, labels.reshape(-1), weight=weight, ignore_index=IGNORE_INDEX)


def forward(model: Classifier, ctx: Context, batch: dict) -> torch.Tensor:
    """Logits of a collated batch, under bf16 autocast when the context asks for it."""
    with autocast(ctx.device, ctx.amp_dtype):
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


def step_plan(cfg: FinetuneConfig, examples: int) -> tuple[int, int]:
    """(total optimizer steps, steps per epoch)."""
    per_epoch = math.ceil(examples / cfg.batch_size)
    return cfg.max_steps or cfg.epochs * per_epoch, per_epoch


def train_epoch(
    model: Classifier, ctx: Context, data: Encoded, epoch: int, optimizer, step: int, total: int, bar
) -> tuple[int, float]:
    """One pass in a seeded shuffled order (stops at `total` steps); returns the step and the mean loss."""
    cfg = ctx.cfg.finetune
    warmup = round(cfg.warmup_fraction * total)
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    model.train()
    losses = []
    for index in length_grouped_batches([len(ids) for ids in data.ids], cfg.batch_size, generator):
        if step >= total:
            break
        set_lr(optimizer, cfg.lr * lr_factor(step, total, warmup))
        batch = collate(data, index, ctx.pad_id, ctx.device)
        loss = loss_of(forward(model, ctx, batch), batch["labels"], ctx.class_weight)
        loss.backward()
        optimizer_step(optimizer, model.parameters(), cfg.clip_grad_norm)
        step += 1
        losses.append(loss.detach())
        bar.update(1)
    return step, float(torch.stack(losses).mean()) if losses else float("nan")


@torch.no_grad()
def predict_encoded(model: Classifier, ctx: Context, data: Encoded) -> tuple[list[np.ndarray], float]:
    """Class probabilities per example (C,) or per word (W, C; zeros for words cut off), and the mean loss."""
    model.eval()
    by_length = sorted(range(len(data)), key=lambda i: len(data.ids[i]))  # little padding; results go back in order
    outputs, loss_sum, count = [None] * len(data), 0.0, 0
    for start in range(0, len(data), ctx.cfg.finetune.eval_batch_size):
        index = by_length[start : start + ctx.cfg.finetune.eval_batch_size]
        batch = collate(data, index, ctx.pad_id, ctx.device)
        logits = forward(model, ctx, batch).float()
        labelled = int((batch["labels"] != IGNORE_INDEX).sum())
        loss_sum += float(loss_of(logits, batch["labels"], None)) * labelled
        count += labelled
        probs = logits.softmax(dim=-1).cpu().numpy()
        for p, i in zip(probs, index):
            outputs[i] = p if data.first_pieces is None else _word_probs(p, data.first_pieces[i])
    return outputs, loss_sum / max(count, 1)


def _word_probs(token_probs: np.ndarray, first: list[int]) -> np.ndarray:
    """(T, C) token probabilities -> (W, C) at each word's first piece; a cut-off word gets zeros (-> id 0, O)."""
    out = np.zeros((len(first), token_probs.shape[-1]), dtype=np.float32)
    for word, position in enumerate(first):
        if position >= 0:
            out[word] = token_probs[position]
    return out


def evaluate(model: Classifier, ctx: Context, data: Encoded, gold) -> dict:
    """The task's metrics on one split; `gold` is the class ids or the tag-id lists of the words."""
    probs, loss = predict_encoded(model, ctx, data)
    if ctx.task == "classify":
        return {**classify_metrics(gold, [int(p.argmax()) for p in probs], ctx.labels), "loss": loss}
    pred = [[ctx.labels[i] for i in p.argmax(axis=-1)] for p in probs]
    return {**ner_metrics([[ctx.labels[i] for i in g] for g in gold], pred), "loss": loss}


def improved(metric: str, value: float, best: float | None) -> bool:
    """Strictly better: lower loss, higher anything else (a tie keeps the earlier epoch)."""
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


@dataclass
class Fit:
    history: list[dict]  # one record per evaluation
    best: dict  # the record of the best evaluation
    best_state: dict[str, torch.Tensor]  # its weights (CPU copies)


def fit(model: Classifier, ctx: Context, train: Encoded, val: Encoded, val_gold, progress: bool) -> Fit:
    """Train, evaluate after each epoch, keep the best weights, stop early after `patience` misses."""
    from tqdm.auto import tqdm

    cfg = ctx.cfg.finetune
    total, per_epoch = step_plan(cfg, len(train))
    scales = layer_lr_scales(model, cfg.layer_lr_decay) if cfg.layer_lr_decay < 1.0 else None
    optimizer = build_optimizer(model, cfg, ctx.device, scales)
    history, best, best_state, misses, step = [], None, {}, 0, 0
    with tqdm(total=total, unit="step", disable=not live_progress(progress), dynamic_ncols=True) as bar:
        for epoch in range(1, math.ceil(total / per_epoch) + 1):
            step, train_loss = train_epoch(model, ctx, train, epoch, optimizer, step, total, bar)
            scores = evaluate(model, ctx, val, val_gold)
            record = {"epoch": epoch, "step": step, "train_loss": train_loss, "validation": scalars(scores)}
            history.append(record)
            log.info("epoch %d (step %d): train loss %.4f | validation %s", epoch, step, train_loss, brief(scores))
            if improved(cfg.best_metric, scores[cfg.best_metric], best and best["validation"][cfg.best_metric]):
                best, misses = record, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                misses += 1
                if cfg.patience and misses >= cfg.patience:
                    log.info("early stop: no better %s for %d evaluation(s)", cfg.best_metric, misses)
                    break
    return Fit(history, best, best_state)
