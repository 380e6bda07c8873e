"""`bertforge pretrain`: in this process, as one rank of a torchrun group, or starting N ranks (--nproc)."""

from __future__ import annotations

import logging
import os
import sys

from ..config import merge
from ..errors import ConfigError
from .common import add_common, add_config_args, print_json, settings_from_args, stop_args

EXAMPLES = """\
examples:
  bertforge pretrain --corpus kant.txt --preset small --out run --max-time 30m
  bertforge pretrain --corpus kant.txt --budget 10m --out run
  bertforge pretrain --corpus kant.txt --objective electra --preset small --out electra-run --max-time 30m
  bertforge pretrain --corpus alpaca.json --objective clm --template alpaca --loss-on response --out chat
  bertforge pretrain --data data --preset small --out run --set train.lr=3e-4
  bertforge pretrain --out run --resume
  bertforge pretrain --data data --preset small --out run --nproc 4
  torchrun --nproc-per-node 8 -m bertforge pretrain --data data --out run --strategy fsdp"""


def pretrain_request(args) -> dict:
    """The API's keyword arguments for this command line."""
    strategy = {"train": {"strategy": args.strategy}} if args.strategy else {}
    return dict(
        corpus=args.corpus, data=args.data, budget=args.budget, preset=args.preset, config=args.config,
        settings=merge(strategy, settings_from_args(args)),  # a flag is a shortcut: a --set given as well wins
        val_corpus=args.val_corpus, resume=args.resume,
        init_from=args.init_from, progress=not args.quiet, **stop_args(args),
    )


def cmd_pretrain(args) -> int:
    """Train in this process, or as one rank of a torchrun group (then rank 0 logs and writes)."""
    from ..api import pretrain
    from ..train.distributed import World

    request = pretrain_request(args)
    if args.nproc is not None and "WORLD_SIZE" not in os.environ:
        return launch(args, request)
    if args.nproc is not None:
        raise ConfigError(f"--nproc {args.nproc} starts torchrun itself; under torchrun leave it out")
    if not World.from_env().is_main:
        logging.getLogger("bertforge").setLevel(logging.ERROR)  # rank 0 speaks for the group
    result = pretrain(out=args.out, allow_changed_settings=args.allow_changed_settings, **request)
    if args.json and World.from_env().is_main:
        print_json(result)
    return 0


def without_nproc(argv: list[str]) -> list[str]:
    """The command line without `--nproc N` (or an abbreviation argparse accepted, like --npr)."""
    out, skip = [], False
    for arg in argv:
        name = arg.split("=", 1)[0]
        if skip:
            skip = False
        elif len(name) > 2 and "--nproc".startswith(name):
            skip = "=" not in arg
        else:
            out.append(arg)
    return out


def launch(args, request: dict) -> int:
    """`pretrain --nproc N`: check and build the inputs here, then start N ranks with torchrun on
    this machine, each running this same command line."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from ..api import launch_checks

    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if sys.argv[1:2] != ["pretrain"]:
        raise ConfigError("--nproc works on the command line (`bertforge pretrain --nproc N ...`); from Python use torchrun")
    launch_checks(args.out, args.nproc, args.allow_changed_settings, **request)
    # torchrun would set 1 thread per rank; on a CPU, share the cores out instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    # Restarted ranks can read the killed ranks' stale addresses from the rendezvous store that
    # torchrun shares with them (pytorch/pytorch#135712, #167288): give each attempt its own store.
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    torchrun = ["--standalone", "--nproc-per-node", str(args.nproc), "--max-restarts", str(args.max_restarts)]
    try:
        run(parse_args([*torchrun, "-m", "bertforge", *without_nproc(sys.argv[1:])]))
    except ChildFailedError as e:
        if any(failure.exitcode == 2 for failure in e.failures.values()):
            return 2  # a user error, already printed by rank 0
        raise
    return 0


def add_commands(sub, parser_class) -> None:
    p = sub.add_parser(
        "pretrain", help="pretrain an encoder (masked LM) or a decoder (--objective clm)", epilog=EXAMPLES,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="shard folder from `bertforge prepare`")
    p.add_argument("--corpus", action="append", metavar="SRC[:WEIGHT]", help="text: train tokenizer and shards in the run folder")
    p.add_argument("--text-field", "--text-column", dest="text_field", help="JSON field / CSV column with the text")
    p.add_argument("--doc-per", choices=("line", "paragraph"))
    p.add_argument("--val-corpus", action="append", help="validation text (with --corpus)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument(
        "--allow-changed-settings", action="store_true",
        help="with --resume: accept settings that change the training math (seed, batch, schedule, shape, ...)",
    )
    p.add_argument("--init-from", help="start from the weights (and tokenizer) of a run or a Hugging Face folder")
    add_stop_args(p)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--whole-word", action="store_true", default=None, help="whole-word masking")
    p.add_argument(
        "--objective", choices=("mlm", "clm", "mlm+nsp", "mlm+sop", "electra"),
        help="mlm (masked LM, default), clm (causal LM: next token), mlm+nsp (BERT), mlm+sop (ALBERT) or "
        "electra (replaced-token detection with a small generator: learns from every token)",
    )
    p.add_argument("--template", help="JSON/CSV records -> texts: alpaca, or e.g. 'User: {prompt}\\nAgent: {response}'")
    p.add_argument("--loss-on", choices=("all", "response"), help="clm with --template: train on all tokens or the responses only")
    p.add_argument("--device")
    add_launch_args(p)
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    add_config_args(p, preset_help="model/recipe preset (default: small; with --resume or --init-from: that run's config)")
    add_common(p)
    p.set_defaults(func=cmd_pretrain)


def add_stop_args(p) -> None:
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--max-time", help="stop after this long, e.g. 10m, 2h")
    p.add_argument("--budget", metavar="DURATION",
                   help="e.g. 10m, 2h, 1d: a recipe for this budget and machine, LR decaying to 0 at the budget")


def add_launch_args(p) -> None:
    p.add_argument("--nproc", type=int, metavar="N", help="train on N processes of this machine (one per GPU): starts torchrun")
    p.add_argument("--max-restarts", type=int, default=0, metavar="K",
                   help="with --nproc: after a rank fails, restart all up to K times from the last checkpoint")
    p.add_argument("--strategy", choices=("ddp", "fsdp"),
                   help="under torchrun: ddp (default, a full model per rank) or fsdp (sharded, for big models)")
