"""Where metrics go: `metrics.jsonl` (read by tests and plots) and TensorBoard."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ..errors import DataError
from ..files import atomic_write_text
from ..finite import dumps

log = logging.getLogger(__name__)


class MetricsWriter:
    """Appends one JSON object per record and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed; logging to metrics.jsonl only")

    def truncate_after(self, step: int) -> None:
        """Drop records past `step`: after a resume they are written again."""
        if not self.enabled or not self.path.exists():
            return
        kept = [record for record in parse_records(self.path) if record["step"] <= step]
        atomic_write_text(self.path, "".join(dumps(record) + "\n" for record in kept))

    def write(self, split: str, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:  # strict JSON: a NaN loss is written null
            f.write(dumps({"split": split, "step": step, **values}) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(f"{split}/{key}", value, step)

    def text(self, tag: str, markdown: str, step: int) -> None:
        """A text (Markdown) entry in TensorBoard's text tab, e.g. the fill-mask samples."""
        if self.enabled and self.tb is not None:
            self.tb.add_text(tag, markdown, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def parse_records(path: Path) -> list[dict]:
    """The file's records. A last line without its newline is one being written (the run is live)
    or cut short by a kill: it is left out, so plots, the report and `--resume` read the rest.
    A broken line before it was edited or damaged: one error naming it."""
    *complete, _unfinished = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {number} is not a JSON record ({e.msg}); was the file edited?") from None
    return records


def read_metrics(run_dir: Path, split: str | None = None) -> list[dict]:
    """Records of `split` ("train", "validation", or "samples": the fill-mask guesses); without a
    split, the records of numbers (train and validation), which readers of losses expect."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = parse_records(path)
    return [r for r in records if r["split"] == split or (split is None and r["split"] in ("train", "validation"))]
