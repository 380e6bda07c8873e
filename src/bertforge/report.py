"""`bertforge report RUN`: one self-contained HTML page about a pretraining run.

Config, parameter table, data statistics, curves, final metrics, the fill-mask samples of each
evaluation and an embedding plot, in one file: pictures are PNG data URIs, the style is inline,
there is no script and no link to anything outside the file, so it can be mailed or archived.
"""

from __future__ import annotations

import base64
import datetime
import html
import tempfile
from pathlib import Path

from . import __version__
from .errors import BertforgeError, DataError
from .files import atomic_write_text, read_json
from .folders import run_data_dir
from .infer import LoadedRun, fill_mask_batch, load_run
from .train.metrics import read_metrics

MAX_SAMPLE_STEPS = 6  # evaluations shown per sample: the first, the last, and some between

STYLE = """
body { font: 15px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1d2330; max-width: 1040px; margin: 0 auto; padding: 0 16px 40px; }
h1 { font-size: 24px; margin: 20px 0 2px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d9dee7; }
.muted { color: #5b6475; } img { max-width: 100%; border: 1px solid #d9dee7; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0; }
td, th { padding: 3px 12px 3px 0; border-bottom: 1px solid #eef0f4; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f7f9; padding: 10px; overflow-x: auto; font-size: 13px; }
.hit { font-weight: 700; color: #1f7a3a; } code { font-size: 13px; }
"""


def e(value) -> str:
    return html.escape(str(value), quote=True)


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are escaped unless they are already HTML (wrapped in `Markup`)."""
    cls = lambda i: ' class="num"' if i in numeric else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{e(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c if isinstance(c, Markup) else e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Markup(str):
    """Text that is already HTML."""


def number(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


# ---------------------------------------------------------------- sections


def metrics_section(run_dir: Path, run: LoadedRun) -> str:
    validation = read_metrics(run_dir, "validation")
    train = read_metrics(run_dir, "train")
    trainer = run.checkpoint / "trainer.json"
    state = read_json(trainer) if trainer.is_file() else {}
    rows = [["checkpoint", run.checkpoint.name]]
    rows += [[k, number(state[k])] for k in ("step", "tokens", "elapsed_s") if k in state]
    if validation:
        last = validation[-1]
        rows += [[f"validation {k}", number(last[k])] for k in ("loss", "perplexity", "masked_accuracy", "top5_accuracy") if k in last]
    if train:
        rows += [[f"training {k} (last log)", number(train[-1][k])] for k in ("loss", "tokens_per_s") if k in train[-1]]
    history = ""
    if len(validation) > 1:
        keys = [k for k in ("loss", "perplexity", "masked_accuracy", "top5_accuracy") if k in validation[-1]]
        history = "<h3>Every evaluation</h3>" + table(
            ["step", "tokens", *keys],
            [[number(r["step"]), number(r.get("tokens", "")), *[number(r.get(k, "")) for k in keys]] for r in validation],
            numeric=set(range(2 + len(keys))),
        )
    return "<h2>Final metrics</h2>" + table(["", "value"], rows, numeric={1}) + history


def curves_section(run_dir: Path) -> str:
    from .plots import plot_runs

    try:
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_runs([run_dir], Path(tmp) / "curves.png", x="tokens").read_bytes()
    except BertforgeError as err:
        return f"<h2>Curves</h2><p class=muted>no curves: {e(err)}</p>"
    return f'<h2>Curves</h2><img alt="training and validation curves" src="{png_uri(png)}">'


def spaced(steps: list[int]) -> list[int]:
    """At most MAX_SAMPLE_STEPS of the steps: the first, the last, evenly between."""
    if len(steps) <= MAX_SAMPLE_STEPS:
        return steps
    picks = {round(i * (len(steps) - 1) / (MAX_SAMPLE_STEPS - 1)) for i in range(MAX_SAMPLE_STEPS)}
    return [steps[i] for i in sorted(picks)]


def guesses(predictions: list[dict], answer: str | None = None) -> Markup:
    parts = []
    for p in predictions:
        text = f"{e(p['token'])} ({p['score']:.3f})"
        parts.append(f'<span class="hit">{text}</span>' if answer is not None and p["token"] == answer else text)
    return Markup(", ".join(parts))


def samples_section(run_dir: Path, run: LoadedRun, texts: list[str]) -> str:
    """The logged samples at a few evaluations (or, for a run logged without them, picked and
    predicted now), then the user's own sentences with the final model."""
    records = read_metrics(run_dir, "samples")
    out = ["<h2>Fill-mask samples</h2>"]
    if not records:
        records = [{"step": "final", "samples": samples_now(run_dir, run)}]
        out.append("<p class=muted>This run logged no samples while training; these are the final model's guesses.</p>")
    else:
        out.append("<p class=muted>Fixed validation sentences, one word masked; top-3 guesses at each evaluation "
                   "(the right word in green).</p>")
    by_step = {r["step"]: r["samples"] for r in records}
    steps = spaced(list(by_step))
    first = by_step[steps[0]]
    for i, sample in enumerate(first):
        rows = [[number(step), guesses(by_step[step][i]["predictions"], sample["answer"])]
                for step in steps if i < len(by_step[step])]
        out.append(f"<p><code>{e(sample['text'])}</code> &mdash; answer: <b>{e(sample['answer'])}</b></p>")
        out.append(table(["step", "top-3 guesses"], rows, numeric={0}))
    if texts:
        answers = fill_mask_batch(run, texts, 5)
        rows = [[t, Markup("<br>".join(guesses(mask) for mask in a))] for t, a in zip(texts, answers)]
        out.append("<h3>Your sentences (final model, top 5)</h3>" + table(["sentence", "guesses"], rows))
    return "".join(out)


