"""What keeps a days-long run safe: stop signals handled at step boundaries, non-finite steps kept
out of the weights.

Signals: the first SIGINT (Ctrl-C) or SIGTERM (what Slurm and Kubernetes send before a kill) only
sets a flag; the loop finishes the step it is in, saves a checkpoint whose counters describe
exactly that state, and stops, so `--resume` continues bit-identically. A second signal raises
KeyboardInterrupt at once: the save in progress (if any) is abandoned, its temporary folder
removed, and the last complete checkpoint stays the latest.

Divergence (torchtitan and Megatron-LM skip such steps too): a step whose loss or gradient norm
is not finite is skipped (no optimizer update) and counted; `max_bad_steps` in a row roll the run
back to its newest intact checkpoint with the LR lowered by `rollback_lr_factor`.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import torch

from ..config import TrainConfig
from ..finite import first_non_finite

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal after saving; `signum` says which (exit code 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopFlag:
    """Set by the first stop signal this process receives; its second one interrupts at once.

    Under torchrun a rank may learn of another rank's signal (`stop_for_peer`) a moment before its
    own copy of the scheduler's signal arrives: that copy is still the first, so it must not stop
    the rank in the middle of the save the ranks agreed on.
    """

    def __init__(self) -> None:
        self.received: int | None = None  # the signal this process got
        self.peer: int | None = None  # another rank's signal (SIGTERM's number stands for it)

    def handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # second signal: stop now, whatever is running
        self.received = signum

    def stop_for_peer(self) -> None:
        self.peer = signal.SIGTERM

    @property
    def signum(self) -> int | None:
        return self.received if self.received is not None else self.peer

    def raised(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_signals():
    """Catch SIGINT and SIGTERM as a `StopFlag` for the block (main thread only; elsewhere a flag never set)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.signal(s, flag.handle) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def all_finite(*values: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in values)


def weights_finite(state: dict[str, torch.Tensor]) -> bool:
    """True when every floating-point tensor of a state dict is finite (checked before each save)."""
    return first_non_finite(state) is None


class Poison:
    """Test hook `train.debug_nan_at_step`: NaN in the loss of chosen steps, once per process, so a
    rollback that replays those steps sees clean ones (as after a real transient fault)."""

    def __init__(self, cfg: TrainConfig) -> None:
        first = cfg.debug_nan_at_step
        self.pending = set(range(first, first + cfg.debug_nan_steps)) if first else set()

    def now(self, step: int) -> bool:
        if step in self.pending:
            self.pending.discard(step)
            return True
        return False
