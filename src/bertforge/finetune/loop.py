"""The whole fine-tuning run: reading the task, training, baselines, and writing the folder."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import files
from ..config import build_config, merge, parse_overrides, save_config, to_dict
from ..console import show_logs_without_setup
from ..runtime import autocast_dtype, resolve_device
from ..tokenizer import TextTokenizer
from .config import (
    CONFIG_FILE, CONFUSION_FILE, LABELS_FILE, METRICS_FILE, MODEL_FILE, REPORT_FILE, FinetuneRunConfig, with_auto_lr,
)
from .data import (
    ClassifyData, Encoded, NerData, encode_classification, encode_ner, label_ids, label_list, read_classification,
    read_conll, truncating,
)
from .metrics import scalars, single_class_prediction
from .model import Classifier, Source, freeze, load_encoder, load_source
from .report import confusion_png, majority_baseline, report_text, tfidf_baseline
from .search import describe, grid, parse_search
from .training import Context, Fit, balanced_weights, evaluate, fit, improved

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the whole run


@dataclass
class Task:
    """A task's splits, read, labelled and encoded."""

    labels: list
    data: dict[str, ClassifyData | NerData]  # train, validation (and test)
    gold: dict[str, list]  # class ids, or tag-id lists per sentence
    encoded: dict[str, Encoded]
    truncated: dict[str, int]


def read_task(cfg: FinetuneRunConfig, tokenizer: TextTokenizer, paths: dict[str, str | Path]) -> Task:
    """Read every split, build the label map from the training split, check the others, encode all."""
    ft = cfg.finetune
    tok = truncating(tokenizer, cfg.seq_len)
    if ft.task == "classify":
        data = {name: read_classification(path, ft) for name, path in paths.items()}
        labels = label_list(data["train"].labels, paths["train"], ft.task)
        gold = {name: label_ids(d.labels, labels, paths[name], paths["train"]) for name, d in data.items()}
        encoded = {n: encode_classification(tok, d, gold[n], cfg.seq_len, str(paths[n])) for n, d in data.items()}
    else:
        data = {name: read_conll(path) for name, path in paths.items()}
        labels = label_list([t for tags in data["train"].tags for t in tags], paths["train"], ft.task)
        gold = {name: _tag_ids(d, labels, paths[name], paths["train"]) for name, d in data.items()}
        encoded = {name: encode_ner(tok, d, gold[name], cfg.seq_len, str(paths[name])) for name, d in data.items()}
    return Task(labels, data, gold, encoded, {name: e.truncated for name, e in encoded.items()})


def _tag_ids(data: NerData, labels: list, path, training_path) -> list[list[int]]:
    flat = label_ids([t for tags in data.tags for t in tags], labels, path, training_path)
    out, position = [], 0
    for tags in data.tags:
        out.append(flat[position : position + len(tags)])
        position += len(tags)
    return out


def make_context(cfg: FinetuneRunConfig, source: Source, task: Task) -> Context:
    """Device, precision and (optional) class weights, fixed once for the model and its baselines."""
    device = resolve_device(cfg.finetune.device)
    ctx = Context(cfg, task.labels, source.tokenizer.pad_id, device, autocast_dtype(cfg.finetune.precision, device))
    if cfg.finetune.class_weights == "balanced":
        ctx.class_weight = balanced_weights(task.encoded["train"], len(task.labels)).to(device)
    return ctx


def train_and_score(
    ctx: Context, source: Source, task: Task, init: str, progress: bool
) -> tuple[Classifier, Fit, dict]:
    """One fine-tuning from `init` weights: fit, restore the best epoch, score it on validation (the
    test split is scored once, for the setting a search keeps: `score_held_out`)."""
    ft = ctx.cfg.finetune
    torch.manual_seed(ft.seed)  # each model starts from the same seed, whether baselines run or not
    model = Classifier(ctx.cfg.model, len(task.labels), ft.task, ft.pooling, ft.classifier_dropout)
    if init == "pretrained":
        load_encoder(model, source.state, source.origin)
    freeze(model, ft.freeze_layers)
    model.to(ctx.device)
    result = fit(model, ctx, task.encoded["train"], task.encoded["validation"], task.gold["validation"], progress)
    model.load_state_dict(result.best_state)
    return model, result, {"validation": evaluate(model, ctx, task.encoded["validation"], task.gold["validation"])}


def score_held_out(chosen: Chosen, task: Task) -> Chosen:
    """Add the scores of the splits no choice looked at (test) for the kept setting."""
    for name in task.encoded:
        if name not in ("train", *chosen.scores):
            chosen.scores[name] = evaluate(chosen.model, chosen.ctx, task.encoded[name], task.gold[name])
    return chosen


