"""The Python API: each command of the CLI as one function, with the CLI's power.

    import bertforge
    bertforge.pretrain(corpus="kant.txt", out="run", budget="10m")
    bertforge.evaluate("run", corpus="heldout.txt")
    bertforge.export("run", "hf-model")
    bertforge.finetune("run", "train.tsv", "dev.tsv", "sst2-ft")

The CLI (cli/) only parses arguments, calls these and prints. Settings come as the CLI's do:
defaults < `preset` < `budget` recipe < `config` (a YAML file) < `settings`, where `settings` is
a nested dict ({"train": {"lr": 1e-3}}), a flat one ({"train.lr": 1e-3}) or `--set` strings
(["train.lr=1e-3"]). The stage-by-stage functions (`bertforge.shards.prepare`,
`bertforge.train.loop.pretrain`, ...) stay available for finer control.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from .budget import machine_kind, parse_duration, pick_recipe
from .config import DataConfig, RunConfig, TrainConfig, build_config, load_yaml, merge, merged_settings, parse_overrides
from .console import show_logs_without_setup
from .corpus import iter_documents
from .errors import ConfigError
from .evaluate import evaluate_split
from .finetune import finetune  # noqa: F401  (the API's fine-tuning entry point)
from .finetune.predict import Finetuned, load_finetuned
from .finite import check_finite_model
from .folders import FINETUNED, RUN, RUN_CONFIG, folder_kind, run_data_dir
from .hf.exporter import export_run
from .hf.importer import import_hf, init_run
from .infer import LoadedRun, load_run
from .masking import masking_vocab
from .shards import PackedShards, check_compatible, document_texts, load_manifest
from .shards import prepare as prepare_shards
from .tokenizer import TextTokenizer, load_tokenizer, train_tokenizer
from .train import distributed
from .train.loop import pretrain as train_run
from .train.loop import preflight
from .train.run_folder import run_lock

log = logging.getLogger("bertforge")

Settings = Mapping[str, Any] | Sequence[str] | None

__all__ = [
    "run_config", "build_tokenizer", "prepare", "pretrain", "pretrain_inputs", "launch_checks", "evaluate",
    "export", "import_hf", "finetune", "load_model_folder",
]


# ---------------------------------------------------------------- settings


def settings_dict(settings: Settings) -> dict:
    """`settings` in any of its three spellings, as the nested dict the config builder merges."""
    if not settings:
        return {}
    if isinstance(settings, str):
        raise ConfigError(f"settings: give a dict or a list of KEY=VALUE strings, not the string {settings!r}")
    if isinstance(settings, Mapping):
        nested: dict = {}
        for key, value in settings.items():
            *sections, field = key.split(".")
            node = {field: value}
            for section in reversed(sections):
                node = {section: node}
            nested = merge(nested, node)
        return nested
    return parse_overrides(list(settings))


def stop_settings(max_steps: int | None, max_tokens: int | None, max_time: str | float | None) -> dict:
    """The stop limits given, as settings; the limits not given are cleared.

    A stop limit given alone is the run's only limit: without this, `--preset small --max-time 30m`
    stopped silently at the preset's 2,000 steps. `settings` (applied after) can add one back.
    """
    given = {"max_steps": max_steps, "max_tokens": max_tokens,
             "max_time_s": parse_duration(max_time) if isinstance(max_time, str) else max_time}
    if not any(given.values()):
        return {}
    return {"train": {key: value or 0 for key, value in given.items()}}


def run_config(
    preset: str | None = None,
    config: str | Path | None = None,
    settings: Settings = None,
    *,
    budget: str | float | None = None,
    base: str | Path | None = None,
    max_steps: int | None = None,
    max_tokens: int | None = None,
    max_time: str | float | None = None,
) -> tuple[RunConfig, list[str]]:
    """(RunConfig, lines describing the budget recipe) from a preset, a YAML file and settings.

    `budget` ("10m", "2h", or seconds) picks the recipe for that budget on the device the run
    will use; `base` is the config.yaml of a run to start from (resume, --init-from).
    """
    overrides = merge(stop_settings(max_steps, max_tokens, max_time), settings_dict(settings))
    recipe, lines = None, []
    if budget:
        if max_steps or max_tokens or max_time:
            raise ConfigError("--budget sets when training stops; drop --max-time/--max-steps/--max-tokens")
        budget_s = parse_duration(budget) if isinstance(budget, str) else float(budget)
        chosen = pick_recipe(budget_s, machine_kind(str(overrides.get("train", {}).get("device", "auto"))))
        preset = preset or chosen.preset
        # the objective comes from --config/--set/the run: a recipe's setting for packed text stays out of the others
        merged = merged_settings(preset, config, overrides, base=load_yaml(base) if base else None)
        objective = (merged.get("train") or {}).get("objective", TrainConfig.objective)
        chosen = chosen.for_objective(objective)
        recipe = chosen.overrides(budget_s)
    cfg = build_config(preset=preset, config_file=config, overrides=overrides,
                       base=load_yaml(base) if base else None, recipe=recipe)
    if budget:
        used = {key: getattr(getattr(cfg, key.split(".")[0]), key.split(".")[1]) for key in chosen.settings}
        lines = chosen.describe(budget_s, used)
    return cfg, lines


# ---------------------------------------------------------------- corpus -> tokenizer -> shards


def build_tokenizer(
    corpus: str | Sequence[str], out: str | Path, *, preset: str | None = None, config: str | Path | None = None,
    settings: Settings = None,
) -> TextTokenizer:
    """Train a tokenizer on `corpus` (files, folders, hf:NAME; SRC:WEIGHT mixes) into the folder `out`."""
    show_logs_without_setup()
    cfg, _ = run_config(preset, config, settings)
    return train_tokenizer(iter_documents(as_list(corpus), cfg.corpus), cfg.tokenizer, Path(out))


def prepare(
    corpus: str | Sequence[str], tokenizer: str | Path | TextTokenizer, out: str | Path, *,
    preset: str | None = None, config: str | Path | None = None, settings: Settings = None,
    val_corpus: str | Sequence[str] | None = None, progress: bool = True,
) -> Path:
    """Tokenize and pack `corpus` into a shard folder `out` (reused when nothing changed)."""
    show_logs_without_setup()
    cfg, _ = run_config(preset, config, settings)
    return prepare_shards(as_list(corpus), tokenizer, cfg.data, cfg.corpus, Path(out),
                          val_sources=as_list(val_corpus), progress=progress)


def as_list(sources: str | Path | Sequence[str] | None) -> list[str]:
    if sources is None:
        return []
    return [str(sources)] if isinstance(sources, (str, Path)) else [str(s) for s in sources]


# ---------------------------------------------------------------- pretrain


def pretrain(
    corpus: str | Sequence[str] | None = None,
    out: str | Path | None = None,
    *,
    data: str | Path | None = None,
    budget: str | float | None = None,
    preset: str | None = None,
    config: str | Path | None = None,
    settings: Settings = None,
    max_steps: int | None = None,
    max_tokens: int | None = None,
    max_time: str | float | None = None,
    val_corpus: str | Sequence[str] | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    allow_changed_settings: bool = False,
    progress: bool = True,
) -> dict:
    """Pretrain into the run folder `out`, as `bertforge pretrain` does; returns the last validation metrics.

    Give `corpus` (a tokenizer and shards are built inside `out`, reused when unchanged) or `data`
    (a shard folder from `prepare`); or `resume=True` to continue `out` from its latest checkpoint.
    Under torchrun, every rank calls this the same way: rank 0 builds the inputs, all ranks train.
    """
    if out is None:
        raise ConfigError("pretrain: give `out`, the run folder to write")
    show_logs_without_setup()  # a script or notebook sees the recipe and the data being built too
    request = dict(corpus=corpus, data=data, budget=budget, preset=preset, config=config, settings=settings,
                   max_steps=max_steps, max_tokens=max_tokens, max_time=max_time, val_corpus=val_corpus,
                   resume=resume, init_from=init_from, progress=progress)
    with distributed.process_group() as world, contextlib.ExitStack() as held:

        def locked_inputs():  # the writer lock first: a second launch must not build into this folder
            held.enter_context(run_lock(Path(out)))
            return pretrain_inputs(Path(out), **request)

        # Rank 0 prepares the run folder (tokenizer, shards, imported weights); the others get its result.
        cfg, data_dir, init = world.main_only(locked_inputs)
        return train_run(cfg, data_dir, out, resume=resume, init_from=init, progress=progress,
                         allow_changed_settings=allow_changed_settings)


def pretrain_inputs(
    run_dir: Path, *, corpus=None, data=None, budget=None, preset=None, config=None, settings=None, max_steps=None,
    max_tokens=None, max_time=None, val_corpus=None, resume=False, init_from=None, progress=True,
) -> tuple[RunConfig, Path, Path | None]:
    """(config, data folder, run to start from) of a pretraining, building tokenizer and shards for `corpus`."""
    base, init = None, None
    if resume:
        if data or corpus or init_from:
            raise ConfigError("--resume continues a run with its own data and weights; drop --data/--corpus/--init-from")
        if budget:
            raise ConfigError("--resume keeps the run's own budget and clock; drop --budget")
        base = run_dir / RUN_CONFIG
        if not base.is_file():
            raise ConfigError(f"{run_dir}: no config.yaml; nothing to resume")
    elif bool(data) == bool(corpus):
        raise ConfigError("give either --data DATA (from `bertforge prepare`) or --corpus FILE")
    elif init_from:
        init = start_from(init_from, run_dir)
        base = init / RUN_CONFIG
    elif preset is None and not budget:
        preset = "small"
    cfg, lines = run_config(preset, config, settings, budget=budget, base=base, max_steps=max_steps,
                            max_tokens=max_tokens, max_time=max_time)
    for line in lines:
        log.info("%s", line)
    if resume:
        return cfg, run_data_dir(run_dir), None
    if data:
        return cfg, Path(data), init
    return cfg, data_from_corpus(cfg, as_list(corpus), as_list(val_corpus), run_dir, progress), init


def start_from(init_from: str | Path, run_dir: Path) -> Path:
    """For `init_from`: the run (or imported HF model) to start from; its tokenizer becomes the
    run's, so new shards are made with the vocabulary it knows."""
    init = init_run(init_from, run_dir / "init")
    if not (run_dir / "tokenizer").exists():
        shutil.copytree(init / "tokenizer", run_dir / "tokenizer")
    return init


