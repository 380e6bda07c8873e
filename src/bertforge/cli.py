"""`bertforge <command>`: one thin command per pipeline stage.

Each command builds a config (defaults < --preset < --config < flags < --set), calls the library
and prints the result. A user-fixable problem (BertforgeError) becomes one `error:` line on
stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from .budget import parse_duration
from .errors import BertforgeError, ConfigError
from .finetune_cli import add_finetune_commands

log = logging.getLogger("bertforge")

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
    "max_steps": "train.max_steps",
    "max_tokens": "train.max_tokens",
    "max_time": "train.max_time_s",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "device": "train.device",
}


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


def config_from_args(args: argparse.Namespace):
    """RunConfig from --preset, --config, convenience flags and --set, in that order."""
    from .config import build_config, merge, parse_overrides

    flags: dict = {}
    for name, key in FLAG_KEYS.items():
        value = getattr(args, name, None)
        if value is None or value is False:
            continue
        if name == "max_time":
            value = parse_duration(value)
        section, field = key.split(".")
        flags.setdefault(section, {})[field] = value
    clear_other_stop_limits(args, flags)
    overrides = merge(flags, parse_overrides(args.set))
    base = None
    if getattr(args, "base_config", None):
        from .config import load_yaml

        base = load_yaml(args.base_config)
    preset, recipe = args.preset, None
    if getattr(args, "budget", None):
        budget_s, chosen = budget_recipe(args, overrides)
        preset, recipe = preset or chosen.preset, chosen.overrides(budget_s)
        args.recipe_lines = chosen.describe(budget_s)
    return build_config(preset=preset, config_file=args.config, overrides=overrides, base=base, recipe=recipe)


STOP_FLAGS = ("max_steps", "max_tokens", "max_time")


def clear_other_stop_limits(args: argparse.Namespace, flags: dict) -> None:
    """A stop flag given alone is the run's only limit: the preset's other limits are cleared.

    Without this `--preset small --max-time 30m` stopped silently at the preset's 2,000 steps.
    `--set` (applied after the flags) can still add a limit back.
    """
    given = [name for name in STOP_FLAGS if getattr(args, name, None)]
    if not given:
        return
    for name in STOP_FLAGS:
        if name not in given:
            section, field = FLAG_KEYS[name].split(".")
            flags.setdefault(section, {})[field] = 0


def budget_recipe(args: argparse.Namespace, overrides: dict):
    """(seconds, recipe) of `--budget`, for the device the run will use."""
    from .budget import machine_kind, pick_recipe

    if args.max_time or args.max_steps or args.max_tokens:
        raise ConfigError("--budget sets when training stops; drop --max-time/--max-steps/--max-tokens")
    budget_s = parse_duration(args.budget)
    device = overrides.get("train", {}).get("device", "auto")
    return budget_s, pick_recipe(budget_s, machine_kind(str(device)))


def print_json(obj) -> None:
    """Strict JSON on stdout: a NaN/inf number (a diverged loss) is written as null."""
    from .finite import dumps

    sys.stdout.write(dumps(obj, indent=2) + "\n")


# ---------------------------------------------------------------- tokenizer


def cmd_tokenizer_train(args) -> int:
    from .corpus import iter_documents
    from .tokenizer import train_tokenizer

    cfg = config_from_args(args)
    tok = train_tokenizer(iter_documents(args.corpus, cfg.corpus), cfg.tokenizer, Path(args.out))
    log.info("tokenizer %s: %d tokens, saved to %s", cfg.tokenizer.kind, tok.vocab_size, args.out)
    return 0


def cmd_tokenizer_encode(args) -> int:
    from .tokenizer import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    ids = tok.encode(args.text)
    tokens = [tok.tokenizer.id_to_token(i) for i in ids]
    if args.json:
        print_json({"ids": ids, "tokens": tokens})
    else:
        print(" ".join(tokens))
        print(" ".join(str(i) for i in ids))
    return 0


# ---------------------------------------------------------------- prepare


def cmd_prepare(args) -> int:
    from .shards import prepare

    cfg = config_from_args(args)
    out = prepare(
        args.corpus, args.tokenizer, cfg.data, cfg.corpus, Path(args.out),
        val_sources=args.val_corpus, progress=not args.quiet,
    )
    log.info("shards ready in %s", out)
    return 0


# ---------------------------------------------------------------- model


def cmd_model_summary(args) -> int:
    from .model import MaskedLM, parameter_table

    cfg = config_from_args(args)
    table = parameter_table(MaskedLM(cfg.model))
    total = sum(count for _, _, count in table)
    if args.json:
        rows = [{"name": n, "shape": list(s), "params": c} for n, s, c in table]
        print_json({"preset": args.preset, "total_params": total, "parameters": rows})
        return 0
    width = max(len(n) for n, _, _ in table)
    for name, shape, count in table:
        print(f"{name:<{width}}  {str(list(shape)):<16} {count:>12,}")
    print(f"{'total':<{width}}  {'':<16} {total:>12,}")
    return 0


# ---------------------------------------------------------------- pretrain


def run_data_dir(run_dir: Path) -> Path:
    from .errors import DataError
    from .files import read_json

    info = run_dir / "run.json"
    if not info.is_file():
        raise DataError(f"{run_dir} has no run.json saying where its data is; give --data or --corpus")
    return Path(read_json(info)["data_dir"])


def build_data_from_corpus(cfg, args, run_dir: Path) -> Path:
    """Tokenizer and shards for `pretrain --corpus`, inside the run folder (reused when unchanged)."""
    from .shards import document_texts, prepare
    from .tokenizer import load_tokenizer, train_tokenizer

    tok_dir = run_dir / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(tok_dir)
        log.info("reusing tokenizer %s", tok_dir)
    else:
        log.info("training a %s tokenizer (%d tokens)", cfg.tokenizer.kind, cfg.tokenizer.vocab_size)
        # With a template the tokenizer learns the texts the model reads, markup ("### Response:") included.
        tokenizer = train_tokenizer(document_texts(args.corpus, cfg.corpus, cfg.data), cfg.tokenizer, tok_dir)
    return prepare(
        args.corpus, tokenizer, cfg.data, cfg.corpus, run_dir / "data",
        val_sources=args.val_corpus, progress=not args.quiet,
    )


def prepare_init(args, run_dir: Path) -> Path:
    """For --init-from: the run (or imported HF model) to start from, its config as the base and
    its tokenizer as the run's tokenizer, so new shards are made with the vocabulary it knows."""
    import shutil

    from .export import init_run

    init = init_run(args.init_from, run_dir / "init")
    args.base_config = init / "config.yaml"
    if not (run_dir / "tokenizer").exists():
        shutil.copytree(init / "tokenizer", run_dir / "tokenizer")
    return init


