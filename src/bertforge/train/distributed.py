"""torchrun support: join the process group, rank helpers, DDP / FSDP2 wrapping, full state dicts.

A process started by torchrun (RANK, WORLD_SIZE, MASTER_ADDR in its environment) joins one
process group, even when it is the only rank, so `torchrun --nproc-per-node 1` runs the same
code as eight GPUs. The group has gloo for CPU tensors and, on a CUDA machine, NCCL for GPU
tensors ("cpu:gloo,cuda:nccl"): the small sums the loop shares (masked-token counts, tokens,
evaluation sums) are computed on the CPU and never wait for the GPU. Outside torchrun, `World()`
is one process and every helper here returns at once without touching torch.distributed.

Restarts: `torchrun --max-restarts K` starts every rank again after one fails, with
TORCHELASTIC_RESTART_COUNT > 0; the loop then resumes from the run's latest checkpoint.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from ..errors import BertforgeError, ConfigError
from .guard import Interrupted

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """Where this process sits in the group: rank 0 of 1 outside torchrun."""

    rank: int = 0
    local_rank: int = 0  # rank on this machine: the GPU index
    size: int = 1
    launched: bool = False  # started by torchrun: collectives are real, even with one rank

    @classmethod
    def from_env(cls) -> World:
        if "WORLD_SIZE" not in os.environ:
            return cls()
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]), True)

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates into metrics.jsonl and writes checkpoints."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.launched:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def max(self, value: float) -> float:
        """The largest `value` over ranks (for a time budget every rank must agree on)."""
        if not self.launched:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor)

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        """Add up a dict of numbers over ranks (float64, so counts stay exact)."""
        if not self.launched:
            return values
        tensor = self.all_reduce_sum(torch.tensor(list(values.values()), dtype=torch.float64))
        return dict(zip(values, tensor.tolist()))

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.launched:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on rank 0 (an empty list elsewhere)."""
        if not self.launched:
            return [obj]
        out = [None] * self.size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out or []

    def barrier(self) -> None:
        if self.launched:
            dist.barrier()

    def main_only(self, work: Callable[[], T]) -> T:
        """Run `work` on rank 0 only (it may write files) and give every rank its result, or
        its BertforgeError, so that all ranks stop together when it fails."""
        result, error = None, None
        if self.is_main:
            try:
                result = work()
            except BertforgeError as e:
                error = e
        if self.launched:
            result, message = self.broadcast((result, None if error is None else str(error)))
            if error is None and message is not None:
                error = BertforgeError(message)
        if error is not None:
            raise error
        return result

    def agree(self, check: Callable[[], T]) -> T:
        """Run `check` on every rank and compare: if it raised a BertforgeError on any rank, it is
        raised on all of them, so no rank goes on to wait in a collective for one that stopped."""
        try:
            result, error = check(), None
        except BertforgeError as e:
            result, error = None, e
        if self.launched:
            messages = [None] * self.size
            dist.all_gather_object(messages, None if error is None else str(error))
            first = next((m for m in messages if m is not None), None)
            if error is None and first is not None:
                error = BertforgeError(first)
        if error is not None:
            raise error
        return result


