"""File helpers shared by every stage: atomic writes, JSON/YAML/safetensors I/O, hashing.

Every write goes through `atomic_write_bytes`: write a temporary file in the same folder,
flush, fsync, then `os.replace`, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .errors import DataError


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_file(path: str | Path, fix: str) -> Any:
    """`read_json` for files bertforge wrote: a damaged one is a DataError that says how to `fix` it."""
    try:
        return read_json(path)
    except ValueError:
        raise DataError(f"{path}: not valid JSON; {fix}") from None


def write_yaml(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def save_tensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors as safetensors, atomically."""
    from safetensors.torch import save

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save(contiguous, metadata=metadata))


def load_tensors(path: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object, independent of dict order: names caches and builds."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_hash(path: str | Path, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written folder into place; an older folder at `final_dir` is removed first."""
    fsync_dir(tmp_dir)
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)
    fsync_dir(final_dir.parent)


def refuse_foreign_dir(out_dir: Path, marker: str, what: str) -> None:
    """Never replace a non-empty folder that lacks `marker`: a typo in --out must not delete files."""
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / marker).exists())):
        raise DataError(f"{out_dir} exists and is not {what}; choose another output folder")


def make_tmp_dir(final_dir: Path) -> Path:
    """A scratch folder beside `final_dir`, for building it before `replace_dir`."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.tmp-"))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700 folders; the final folder gets the usual permissions
    return tmp


@contextlib.contextmanager
def atomic_dir(final_dir: Path):
    """Build a folder under a temporary name beside `final_dir`, then move it into place whole.

    On any error (Ctrl-C included) the scratch folder is deleted and `final_dir` stays as it was:
    a reader never sees a half-written tokenizer, data folder, checkpoint or export.
    """
    final_dir = Path(final_dir)
    tmp = make_tmp_dir(final_dir)
    try:
        yield tmp
        replace_dir(tmp, final_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_tmp_dirs(folder: Path) -> list[Path]:
    """Delete the `.NAME.tmp-*` / `.NAME.old-*` folders a killed writer left in `folder`.

    Only call this while holding the folder's writer lock: a live writer's scratch folder looks the same.
    """
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


# ---------------------------------------------------------------- one writer per folder

LOCK_FILE = ".bertforge.lock"
_held: dict[str, list] = {}  # lock path -> [open file, depth]: re-entrant within one process


@contextlib.contextmanager
def writer_lock(lock_path: str | Path, what: str):
    """Hold an exclusive `flock` on `lock_path` for the life of the block, or fail at once.

    The kernel drops the lock when the process dies, even by SIGKILL, so a killed run never
    leaves a stale lock. The holder's PID is written in the file, for the message another
    process gets. Re-entrant: the CLI and the Python function it calls may both take it.
    """
    import fcntl

    key = str(Path(lock_path).resolve())
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
    f = open(lock_path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise DataError(f"{what} is in use by another bertforge process (PID {holder}); wait for it to end or stop it") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _held[key] = [f, 1]
    try:
        yield
    finally:
        del _held[key]
        f.close()  # releases the lock
