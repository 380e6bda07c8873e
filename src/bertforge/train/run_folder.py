"""The run folder's rules: what a run folder is, one writer at a time, what it records, and what a
`--resume` may change (settings that change the math are refused unless allowed)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from .. import files
from ..checkpoint import checkpoint_dirs
from ..config import RunConfig, save_config, to_dict
from ..errors import ConfigError, DataError
from ..files import read_json, write_json
from ..folders import RUN_CONFIG, RUN_INFO
from ..tokenizer import TextTokenizer
from . import distributed
from .distributed import World

log = logging.getLogger("bertforge.train.loop")  # one logger for the loop's lines, whichever module says them


# Settings a resumed run may change without changing what it computes: how often it logs,
# evaluates and saves, and where it runs. Everything else (seed, batch, schedule, limits, shape,
# data, masking, objective) changes the math: the result would be neither the old run nor a new one.
HARMLESS_ON_RESUME = {
    "train.eval_every_steps", "train.eval_batches", "train.log_every_steps", "train.save_every_steps",
    "train.keep_last", "train.fill_mask_samples", "train.eval_seed", "train.device", "train.compile", "train.strategy",
    "train.max_bad_steps", "train.rollback_lr_factor", "train.max_rollbacks", "train.debug_nan_at_step",
    "train.debug_nan_steps",
}


STOP_LIMITS = {"train.max_steps", "train.max_tokens", "train.max_time_s"}  # the decay of the LR ends there


def flat_settings(cfg: RunConfig) -> dict[str, object]:
    return {f"{section}.{key}": value for section, values in to_dict(cfg).items() for key, value in values.items()}


def check_resume_settings(saved: RunConfig, new: RunConfig, allowed: bool, world: World) -> None:
    """Refuse a resume whose settings change the math, listing each difference (unless allowed)."""
    before, after = flat_settings(saved), flat_settings(new)
    harmless = set(HARMLESS_ON_RESUME)
    if saved.train.schedule == new.train.schedule == "constant":
        harmless |= STOP_LIMITS  # the LR does not depend on when the run ends: extending it is exact
    changed = [key for key in after if before.get(key) != after[key] and key not in harmless]
    if not changed:
        return
    listed = ", ".join(f"{key} {before.get(key)!r} -> {after[key]!r}" for key in changed)
    if not allowed:
        raise ConfigError(
            f"--resume with settings that change the training math: {listed}. The result would match neither "
            "run; pass --allow-changed-settings to continue anyway"
        )
    if world.is_main:
        log.warning("resuming with changed settings (--allow-changed-settings): %s", listed)


def should_resume(run_dir: Path, resume: bool, world: World) -> bool:
    """Resume when asked, and automatically when torchrun restarted the group after a failure."""
    has_checkpoints = bool(checkpoint_dirs(run_dir))
    if distributed.restart_count() and has_checkpoints:
        if world.is_main:
            log.warning("torchrun restart %d: resuming from the latest checkpoint", distributed.restart_count())
        return True
    if has_checkpoints and not resume:
        raise DataError(f"{run_dir} already holds checkpoints; pass --resume to continue it or pick another --out")
    if resume and not has_checkpoints:
        raise DataError(f"{run_dir}: no checkpoint to resume from")
    return resume


def write_run_files(
    cfg: RunConfig, run_dir: Path, data_dir: Path, tokenizer: TextTokenizer, init_from: Path | None
) -> None:
    """The resolved config, the tokenizer, where the data and start weights came from."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / RUN_CONFIG, cfg)
    if not (run_dir / "tokenizer").exists():
        tokenizer.save(run_dir / "tokenizer")
    previous = run_dir / RUN_INFO
    info = read_json(previous) if previous.is_file() else {}  # a resume keeps where it started from
    info["data_dir"] = str(Path(data_dir).resolve())
    if init_from is not None:
        info["init_from"] = str(Path(init_from).resolve())
    write_json(run_dir / RUN_INFO, info)


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """The run folder's writer lock (one `pretrain` at a time), refusing a folder that is not a run.

    Taken first, it also makes it safe to delete what a killed writer left half-made. A folder
    the lock itself created is removed again if the run failed before writing anything into it.
    """
    refuse_foreign_run_dir(run_dir)
    created = not run_dir.exists()
    lock = run_dir / files.LOCK_FILE
    try:
        with files.writer_lock(lock, f"run folder {run_dir}"):
            yield
    finally:
        if created and run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [files.LOCK_FILE]:
            lock.unlink(missing_ok=True)
            run_dir.rmdir()


RUN_MARKERS = (RUN_CONFIG, RUN_INFO, files.LOCK_FILE, "tokenizer/bertforge_tokenizer.json")


def refuse_foreign_run_dir(run_dir: Path) -> None:
    """`--out` must be a run folder, an empty folder, or not exist: never train into someone's files."""
    if run_dir.exists() and not run_dir.is_dir():
        raise DataError(f"--out {run_dir} is a file, not a folder; choose another --out")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not any((run_dir / m).exists() for m in RUN_MARKERS):
        raise DataError(f"{run_dir} exists, is not empty and is not a bertforge run folder; choose another --out")


def remove_leftovers(run_dir: Path) -> None:
    """Temporary folders of a write that a kill interrupted (safe: we hold the writer lock)."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for path in files.remove_stale_tmp_dirs(folder):
            log.warning("removed %s, left by an interrupted write", path)
