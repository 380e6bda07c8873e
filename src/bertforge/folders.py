"""What kind of folder is this? Answered here, and only here, for every command that reads one.

  run         from `bertforge pretrain` or `import`: config.yaml, tokenizer/, checkpoints/step-*/,
              run.json (where its shards are, what it started from)
  finetuned   from `bertforge finetune`: labels.json, config.yaml (finetune + model), model.safetensors,
              tokenizer/
  hf          a Hugging Face model folder: config.json, model.safetensors (or pytorch_model.bin),
              tokenizer files

A fine-tuned folder also has a config.yaml, so labels.json is looked at first.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError
from .files import read_json

RUN, FINETUNED, HF = "run", "finetuned", "hf"
KINDS = (RUN, FINETUNED, HF)

# files that name a folder's kind
RUN_CONFIG = "config.yaml"
RUN_INFO = "run.json"
LABELS_FILE = "labels.json"
HF_CONFIG = "config.json"

DESCRIPTIONS = {
    RUN: "a bertforge run (config.yaml)",
    FINETUNED: "a fine-tuned folder (labels.json)",
    HF: "a Hugging Face folder (config.json)",
}


def kind_or_none(path: str | Path) -> str | None:
    """"run", "finetuned", "hf", or None for anything else (a missing path too)."""
    path = Path(path)
    if (path / LABELS_FILE).is_file():
        return FINETUNED
    if (path / RUN_CONFIG).is_file():
        return RUN
    if (path / HF_CONFIG).is_file():
        return HF
    return None


def folder_kind(path: str | Path, accept: tuple[str, ...] = KINDS, what: str = "--model") -> str:
    """The kind of `path`, which must be one of `accept`; else one error line saying what was expected."""
    kind = kind_or_none(path)
    if kind in accept:
        return kind
    wanted = [DESCRIPTIONS[k] for k in accept]
    expected = wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " or " + wanted[-1]
    found = "no such folder" if not Path(path).exists() else f"it is {DESCRIPTIONS[kind]}" if kind else "none of these"
    raise DataError(f"{what} {path}: expected {expected}; {found}")


def run_data_dir(run_dir: str | Path) -> Path:
    """The shard folder a run trained on, as its run.json records it."""
    info = Path(run_dir) / RUN_INFO
    if not info.is_file():
        raise DataError(f"{run_dir} has no run.json saying where its data is; give --data or --corpus")
    return Path(read_json(info)["data_dir"])
