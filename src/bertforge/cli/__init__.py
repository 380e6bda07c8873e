"""`bertforge <command>`: parse the arguments, call the Python API (bertforge.api), print the result.

One module per command family:
  data.py      tokenizer train|encode, prepare, model summary
  pretrain.py  pretrain (one process, a torchrun rank, or --nproc N ranks)
  models.py    export, import, evaluate, fill-mask, embed, similar, generate, chat
  finetune.py  finetune classify|ner, predict
  tools.py     plot, viz, report, serve, bench, demo
Each command builds its settings as defaults < --preset < --config < flags < --set. A problem
the user can fix (BertforgeError) becomes one `error:` line on stderr and exit code 2; anything
else is a bug and keeps its traceback. Commands import the stages inside their functions, so
`bertforge --help` and argument errors never wait for torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading

from ..errors import BertforgeError
from . import data, finetune, models, pretrain, tools
from .common import Parser, config_from_args

__all__ = ["main", "build_parser", "config_from_args"]


def build_parser() -> Parser:
    from .. import __version__

    parser = Parser(prog="bertforge", description="Pretrain BERT/RoBERTa-style encoders from scratch.")
    parser.add_argument("--version", action="version", version=f"bertforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for family in (data, pretrain, models, tools, finetune):
        family.add_commands(sub, Parser)
    return parser


def setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("bertforge")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop: Ctrl-C's path (scratch folders removed), exit 128 + 15."""

    signum = signal.SIGTERM


def _raise_terminated(signum, frame) -> None:
    raise Terminated("SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Let SIGTERM (`kill`, a scheduler's stop) unwind like Ctrl-C instead of killing the process
    where it stands, so `prepare`, `tokenizer train`, `export`... remove their half-built output.
    `pretrain` replaces it inside its loop with a save-then-stop handler (train/guard.py)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "quiet", False))
    try:
        with sigterm_as_interrupt():
            return args.func(args)
    except BertforgeError as e:
        if "WORLD_SIZE" in os.environ and os.environ.get("RANK", "0") != "0":  # a torchrun rank > 0: rank 0 has the same error and says it
            from ..train.distributed import outlive_rank0

            outlive_rank0()
            return 2
        sys.stderr.write(f"error: {e}\n")
        return 2
    except OSError as e:  # the machine, not the input: a full disk, a lost mount, no permission
        where = f" ({e.filename})" if e.filename else ""
        sys.stderr.write(f"error: {e.strerror or e}{where}; files being written were left as they were before\n")
        return 1
    except KeyboardInterrupt as e:  # a run saved before it stopped (see train/guard.py), or a plain Ctrl-C
        sys.stderr.write("interrupted\n")
        return 128 + getattr(e, "signum", 2)