def restart_count() -> int:
    """How often torchrun has restarted the group (0 on the first attempt and outside torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


@contextlib.contextmanager
def process_group() -> Iterator[World]:
    """Join torchrun's process group for the block (if not joined yet); outside torchrun, nothing.

    A BertforgeError reaches every rank at the same point (`agree`, `main_only`), and so does a
    stop signal's `Interrupted` (the ranks agree on the step, save, then raise it), so the group is
    left cleanly. After any other exception it is not: other ranks may wait in a collective for
    this one, and torchrun stops them when this process exits.
    """
    world = World.from_env()
    owner = world.launched and not dist.is_initialized()
    if owner:
        if torch.cuda.is_available():
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield world
    except (BertforgeError, Interrupted) as e:
        if owner:
            traceback.clear_frames(e.__traceback__)  # the trainer in those frames holds the group
            leave_group()
        raise
    if owner:
        leave_group()


def leave_group() -> None:
    """Destroy the process group once nothing uses it any more.

    DDP and gloo's work objects hold the group and its worker threads; if they outlive the group
    and are only freed while the interpreter shuts down, a rank can die with "terminate called
    without an active exception" (SIGABRT) after a run that finished well. Collect them first.
    """
    gc.collect()
    dist.destroy_process_group()


def training_device(device: torch.device, world: World) -> torch.device:
    """Under torchrun each rank trains on the GPU of its local rank."""
    if not world.launched or device.type != "cuda":
        return device
    if device.index not in (None, world.local_rank):
        raise ConfigError(f"train.device {device} names one GPU, but under torchrun each rank uses its own; use cuda")
    return torch.device("cuda", world.local_rank)


# ---------------------------------------------------------------- model wrapping


def wrap_model(
    model: torch.nn.Module, strategy: str, world: World, device: torch.device, blocks: list[torch.nn.Module]
) -> torch.nn.Module:
    """The module to train: DDP (full replicas, averaged gradients) or FSDP2 (parameters, gradients
    and optimizer state sharded over ranks; each block is gathered just for its own forward and
    backward, then the root for the rest). Outside torchrun: `model` itself."""
    if not world.launched:
        return model
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (world.size,))
        for block in blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)  # the root: embeddings, final norm and MLM head
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def gradient_sync(parallel: torch.nn.Module, enabled: bool):
    """Context for one micro-batch's forward and backward. Gradient accumulation reduces
    gradients over ranks only on the last micro-batch of a step (`enabled`), not on every one."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(parallel, DistributedDataParallel):
        return contextlib.nullcontext() if enabled else parallel.no_sync()
    if is_sharded(parallel):
        parallel.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """`clip_grad_norm_` that also works on FSDP's sharded gradients (norm over all ranks' shards)."""
    parameters = [p for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    if hasattr(norm, "full_tensor"):  # a DTensor: each rank holds its shards' part
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


# ---------------------------------------------------------------- state dicts


def full_state_dicts(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Model and optimizer states as one process holds them: `state_dict()` keys, full tensors.

    Under FSDP the shards are gathered onto rank 0's CPU (a collective: every rank calls this;
    the others get empty dicts), so a checkpoint loads on any number of ranks and any strategy.
    """
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    by_name = get_optimizer_state_dict(model, optimizer, options=options)
    return model_state, _optimizer_by_index(by_name) if by_name else {}


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load an `optimizer.state_dict()`-shaped state, sharding it first under FSDP."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = {id(p): name for name, p in model.named_parameters()}
    fqns = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    by_name = {
        "state": {fqns[i]: s for i, s in state["state"].items()},
        "param_groups": [{**g, "params": [fqns[i] for i in g["params"]]} for g in state["param_groups"]],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


def _optimizer_by_index(by_name: dict) -> dict:
    """torch.distributed.checkpoint names parameters; `optimizer.state_dict()` numbers them in
    param-group order. Checkpoints use the numbers, as a single process writes them."""
    fqns = [fqn for group in by_name["param_groups"] for fqn in group["params"]]
    index = {fqn: i for i, fqn in enumerate(fqns)}
    return {
        "state": {index[fqn]: s for fqn, s in by_name["state"].items()},
        "param_groups": [{**g, "params": [index[f] for f in g["params"]]} for g in by_name["param_groups"]],
    }


def outlive_rank0(seconds: float = 10.0) -> None:
    """On a rank > 0 that stops with the same user error as rank 0: wait before exiting.

    torchrun stops every rank as soon as one exits with an error. If this rank exited first, rank 0
    could be stopped before it printed why; waiting lets rank 0 exit first (torchrun then stops
    this rank), so the user always sees the one `error:` line.
    """
    time.sleep(seconds)