def samples_now(run_dir: Path, run: LoadedRun) -> list[dict]:
    from .shards import PackedShards
    from .train.samples import pick_samples, predict_samples

    try:
        shards = PackedShards(run_data_dir(run_dir), "validation")
    except (OSError, KeyError, DataError):
        return []
    cfg = run.config
    samples = pick_samples(run.tokenizer, shards, cfg.train.fill_mask_samples or 3, cfg.train.eval_seed, cfg.model.max_seq_len)
    return predict_samples(run.model, run.tokenizer, cfg, samples, run.device) if samples else []


def embedding_section(run_dir: Path, run: LoadedRun, top: int) -> str:
    from .viz import frequent_words, pca_png, word_vectors

    words = frequent_words(run, run_dir, top)
    if len(words) < 3:
        return "<h2>Embeddings</h2><p class=muted>too few words in the vocabulary to plot</p>"
    png = pca_png(words, word_vectors(run, words), f"input embeddings of the {len(words)} most frequent words, PCA")
    return f'<h2>Embeddings</h2><img alt="PCA of word embeddings" src="{png_uri(png)}">'


def data_section(run_dir: Path, run: LoadedRun) -> str:
    from .shards import load_manifest

    tok = run.tokenizer
    rows = [["tokenizer", f"{tok.kind}, {tok.vocab_size:,} tokens"]]
    try:
        manifest = load_manifest(run_data_dir(run_dir))
    except (OSError, KeyError, DataError):
        return "<h2>Data</h2>" + table(["", ""], rows) + "<p class=muted>the run's shards are not at hand</p>"
    rows += [["sequence length", manifest["seq_len"]], ["packing", manifest["packing"]], ["token dtype", manifest["dtype"]]]
    sources = [s["location"] for s in manifest.get("corpus", {}).get("sources", [])]
    rows.append(["sources", ", ".join(sources) or "?"])
    splits = [
        [name, number(info.get("documents", "")), number(info["sequences"]), number(info["tokens"])]
        for name, info in manifest["splits"].items()
    ]
    return "<h2>Data</h2>" + table(["", ""], rows) + table(["split", "documents", "sequences", "tokens"], splits, {1, 2, 3})


def parameters_section(run: LoadedRun) -> str:
    from .model import parameter_table

    rows = parameter_table(run.model)
    total = sum(c for _, _, c in rows)
    body = [[name, "×".join(map(str, shape)), number(count)] for name, shape, count in rows]
    body.append([Markup("<b>total</b>"), "", Markup(f"<b>{number(total)}</b>")])
    # Folded: its ~70 rows would bury the rest of the page.
    return (
        f"<h2>Parameters</h2><details><summary>{number(total)} parameters in {len(rows)} tensors (click to show the table)</summary>"
        + table(["tensor", "shape", "parameters"], body, numeric={2}) + "</details>"
    )


def config_section(run_dir: Path) -> str:
    return "<h2>Config</h2><pre>" + e((run_dir / "config.yaml").read_text(encoding="utf-8")) + "</pre>"


def write_report(
    run_dir: str | Path, out: str | Path, texts: list[str] | None = None, top: int = 40, device: str = "auto"
) -> Path:
    """Write the report of the run in `run_dir` to `out` (one HTML file)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir, device)
    if not read_metrics(run_dir):
        raise DataError(f"{run_dir}: no metrics.jsonl records; is it a run folder from `bertforge pretrain`?")
    if not 3 <= top <= 500:
        raise DataError(f"--top must be between 3 and 500, got {top}")
    m = run.config.model
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<h1>bertforge report: {e(run_dir.resolve().name)}</h1>",
        f"<p class=muted>{m.num_layers} layers, hidden {m.hidden_size}, {m.num_heads} heads, {m.norm}-LN · "
        f"written {e(when)} by bertforge {e(__version__)}</p>",
        metrics_section(run_dir, run),
        curves_section(run_dir),
        samples_section(run_dir, run, texts or []),
        embedding_section(run_dir, run, top),
        data_section(run_dir, run),
        parameters_section(run),
        config_section(run_dir),
    ]
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>bertforge report: {e(run_dir.resolve().name)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )
    atomic_write_text(out, page)
    return Path(out)
