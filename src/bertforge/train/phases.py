"""Sequence-length phases in one run (BERT: 90% of the steps at 128 tokens, the last 10% at 512).

`data.phases: [{seq_len: 128, until: 0.9}, {seq_len: 512}]`: `prepare` writes the first phase's
shards as the data folder and each later phase's, from the same documents, in a folder inside it
(`seq-512/`). Phase i trains from step round(until[i-1] x max_steps) to round(until[i] x max_steps).

Exact resume and a continuous LR come from keeping everything a pure function of the step:
the LR schedule never sees the phases (it counts optimizer steps of the whole run), and the data
position inside a phase is (global batch counter) - (batches consumed before the phase started)
= batches - start_step x grad_accum_steps, so a run resumed in either phase reads what an
unbroken run reads. The model's position table is sized for the longest phase (config.py
refuses a phase longer than model.max_seq_len).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..shards import PackedShards, phase_dir
from .batches import batch_order

log = logging.getLogger(__name__)


def start_steps(phases: list[dict], max_steps: int) -> list[int]:
    """The optimizer step at which each phase starts."""
    return [0] + [round(p["until"] * max_steps) for p in phases[:-1]]


def phase_at(phases: list[dict], max_steps: int, step: int) -> int:
    """Index of the phase that step `step` (the next one to take) belongs to."""
    starts = start_steps(phases, max_steps)
    return max(i for i, s in enumerate(starts) if s <= step)


class OffsetOrder:
    """A phase's BatchOrder read from the run's global batch counter, minus the batches before the phase."""

    def __init__(self, order, offset: int):
        self.order, self.offset = order, offset
        self.batches_per_epoch = order.batches_per_epoch

    def indices(self, batch_index: int) -> np.ndarray:
        return self.order.indices(batch_index - self.offset)

    def epoch_of(self, batch_index: int) -> int:
        return self.order.epoch_of(batch_index - self.offset)


def phase_data(data_dir: Path, seq_len: int, first: bool) -> Path:
    return data_dir if first else data_dir / phase_dir(seq_len)


def check_data(cfg, train_data: PackedShards) -> None:
    """The data folder must hold what the config trains on: sentence pairs of the objective's kind,
    and the shards of every sequence-length phase."""
    want = cfg.data.pairs
    have = getattr(train_data, "pairs", "")
    if want != have:
        got = f"{have} pairs" if have else "no sentence pairs"
        wanted = f"{want} pairs (train.objective mlm+{want})" if want else "plain sequences (train.objective " \
            f"{cfg.train.objective})"
        raise DataError(f"{train_data.data_dir} holds {got}, but this run trains on {wanted}; prepare the data again "
                        "with the same --objective")
    phases = cfg.data.phases
    if not phases:
        return
    folders = train_data.manifest.get("phases") or {}
    if train_data.seq_len != phases[0]["seq_len"] or any(str(p["seq_len"]) not in folders for p in phases[1:]):
        lengths = [train_data.seq_len, *map(int, folders)]
        raise DataError(
            f"{train_data.data_dir} holds shards of {lengths} tokens, but data.phases needs "
            f"{[p['seq_len'] for p in phases]}; prepare the data with the same data.phases"
        )


def attach(t, data_dir: Path) -> None:
    """Remember the data folder and read the shards of the phase the run is in (a resume may be in any)."""
    t.phase_root = data_dir
    t.phase = 0
    if t.cfg.data.phases:
        enter(t, phase_at(t.cfg.data.phases, t.cfg.train.max_steps, t.state.step), announce=t.state.step > 0)


def switch_if_due(t) -> None:
    """Before a step: move to the next phase's shards when its first step has come."""
    phases = t.cfg.data.phases
    if phases and phase_at(phases, t.cfg.train.max_steps, t.state.step) != t.phase:
        enter(t, phase_at(phases, t.cfg.train.max_steps, t.state.step))


def enter(t, index: int, announce: bool = True) -> None:
    """Read phase `index`'s shards from its first step on; the LR schedule and counters carry on."""
    phases, cfg = t.cfg.data.phases, t.cfg.train
    phase = phases[index]
    folder = phase_data(t.phase_root, phase["seq_len"], index == 0)
    t.train_data = PackedShards(folder, "train")
    t.val_data = PackedShards(folder, "validation") if t.val_data is not None else None
    start = start_steps(phases, cfg.max_steps)[index]
    t.order = OffsetOrder(batch_order(cfg, len(t.train_data), t.world), start * cfg.grad_accum_steps)
    t.phase = index
    if announce and t.world.is_main:
        log.info(
            "phase %d/%d: step %d, sequences of %d tokens (%d training sequences) until step %s",
            index + 1, len(phases), t.state.step, phase["seq_len"], len(t.train_data),
            round(phase["until"] * cfg.max_steps),
        )
