"""Prediction with a fine-tuned folder: loading it, predicting, reading inputs, writing results."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import files
from ..checkpoint import load_model_weights
from ..config import load_config
from ..errors import DataError
from ..folders import FINETUNED, folder_kind
from ..runtime import resolve_device
from ..tokenizer import TextTokenizer, load_tokenizer
from .config import CONFIG_FILE, LABELS_FILE, WORD, FinetuneConfig, FinetuneRunConfig
from .data import (
    ClassifyData, encode_classification, encode_words, label_ids, read_classification, truncating, warn_truncated,
)
from .model import Classifier
from .training import Context, predict_encoded

# ---------------------------------------------------------------- prediction


@dataclass
class Finetuned:
    """A fine-tuning folder, loaded for prediction."""

    config: FinetuneRunConfig
    model: Classifier
    tokenizer: TextTokenizer
    labels: list
    device: torch.device

    @property
    def task(self) -> str:
        return self.config.finetune.task


def load_finetuned(path: str | Path, device: str = "auto") -> Finetuned:
    """A fine-tuning folder's model in eval mode, with its tokenizer and label map."""
    path = Path(path)
    folder_kind(path, (FINETUNED,), "--model")
    cfg = load_config(path / CONFIG_FILE, FinetuneRunConfig)
    labels = files.read_json(path / LABELS_FILE)["labels"]
    model = Classifier(cfg.model, len(labels), cfg.finetune.task, cfg.finetune.pooling, cfg.finetune.classifier_dropout)
    load_model_weights(model, path)
    torch_device = resolve_device(device)
    return Finetuned(cfg, model.to(torch_device).eval(), load_tokenizer(path / "tokenizer"), labels, torch_device)


def _context(ft: Finetuned, batch_size: int) -> Context:
    cfg = FinetuneRunConfig(finetune=_with(ft.config.finetune, eval_batch_size=batch_size), model=ft.config.model)
    return Context(cfg, ft.labels, ft.tokenizer.pad_id, ft.device, None)


def _with(cfg: FinetuneConfig, **changes) -> FinetuneConfig:
    from dataclasses import replace

    return replace(cfg, **changes)


def predict(ft: Finetuned, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32) -> list[dict]:
    """Labels with probabilities (classify), or word tags and entity spans (ner), for each text."""
    if not all(t.strip() for t in texts) or (pairs is not None and not all(p.strip() for p in pairs)):
        raise DataError("empty text: give some text to predict on")
    if ft.task == "classify" and bool(ft.config.finetune.text_pair_column) != (pairs is not None):
        wanted = "text pairs (give a second text, --text-pair)" if pairs is None else "single texts (no second text)"
        raise DataError(f"this model was fine-tuned on {wanted}")
    tok = truncating(ft.tokenizer, ft.config.seq_len)
    ctx = _context(ft, batch_size)
    if ft.task == "classify":  # stripped, as training read them; NER spans point into the texts as given
        data = ClassifyData([t.strip() for t in texts], pairs and [p.strip() for p in pairs], None)
        encoded = encode_classification(tok, data, None, ft.config.seq_len, "input")
        probs, _ = predict_encoded(ft.model, ctx, encoded)
        return [_class_result(ft.labels, p) for p in probs]
    spans = [[m.span() for m in WORD.finditer(text)] for text in texts]
    encoded = encode_words(tok, texts, spans, None)
    warn_truncated("input", encoded.truncated, len(encoded), ft.config.seq_len)
    probs, _ = predict_encoded(ft.model, ctx, encoded)
    return [_ner_result(ft.labels, text, s, p) for text, s, p in zip(texts, spans, probs)]


def _class_result(labels: list, probs: np.ndarray) -> dict:
    best = int(probs.argmax())
    probabilities = {str(v): float(p) for v, p in zip(labels, probs)}
    return {"label": labels[best], "score": float(probs[best]), "probabilities": probabilities}


def _ner_result(labels: list, text: str, spans: list[tuple[int, int]], probs: np.ndarray) -> dict:
    """Each word's tag, and the entities (type, text, character span, mean tag probability)."""
    from seqeval.metrics.sequence_labeling import get_entities

    ids = probs.argmax(axis=-1) if len(spans) else np.zeros(0, dtype=int)
    tags = [labels[i] for i in ids]
    words = [
        {"word": text[s:e], "start": s, "end": e, "tag": tag, "score": float(probs[w, i])}
        for w, ((s, e), tag, i) in enumerate(zip(spans, tags, ids))
    ]
    entities = [
        {"type": kind, "text": text[spans[a][0] : spans[b][1]], "start": spans[a][0], "end": spans[b][1],
         "score": float(np.mean([words[w]["score"] for w in range(a, b + 1)]))}
        for kind, a, b in get_entities(tags)
    ]
    return {"tags": words, "entities": entities}


def read_predict_input(
    ft: Finetuned, path: str | Path, text_column: str | None, pair_column: str | None, label_column: str | None
) -> tuple[ClassifyData, list[int] | None]:
    """Texts (pairs) of a file to predict on; with a label column, their label ids (unseen labels refused)."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        texts = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        if not texts:
            raise DataError(f"{path}: no text (the file is empty or blank)")
        return ClassifyData(texts, None, None), None
    cfg = _with(
        ft.config.finetune, task="classify", text_column=text_column or ft.config.finetune.text_column,
        text_pair_column=ft.config.finetune.text_pair_column if pair_column is None else pair_column,
        label_column=label_column or "label", metric="auto",
    )
    data = read_classification(path, cfg, labelled=label_column is not None, skip_empty=False)
    if label_column is None:
        return data, None
    if ft.task != "classify":
        raise DataError("--label-column applies to classification models; this one tags words (ner)")
    return data, label_ids(data.labels, ft.labels, path)


def to_json_text(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)


def write_predictions(path: str | Path, rows: list[dict], ft: Finetuned) -> None:
    """Predictions as a CSV/TSV table (one flat row per text) or JSON (.json array, .jsonl lines), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        files.atomic_write_text(path, to_json_text(rows) + "\n")
    elif suffix == ".jsonl":
        files.atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif suffix in (".csv", ".tsv"):
        buffer = io.StringIO()
        table = [_flat_row(r, ft) for r in rows]
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]), delimiter="," if suffix == ".csv" else "\t")
        writer.writeheader()
        writer.writerows(table)
        files.atomic_write_text(path, buffer.getvalue())
    else:
        raise DataError(f"--out {path}: unsupported file type; use .csv, .tsv, .json or .jsonl")


def _flat_row(row: dict, ft: Finetuned) -> dict:
    """Classify: text, label, score, p_<label> each; NER: text, entities as TYPE:text@start-end; and the tags."""
    base = {k: row[k] for k in ("text", "text_pair") if k in row}
    if ft.task == "classify":
        probs = {f"p_{label}": f"{p:.6f}" for label, p in row["probabilities"].items()}
        return {**base, "label": row["label"], "score": f"{row['score']:.6f}", **probs}
    entities = "; ".join(f"{e['type']}:{e['text']}@{e['start']}-{e['end']}" for e in row["entities"])
    return {**base, "entities": entities, "tags": " ".join(t["tag"] for t in row["tags"])}
