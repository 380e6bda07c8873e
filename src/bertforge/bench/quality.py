"""`bertforge bench quality`: what a budget buys, next to the usual Hugging Face path.

Both sides train for the same minutes of their own training clock on the same split and
tokenizer, and are evaluated on the same validation sequences with the same fixed masks (15%,
80/10/10, `evaluate.EVAL_MASKING`), whatever they trained with.
- bertforge: the `--budget` recipe for this machine (recipes/budget.yaml), LR decaying to 0 at
  the budget;
- reference: `RobertaForMaskedLM` (`BertForMaskedLM` for BERT-style presets) of the recipe's
  preset shape with its own init, dropout 0.1 and post-LN, `DataCollatorForLanguageModeling(0.15)`,
  `torch.optim.AdamW` with `Trainer`'s defaults (lr 5e-4 here, betas 0.9/0.999, eps 1e-8, no
  weight decay, clipping 1.0), 100 warmup steps, then a linear decay that also ends at the
  budget (more than `Trainer` can do for a time limit: it favours the reference).
The two sides train in one process, taking turns: the side whose clock is behind runs the
next step. Anything else running on the machine then slows both alike, and the comparison
stays fair even where the absolute figures are not.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..budget import format_duration, machine_kind, pick_recipe
from ..config import build_config, merge, parse_overrides
from ..corpus import iter_documents
from ..errors import DataError
from ..evaluate import evaluate_split
from ..hf.keys import default_arch, hf_config
from ..model import MLMOutput
from ..runtime import resolve_device
from ..shards import PackedShards, prepare
from ..tokenizer import load_tokenizer, train_tokenizer
from ..train.batches import BatchOrder
from ..train import resolve_config, setup, train_step
from ..train.optim import optimizer_step, set_lr
from ..train.schedule import lr_factor
from .speed import (
    bench_data_dir, hf_tokenizer, require_reference, run_mlm_examples, special_token_table, synchronize, work_folder,
)

log = logging.getLogger("bertforge")

REFERENCE_LR = 5e-4
REFERENCE_WARMUP = 100


@dataclass
class Side:
    """One contestant: a step function, a model to evaluate, and its own training clock."""

    name: str
    step: Callable[[float], int]  # step(seconds used so far) -> tokens trained
    model: torch.nn.Module
    amp_dtype: torch.dtype | None = None
    clock: float = 0.0
    steps: int = 0
    tokens: int = 0
    curve: list[dict] = field(default_factory=list)


class HFAdapter(torch.nn.Module):
    """A `transformers` masked LM behind bertforge's evaluation interface (logits over all positions)."""

    def __init__(self, hf_model: torch.nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, input_ids, attention_mask=None, labels=None):
        return MLMOutput(logits=self.hf(input_ids=input_ids, attention_mask=attention_mask).logits, labels=labels)


def split_lines(corpus: Path, folder: Path, val_share: float) -> tuple[Path, Path]:
    """train.txt / val.txt: the non-empty lines, the last `val_share` of them held out."""
    if not corpus.is_file():
        raise DataError(f"{corpus}: no such file")
    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    held_out = math.ceil(len(lines) * val_share)
    if len(lines) < 20 or held_out < 1:
        raise DataError(f"{corpus}: {len(lines)} non-empty lines are too few to train and validate on")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n".join(lines[:-held_out]) + "\n", encoding="utf-8")
    (folder / "val.txt").write_text("\n".join(lines[-held_out:]) + "\n", encoding="utf-8")
    return folder / "train.txt", folder / "val.txt"


