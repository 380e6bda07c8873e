"""Learning-rate schedules as pure functions of the step: resume gets them right for free."""

from __future__ import annotations

import math

from ..config import TrainConfig


def planned_steps(cfg: TrainConfig, tokens_per_step: int) -> int:
    """Optimizer steps the run will take, when a step or token limit fixes it (else 0)."""
    limits = []
    if cfg.max_steps:
        limits.append(cfg.max_steps)
    if cfg.max_tokens:
        limits.append(math.ceil(cfg.max_tokens / tokens_per_step))
    return min(limits) if limits else 0


def time_fraction(elapsed_s: float, warmup_end_s: float, max_time_s: float) -> float:
    """Share of a time budget's decay spent: the decay starts at the peak, where warmup ended.

    Counting warmup's seconds too would start the decay part-way down (a cliff right after warmup).
    """
    if not max_time_s:
        return 0.0
    return (elapsed_s - warmup_end_s) / max(max_time_s - warmup_end_s, 1e-9)


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int,
    schedule: str = "linear",
    min_lr_ratio: float = 0.0,
    time_fraction: float = 0.0,
) -> float:
    """Multiplier of the peak LR for optimizer step `step` (0-based).

    Linear warmup over `warmup_steps`, then `schedule` (linear / cosine / constant) decay to
    `min_lr_ratio` at the end of the run: at step `total_steps` (0 = no step limit), or when the
    time budget is spent, whichever comes first (`time_fraction` is the share of the time budget's
    decay used so far: see `time_fraction`).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    step_progress = (step - warmup_steps) / max(1, total_steps - warmup_steps) if total_steps else 0.0
    progress = min(max(step_progress, time_fraction, 0.0), 1.0)
    if schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        decay = 1.0 - progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


def train_lr_factor(step: int, cfg: TrainConfig, total_steps: int, time_fraction: float = 0.0) -> float:
    """`lr_factor` with a pretraining config's warmup, schedule and floor."""
    return lr_factor(step, total_steps, cfg.warmup_steps, cfg.schedule, cfg.min_lr_ratio, time_fraction)