def cmd_pretrain(args) -> int:
    """Train in this process, or as one rank of a torchrun group (then rank 0 logs and writes)."""
    import os
    import time

    from .train import distributed
    from .train.loop import pretrain, run_lock

    if args.strategy:  # a flag is a shortcut for --set; a --set given as well wins
        args.set = [f"train.strategy={args.strategy}", *args.set]
    if args.nproc is not None and "WORLD_SIZE" not in os.environ:
        return launch_pretrain(args)
    try:
        with distributed.process_group() as world, contextlib.ExitStack() as held:
            if not world.is_main:
                log.setLevel(logging.ERROR)  # rank 0 speaks for the group
            if args.nproc is not None:
                raise ConfigError(f"--nproc {args.nproc} starts torchrun itself; under torchrun leave it out")

            def locked_inputs():  # the writer lock first: a second launch must not build into this folder
                held.enter_context(run_lock(Path(args.out)))
                return pretrain_inputs(args)

            # Rank 0 prepares the run folder (tokenizer, shards, imported weights); the others get its result.
            cfg, data_dir, init = world.main_only(locked_inputs)
            result = pretrain(
                cfg, data_dir, args.out, resume=args.resume, init_from=init, progress=not args.quiet,
                allow_changed_settings=args.allow_changed_settings,
            )
    except BertforgeError:
        if distributed.World.from_env().is_main:
            raise
        # Rank 0 has the same error and prints it. Let it exit first: torchrun then stops this
        # rank, and does not stop rank 0 before it has said why.
        time.sleep(10)
        return 2
    if args.json and world.is_main:
        print_json(result)
    return 0