def bench_quality(
    minutes: float = 10.0,
    corpus: str | Path | None = None,
    work_dir: str | Path | None = None,
    val_share: float = 0.05,
    evaluations: int = 10,
    device: str = "auto",
    reference: bool = True,
    seed: int = 0,
    variants: dict[str, list[str]] | None = None,
    data_dir: str | Path | None = None,
) -> dict:
    """Validation loss, perplexity and masked accuracy of both sides after `minutes` of training each.

    The corpus defaults to kant/kant.txt of the benchmark data folder (`bench.speed.bench_data_dir`).
    `variants` adds more bertforge sides: name -> `--set` style overrides on top of the recipe
    (how the recipes were studied: each choice raced against the others)."""

    if minutes <= 0 or evaluations < 1:
        raise DataError("bench quality: --minutes must be > 0 and --evaluations >= 1")
    if reference:
        require_reference("transformers")
    budget_s = minutes * 60.0
    torch_device = resolve_device(device)
    recipe = pick_recipe(budget_s, machine_kind(device))
    corpus = Path(corpus) if corpus else bench_data_dir(data_dir) / "kant" / "kant.txt"
    common = {"corpus": {"doc_per": "line"}, "data": {"val_fraction": 0.0},
              "train": {"device": device, "seed": seed, "eval_batches": 0}}
    ours_cfg = build_config(preset=recipe.preset, recipe=recipe.overrides(budget_s), overrides=common)
    with work_folder(work_dir) as work:
        train_txt, val_txt = split_lines(corpus, work / "split", val_share)
        tok_dir = work / "tokenizer"
        tokenizer = (load_tokenizer(tok_dir) if (tok_dir / "tokenizer.json").is_file() else
                     train_tokenizer(iter_documents([str(train_txt)], ours_cfg.corpus), ours_cfg.tokenizer, tok_dir,
                                     progress=False))
        shards_dir = prepare([str(train_txt)], tokenizer, ours_cfg.data, ours_cfg.corpus, work / "data",
                           val_sources=[str(val_txt)], progress=False)
        seq_len = ours_cfg.data.seq_len
        ours_cfg = resolve_config(ours_cfg, tokenizer, seq_len)
        trainer = setup(ours_cfg, shards_dir, work / "bertforge-run", resume=False, init_from=None)
        sides = [bertforge_side(trainer)]
        trainers = [trainer]
        for name, sets in (variants or {}).items():
            cfg = build_config(preset=recipe.preset, recipe=recipe.overrides(budget_s), overrides=merge(common, parse_overrides(sets)))
            cfg = resolve_config(cfg, tokenizer, seq_len)
            trainers.append(setup(cfg, shards_dir, work / f"variant-{name}", resume=False, init_from=None))
            sides.append(bertforge_side(trainers[-1], name))
        if reference:
            ref_cfg = resolve_config(build_config(preset=recipe.preset, overrides=common), tokenizer, seq_len)
            sides.append(reference_side(ref_cfg, shards_dir, tokenizer, budget_s, torch_device))
        val = PackedShards(shards_dir, "validation")
        race(sides, budget_s, evaluations, lambda side: evaluate_side(side, val, trainer.vocab, torch_device),
             torch_device)
        for t in trainers:
            t.metrics.close()
    settings = {
        "minutes": minutes, "corpus": corpus.name, "validation": f"last {val_share:.0%} of non-empty lines",
        "recipe": recipe.name, "preset": recipe.preset, "recipe_settings": recipe.settings,
        "tokenizer": f"{ours_cfg.tokenizer.kind} {tokenizer.vocab_size}", "seq_len": seq_len,
        "validation_sequences": len(val), "device": str(torch_device), "threads": torch.get_num_threads(),
        "reference": f"HF {default_arch(tokenizer)} masked LM, lr {REFERENCE_LR:g}, {REFERENCE_WARMUP} warmup steps, "
                     "dropout 0.1, post-LN, DataCollatorForLanguageModeling(0.15), AdamW (Trainer defaults)",
    }
    if variants:
        settings["variants"] = variants
    return {"bench": "quality", "settings": settings, "sides": [side.name for side in sides],
            **{side.name: summary(side) for side in sides}}


def bertforge_side(t, name: str = "bertforge") -> Side:
    def step(clock: float) -> int:
        t.state.elapsed_s = clock  # the LR schedule reads the budget's clock from here
        before = t.state.tokens
        train_step(t)
        return t.state.tokens - before

    return Side(name, step, t.model, t.amp_dtype)


def reference_side(cfg, data_dir: Path, tokenizer, budget_s: float, device: torch.device) -> Side:
    """The usual path: HF masked LM, the HF collator on run_mlm.py-style examples, torch AdamW."""
    from transformers import AutoConfig, AutoModelForMaskedLM, DataCollatorForLanguageModeling
    from transformers.utils import logging as hf_logging


    hf_logging.set_verbosity_error()
    settings = hf_config(cfg.model, tokenizer, default_arch(tokenizer))
    torch.manual_seed(cfg.train.seed)
    model = AutoModelForMaskedLM.from_config(AutoConfig.for_model(settings.pop("model_type"), **settings))
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=REFERENCE_LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    collator = DataCollatorForLanguageModeling(hf_tokenizer(tokenizer), mlm_probability=0.15)
    shards = PackedShards(data_dir, "train")
    order = BatchOrder(len(shards), cfg.train.batch_size, cfg.train.seed)
    special = special_token_table(tokenizer)
    state = {"step": 0}

    def step(clock: float) -> int:
        set_lr(optimizer, REFERENCE_LR * lr_factor(state["step"], 0, REFERENCE_WARMUP, time_fraction=clock / budget_s))
        examples = run_mlm_examples(shards[order.indices(state["step"])], shards.pad_id, special)
        batch = {k: v.to(device) for k, v in collator(examples).items()}
        model(**batch).loss.backward()
        optimizer_step(optimizer, model.parameters(), 1.0)
        state["step"] += 1
        return int(batch["attention_mask"].sum())

    return Side("reference", step, HFAdapter(model))


