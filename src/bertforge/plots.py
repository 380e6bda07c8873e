"""Pictures of what a run learned: training and validation curves, one or several runs per figure."""

from __future__ import annotations

import io
from pathlib import Path

from .errors import DataError, require
from .files import atomic_write_bytes
from .train.metrics import read_metrics

# (metric key, axis title, split) for each panel of `plot_runs`.
PANELS = (
    ("loss", "training loss", "train"),
    ("loss", "validation loss", "validation"),
    ("perplexity", "validation perplexity", "validation"),
    ("accuracy", "validation accuracy (masked / next token)", "validation"),
    ("lr", "learning rate", "train"),
)
PANELS_PER_ROW = 3


def _value(record: dict, key: str):
    """The record's `key`; "accuracy" is masked accuracy (MLM runs) or next-token accuracy (CLM runs)."""
    if key == "accuracy":
        return record.get("masked_accuracy", record.get("next_token_accuracy"))
    return record.get(key)


def pyplot():
    """matplotlib.pyplot drawing into files only (no display needed), or one error line saying what to install."""
    matplotlib = require("matplotlib", "plots need matplotlib: pip install matplotlib (or bertforge[finetune])")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "plots need matplotlib: pip install matplotlib (or bertforge[finetune])")


def plot_runs(run_dirs: list[str | Path], out: str | Path, x: str = "step") -> Path:
    """Curves of every run in `run_dirs` against steps or tokens, written as one PNG."""
    if x not in ("step", "tokens"):
        raise DataError(f"--x must be step or tokens, got {x!r}")
    runs = {Path(r).name or str(r): read_metrics(Path(r)) for r in run_dirs}
    for name, records in runs.items():
        if not records:
            raise DataError(f"{name}: no metrics.jsonl records; is it a run folder from `bertforge pretrain`?")
    plt = pyplot()
    from matplotlib.ticker import EngFormatter

    # Three panels a row: five in one row were unreadable at a page's normal width.
    rows = -(-len(PANELS) // PANELS_PER_ROW)
    fig, grid = plt.subplots(rows, PANELS_PER_ROW, figsize=(4.2 * PANELS_PER_ROW, 3.3 * rows), constrained_layout=True)
    axes = list(grid.flat)
    for ax in axes[len(PANELS):]:
        ax.set_visible(False)
    for ax, (key, title, split) in zip(axes, PANELS):
        for name, records in runs.items():
            values = [(r[x], _value(r, key)) for r in records if r["split"] == split and x in r]
            points = [(at, value) for at, value in values if value is not None]
            if points:
                ax.plot(*zip(*points), marker="." if split == "validation" else None, label=name)
        ax.set_title(title)
        ax.set_xlabel(x)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 100k, 1.5M: full token counts collide
        ax.grid(alpha=0.3)
        if key == "perplexity":
            ax.set_yscale("log")
    axes[0].legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out, buffer.getvalue())
    return Path(out)