def pretrain_inputs(args) -> tuple:
    """(config, data folder, --init-from run) of `pretrain`, building tokenizer and shards for --corpus."""
    run_dir = Path(args.out)
    init = None
    if args.resume:
        if args.data or args.corpus or args.init_from:
            raise ConfigError("--resume continues a run with its own data and weights; drop --data/--corpus/--init-from")
        if args.budget:
            raise ConfigError("--resume keeps the run's own budget and clock; drop --budget")
        args.base_config = run_dir / "config.yaml"
        if not args.base_config.is_file():
            raise ConfigError(f"{run_dir}: no config.yaml; nothing to resume")
        data_dir = run_data_dir(run_dir)
    elif bool(args.data) == bool(args.corpus):
        raise ConfigError("give either --data DATA (from `bertforge prepare`) or --corpus FILE")
    elif args.init_from:
        init = prepare_init(args, run_dir)
    elif args.preset is None and not args.budget:
        args.preset = "small"
    cfg = config_from_args(args)
    for line in getattr(args, "recipe_lines", []):
        log.info("%s", line)
    if not args.resume:
        data_dir = Path(args.data) if args.data else build_data_from_corpus(cfg, args, run_dir)
    return cfg, data_dir, init


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


def launch_pretrain(args) -> int:
    """`pretrain --nproc N`: check and build the inputs here, then start N ranks with torchrun on
    this machine, each running this same command line."""
    import os

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from .train.loop import preflight

    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if sys.argv[1:2] != ["pretrain"]:
        raise ConfigError("--nproc works on the command line (`bertforge pretrain --nproc N ...`); from Python use torchrun")
    from .train.loop import run_lock

    with run_lock(Path(args.out)):  # released before the ranks start: rank 0 takes it for the run
        cfg, data_dir, init = pretrain_inputs(args)
        preflight(cfg, data_dir, Path(args.out), args.resume, init, args.nproc, args.allow_changed_settings)
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


# ---------------------------------------------------------------- export / import


def cmd_export(args) -> int:
    from .export import export_run
    from .files import read_json

    out = export_run(args.run, args.out, args.arch)
    model_class = read_json(Path(out) / "config.json")["architectures"][0]  # MLM, causal LM or a fine-tuned head
    log.info("exported to %s (load it with transformers' %s.from_pretrained)", out, model_class)
    return 0


def cmd_import(args) -> int:
    from .export import import_hf

    out = import_hf(args.hf_dir, args.out)
    log.info("imported %s into the run folder %s", args.hf_dir, out)
    return 0


# ---------------------------------------------------------------- evaluate / fill-mask


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_split
    from .infer import load_run
    from .shards import PackedShards, check_compatible, load_manifest, prepare
    from .masking import masking_vocab

    run = load_run(args.run, device=args.device)
    vocab = masking_vocab(run.tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus:
            whole = replace(run.config.data, val_fraction=0.0)  # every document is evaluation text
            data_dir = prepare(args.corpus, run.tokenizer, whole, run.config.corpus, Path(tmp) / "data", progress=False)
            split = "train"
        else:
            data_dir = Path(args.data) if args.data else run_data_dir(Path(args.run))
            split = "validation"
        check_compatible(load_manifest(data_dir), run.tokenizer)
        shards = PackedShards(data_dir, split)
        train = run.config.train
        loss_on = train.loss_on if shards.has_loss_mask else "all"  # --corpus text without a template: every token
        result = evaluate_split(
            run.model, shards, vocab, args.batch_size, args.batches, train.eval_seed, run.device,
            objective=train.objective, loss_on=loss_on,
        )
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value:.4f}" if isinstance(value, float) else f"{key:>16}: {value}")
    return 0


def cmd_fill_mask(args) -> int:
    from .infer import fill_mask, load_run

    run = load_run(args.run, device=args.device)
    if run.config.model.causal:
        raise ConfigError(f"{args.run} is a causal LM (train.objective clm): use `bertforge generate` or `chat`")
    results = fill_mask(run, args.text, args.top_k)
    if args.json:
        print_json(results)
        return 0
    for i, candidates in enumerate(results, 1):
        if len(results) > 1:
            print(f"mask {i}:")
        for c in candidates:
            print(f"  {c['score']:.4f}  {c['token']}")
    return 0