def race(
    sides: list[Side], budget_s: float, evaluations: int, evaluate: Callable[[Side], dict],
    device: torch.device = torch.device("cpu"),
) -> None:
    """Step whichever side's clock is behind until every clock reaches the budget; evaluate at
    `evaluations` evenly spaced points of each clock (and at 0)."""
    marks = [budget_s * (i + 1) / evaluations for i in range(evaluations)]
    for side in sides:
        side.curve.append({"minutes": 0.0, "step": 0, "tokens": 0, **evaluate(side)})
    while True:
        running = [s for s in sides if s.clock < budget_s]
        if not running:
            break
        side = min(running, key=lambda s: s.clock)
        start = time.perf_counter()
        side.tokens += side.step(side.clock)
        synchronize(device)  # a GPU step is timed when it has finished, not when it was queued
        side.clock += time.perf_counter() - start
        side.steps += 1
        while len(side.curve) <= len(marks) and side.clock >= marks[len(side.curve) - 1]:
            point = {"minutes": side.clock / 60, "step": side.steps, "tokens": side.tokens, **evaluate(side)}
            side.curve.append(point)
            log.info("%-9s %5.1f min  step %6d  validation loss %.4f  masked accuracy %.4f",
                     side.name, point["minutes"], side.steps, point["loss"], point["masked_accuracy"])


def evaluate_side(side: Side, val: PackedShards, vocab, device: torch.device) -> dict:
    metrics = evaluate_split(side.model, val, vocab, batch_size=32, max_batches=0, device=device,
                             amp_dtype=side.amp_dtype)
    return {k: metrics[k] for k in ("loss", "perplexity", "masked_accuracy", "top5_accuracy")}


def summary(side: Side) -> dict:
    final = side.curve[-1]
    return {
        "steps": side.steps, "tokens": side.tokens, "train_seconds": side.clock,
        "tokens_per_s": side.tokens / max(side.clock, 1e-9),
        **{k: final[k] for k in ("loss", "perplexity", "masked_accuracy", "top5_accuracy")},
        "curve": side.curve,
    }


def format_quality(result: dict) -> str:
    """Both sides in a table, with the budget and recipe above it."""
    s = result["settings"]
    rows = [("validation loss", "loss", "{:.3f}"), ("perplexity", "perplexity", "{:,.1f}"),
            ("masked accuracy", "masked_accuracy", "{:.3f}"), ("top-5 accuracy", "top5_accuracy", "{:.3f}"),
            ("steps", "steps", "{:,}"), ("tokens", "tokens", "{:,}"), ("tokens/s", "tokens_per_s", "{:,.0f}")]
    names = result.get("sides", [n for n in ("bertforge", "reference") if n in result])
    width = max(10, *(len(n) for n in names))
    lines = [f"bench quality: {format_duration(s['minutes'] * 60)} of training each on {s['corpus']} "
             f"({s['validation']}), {s['device']}, {s['threads']} threads",
             f"bertforge recipe {s['recipe']} (preset {s['preset']}); reference: {s['reference']}"]
    lines += [f"variant {name}: {', '.join(sets)}" for name, sets in s.get("variants", {}).items()]
    lines += ["", "| " + " | ".join([f"{'':16}", *(f"{n:>{width}}" for n in names)]) + " |",
              "|" + "|".join(["-" * 18, *("-" * (width + 2) for _ in names)]) + "|"]
    for label, key, fmt in rows:
        cells = [f"{fmt.format(result[n][key]):>{width}}" for n in names]
        lines.append("| " + " | ".join([f"{label:16}", *cells]) + " |")
    return "\n".join(lines)


def plot_quality(result: dict, out: str | Path) -> Path:
    """Validation loss against training minutes, both sides on one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name in result.get("sides", [n for n in ("bertforge", "reference") if n in result]):
        if name in result:
            curve = result[name]["curve"]
            ax.plot([p["minutes"] for p in curve], [p["loss"] for p in curve], marker="o", label=name)
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation MLM loss (fixed masks)")
    ax.set_title(f"{result['settings']['corpus']}: validation loss at equal wall-clock time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