def data_from_corpus(cfg: RunConfig, corpus: list[str], val_corpus: list[str], run_dir: Path, progress: bool) -> Path:
    """Tokenizer and shards for `pretrain --corpus`, inside the run folder (reused when unchanged)."""
    tok_dir = run_dir / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(tok_dir)
        log.info("reusing tokenizer %s", tok_dir)
    else:
        log.info("training a %s tokenizer (%d tokens)", cfg.tokenizer.kind, cfg.tokenizer.vocab_size)
        # With a template the tokenizer learns the texts the model reads, markup ("### Response:") included.
        tokenizer = train_tokenizer(document_texts(corpus, cfg.corpus, cfg.data), cfg.tokenizer, tok_dir)
    return prepare_shards(corpus, tokenizer, cfg.data, cfg.corpus, run_dir / "data", val_sources=val_corpus,
                          progress=progress)


def launch_checks(out: str | Path, ranks: int, allow_changed_settings: bool = False, **request) -> None:
    """Build and check a pretraining's inputs before a launcher starts `ranks` processes on them."""
    with run_lock(Path(out)):  # released before the ranks start: rank 0 takes it for the run
        cfg, data_dir, init = pretrain_inputs(Path(out), **request)
        preflight(cfg, data_dir, Path(out), request.get("resume", False), init, ranks, allow_changed_settings)