@contextlib.contextmanager
def finetune_lock(out: Path):
    """The writer lock of a fine-tuning folder; it lives beside `out` (built whole at the end) and goes with the run."""
    lock = out.parent / f".{out.name}.lock"
    with files.writer_lock(lock, f"fine-tuning folder {out}"):
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def collapse_warnings(task: Task, scores: dict, lr: float, who: str = "the classifier") -> list[str]:
    """A classifier that answers one class for every example of a split learned nothing usable."""
    if "confusion_matrix" not in next(iter(scores.values()), {}):  # NER
        return []
    out = []
    for split, split_scores in scores.items():
        only = single_class_prediction(split_scores["confusion_matrix"])
        if only is not None:
            out.append(
                f"{who} predicts {task.labels[only]!r} for every {split} example (its accuracy "
                f"{split_scores['accuracy']:.4f} is that class's share): it learned nothing usable; try a higher "
                f"finetune.lr (this run: {lr:g}), more epochs, or finetune.class_weights=balanced"
            )
    return out


@dataclass
class Chosen:
    """The best setting of a search (or the only one): what it was, and what it trained."""

    point: dict  # the searched settings ({} without a search)
    cfg: FinetuneRunConfig
    ctx: Context
    model: Classifier
    result: Fit
    scores: dict
    tried: list[dict]  # every setting with its best epoch's validation metric


def point_configs(
    source: Source, settings: dict | list[str] | None, config_file, search: dict[str, list]
) -> list[tuple[dict, FinetuneRunConfig]]:
    """One validated config per point of the search grid (the settings alone without a search)."""
    base = {"model": to_dict(source.model)}
    settings = parse_overrides(settings) if isinstance(settings, list) else dict(settings or {})
    configs = []
    for point in grid(search):
        cfg = build_config(FinetuneRunConfig, config_file=config_file, base=base,
                           overrides=merge(settings, {"finetune": point}))
        if not cfg.finetune.lr:
            cfg = with_auto_lr(cfg)
            if not configs:
                log.info("finetune.lr %g, the default for an encoder of hidden size %d (set finetune.lr to choose)",
                         cfg.finetune.lr, cfg.model.hidden_size)
        configs.append(({key: getattr(cfg.finetune, key) for key in point}, cfg))  # typed: "1e-4" -> 0.0001
    return configs


def best_fit(
    configs: list[tuple[dict, FinetuneRunConfig]], source: Source, task: Task, init: str, progress: bool
) -> Chosen:
    """Fine-tune from `init` with each setting; keep the one whose best epoch scores best on validation."""
    metric = configs[0][1].finetune.best_metric
    chosen, tried = None, []
    for point, cfg in configs:
        if len(configs) > 1:
            log.info("search, %s init: %s", init, describe(point))
        ctx = make_context(cfg, source, task)
        model, result, scores = train_and_score(ctx, source, task, init, progress)
        value = result.best["validation"][metric]
        tried.append({"settings": point, "best_epoch": result.best["epoch"], metric: value})
        if chosen is None or improved(metric, value, chosen.result.best["validation"][metric]):
            chosen = Chosen(point, cfg, ctx, model, result, scores, tried)
    if len(configs) > 1:
        log.info("search, %s init: picked %s (validation %s %.4f)", init, describe(chosen.point), metric,
                 chosen.result.best["validation"][metric])
    return score_held_out(chosen, task)


def run_baselines(
    configs: list[tuple[dict, FinetuneRunConfig]], source: Source, task: Task, random_init: bool, progress: bool
) -> dict:
    """Majority class (always, classify), and with `random_init` the same fine-tuning (the same search)
    from random weights plus TF-IDF + logistic regression (classify)."""
    cfg = configs[0][1]
    evaluated = [name for name in task.encoded if name != "train"]
    out: dict = {}
    if cfg.finetune.task == "classify":
        out["majority"] = majority_baseline(task.gold["train"], {n: task.gold[n] for n in evaluated}, task.labels)
    if not random_init:
        return out
    log.info("baseline: the same fine-tuning from a randomly initialised encoder")
    chosen = best_fit(configs, source, task, "random", progress)
    out["random_init"] = {
        "best_epoch": chosen.result.best["epoch"], "steps": chosen.result.history[-1]["step"],
        **{n: scalars(s) for n, s in chosen.scores.items()},
        **({"search": {"chosen": chosen.point, "tried": chosen.tried}} if len(configs) > 1 else {}),
    }
    collapsed = collapse_warnings(task, chosen.scores, chosen.cfg.finetune.lr, who="the random-init baseline")
    if collapsed:
        out["random_init"]["warnings"] = collapsed
    if cfg.finetune.task == "classify":
        log.info("baseline: TF-IDF + logistic regression")
        splits = {n: (task.data[n], task.gold[n]) for n in evaluated}
        out["tfidf_logreg"] = tfidf_baseline(task.data["train"], task.gold["train"], splits, cfg, task.labels)
        picked = out["tfidf_logreg"]["setting"]
        log.info("TF-IDF baseline tuned on validation %s: %s n-grams, C=%g", picked["metric"], picked["features"],
                 picked["C"])
    return out


