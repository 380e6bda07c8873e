"""What a run says while it trains: the start-up summary, progress bar, log lines and the mean loss
of each log window (rank 0 speaks for the group)."""

from __future__ import annotations

import logging
import math
import time

import torch

from ..config import RunConfig, TrainConfig
from ..console import live_progress
from ..model import count_parameters
from .state import Trainer

log = logging.getLogger("bertforge.train.loop")  # one logger for the loop's lines, whichever module says them


def info(t: Trainer, message: str, *args) -> None:
    """Log on rank 0 only."""
    if t.world.is_main:
        log.info(message, *args)


def describe(t: Trainer) -> None:
    cfg, world = t.cfg, t.world
    per_rank = cfg.train.batch_size // world.size
    info(
        t, "model: %s parameters, %d layers, hidden %d, %s-LN | data: %d train sequences of %d tokens | device %s, %s",
        f"{count_parameters(t.model):,}", cfg.model.num_layers, cfg.model.hidden_size, cfg.model.norm,
        len(t.train_data), cfg.data.seq_len, t.device, t.amp_dtype or "fp32",
    )
    info(
        t, "global batch %d sequences = %d per rank x %d accumulation x %d rank%s%s",
        per_rank * cfg.train.grad_accum_steps * world.size, per_rank, cfg.train.grad_accum_steps, world.size,
        "s" if world.size > 1 else "", f" ({cfg.train.strategy})" if world.launched else "",
    )
    info(t, "stops at: %s", stop_limits(cfg.train))


def stop_limits(cfg: TrainConfig) -> str:
    """The limits that end the run, in words: a user sees at once which one will stop it."""
    limits = []
    if cfg.max_steps:
        limits.append(f"{cfg.max_steps:,} steps")
    if cfg.max_tokens:
        limits.append(f"{cfg.max_tokens:,} tokens")
    if cfg.max_time_s:
        limits.append(f"{cfg.max_time_s:g} s of training")
    return " or ".join(limits) + (", whichever comes first" if len(limits) > 1 else "")


def progress_bar(t: Trainer, enabled: bool):
    """A tqdm bar on a terminal or in a notebook (rank 0); off in logs and pipes (then each log record is a log line)."""
    from tqdm.auto import tqdm

    on = live_progress(enabled) and t.world.is_main
    return tqdm(total=t.total_steps or None, initial=t.state.step, unit="step", disable=not on, dynamic_ncols=True)


def log_train_record(t: Trainer, bar, record: dict) -> None:
    t.metrics.write("train", t.state.step, record)
    loss = "skipped" if record["loss"] is None else f"{record['loss']:.4f}"
    if bar.disable:
        info(
            t, "step %d  loss %s  lr %.2e  %s tokens/s  %.0f s",
            t.state.step, loss, record["lr"], f"{record['tokens_per_s']:,.0f}", record["elapsed_s"],
        )
    else:
        bar.set_postfix(loss=loss[:5], tok_s=f"{record['tokens_per_s']:,.0f}")


def second_objective(cfg: RunConfig) -> tuple[str | None, float]:
    """(name, weight in the loss) of the objective trained beside the MLM: NSP/SOP's sentence loss,
    ELECTRA's detection loss (whose `mlm_loss` is the generator's); (None, 0) for plain MLM / CLM."""
    if cfg.model.sentence_head:
        return "sentence_loss", 1.0
    if cfg.model.discriminator:
        return "rtd_loss", cfg.train.rtd_weight
    return None, 0.0


class LogWindow:
    """Training loss and throughput since the last log record (loss stays on the device until then)."""

    def __init__(self, tokens: int):
        self.loss_sum: torch.Tensor | float = 0.0
        self.second_sum: torch.Tensor | float = 0.0
        self.steps = 0
        self.skipped = 0  # non-finite steps: left out of the mean
        self.tokens_at_start = tokens
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, second_loss: torch.Tensor | float = 0.0) -> None:
        self.loss_sum = self.loss_sum + loss
        self.second_sum = self.second_sum + second_loss
        self.steps += 1

    def record(self, t: Trainer, out: dict) -> dict:
        """The window's mean loss over all ranks (a collective: every rank calls this)."""
        seconds = max(time.perf_counter() - self.started, 1e-9)
        loss_sum = t.world.all_reduce_sum(torch.as_tensor(self.loss_sum, device=t.device).clone())
        grad_norm = float(out["grad_norm"])
        parts = {}
        second_name, weight = second_objective(t.cfg)
        if second_name and self.steps:  # mlm+nsp / mlm+sop / electra: both parts of the loss
            second = float(t.world.all_reduce_sum(torch.as_tensor(self.second_sum, device=t.device).clone()))
            parts = {"mlm_loss": (float(loss_sum) - second) / self.steps, second_name: second / weight / self.steps}
        return {
            **parts,
            "loss": float(loss_sum) / self.steps if self.steps else None,
            "lr": out["lr"],
            "grad_norm": grad_norm if math.isfinite(grad_norm) else None,
            **({"skipped_steps": self.skipped} if self.skipped else {}),
            "tokens": t.state.tokens,
            "tokens_per_s": (t.state.tokens - self.tokens_at_start) / seconds,
            "elapsed_s": t.state.elapsed_s,
        }
