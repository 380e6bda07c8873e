"""Pretraining: the loop and its parts, one module per concern.

  loop.py         setup + the named steps of `train()`; `pretrain()` runs a whole run
  state.py        what the steps share (Trainer) and the counters a checkpoint stores (TrainerState)
  run_folder.py   what a run folder is, its writer lock, what it records, what a resume may change
  progress.py     the start-up summary, progress bar, log lines and log windows
  optim.py        AdamW and the one optimizer step every loop uses
  schedule.py     the LR as a pure function of the step (and of the time budget)
  batches.py      the order of training sequences as a pure function of the batch index
  phases.py       sequence-length phases (128 -> 512)
  guard.py        signals (Ctrl-C, SIGTERM) and the divergence guard
  metrics.py      metrics.jsonl and TensorBoard
  samples.py      fill-mask samples logged while training
  distributed.py  torchrun: process group, DDP / FSDP, collectives

The step-level API below is what a benchmark or a custom loop uses: `setup` builds everything a
run needs, `train_step` takes one optimizer step.
"""

from .loop import pretrain, resolve_config, setup, train_step
from .state import Trainer, TrainerState

__all__ = ["Trainer", "TrainerState", "pretrain", "resolve_config", "setup", "train_step"]