def cmd_embed(args) -> int:
    import numpy as np

    from .files import atomic_write_bytes
    from .infer import embed, load_run

    texts = read_lines_file(Path(args.input), "--input")
    vectors = embed(load_run(args.model, device=args.device), texts, args.pooling, args.batch_size)
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    atomic_write_bytes(args.out, buffer.getvalue())
    log.info("%d x %d embeddings -> %s", *vectors.shape, args.out)
    return 0


def cmd_similar(args) -> int:
    from .infer import load_run, similar

    neighbours = similar(load_run(args.model, device=args.device), args.word, args.top_k)
    if args.json:
        print_json(neighbours)
    else:
        for n in neighbours:
            print(f"  {n['score']:.4f}  {n['token']}")
    return 0


def sampling_from_args(args):
    from .config import Sampling  # no torch import: bad settings fail fast

    return Sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)


def cmd_generate(args) -> int:
    sampling = sampling_from_args(args)  # bad settings fail before torch and the model load
    from .generation import empty_answer_note, generate
    from .infer import load_run

    run = load_run(args.run, device=args.device)
    result = generate(
        run, args.prompt, sampling.max_new_tokens, sampling.temperature, sampling.top_k, sampling.top_p, sampling.seed,
        raw=args.raw,
    )
    if args.json:
        print_json(result)
    else:
        print(result["text"])
        log.info("(%d tokens, stopped: %s, seed %d)", len(result["token_ids"]), result["stop_reason"], result["seed"])
        if note := empty_answer_note(result):
            log.warning("%s", note)
    return 0


def cmd_chat(args) -> int:
    sampling = sampling_from_args(args)
    from .chat import run_chat
    from .generation import check_causal
    from .infer import load_run

    run = load_run(args.run, device=args.device)
    check_causal(run)
    run_chat(run, sampling, name=Path(args.run).name, raw=args.raw)
    return 0


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=64, help="at most this many new tokens (default 64)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more varied (default 0.8)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all, default)")
    p.add_argument("--top-p", type=float, default=0.95,
                   help="sample among the most likely tokens that together hold this probability (default 0.95)")
    p.add_argument("--seed", type=int, help="the same seed gives the same text")
    p.add_argument("--raw", action="store_true", help="send the prompt as it is, without the run's template")
    p.add_argument("--device", default="auto")


# ---------------------------------------------------------------- plot


def cmd_plot(args) -> int:
    from .plots import plot_runs

    out = plot_runs(args.runs, args.out, args.x)
    log.info("wrote %s", out)
    return 0


# ---------------------------------------------------------------- viz / report / serve


def cmd_viz_embeddings(args) -> int:
    from .infer import load_model_folder
    from .viz import viz_embeddings

    words = args.words.split(",") if args.words is not None else None
    run, _ = load_model_folder(args.model, device=args.device)
    paths = viz_embeddings(run, args.model, args.out, words, args.top)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    out = write_report(args.run, args.out, texts=args.text, top=args.top, device=args.device)
    log.info("wrote %s", out)
    return 0


def cmd_serve(args) -> int:
    from .serve import serve

    return serve(args.model, host=args.host, port=args.port, device=args.device)


# ---------------------------------------------------------------- bench


def cmd_bench(args) -> int:
    from .bench import bench_fill_mask, bench_prepare, bench_train, format_table

    ref = not args.no_reference
    if args.kind == "downstream":
        return bench_downstream_command(args)
    args.preset = args.preset or "small"
    if args.kind == "quality":
        return bench_quality_command(args, ref)
    if args.kind == "train":
        result = bench_train(
            preset=args.preset, steps=args.steps, warmup_steps=args.warmup_steps, batch_size=args.batch_size,
            seq_len=args.seq_len, precision=args.precision, corpus=args.corpus, device=args.device,
            compile=args.compile, reference=ref, data_dir=args.data_dir,
        )
    elif args.kind == "prepare":
        result = bench_prepare(
            corpus_mb=args.corpus_mb, processes=args.processes, seq_len=args.seq_len, reference=ref,
            work_dir=args.work_dir, preset=args.preset, data_dir=args.data_dir,
        )
    else:
        result = bench_fill_mask(
            preset=args.preset, sentences=args.sentences, top_k=args.top_k, reference=ref, device=args.device,
            batch_size=args.batch_size, corpus=args.corpus, data_dir=args.data_dir,
        )
    if args.json:
        print_json(result)
    else:
        print(format_table(result))
    return 0