# ---------------------------------------------------------------- evaluate / export / load


def evaluate(
    run: str | Path, *, data: str | Path | None = None, corpus: str | Sequence[str] | None = None,
    batch_size: int = 32, batches: int = 0, device: str = "auto",
) -> dict:
    """Loss, perplexity and masked (or next-token) accuracy of a run's latest checkpoint, on its own
    validation split, another shard folder's, or on text files (every document evaluated)."""
    loaded = load_run(run, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        if corpus:
            whole = replace(loaded.config.data, val_fraction=0.0)  # every document is evaluation text
            data_dir = prepare_shards(as_list(corpus), loaded.tokenizer, whole, loaded.config.corpus,
                                      Path(tmp) / "data", progress=False)
            split = "train"
        else:
            data_dir, split = Path(data) if data else run_data_dir(run), "validation"
        check_compatible(load_manifest(data_dir), loaded.tokenizer)
        shards = PackedShards(data_dir, split)
        train = loaded.config.train
        loss_on = train.loss_on if shards.has_loss_mask else "all"  # text without a template: every token
        return evaluate_split(
            loaded.model, shards, masking_vocab(loaded.tokenizer), batch_size, batches, train.eval_seed,
            loaded.device, objective=train.objective, loss_on=loss_on,
            isolate_documents=loaded.config.data.isolate_documents,
        )


def export(run: str | Path, out: str | Path, arch: str | None = None) -> Path:
    """A run's latest checkpoint (or a fine-tuned folder) as a Hugging Face model folder `out`."""
    return export_run(run, out, arch)


def load_model_folder(path: str | Path, device: str = "auto") -> tuple[LoadedRun, Finetuned | None]:
    """(LoadedRun, None) for a pretraining run; (LoadedRun, Finetuned) for a fine-tuned folder, whose
    LoadedRun wraps the classifier (it has `.encoder`, no MLM head) for embeddings and neighbours."""
    if folder_kind(path, (RUN, FINETUNED)) == RUN:
        return load_run(path, device), None
    ft = load_finetuned(path, device)
    check_finite_model(ft.model, path)
    data = DataConfig(seq_len=min(DataConfig.seq_len, ft.config.model.max_seq_len))
    config = RunConfig(data=data, model=ft.config.model)
    return LoadedRun(config, ft.model, ft.tokenizer, Path(path), ft.device), ft
