"""Checkpoints: everything a restart needs, written atomically, loaded without pickle.

Layout of `RUN/checkpoints/step-00000123/`:
  model.safetensors   weights of the unwrapped model
  optimizer.pt        AdamW (and grad scaler) state; loaded with torch.load(weights_only=True)
  rng.pt              torch CPU/CUDA RNG states (dropout) of rank 0, same loader
  rng-rank<r>.pt      the same for rank r >= 1 of a torchrun group (each rank has its own dropout)
  trainer.json        step, batches consumed, tokens seen, elapsed seconds, world size
  manifest.json       written last: size and SHA-256 of every other file
The folder is built under a temporary name and renamed into place, so a crash mid-save leaves
the previous checkpoint as the latest one. Readers and `--resume` verify the manifest and fall
back to the newest intact checkpoint, saying which one was damaged and why. Under torchrun only rank 0 writes, after gathering
what the other ranks hold (their RNG states; their parameter shards under FSDP), so the files
are the same whatever the strategy and the number of ranks.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
from pathlib import Path

import torch

from .errors import DataError
from .files import (
    atomic_dir,
    atomic_write_bytes,
    file_hash,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)

log = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step-(\d+)$")
MANIFEST = "manifest.json"
MODEL_FILE = "model.safetensors"


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path:
    dirs = checkpoint_dirs(run_dir)
    if not dirs:
        raise DataError(f"{run_dir}: no checkpoint found (expected {run_dir}/checkpoints/step-*/)")
    return dirs[-1]


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def rng_state(device: torch.device | None = None) -> dict:
    """The RNG states dropout draws from: the CPU's and, when training on a GPU, that GPU's."""
    state = {"cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device is None and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        if isinstance(state["cuda"], list):  # every GPU's state (single-process checkpoints)
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            torch.cuda.set_rng_state(state["cuda"], device if device is not None else "cuda")


def rng_file(rank: int) -> str:
    return "rng.pt" if rank == 0 else f"rng-rank{rank}.pt"


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict,
    scaler: torch.amp.GradScaler | None = None,
    keep_last: int = 3,
) -> Path:
    """Write checkpoint `step-<step>` of a single process atomically, then prune to the newest `keep_last`."""
    optim = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else {}}
    return write_checkpoint(run_dir, model.state_dict(), optim, [rng_state()], trainer_state, keep_last)


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def write_checkpoint(
    run_dir: Path, model_state: dict, optim_state: dict, rng_states: list[dict], trainer_state: dict, keep_last: int
) -> Path:
    """Write the states (`rng_states[r]` is rank r's) as checkpoint `step-<step>`, then prune."""
    final = checkpoint_dir(run_dir, trainer_state["step"])
    with atomic_dir(final) as tmp:
        write_checkpoint_files(tmp, model_state, trainer_state, optim_state, rng_states)
    complete = [d for d in checkpoint_dirs(run_dir) if (d / MANIFEST).is_file()]
    for old in complete[:-keep_last]:  # only complete ones count: a damaged newer one never evicts a good one
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_checkpoint_files(
    folder: Path, model_state: dict, trainer_state: dict, optim_state: dict | None = None, rng_states: list[dict] = ()
) -> None:
    """The files of one checkpoint, manifest last. Without `optim_state` it holds weights only (an
    imported model's step 0): it loads everywhere, and `--init-from` starts a fresh optimizer from it."""
    save_tensors(folder / MODEL_FILE, model_state)
    if optim_state is not None:
        atomic_write_bytes(folder / "optimizer.pt", _torch_bytes(optim_state))
    for rank, rng in enumerate(rng_states):
        atomic_write_bytes(folder / rng_file(rank), _torch_bytes(rng))
    write_json(folder / "trainer.json", trainer_state)
    write_manifest(folder)


def write_manifest(folder: Path) -> None:
    """Size and SHA-256 of every file in `folder`, written last: its presence means the rest is complete."""
    entries = {
        p.name: {"bytes": p.stat().st_size, "sha256": file_hash(p, length=64)}
        for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST
    }
    write_json(folder / MANIFEST, {"files": entries})


def checkpoint_problem(checkpoint: Path, for_training: bool) -> str | None:
    """Why `checkpoint` cannot be used (None if it can): a missing, truncated or altered file.

    `for_training` also needs what an exact resume needs (optimizer, every rank's RNG state): a
    missing one is damage, never a silent inexact resume. Checkpoints written before manifests
    existed are checked for their files only.
    """
    needed = [MODEL_FILE, "trainer.json"]
    try:
        state = read_json(checkpoint / "trainer.json")
    except (OSError, ValueError):
        return "trainer.json is missing or unreadable"
    if for_training:
        needed += ["optimizer.pt"] + [rng_file(r) for r in range(int(state.get("world_size", 1)))]
    missing = [name for name in needed if not (checkpoint / name).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    manifest_path = checkpoint / MANIFEST
    if not manifest_path.is_file():
        return None  # written by an older bertforge: nothing to compare with
    try:
        listed = read_json(manifest_path)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for name, entry in listed.items():
        path = checkpoint / name
        if not path.is_file():
            if name in needed:
                return f"missing {name}"
            continue  # e.g. a reader does not need optimizer.pt
        if path.stat().st_size != entry["bytes"]:
            return f"{name} has {path.stat().st_size:,} bytes, the manifest says {entry['bytes']:,} (truncated?)"
        if (name in needed or for_training) and file_hash(path, length=64) != entry["sha256"]:
            return f"{name} does not match its SHA-256 in {MANIFEST} (altered or corrupted)"
    return None


def latest_intact_checkpoint(run_dir: Path, for_training: bool = False) -> Path:
    """The newest checkpoint that passes `checkpoint_problem`; each newer damaged one is reported on stderr."""
    dirs = checkpoint_dirs(run_dir)
    if not dirs:
        raise DataError(f"{run_dir}: no checkpoint found (expected {run_dir}/checkpoints/step-*/)")
    damaged = []
    for checkpoint in reversed(dirs):
        problem = checkpoint_problem(checkpoint, for_training)
        if problem is None:
            if damaged:
                log.warning("using %s, the newest intact checkpoint", checkpoint.name)
            return checkpoint
        log.warning("checkpoint %s is damaged: %s", checkpoint, problem)
        damaged.append(f"{checkpoint.name} ({problem})")
    raise DataError(f"{run_dir}: every checkpoint is damaged: {'; '.join(damaged)}")


def load_model_weights(model: torch.nn.Module, checkpoint: Path) -> None:
    """Load safetensors weights; a shape or key mismatch is a user error, not a traceback."""
    path = Path(checkpoint) / "model.safetensors"
    if not path.is_file():
        raise DataError(f"{checkpoint}: no model.safetensors")
    try:
        state = load_tensors(path)
    except Exception as e:  # safetensors' own error types: a truncated or overwritten file
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); the file is damaged") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(f"{path} does not match the model (missing: {missing[:3]}, unexpected: {unexpected[:3]})")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise DataError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)


def read_optimizer(checkpoint: Path, device: torch.device) -> dict:
    """{"optimizer": AdamW state as `optimizer.state_dict()` gives it, "scaler": grad scaler state}."""
    return torch.load(Path(checkpoint) / "optimizer.pt", map_location=device, weights_only=True)


def read_rng(checkpoint: Path, rank: int = 0) -> dict | None:
    """Rank `rank`'s RNG states, or None when the checkpoint was written by fewer ranks."""
    path = Path(checkpoint) / rng_file(rank)
    return torch.load(path, weights_only=True) if path.is_file() else None


def load_checkpoint(
    checkpoint: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
) -> dict:
    """Restore model, optimizer, scaler and RNG states in one process; return the trainer state."""
    load_model_weights(model, checkpoint)
    optim = read_optimizer(checkpoint, next(model.parameters()).device)
    optimizer.load_state_dict(optim["optimizer"])
    if scaler is not None and optim["scaler"]:
        scaler.load_state_dict(optim["scaler"])
    set_rng_state(read_rng(checkpoint))
    return read_json(checkpoint / "trainer.json")


def set_aside_newer(run_dir: Path, used: Path) -> list[Path]:
    """Move checkpoints newer than `used` (damaged ones: it is the newest intact) to checkpoints/damaged/.

    Left in place they would count as the newest for `keep_last`, which could then delete the good
    checkpoints written after the resume; moved aside they stay for inspection.
    """
    moved = []
    for checkpoint in checkpoint_dirs(run_dir):
        if int(STEP_DIR.match(checkpoint.name).group(1)) > int(STEP_DIR.match(used.name).group(1)):
            target = Path(run_dir) / "checkpoints" / "damaged" / checkpoint.name
            target.parent.mkdir(exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            checkpoint.rename(target)
            log.warning("moved the damaged %s to %s", checkpoint.name, target.parent)
            moved.append(target)
    return moved