def bench_quality_command(args, reference: bool) -> int:
    from .bench_quality import bench_quality, format_quality, plot_quality

    variants = {}
    for spec in args.variant:
        name, _, sets = spec.partition(":")
        if not name or not sets:
            raise ConfigError(f"--variant {spec!r}: write NAME:KEY=VALUE[,KEY=VALUE...]")
        variants[name] = sets.split(",")
    result = bench_quality(
        minutes=args.minutes, corpus=args.corpus, work_dir=args.work_dir, evaluations=args.evaluations,
        device=args.device, reference=reference, variants=variants, data_dir=args.data_dir,
    )
    if args.plot:
        result["plot"] = str(plot_quality(result, args.plot))
    if args.json:
        print_json(result)
    else:
        print(format_quality(result))
    return 0


def bench_downstream_command(args) -> int:
    from .bench_downstream import bench_downstream, default_paths, format_downstream

    labelled, corpus = default_paths()
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bertforge-downstream-"))
    result = bench_downstream(
        labelled=Path(args.labelled) if args.labelled else labelled, corpus=Path(args.corpus or corpus),
        work_dir=work_dir, minutes=args.minutes, text_column=args.text_column, label_column=args.label_column,
        train_examples=args.train_examples, eval_examples=args.eval_examples, seed=args.seed, preset=args.preset,
        pretrain_sets=args.set, finetune_sets=args.finetune_set,
    )
    if args.json:
        print_json(result)
    else:
        print(format_downstream(result))
    return 0