def finetune(
    model: str | Path,
    train: str | Path,
    validation: str | Path,
    out: str | Path,
    settings: dict | list[str] | None = None,
    config_file: str | Path | None = None,
    test: str | Path | None = None,
    baselines: bool = False,
    progress: bool = True,
    search: dict | list[str] | None = None,
) -> dict:
    """Fine-tune `model` (run, fine-tuned or HF folder) and write the folder `out`; returns metrics.json.

    `settings` are overrides like {"finetune": {"task": "ner", "lr": 1e-4}} or ["finetune.lr=1e-4"];
    they apply over `config_file`, which applies over the defaults and the source model's config.
    `search` ({"lr": [1e-4, 3e-4], "pooling": ["cls", "mean"]} or ["lr=1e-4,3e-4", ...]) tries every
    combination, for the model and (with `baselines`) for its random-init baseline alike, and keeps
    each one's best on the validation split; the folder holds the model's best.
    """
    show_logs_without_setup()
    search = parse_search(search)
    source = load_source(model)
    configs = point_configs(source, settings, config_file, search)
    cfg = configs[0][1]
    out = Path(out)
    files.refuse_foreign_dir(out, LABELS_FILE, "a fine-tuning folder")
    with finetune_lock(out):  # one fine-tuning at a time writes `out`
        paths = {"train": train, "validation": validation, **({"test": test} if test else {})}
        task = read_task(cfg, source.tokenizer, paths)
        log.info("fine-tuning %s for %s: %d labels, %s", source.origin, cfg.finetune.task, len(task.labels),
                 ", ".join(f"{n} {len(e)}" for n, e in task.encoded.items()))
        chosen = best_fit(configs, source, task, cfg.finetune.init, progress)
        metrics = {
            "task": cfg.finetune.task, "model": source.origin, "init": cfg.finetune.init, "labels": task.labels,
            "metric": cfg.finetune.best_metric, "examples": {n: len(e) for n, e in task.encoded.items()},
            "truncated": task.truncated, "epochs": chosen.result.history, "best": chosen.result.best,
            "scores": chosen.scores,
            **({"search": {"grid": search, "chosen": chosen.point, "tried": chosen.tried}} if search else {}),
            "baselines": run_baselines(configs, source, task, baselines, progress),
        }
        metrics["warnings"] = collapse_warnings(task, chosen.scores, chosen.cfg.finetune.lr) + metrics[
            "baselines"].get("random_init", {}).get("warnings", [])
        for warning in metrics["warnings"]:
            log.warning("warning: %s", warning)
        write_folder(out, chosen.cfg, source, task, chosen.ctx, chosen.model, metrics)
        return metrics


def write_folder(
    out: Path, cfg: FinetuneRunConfig, source: Source, task: Task, ctx: Context, model: Classifier, metrics: dict
) -> None:
    """Build the fine-tuning folder beside `out`, then move it into place whole."""
    with files.atomic_dir(out) as tmp:
        save_config(tmp / CONFIG_FILE, cfg)
        files.write_json(tmp / LABELS_FILE, {"task": cfg.finetune.task, "labels": task.labels})
        source.tokenizer.save(tmp / "tokenizer")
        files.save_tensors(tmp / MODEL_FILE, model.state_dict())
        files.write_json(tmp / METRICS_FILE, metrics)
        evaluated = {n: (task.encoded[n], task.gold[n]) for n in task.encoded if n != "train"}
        warnings = "".join(f"WARNING: {w}\n\n" for w in metrics["warnings"])
        files.atomic_write_text(tmp / REPORT_FILE, warnings + report_text(ctx, model, evaluated))
        if cfg.finetune.task == "classify":
            shown = "test" if "test" in metrics["scores"] else "validation"
            png = confusion_png(metrics["scores"][shown]["confusion_matrix"], task.labels, f"{shown} split")
            files.atomic_write_bytes(tmp / CONFUSION_FILE, png)
    log.info("fine-tuned model, metrics and report -> %s", out)


def comparison_table(metrics: dict) -> str:
    """The fine-tuned model beside its baselines, one row each, on validation (and test)."""
    names = {"majority": "majority class", "tfidf_logreg": "TF-IDF + logistic regression",
             "random_init": "same fine-tuning, random init", "model": f"fine-tuned ({metrics['init']} init)"}
    keys = ("accuracy", "macro_f1", "mcc") if metrics["task"] == "classify" else ("precision", "recall", "f1")
    splits = list(metrics["scores"])
    rows = [(names[k], v) for k, v in metrics["baselines"].items()] + [(names["model"], metrics["scores"])]
    header = f"{'':<32}" + "".join(f"{s + ' ' + k:>22}" for s in splits for k in keys)
    lines = [header]
    for name, scores in rows:
        cells = "".join(f"{scores[s][k]:>22.4f}" for s in splits for k in keys)
        lines.append(f"{name:<32}{cells}")
    if "search" in metrics:
        lines.append(f"settings picked on validation {metrics['metric']}: fine-tuned: {describe(metrics['search']['chosen'])}"
                     + "".join(f"; random init: {describe(b['search']['chosen'])}"
                               for b in [metrics["baselines"].get("random_init", {})] if "search" in b))
    return "\n".join(lines)
