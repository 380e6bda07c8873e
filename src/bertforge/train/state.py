"""What the steps of the pretraining loop share (`Trainer`) and the counters a checkpoint stores (`TrainerState`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import RunConfig
from ..masking import MaskingVocab
from ..model import MaskedLM
from ..shards import PackedShards
from .batches import BatchOrder
from .distributed import World
from .guard import Poison
from .metrics import MetricsWriter

log = logging.getLogger("bertforge.train.loop")  # one logger for the loop's lines, whichever module says them


@dataclass
class TrainerState:
    """The counters a checkpoint stores besides tensors."""

    step: int = 0  # optimizer steps taken
    batches: int = 0  # global micro-batches consumed = position in the data order
    tokens: int = 0  # non-padding training tokens seen, all ranks together
    elapsed_s: float = 0.0  # training wall-clock time, carried over resumes
    warmup_end_s: float = 0.0  # elapsed_s when warmup ended: a time budget's LR decay starts there
    world_size: int = 1  # ranks that wrote the checkpoint
    skipped_steps: int = 0  # steps whose loss or gradient was not finite (no update), all rollbacks included
    rollbacks: int = 0  # times the run went back to a checkpoint after max_bad_steps skipped steps in a row
    lr_scale: float = 1.0  # rollback_lr_factor ** rollbacks: multiplies the scheduled LR


@dataclass
class Trainer:
    """What the steps of the loop share."""

    cfg: RunConfig
    run_dir: Path
    model: MaskedLM  # the unwrapped module: its state dict keys never change (FSDP: sharded in place)
    parallel: torch.nn.Module  # `model` under DDP or FSDP (torchrun), else `model` itself
    train_model: torch.nn.Module  # `parallel`, possibly wrapped by torch.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    train_data: PackedShards
    val_data: PackedShards | None
    order: BatchOrder
    vocab: MaskingVocab
    device: torch.device
    amp_dtype: torch.dtype | None
    metrics: MetricsWriter  # writes on rank 0 only
    state: TrainerState
    total_steps: int
    world: World
    poison: Poison  # test hook train.debug_nan_at_step
    bad_in_a_row: int = 0  # skipped steps since the last good one
    phase: int = 0  # index into cfg.data.phases of the shards being read (train/phases.py)