# ---------------------------------------------------------------- demo


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), corpus=args.corpus, max_steps=args.max_steps, progress=not args.quiet)
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = Parser(prog="bertforge", description="Pretrain BERT/RoBERTa-style encoders from scratch.")
    parser.add_argument("--version", action="version", version=f"bertforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    tok = sub.add_parser("tokenizer", help="train or try a tokenizer")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", required=True, parser_class=Parser)
    p = tok_sub.add_parser(
        "train", help="train a tokenizer on a corpus",
        epilog="example:\n  bertforge tokenizer train --corpus kant.txt --kind bytelevel-bpe --vocab-size 16000 --out tok",
    )
    add_corpus_args(p, required=True)
    p.add_argument("--out", required=True, help="folder for tokenizer.json")
    p.add_argument("--kind", help="bytelevel-bpe (RoBERTa), wordpiece (BERT), sentencepiece-bpe, unigram")
    p.add_argument("--vocab-size", type=int)
    p.add_argument("--min-frequency", type=int)
    p.add_argument("--lowercase", action="store_true", default=None)
    add_config_args(p)
    add_common(p)
    p.set_defaults(func=cmd_tokenizer_train)
    p = tok_sub.add_parser(
        "encode", help="show how a text is tokenized",
        epilog='example:\n  bertforge tokenizer encode tok "Human thinking involves human reason."',
    )
    p.add_argument("tokenizer", help="tokenizer folder (or a run / data folder's tokenizer/)")
    p.add_argument("text")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_tokenizer_encode)

    p = sub.add_parser(
        "prepare", help="tokenize and pack a corpus into memory-mapped shards",
        epilog="example:\n  bertforge prepare --corpus kant.txt --tokenizer tok --seq-len 128 --out data",
    )
    add_corpus_args(p, required=True)
    p.add_argument("--tokenizer", required=True, help="tokenizer folder")
    p.add_argument("--out", required=True, help="output folder for shards and manifest.json")
    p.add_argument("--val-corpus", action="append", help="validation text (instead of --val-fraction)")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--packing", choices=("full", "pad", "line"))
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--template", help="JSON/CSV records -> texts: alpaca, or e.g. 'User: {prompt}\\nAgent: {response}'")
    p.add_argument(
        "--objective", choices=("mlm", "mlm+nsp", "mlm+sop"),
        help="mlm+nsp / mlm+sop: build sentence pairs (A, B, label) for BERT's / ALBERT's second objective",
    )
    add_config_args(p)
    add_common(p)
    p.set_defaults(func=cmd_prepare)

    model = sub.add_parser("model", help="inspect model shapes")
    model_sub = model.add_subparsers(dest="model_command", required=True, parser_class=Parser)
    p = model_sub.add_parser(
        "summary", help="every tensor's name, shape and size, and the total",
        epilog="example:\n  bertforge model summary --preset kantai --json",
    )
    add_config_args(p, preset_default="small")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_model_summary)

    p = sub.add_parser(
        "pretrain", help="pretrain an encoder (masked LM) or a decoder (--objective clm)",
        epilog=(
            "examples:\n"
            "  bertforge pretrain --corpus kant.txt --preset small --out run --max-time 30m\n"
            "  bertforge pretrain --corpus alpaca.json --objective clm --template alpaca --loss-on response --out chat\n"
            "  bertforge pretrain --data data --preset small --out run --set train.lr=3e-4\n"
            "  bertforge pretrain --out run --resume\n"
            "  bertforge pretrain --data data --preset small --out run --nproc 4\n"
            "  torchrun --nproc-per-node 8 -m bertforge pretrain --data data --out run --strategy fsdp"
        ),
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
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--max-time", help="stop after this long, e.g. 10m, 2h")
    p.add_argument("--budget", metavar="DURATION",
                   help="e.g. 10m, 2h, 1d: a recipe for this budget and machine, LR decaying to 0 at the budget")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--whole-word", action="store_true", default=None, help="whole-word masking")
    p.add_argument(
        "--objective", choices=("mlm", "clm", "mlm+nsp", "mlm+sop"),
        help="mlm (masked LM, default), clm (causal LM: next token), mlm+nsp (BERT) or mlm+sop (ALBERT)",
    )
    p.add_argument("--template", help="JSON/CSV records -> texts: alpaca, or e.g. 'User: {prompt}\\nAgent: {response}'")
    p.add_argument("--loss-on", choices=("all", "response"), help="clm with --template: train on all tokens or the responses only")
    p.add_argument("--device")
    p.add_argument("--nproc", type=int, metavar="N", help="train on N processes of this machine (one per GPU): starts torchrun")
    p.add_argument("--max-restarts", type=int, default=0, metavar="K",
                   help="with --nproc: after a rank fails, restart all up to K times from the last checkpoint")
    p.add_argument("--strategy", choices=("ddp", "fsdp"),
                   help="under torchrun: ddp (default, a full model per rank) or fsdp (sharded, for big models)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    add_config_args(p, preset_help="model/recipe preset (default: small; with --resume or --init-from: that run's config)")
    add_common(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "export", help="write a Hugging Face model folder (config.json, model.safetensors, tokenizer)",
        epilog="example:\n  bertforge export run --out hf-model\n"
        "  python -c \"from transformers import pipeline; print(pipeline('fill-mask', model='hf-model')('A <mask>.'))\"",
    )
    p.add_argument("run", help="run folder (its latest checkpoint) or a fine-tuned folder from `bertforge finetune`")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--arch", choices=("bert", "roberta", "roberta-prelayernorm"),
                   help="default: roberta-prelayernorm for a pre-LN model (model.norm=pre), else roberta for "
                   "byte-level BPE, bert for WordPiece")
    add_common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import", help="turn a Hugging Face BERT/RoBERTa/RoBERTa-PreLayerNorm MLM folder into a bertforge run",
        epilog="example:\n  bertforge import ./roberta-base --out base-run\n"
        "  bertforge pretrain --init-from base-run --corpus my-domain.txt --out adapted --max-steps 2000",
    )
    p.add_argument("hf_dir", help="folder with config.json, model.safetensors and tokenizer files")
    p.add_argument("--out", required=True, help="run folder to write")
    add_common(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "evaluate", help="validation loss, perplexity and masked accuracy of a run",
        epilog="example:\n  bertforge evaluate run --corpus heldout.txt --json",
    )
    p.add_argument("run")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data", help="shard folder (its validation split)")
    where.add_argument("--corpus", action="append", help="text files to evaluate on")
    p.add_argument("--batch-size", type=at_least(1), default=32)
    p.add_argument("--batches", type=at_least(0), default=0, help="at most this many batches (0 = all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "fill-mask", help="most likely tokens for each [MASK] / <mask>",
        epilog='example:\n  bertforge fill-mask run "Human thinking involves human <mask>." --top-k 5',
    )
    p.add_argument("run")
    p.add_argument("text")
    p.add_argument("--top-k", type=at_least(1), default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_fill_mask)

    p = sub.add_parser(
        "generate", help="write text with a causal-LM run (--objective clm)",
        epilog='examples:\n  bertforge generate run "Give three tips for staying healthy." --temperature 0\n'
        '  bertforge generate run "Once upon a time" --max-new-tokens 50 --temperature 0.8 --top-p 0.9 --seed 1 --json',
    )
    p.add_argument("run", help="run folder of a causal LM")
    p.add_argument("prompt")
    add_sampling_args(p)
    p.add_argument("--json", action="store_true", help="text, token ids, stop reason and seed as JSON")
    add_common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "chat", help="talk to a causal-LM run in the terminal (/reset, /quit)",
        epilog="example:\n  bertforge chat run --temperature 0.7 --max-new-tokens 80",
    )
    p.add_argument("run", help="run folder of a causal LM")
    add_sampling_args(p)
    add_common(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser(
        "embed", help="sentence embeddings of each line of a file, as a .npy array",
        epilog="example:\n  bertforge embed run --input sentences.txt --pooling mean --out emb.npy",
    )
    p.add_argument("model", help="run folder")
    p.add_argument("--input", required=True, help="text file, one sentence per line")
    p.add_argument("--out", required=True, help=".npy file to write (lines x hidden_size)")
    p.add_argument("--pooling", choices=("mean", "cls"), default="mean")
    p.add_argument("--batch-size", type=at_least(1), default=32)
    p.add_argument("--device", default="auto")
    add_common(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "similar", help="nearest tokens to a word by cosine similarity of the input embeddings",
        epilog='example:\n  bertforge similar run "reason" --top-k 10',
    )
    p.add_argument("model", help="run folder")
    p.add_argument("word")
    p.add_argument("--top-k", type=at_least(1), default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser(
        "plot", help="training and validation curves of one or more runs, as a PNG",
        epilog="example:\n  bertforge plot runs/kant runs/kant-post --out curves.png --x tokens",
    )
    p.add_argument("runs", nargs="+", help="run folders (their metrics.jsonl)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--x", choices=("step", "tokens"), default="step", help="horizontal axis")
    add_common(p)
    p.set_defaults(func=cmd_plot)

    viz = sub.add_parser("viz", help="pictures of what a model learned")
    viz_sub = viz.add_subparsers(dest="viz_command", required=True, parser_class=Parser)
    p = viz_sub.add_parser(
        "embeddings", help="PCA scatter (PNG), interactive 3D scatter (HTML) and similarity heat map (PNG) of words",
        epilog="examples:\n  bertforge viz embeddings runs/kant --words reason,understanding,sense,time,space --out viz\n"
        "  bertforge viz embeddings runs/kant --top 80 --out viz",
    )
    p.add_argument("model", help="run folder (or fine-tuned folder)")
    words = p.add_mutually_exclusive_group(required=True)
    words.add_argument("--words", help="comma-separated words to place")
    words.add_argument("--top", type=int, metavar="N", help="the N most frequent words of the training data")
    p.add_argument("--out", required=True, help="folder for pca.png, pca3d.html and similarity.png")
    p.add_argument("--device", default="auto")
    add_common(p)
    p.set_defaults(func=cmd_viz_embeddings)

    p = sub.add_parser(
        "report", help="one self-contained HTML page about a run: config, parameters, data, curves, metrics, samples",
        epilog='example:\n  bertforge report runs/kant --out kant-report.html --text "The <mask> of pure reason."',
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--text", action="append", help="a sentence with <mask> to fill in as well (repeatable)")
    p.add_argument("--top", type=int, default=40, metavar="N", help="words in the embedding plot (default: 40)")
    p.add_argument("--device", default="auto")
    add_common(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "serve", help="a local web page and JSON API to try a model: fill-mask, similarity, neighbours, classify",
        epilog="examples:\n  bertforge serve runs/kant            # then open http://127.0.0.1:8000\n"
        "  bertforge serve sst2-ft --port 8080",
    )
    p.add_argument("model", help="run folder or fine-tuned folder; the only model the server reads")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")
    add_common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "bench", help="bertforge next to Hugging Face: same data, shape and settings, one run",
        epilog="examples:\n  bertforge bench train --preset small\n  bertforge bench prepare --corpus-mb 40 --json\n"
        "  bertforge bench fill-mask --preset small\n  bertforge bench quality --minutes 10 --plot quality.png",
    )
    p.add_argument("kind", choices=("train", "prepare", "fill-mask", "quality", "downstream"))
    p.add_argument("--preset", help="model preset (default: small; downstream: the --budget recipe's)")
    p.add_argument("--steps", type=int, default=20, help="train: timed training steps")
    p.add_argument("--warmup-steps", type=int, default=3, help="train: untimed steps first")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32")
    p.add_argument("--compile", action="store_true", help="train: torch.compile both models")
    p.add_argument("--device", default="auto")
    p.add_argument("--corpus", help="train, fill-mask, quality: one text file instead of the data folder's text")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder of benchmark text (default: $BERTFORGE_DATA, else the repository's tests/data; "
                        "layouts in benchmarks/README.md)")
    p.add_argument("--minutes", type=float, default=10, help="quality: training minutes of each side")
    p.add_argument("--evaluations", type=int, default=10, help="quality: validation points along each side's clock")
    p.add_argument("--plot", metavar="PNG", help="quality: validation loss against minutes, both sides")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,...]",
                   help="quality: race another bertforge recipe too, e.g. mask30:masking.mask_prob=0.3")
    p.add_argument("--corpus-mb", type=float, default=40, help="prepare: corpus size, MB")
    p.add_argument("--processes", type=int, default=2, help="prepare: processes / tokenizer threads")
    p.add_argument("--work-dir", help="prepare, quality: keep the built data (and quality's runs) here")
    p.add_argument("--sentences", type=int, default=1000, help="fill-mask: sentences")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--no-reference", action="store_true", help="bertforge only (no transformers needed)")
    p.add_argument("--labelled", metavar="FILE",
                   help="downstream: labelled TSV/CSV with a header (default: tests/data/reviews/train.tsv); "
                        "--corpus is the pretraining text (default: tests/data/kant/kant.txt)")
    p.add_argument("--text-column", default="sentence", help="downstream: text column of --labelled")
    p.add_argument("--label-column", default="label", help="downstream: label column of --labelled")
    p.add_argument("--train-examples", type=int, default=1000, help="downstream: fine-tuning examples")
    p.add_argument("--eval-examples", type=int, default=500, help="downstream: held-out examples scored")
    p.add_argument("--seed", type=int, default=0, help="downstream: seed of the train/eval split and fine-tuning")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="downstream: pretraining setting")
    p.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                   help="downstream: fine-tuning setting for both models, e.g. finetune.lr=1e-3")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    add_common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "demo", help="a small end-to-end pretraining on text that ships with Python",
        epilog="example:\n  bertforge demo --out demo-run",
    )
    p.add_argument("--out", default="demo-run")
    p.add_argument("--corpus", help="use this text instead of Python's documentation")
    p.add_argument("--max-steps", type=int, default=2000)
    add_common(p)
    p.set_defaults(func=cmd_demo)

    add_finetune_commands(sub, Parser)
    return parser


def setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("bertforge")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "quiet", False))
    try:
        return args.func(args)
    except BertforgeError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except OSError as e:  # the machine, not the input: a full disk, a lost mount, no permission
        where = f" ({e.filename})" if e.filename else ""
        sys.stderr.write(f"error: {e.strerror or e}{where}; files being written were left as they were before\n")
        return 1
    except KeyboardInterrupt as e:  # a run saved before it stopped (see train/guard.py), or a plain Ctrl-C
        sys.stderr.write("interrupted\n")
        return 128 + getattr(e, "signum", 2)
