"""README.md of an exported model: what it is, what it saw, how well it does, what it is for."""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__, files
from ..config import RunConfig
from ..folders import HF, RUN, RUN_INFO, kind_or_none
from ..templates import load_template
from ..tokenizer import SPECIAL_TOKENS
from ..train.metrics import read_metrics
from .importer import IMPORT_FILE
from .keys import model_class

INTENDED_USE = """\
Filling in masked words (`fill-mask`) and, above all, a starting point for fine-tuning on text like
the training data (sequence or token classification, embeddings). It is a small model trained on a
limited corpus: it knows nothing beyond that corpus, its predictions echo the corpus's style and
biases, and it is not meant for decisions about people.

```python
from transformers import pipeline

fill = pipeline("fill-mask", model="{name}")
fill("The {mask} is the key to everything.")
```
"""


CAUSAL_USE = """\
Continuing or answering a prompt (`text-generation`) in the style of the training data. It is a
small model trained on a limited corpus: it knows nothing beyond that corpus, its text is often
wrong or incoherent, it echoes the corpus's style and biases, and it is not meant for decisions
about people.

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model, tokenizer = AutoModelForCausalLM.from_pretrained("{name}"), AutoTokenizer.from_pretrained("{name}")
ids = tokenizer("{prompt}", add_special_tokens=False, return_tensors="pt").input_ids
ids = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], dim=1)
print(tokenizer.decode(model.generate(ids, max_new_tokens=40, do_sample=False)[0], skip_special_tokens=True))
```
"""


def _intended_use(cfg: RunConfig, name: str) -> str:
    if cfg.model.causal:
        prompt = load_template(cfg.data.template).prompt("Name three colors.") if cfg.data.template else "Once upon a time"
        return CAUSAL_USE.replace("{name}", name).replace("{prompt}", json.dumps(prompt)[1:-1])
    return INTENDED_USE.format(mask=SPECIAL_TOKENS[cfg.tokenizer.scheme]["mask"], name=name)


def model_card(run_dir: Path, cfg: RunConfig, checkpoint: Path, arch: str, name: str) -> str:
    """README.md of the exported folder: what the model is, what it saw, how well it does, what it is for."""
    m = cfg.model
    pipeline, kind = ("text-generation", "causal-lm") if m.causal else ("fill-mask", "masked-lm")
    sections = [
        f"---\nlibrary_name: transformers\npipeline_tag: {pipeline}\ntags:\n- bertforge\n- {kind}\n- {arch}\n---",
        f"# {name}",
        f"A {model_class(m, arch)} ({m.num_layers} layers, hidden size {m.hidden_size}, {m.num_heads} heads, "
        f"{m.vocab_size:,}-token {cfg.tokenizer.kind} vocabulary, up to {m.max_seq_len} tokens) trained with "
        f"bertforge {__version__}, {_origin(run_dir)}.",
        "## Training data\n\n" + _data_section(run_dir),
        "## Training\n\n" + _training_section(cfg, checkpoint),
        "## Evaluation\n\n" + _evaluation_section(run_dir, checkpoint, cfg.train.objective),
        "## Intended use\n\n" + _intended_use(cfg, name),
    ]
    return "\n".join(section.rstrip("\n") + "\n" for section in sections)


def _read_json_or_none(path: Path):
    try:
        return files.read_json(path)
    except (OSError, ValueError):
        return None


def _origin(run_dir: Path) -> str:
    """Where the starting weights came from: a Hugging Face checkpoint, another run, or nowhere."""
    imported = _read_json_or_none(run_dir / IMPORT_FILE)
    if imported:
        return f"imported from the Hugging Face checkpoint `{Path(imported['source']).name}`"
    init_from = (_read_json_or_none(run_dir / RUN_INFO) or {}).get("init_from")
    if not init_from:
        return "pretrained from scratch"
    init = Path(init_from)
    kind = kind_or_none(init)
    if kind == HF:
        return f"continuing the pretraining of the Hugging Face checkpoint `{init.name}`"
    if kind == RUN:
        return f"continuing the pretraining of `{init.name}` ({_origin(init)})"
    return f"continuing the pretraining of `{init.name}`"


def _data_section(run_dir: Path) -> str:
    data_dir = (_read_json_or_none(run_dir / RUN_INFO) or {}).get("data_dir")
    manifest = _read_json_or_none(Path(data_dir) / "manifest.json") if data_dir else None
    if not manifest:
        return "Not recorded here (no data folder for this run).\n"
    sources = [Path(s["location"]).name for s in manifest.get("corpus", {}).get("sources", [])]
    lines = [f"- sources: {', '.join(f'`{s}`' for s in sources) or 'unknown'}"]
    for split, info in manifest.get("splits", {}).items():
        counts = f"{info['documents']:,} documents, {info['tokens']:,} tokens, {info['sequences']:,} sequences"
        lines.append(f"- {split}: {counts}")
    lines.append(f"- sequences of {manifest['seq_len']} tokens, packing `{manifest['packing']}`")
    return "\n".join(lines) + "\n"


def _training_section(cfg: RunConfig, checkpoint: Path) -> str:
    state = _read_json_or_none(checkpoint / "trainer.json") or {}
    t, m = cfg.train, cfg.model
    whole = " (whole words)" if cfg.masking.whole_word else ""
    objective = (
        f"next-token prediction (causal LM) on {'the responses' if t.loss_on == 'response' else 'all tokens'}"
        if t.objective == "clm" else f"masking {cfg.masking.mask_prob:.0%} of tokens{whole}"
    )
    return (
        f"- steps: {state.get('step', 0):,}; training tokens seen: {state.get('tokens', 0):,}; "
        f"time: {state.get('elapsed_s', 0.0) / 60:.1f} min\n"
        f"- batch {t.batch_size} x {t.grad_accum_steps} accumulation, peak LR {t.lr:g}, {t.schedule} schedule, "
        f"{t.warmup_steps} warmup steps, weight decay {t.weight_decay:g}\n"
        f"- {objective}; {m.norm}-LN, {m.activation}, "
        f"dropout {m.hidden_dropout:g}\n"
    )


def _evaluation_section(run_dir: Path, checkpoint: Path, objective: str = "mlm") -> str:
    step = (_read_json_or_none(checkpoint / "trainer.json") or {}).get("step", 0)
    records = [r for r in read_metrics(run_dir, "validation") if r["step"] <= step]
    if not records:
        return "No validation metrics were recorded.\n"
    r = records[-1]
    top5 = r.get("top5_accuracy", float("nan"))
    if objective == "clm":
        return (
            f"On the held-out validation split at step {r['step']:,} (next-token prediction):\n\n"
            "| loss | perplexity | next-token accuracy | top-5 accuracy |\n|---|---|---|---|\n"
            f"| {r['loss']:.4f} | {r['perplexity']:.2f} | {r['next_token_accuracy']:.4f} | {top5:.4f} |\n"
        )
    return (
        f"On the held-out validation split at step {r['step']:,} (15% of tokens masked):\n\n"
        "| loss | perplexity | masked accuracy | top-5 accuracy |\n|---|---|---|---|\n"
        f"| {r['loss']:.4f} | {r['perplexity']:.2f} | {r['masked_accuracy']:.4f} | {top5:.4f} |\n"
    )
