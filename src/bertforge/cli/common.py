"""What every command shares: the parser class, argument groups, flags -> settings, JSON output.

Nothing here imports torch: `bertforge --help` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import merge, parse_overrides
from ..errors import ConfigError

# Convenience flags and the config keys they set (a flag is a shortcut for --set KEY=VALUE).
FLAG_KEYS = {
    "text_field": "corpus.text_field",
    "doc_per": "corpus.doc_per",
    "kind": "tokenizer.kind",
    "vocab_size": "tokenizer.vocab_size",
    "min_frequency": "tokenizer.min_frequency",
    "lowercase": "tokenizer.lowercase",
    "seq_len": "data.seq_len",
    "packing": "data.packing",
    "val_fraction": "data.val_fraction",
    "template": "data.template",
    "objective": "train.objective",
    "loss_on": "train.loss_on",
    "whole_word": "masking.whole_word",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "device": "train.device",
}
STOP_FLAGS = ("max_steps", "max_tokens", "max_time")  # passed to the API, which clears the limits not given


class Parser(argparse.ArgumentParser):
    """argparse with examples kept as written and one-line errors."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def at_least(low: int):
    """An argparse type: an integer >= `low` (a batch size or top-k of 0 has no meaning)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def read_lines_file(path: Path, flag: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file; a binary or non-UTF-8 file is one clear error."""
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    data = path.read_bytes()
    nul = data.find(b"\0")
    if nul >= 0:
        raise ConfigError(f"{flag} {path}: binary file (NUL byte at offset {nul}); give UTF-8 text, one line each")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{flag} {path}: not UTF-8 text (bad byte at offset {e.start})") from None
    return [line for line in text.splitlines() if line.strip()]


def add_config_args(p: argparse.ArgumentParser, preset_default: str | None = None, preset_help: str = "") -> None:
    p.add_argument("--preset", default=preset_default, help=preset_help or f"model/recipe preset (default: {preset_default})")
    p.add_argument("--config", help="YAML file with config sections (corpus, tokenizer, data, masking, model, train)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=3e-4")


def add_corpus_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--corpus", action="append", required=required, metavar="SRC[:WEIGHT]",
        help="text source: file, folder or hf:NAME[:CONFIG][@SPLIT], optionally :WEIGHT; repeat to mix",
    )
    p.add_argument("--text-field", "--text-column", dest="text_field", help="JSON field / CSV column with the text")
    p.add_argument("--doc-per", choices=("line", "paragraph"), help=".txt documents: one per line or per paragraph")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")


def settings_from_args(args: argparse.Namespace) -> dict:
    """The convenience flags (typed by argparse) as settings, with --set over them."""
    flags: dict = {}
    for name, key in FLAG_KEYS.items():
        value = getattr(args, name, None)
        if value is not None and value is not False:
            section, field = key.split(".")
            flags.setdefault(section, {})[field] = value
    return merge(flags, parse_overrides(getattr(args, "set", [])))


def stop_args(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name, None) for name in STOP_FLAGS}


def config_from_args(args: argparse.Namespace):
    """RunConfig from --preset, --config, convenience flags and --set, in that order."""
    from ..api import run_config

    cfg, _ = run_config(getattr(args, "preset", None), args.config, settings_from_args(args),
                        budget=getattr(args, "budget", None), **stop_args(args))
    return cfg


def print_json(obj) -> None:
    """Strict JSON on stdout: a NaN/inf number (a diverged loss) is written as null."""
    from ..finite import dumps

    sys.stdout.write(dumps(obj, indent=2) + "\n")
