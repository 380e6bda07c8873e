"""Checkpoints: everything a restart needs, written atomically, loaded without pickle.

Layout of `RUN/checkpoints/step-00000123/`:
  model.safetensors   weights of the unwrapped model
  optimizer.pt        AdamW (and grad scaler) state; loaded with torch.load(weights_only=True)
  rng.pt              torch CPU/CUDA RNG states (dropout), same loader
  trainer.json        step, batches consumed, tokens seen, elapsed seconds
The folder is built under a temporary name and renamed into place, so a crash mid-save leaves
the previous checkpoint as the latest one.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
from pathlib import Path

import torch

from ..errors import DataError
from ..files import atomic_write_bytes, load_tensors, make_tmp_dir, read_json, replace_dir, save_tensors, write_json

log = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step-(\d+)$")


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


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict,
    scaler: torch.amp.GradScaler | None = None,
    keep_last: int = 3,
) -> Path:
    """Write checkpoint `step-<step>` atomically, then prune to the newest `keep_last`."""
    final = Path(run_dir) / "checkpoints" / f"step-{trainer_state['step']:08d}"
    tmp = make_tmp_dir(final)
    try:
        save_tensors(tmp / "model.safetensors", model.state_dict())
        optim = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else {}}
        atomic_write_bytes(tmp / "optimizer.pt", _torch_bytes(optim))
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        atomic_write_bytes(tmp / "rng.pt", _torch_bytes(rng))
        write_json(tmp / "trainer.json", trainer_state)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_dirs(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_model_weights(model: torch.nn.Module, checkpoint: Path) -> None:
    """Load safetensors weights; a shape or key mismatch is a user error, not a traceback."""
    path = Path(checkpoint) / "model.safetensors"
    if not path.is_file():
        raise DataError(f"{checkpoint}: no model.safetensors")
    state = load_tensors(path)
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


def load_checkpoint(
    checkpoint: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
) -> dict:
    """Restore model, optimizer, scaler and RNG states; return the trainer state."""
    load_model_weights(model, checkpoint)
    device = next(model.parameters()).device
    optim = torch.load(checkpoint / "optimizer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(optim["optimizer"])
    if scaler is not None and optim["scaler"]:
        scaler.load_state_dict(optim["scaler"])
    rng = torch.load(checkpoint / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return read_json(checkpoint / "trainer.json")
