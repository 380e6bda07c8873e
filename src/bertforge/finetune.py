"""Fine-tuning: sequence classification and NER on top of a pretrained encoder, with reports.

`finetune` reads a labelled split (CSV, TSV, JSON lines or CoNLL), puts a small head on the
encoder of a run (or of an imported Hugging Face folder), trains everything with AdamW, a linear
warmup and a linear decay, evaluates each epoch, keeps the best epoch on the chosen metric and
writes a fine-tuning folder:

    config.yaml            FinetuneConfig (section `finetune`) and the model's ModelConfig (`model`)
    labels.json            the label map: task and labels in id order (integers stay integers)
    tokenizer/             the encoder's tokenizer
    model.safetensors      the best epoch's weights: `encoder.*` (as in a MaskedLM) and `head.*`
    metrics.json           per-epoch validation metrics, the best epoch, test metrics, baselines
    report.txt             scikit-learn classification report (classify) or seqeval report (ner)
    confusion_matrix.png   classify only: the test split's, else the validation split's

Heads. Classification follows RoBERTa's `RobertaClassificationHead`: dropout -> `head.dense` (H, H)
-> tanh -> dropout -> `head.out_proj` (H, labels), read from the first token ([CLS] / <s>).
BERT computes the same function with other names (pooler = dense + tanh on [CLS], then dropout
and `classifier`), so an export is a key mapping either way:
    RobertaForSequenceClassification: head.dense -> classifier.dense, head.out_proj -> classifier.out_proj
    BertForSequenceClassification:    head.dense -> bert.pooler.dense, head.out_proj -> classifier
Token classification (both archs): dropout -> `head.out_proj` (H, labels), exported as `classifier`.
Mean pooling (`finetune.pooling: mean`) has no Hugging Face counterpart and does not export exactly.

Batches are padded to their longest example, and training draws batches of similar lengths
(`length_grouped_batches`), so short texts cost little. The best epoch's weights are kept in
memory and written once at the end, with everything else, into a folder moved into place whole.

NER labels sit on the first piece of each word; the other pieces get IGNORE_INDEX (-100), as in
the BERT paper (section 5.3). Words are matched to pieces through the tokenizer's character
offsets, which works for every tokenizer kind (byte-level BPE, WordPiece, SentencePiece).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import logging
import math
import re
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import files
from .config import ModelConfig, TrainConfig, build_config, load_config, save_config, to_dict
from .errors import ConfigError, DataError
from .model import IGNORE_INDEX, Encoder, init_weights
from .runtime import autocast, autocast_dtype, resolve_device
from .tokenizer import TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

TASKS = ("classify", "ner")
METRICS = {"classify": ("accuracy", "macro_f1", "loss"), "ner": ("f1", "precision", "recall", "accuracy", "loss")}
CONFIG_FILE, LABELS_FILE, MODEL_FILE = "config.yaml", "labels.json", "model.safetensors"
METRICS_FILE, REPORT_FILE, CONFUSION_FILE = "metrics.json", "report.txt", "confusion_matrix.png"
WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")  # words of raw text for NER: CoNLL-like, punctuation apart
INTEGER = re.compile(r"[+-]?\d+")


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class FinetuneConfig:
    task: str = "classify"  # "classify" (one label per text or text pair) or "ner" (one IOB2 tag per word)
    text_column: str = "text"  # column / JSON field of the text (all digits: 0-based column of a headerless file)
    text_pair_column: str = ""  # second text of a pair (entity, hypothesis, ...); "" = single texts
    label_column: str = "label"  # column of the class: strings or integers
    pooling: str = "cls"  # sentence vector: "cls" (first token, [CLS] / <s>) or "mean" of the real tokens
    max_seq_len: int = 0  # tokens per input, specials included; longer ones are truncated (0 = the model's limit)
    epochs: int = 3  # passes over the training split
    max_steps: int = 0  # optimizer steps instead of whole epochs (0 = epochs decide)
    batch_size: int = 32  # training examples per step
    eval_batch_size: int = 64  # examples per evaluation / prediction batch
    lr: float = 5e-5  # peak learning rate (2e-5..5e-5 for base-size models; tiny models like ~1e-3)
    warmup_fraction: float = 0.1  # share of the steps spent warming up linearly; then linear decay to 0
    weight_decay: float = 0.01  # AdamW decay, on matrices only
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    clip_grad_norm: float = 1.0  # 0 = no clipping
    classifier_dropout: float = 0.1  # dropout inside the head (the encoder keeps model.hidden_dropout)
    metric: str = "auto"  # picks the best epoch: auto (accuracy / ner: f1), macro_f1, precision, recall, loss
    patience: int = 0  # stop after this many evaluations without improvement (0 = run to the end)
    class_weights: str = "none"  # "balanced": weight the loss by n / (classes x count) against skewed labels
    freeze_layers: int = 0  # keep the embeddings and the lowest N blocks fixed (0 = train everything)
    init: str = "pretrained"  # "random": same shape, fresh weights: the baseline that shows what pretraining bought
    seed: int = 0  # seeds head init, dropout and the data order
    device: str = "auto"  # "auto", "cpu", "cuda", ...
    precision: str = "auto"  # "auto" (bf16 on a GPU that has it, else fp32), "fp32", "bf16"

    def __post_init__(self) -> None:
        _choice("task", self.task, TASKS)
        _choice("pooling", self.pooling, ("cls", "mean"))
        _choice("metric", self.metric, ("auto", *METRICS[self.task]))
        _choice("class_weights", self.class_weights, ("none", "balanced"))
        _choice("init", self.init, ("pretrained", "random"))
        _choice("precision", self.precision, ("auto", "fp32", "bf16"))  # fp16 would need a grad scaler
        for name in ("epochs", "batch_size", "eval_batch_size", "lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"finetune.{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_steps", "weight_decay", "clip_grad_norm", "patience", "freeze_layers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"finetune.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_seq_len and self.max_seq_len < 8:
            raise ConfigError(f"finetune.max_seq_len must be 0 (the model's limit) or >= 8, got {self.max_seq_len}")
        for name in ("warmup_fraction", "classifier_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"finetune.{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def best_metric(self) -> str:
        """The metric that picks the best epoch, `auto` resolved."""
        if self.metric != "auto":
            return self.metric
        return "accuracy" if self.task == "classify" else "f1"


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"finetune.{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class FinetuneRunConfig:
    """What a fine-tuning folder's config.yaml holds: the recipe and the encoder's shape."""

    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.finetune.max_seq_len > self.model.max_seq_len:
            raise ConfigError(
                f"finetune.max_seq_len ({self.finetune.max_seq_len}) is longer than the model's position table "
                f"({self.model.max_seq_len})"
            )
        if self.finetune.freeze_layers > self.model.num_layers:
            raise ConfigError(
                f"finetune.freeze_layers ({self.finetune.freeze_layers}) is more than the model's "
                f"{self.model.num_layers} layers"
            )

    @property
    def seq_len(self) -> int:
        return self.finetune.max_seq_len or self.model.max_seq_len


# ---------------------------------------------------------------- reading labelled data


@dataclass
class ClassifyData:
    texts: list[str]
    pairs: list[str] | None  # second texts, when the task reads pairs
    labels: list | None  # one label per text (int or str), None for unlabelled input


@dataclass
class NerData:
    words: list[list[str]]  # one list of words per sentence
    tags: list[list[str]]  # one IOB2 tag per word


def _require(module: str, package: str):
    """Import an optional dependency, or say which package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(
            f"fine-tuning needs {package}: pip install {package} (or pip install 'bertforge[finetune]')"
        ) from None


def read_table(path: str | Path, columns: dict[str, str]) -> list[dict[str, str]]:
    """The wanted columns (role -> column name) of a CSV, TSV or JSON-lines file, as rows of strings."""
    from .corpus import JSON_EXTENSIONS, TABLE_DELIMITERS, _extension, _open_text, _reading

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    extension = _extension(path)
    with _reading(path), _open_text(path) as f:
        if extension in JSON_EXTENSIONS:
            return list(_json_rows(f, path, columns))
        if extension in TABLE_DELIMITERS:
            return list(_csv_rows(csv.reader(f, delimiter=TABLE_DELIMITERS[extension]), path, columns))
    raise DataError(f"{path}: unsupported file type {extension or '(none)'}; use .csv, .tsv or .jsonl")


def _csv_rows(rows, path: Path, columns: dict[str, str]):
    """Rows of a CSV/TSV: all-digit column names are 0-based indexes of a file without a header row."""
    csv.field_size_limit(2**31 - 1)
    numeric = [name.isascii() and name.isdigit() for name in columns.values()]
    if any(numeric) and not all(numeric):
        raise DataError(f"{path}: give all columns by name (header row) or all by 0-based number (no header row)")
    if all(numeric):
        index = {role: int(name) for role, name in columns.items()}
    else:
        header = [name.strip() for name in next((row for row in rows if row), [])]
        index = {role: _column(path, header, role, name) for role, name in columns.items()}
    for number, row in enumerate(rows, start=1 if all(numeric) else 2):
        if not row:
            continue
        if len(row) <= max(index.values()):
            raise DataError(f"{path}: row {number} has {len(row)} columns, column {max(index.values())} is needed")
        yield {role: row[i] for role, i in index.items()}


def _column(path: Path, header: list[str], role: str, name: str) -> int:
    if name not in header:
        shown = ", ".join(h if len(h) <= 40 else h[:37] + "..." for h in header)
        raise DataError(
            f"{path}: no column '{name}' (columns: {shown}); set --{role.replace('_', '-')} to one of them, "
            "or to a 0-based number for a file without a header row"
        )
    return header.index(name)


def _json_rows(f, path: Path, columns: dict[str, str]):
    from .corpus import _json_records

    for line, record in _json_records(f, path):
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {line}: expected a JSON object")
        for role, name in columns.items():
            if name not in record:
                fields = ", ".join(map(str, record))
                flag = role.replace("_", "-")
                raise DataError(f"{path}: line {line}: no field '{name}' (fields: {fields}); set --{flag}")
        yield {role: "" if record[n] is None else str(record[n]) for role, n in columns.items()}


def read_classification(
    path: str | Path, cfg: FinetuneConfig, labelled: bool = True, skip_empty: bool = True
) -> ClassifyData:
    """Texts (pairs, labels) of one split; rows with empty text are skipped with a warning, or refused."""
    columns = {"text_column": cfg.text_column}
    if cfg.text_pair_column:
        columns["text_pair_column"] = cfg.text_pair_column
    if labelled:
        columns["label_column"] = cfg.label_column
    rows = read_table(path, columns)
    empty = {i for i, row in enumerate(rows) if not all(row[r].strip() for r in columns if r != "label_column")}
    if empty and not skip_empty:
        first = min(empty) + 1
        raise DataError(f"{path}: data row {first} has empty text ({len(empty)} such rows); fill or remove them")
    unlabelled = [i for i, row in enumerate(rows) if labelled and i not in empty and not row["label_column"].strip()]
    if unlabelled:
        raise DataError(f"{path}: data row {unlabelled[0] + 1} has no label in column '{cfg.label_column}'")
    if empty:
        log.warning("%s: skipped %d of %d rows with empty text", path, len(empty), len(rows))
        rows = [row for i, row in enumerate(rows) if i not in empty]
    if not rows:
        raise DataError(f"{path}: no rows with text in column '{cfg.text_column}'")
    texts = [row["text_column"].strip() for row in rows]
    pairs = [row["text_pair_column"].strip() for row in rows] if cfg.text_pair_column else None
    labels = [row["label_column"].strip() for row in rows] if labelled else None
    return ClassifyData(texts, pairs, labels)


def read_conll(path: str | Path) -> NerData:
    """Sentences of a CoNLL file: a token per line, the word first and its IOB2 tag last, blank lines between."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data, words, tags = NerData([], []), [], []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                data.words.append(words)
                data.tags.append(tags)
            words, tags = [], []
            continue
        if len(parts) < 2 or not (parts[-1] == "O" or re.fullmatch(r"[BIES]-\S+", parts[-1])):
            raise DataError(f"{path}: line {number}: expected 'word ... TAG', TAG in IOB2 (O, B-X, I-X), got {line!r}")
        words.append(parts[0])
        tags.append(parts[-1])
    if words:
        data.words.append(words)
        data.tags.append(tags)
    if not data.words:
        raise DataError(f"{path}: no sentences; expected CoNLL columns (word ... TAG), blank lines between sentences")
    return data


# ---------------------------------------------------------------- labels


def label_list(raw: list[str], path: str | Path, task: str) -> list:
    """The training labels in id order: integers sorted as numbers, strings sorted; NER puts O first."""
    values = sorted(set(raw))
    if task == "ner":
        values = ["O", *[v for v in values if v != "O"]] if "O" in values else values
    elif all(INTEGER.fullmatch(v) for v in values):
        values = sorted(set(int(v) for v in values))
    if len(values) < 2:
        raise DataError(f"{path}: the labels hold one class only ({values[0]!r}); classification needs two or more")
    return values


def label_ids(raw: list[str], labels: list, path: str | Path, training_path: str | Path | None = None) -> list[int]:
    """Ids of a split's labels; labels the model never saw in training are an error."""
    numeric = isinstance(labels[0], int)
    index = {str(v): i for i, v in enumerate(labels)}
    keys = [str(int(v)) if numeric and INTEGER.fullmatch(v) else v for v in raw]
    unseen = sorted({k for k in keys if k not in index})
    if unseen:
        where = f" ({training_path})" if training_path else ""
        raise DataError(
            f"{path}: label(s) {', '.join(map(repr, unseen[:5]))} were not seen in training{where}; "
            f"known labels: {', '.join(map(str, labels))}"
        )
    return [index[k] for k in keys]


# ---------------------------------------------------------------- encoding


@dataclass
class Encoded:
    """Token ids of a split, ready for dynamic padding."""

    ids: list[list[int]]
    type_ids: list[list[int]]
    labels: list  # a class id per example (classify), or a label per token, IGNORE_INDEX off first pieces (ner)
    first_pieces: list[list[int]] | None = None  # ner: token position of each word's first piece (-1: cut off)
    truncated: int = 0  # inputs longer than the model reads

    def __len__(self) -> int:
        return len(self.ids)


def truncating(tokenizer: TextTokenizer, max_len: int):
    """A copy of the tokenizer that cuts inputs to `max_len` tokens (longest text of a pair first)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_len, strategy="longest_first")
    return tok


def warn_truncated(where: str, count: int, total: int, max_len: int) -> None:
    """Truncation is not an error, but the user should know how much text the model never saw."""
    if count:
        log.warning("%s: %d of %d inputs are longer than %d tokens and were truncated", where, count, total, max_len)


def encode_classification(tok, data: ClassifyData, ids: list[int] | None, max_len: int, where: str) -> Encoded:
    """Texts (or pairs, with the tokenizer's pair template) -> ids; `ids` are the class ids (None: unlabelled)."""
    inputs = list(zip(data.texts, data.pairs)) if data.pairs is not None else data.texts
    encodings = tok.encode_batch(inputs)
    truncated = sum(bool(e.overflowing) for e in encodings)
    warn_truncated(where, truncated, len(encodings), max_len)
    labels = ids if ids is not None else [0] * len(encodings)
    return Encoded([e.ids for e in encodings], [e.type_ids for e in encodings], labels, truncated=truncated)


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The words joined by single spaces, and each word's (start, end) characters in that text."""
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), spans


def first_pieces(offsets: list[tuple[int, int]], special: list[int], spans: list[tuple[int, int]]) -> list[int]:
    """For each word (character span), the position of its first token; -1 when truncation cut it off.

    A token belongs to the word that holds its last character: that puts SentencePiece's leading `▁`
    (a space) with the word it starts, and skips tokens that are only a space.
    """
    starts = [start for start, _ in spans]
    first = [-1] * len(spans)
    for position, ((start, end), is_special) in enumerate(zip(offsets, special)):
        if is_special or end <= start:
            continue
        word = bisect.bisect_right(starts, end - 1) - 1
        if word >= 0 and end - 1 < spans[word][1] and first[word] < 0:
            first[word] = position
    return first


def token_labels(first: list[int], word_labels: list[int], length: int) -> list[int]:
    """Label on each word's first piece, IGNORE_INDEX everywhere else (other pieces, specials)."""
    labels = [IGNORE_INDEX] * length
    for position, label in zip(first, word_labels):
        if position >= 0:
            labels[position] = label
    return labels


def encode_words(tok, texts: list[str], spans: list[list[tuple[int, int]]], tags: list[list[int]] | None) -> Encoded:
    """Encode texts whose words have known character spans; labels go on first pieces."""
    encodings = tok.encode_batch(texts)
    firsts = [first_pieces(e.offsets, e.special_tokens_mask, s) for e, s in zip(encodings, spans)]
    tags = tags if tags is not None else [[0] * len(s) for s in spans]
    labels = [token_labels(f, t, len(e.ids)) for f, t, e in zip(firsts, tags, encodings)]
    truncated = sum(bool(e.overflowing) for e in encodings)
    return Encoded([e.ids for e in encodings], [e.type_ids for e in encodings], labels, firsts, truncated)


def encode_ner(tok, data: NerData, ids: list[list[int]], max_len: int, where: str) -> Encoded:
    """CoNLL sentences -> ids, joining the words with spaces so their character spans are known."""
    joined = [join_words(words) for words in data.words]
    encoded = encode_words(tok, [text for text, _ in joined], [spans for _, spans in joined], ids)
    warn_truncated(where, encoded.truncated, len(encoded), max_len)
    return encoded


# ---------------------------------------------------------------- batches

GROUP_BATCHES = 50  # training batches whose examples are sorted by length together


def length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar lengths: shuffle, sort inside groups of 50 batches, shuffle the batches.

    Padding to the longest of a batch then costs little (as Hugging Face's `group_by_length`), and the
    order stays random: short and long batches alternate, and each group is a random draw."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = []
    for start in range(0, len(order), batch_size * GROUP_BATCHES):
        group = sorted(order[start : start + batch_size * GROUP_BATCHES], key=lambda i: lengths[i])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def collate(data: Encoded, index: list[int], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to the longest of them: ids, attention mask, token types, labels."""
    longest = max(len(data.ids[i]) for i in index)
    ids = np.full((len(index), longest), pad_id, dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    token_level = data.first_pieces is not None
    labels = np.full(ids.shape if token_level else len(index), IGNORE_INDEX, dtype=np.int64)
    for row, i in enumerate(index):
        n = len(data.ids[i])
        ids[row, :n], types[row, :n], mask[row, :n] = data.ids[i], data.type_ids[i], 1
        if token_level:
            labels[row, :n] = data.labels[i]
        else:
            labels[row] = data.labels[i]
    out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}
    return {k: torch.from_numpy(v).to(device) for k, v in out.items()}


# ---------------------------------------------------------------- model


class ClassificationHead(nn.Module):
    """dropout -> dense (H, H) -> tanh -> dropout -> out_proj (H, labels), as RobertaClassificationHead."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(x))  # (B, labels)


class TokenClassificationHead(nn.Module):
    """dropout -> out_proj (H, labels) on every token, as BERT/RoBERTa's ForTokenClassification."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(h))  # (B, T, labels)


class Classifier(nn.Module):
    """Encoder + head: logits per text (B, labels) or per token (B, T, labels)."""

    def __init__(self, cfg: ModelConfig, num_labels: int, task: str, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        self.task, self.pooling = task, pooling
        self.token_types = cfg.type_vocab_size >= 2  # BERT-style segment ids for text pairs
        self.encoder = Encoder(cfg)
        head = ClassificationHead if task == "classify" else TokenClassificationHead
        self.head = head(cfg.hidden_size, num_labels, dropout)
        self.apply(lambda m: init_weights(m, cfg.initializer_range))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.encoder(input_ids, attention_mask, token_type_ids if self.token_types else None)  # (B, T, H)
        if self.task == "ner":
            return self.head(h)
        if self.pooling == "cls" or attention_mask is None:
            pooled = h[:, 0] if self.pooling == "cls" else h.mean(dim=1)
        else:
            keep = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            pooled = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
        return self.head(pooled)


def load_encoder(model: Classifier, state: dict[str, torch.Tensor], origin: str) -> None:
    """Copy the `encoder.*` tensors of a MaskedLM (or fine-tuned) state dict into the classifier."""
    expected = model.encoder.state_dict()
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    missing, unexpected = sorted(set(expected) - set(encoder)), sorted(set(encoder) - set(expected))
    if missing or unexpected:
        raise DataError(
            f"{origin}: encoder weights do not match the model (missing: {missing[:3]}, unexpected: {unexpected[:3]})"
        )
    for key, tensor in encoder.items():
        if tensor.shape != expected[key].shape:
            shapes = f"{tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}"
            raise DataError(f"{origin}: encoder.{key} has shape {shapes}")
    model.encoder.load_state_dict(encoder)


def freeze(model: Classifier, num_layers: int) -> None:
    """Keep the embeddings and the lowest `num_layers` blocks fixed (the head always trains)."""
    if num_layers <= 0:
        return
    model.encoder.embeddings.requires_grad_(False)
    for layer in model.encoder.layers[:num_layers]:
        layer.requires_grad_(False)
    if num_layers == len(model.encoder.layers) and model.encoder.final_norm is not None:
        model.encoder.final_norm.requires_grad_(False)


@dataclass
class Source:
    """The encoder to fine-tune: shape, tokenizer, weights, and where they came from."""

    model: ModelConfig
    tokenizer: TextTokenizer
    state: dict[str, torch.Tensor]
    origin: str


def load_source(path: str | Path) -> Source:
    """A run's latest checkpoint, a fine-tuned folder's encoder, or a Hugging Face BERT/RoBERTa folder."""
    from .train.checkpoint import latest_checkpoint

    path = Path(path)
    if (path / LABELS_FILE).is_file():
        cfg = load_config(path / CONFIG_FILE, FinetuneRunConfig).model
        return Source(cfg, load_tokenizer(path / "tokenizer"), files.load_tensors(path / MODEL_FILE), str(path))
    if (path / "config.yaml").is_file():
        checkpoint = latest_checkpoint(path)
        cfg = load_config(path / "config.yaml").model
        state = files.load_tensors(checkpoint / MODEL_FILE)
        return Source(cfg, load_tokenizer(path / "tokenizer"), state, str(checkpoint))
    if (path / "config.json").is_file():
        from .export import import_hf

        with tempfile.TemporaryDirectory() as tmp:
            source = load_source(import_hf(path, Path(tmp) / "run"))
        return Source(source.model, source.tokenizer, source.state, str(path))
    raise DataError(
        f"--model {path}: neither a bertforge run (config.yaml), a fine-tuned folder (labels.json) "
        "nor a Hugging Face folder (config.json)"
    )


# ---------------------------------------------------------------- training


@dataclass
class Context:
    """What training and evaluation share."""

    cfg: FinetuneRunConfig
    labels: list
    pad_id: int
    device: torch.device
    amp_dtype: torch.dtype | None
    class_weight: torch.Tensor | None = None

    @property
    def task(self) -> str:
        return self.cfg.finetune.task


def balanced_weights(train: Encoded, num_labels: int) -> torch.Tensor:
    """n / (classes x count) per class, as scikit-learn's class_weight="balanced"."""
    flat = np.array([x for row in train.labels for x in row] if train.first_pieces is not None else train.labels)
    counts = np.bincount(flat[flat != IGNORE_INDEX], minlength=num_labels).astype(np.float64)
    return torch.tensor(counts.sum() / (num_labels * np.maximum(counts, 1)), dtype=torch.float32)


def loss_of(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy in fp32 over (B, C) or (B, T, C) logits; IGNORE_INDEX positions do not count."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(flat, labels.reshape(-1), weight=weight, ignore_index=IGNORE_INDEX)


def forward(model: Classifier, ctx: Context, batch: dict) -> torch.Tensor:
    """Logits of a collated batch, under bf16 autocast when the context asks for it."""
    with autocast(ctx.device, ctx.amp_dtype):
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


def step_plan(cfg: FinetuneConfig, examples: int) -> tuple[int, int]:
    """(total optimizer steps, steps per epoch)."""
    per_epoch = math.ceil(examples / cfg.batch_size)
    return cfg.max_steps or cfg.epochs * per_epoch, per_epoch


def train_epoch(
    model: Classifier, ctx: Context, data: Encoded, epoch: int, optimizer, step: int, total: int, bar
) -> tuple[int, float]:
    """One pass in a seeded shuffled order (stops at `total` steps); returns the step and the mean loss."""
    from .train.schedule import lr_factor

    cfg = ctx.cfg.finetune
    schedule = TrainConfig(warmup_steps=round(cfg.warmup_fraction * total), max_steps=total, schedule="linear")
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    model.train()
    losses = []
    for index in length_grouped_batches([len(ids) for ids in data.ids], cfg.batch_size, generator):
        if step >= total:
            break
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, schedule, total)
        batch = collate(data, index, ctx.pad_id, ctx.device)
        loss = loss_of(forward(model, ctx, batch), batch["labels"], ctx.class_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(loss.detach())
        bar.update(1)
    return step, float(torch.stack(losses).mean()) if losses else float("nan")


@torch.no_grad()
def predict_encoded(model: Classifier, ctx: Context, data: Encoded) -> tuple[list[np.ndarray], float]:
    """Class probabilities per example (C,) or per word (W, C; zeros for words cut off), and the mean loss."""
    model.eval()
    by_length = sorted(range(len(data)), key=lambda i: len(data.ids[i]))  # little padding; results go back in order
    outputs, loss_sum, count = [None] * len(data), 0.0, 0
    for start in range(0, len(data), ctx.cfg.finetune.eval_batch_size):
        index = by_length[start : start + ctx.cfg.finetune.eval_batch_size]
        batch = collate(data, index, ctx.pad_id, ctx.device)
        logits = forward(model, ctx, batch).float()
        labelled = int((batch["labels"] != IGNORE_INDEX).sum())
        loss_sum += float(loss_of(logits, batch["labels"], None)) * labelled
        count += labelled
        probs = logits.softmax(dim=-1).cpu().numpy()
        for p, i in zip(probs, index):
            outputs[i] = p if data.first_pieces is None else _word_probs(p, data.first_pieces[i])
    return outputs, loss_sum / max(count, 1)


def _word_probs(token_probs: np.ndarray, first: list[int]) -> np.ndarray:
    """(T, C) token probabilities -> (W, C) at each word's first piece; a cut-off word gets zeros (-> id 0, O)."""
    out = np.zeros((len(first), token_probs.shape[-1]), dtype=np.float32)
    for word, position in enumerate(first):
        if position >= 0:
            out[word] = token_probs[position]
    return out


def evaluate(model: Classifier, ctx: Context, data: Encoded, gold) -> dict:
    """The task's metrics on one split; `gold` is the class ids or the tag-id lists of the words."""
    probs, loss = predict_encoded(model, ctx, data)
    if ctx.task == "classify":
        return {**classify_metrics(gold, [int(p.argmax()) for p in probs], ctx.labels), "loss": loss}
    pred = [[ctx.labels[i] for i in p.argmax(axis=-1)] for p in probs]
    return {**ner_metrics([[ctx.labels[i] for i in g] for g in gold], pred), "loss": loss}


def improved(metric: str, value: float, best: float | None) -> bool:
    """Strictly better: lower loss, higher anything else (a tie keeps the earlier epoch)."""
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


@dataclass
class Fit:
    history: list[dict]  # one record per evaluation
    best: dict  # the record of the best evaluation
    best_state: dict[str, torch.Tensor]  # its weights (CPU copies)


def fit(model: Classifier, ctx: Context, train: Encoded, val: Encoded, val_gold, progress: bool) -> Fit:
    """Train, evaluate after each epoch, keep the best weights, stop early after `patience` misses."""
    from tqdm import tqdm

    from .train.loop import build_optimizer

    cfg = ctx.cfg.finetune
    total, per_epoch = step_plan(cfg, len(train))
    optimizer = build_optimizer(model, cfg, ctx.device)
    history, best, best_state, misses, step = [], None, {}, 0, 0
    with tqdm(total=total, unit="step", disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True) as bar:
        for epoch in range(1, math.ceil(total / per_epoch) + 1):
            step, train_loss = train_epoch(model, ctx, train, epoch, optimizer, step, total, bar)
            scores = evaluate(model, ctx, val, val_gold)
            record = {"epoch": epoch, "step": step, "train_loss": train_loss, "validation": _scalars(scores)}
            history.append(record)
            log.info("epoch %d (step %d): train loss %.4f | validation %s", epoch, step, train_loss, _brief(scores))
            if improved(cfg.best_metric, scores[cfg.best_metric], best and best["validation"][cfg.best_metric]):
                best, misses = record, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                misses += 1
                if cfg.patience and misses >= cfg.patience:
                    log.info("early stop: no better %s for %d evaluation(s)", cfg.best_metric, misses)
                    break
    return Fit(history, best, best_state)


# ---------------------------------------------------------------- metrics and reports


def classify_metrics(gold: list[int], pred: list[int], labels: list) -> dict:
    """Accuracy, macro F1 (every class counts the same, whatever its size) and the confusion matrix."""
    metrics = _require("sklearn.metrics", "scikit-learn")
    ids = list(range(len(labels)))
    return {
        "accuracy": float(metrics.accuracy_score(gold, pred)),
        "macro_f1": float(metrics.f1_score(gold, pred, labels=ids, average="macro", zero_division=0)),
        "confusion_matrix": metrics.confusion_matrix(gold, pred, labels=ids).tolist(),
    }


def ner_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Entity-level precision / recall / F1 (seqeval, exact spans and types) and token accuracy."""
    seqeval = _require("seqeval.metrics", "seqeval")
    return {
        "precision": float(seqeval.precision_score(gold, pred, zero_division=0)),
        "recall": float(seqeval.recall_score(gold, pred, zero_division=0)),
        "f1": float(seqeval.f1_score(gold, pred, zero_division=0)),
        "accuracy": float(seqeval.accuracy_score(gold, pred)),
    }


def _scalars(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if isinstance(v, float)}


def _brief(scores: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in _scalars(scores).items())


def report_text(ctx: Context, model: Classifier, splits: dict[str, tuple[Encoded, list]]) -> str:
    """The classification report of each evaluated split (scikit-learn or seqeval)."""
    parts = []
    for name, (data, gold) in splits.items():
        probs, _ = predict_encoded(model, ctx, data)
        if ctx.task == "classify":
            metrics = _require("sklearn.metrics", "scikit-learn")
            pred = [int(p.argmax()) for p in probs]
            body = metrics.classification_report(
                gold, pred, labels=list(range(len(ctx.labels))), target_names=[str(v) for v in ctx.labels],
                digits=4, zero_division=0,
            )
        else:
            seqeval = _require("seqeval.metrics", "seqeval")
            names = lambda rows: [[ctx.labels[i] for i in row] for row in rows]  # noqa: E731
            pred = [p.argmax(axis=-1) for p in probs]
            body = seqeval.classification_report(names(gold), names(pred), digits=4, zero_division=0)
        parts.append(f"== {name} ({len(data)} examples)\n\n{body}")
    return "\n".join(parts)


def confusion_png(matrix: list[list[int]], labels: list, title: str) -> bytes:
    """A confusion matrix heat map as PNG bytes (matplotlib's Agg canvas, no global backend change)."""
    _require("matplotlib", "matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.array(matrix)
    size = 2.5 + 0.6 * len(labels)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels([str(v) for v in labels], rotation=45, ha="right")
    ax.set_yticklabels([str(v) for v in labels])
    for (i, j), count in np.ndenumerate(m):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > m.max() / 2 else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


# ---------------------------------------------------------------- baselines


def majority_baseline(train_ids: list[int], golds: dict[str, list[int]], labels: list) -> dict:
    """Always the most frequent training label: the floor any classifier must clear."""
    top = Counter(train_ids).most_common(1)[0][0]
    scores = {name: _scalars(classify_metrics(gold, [top] * len(gold), labels)) for name, gold in golds.items()}
    return {"label": labels[top], **scores}


def tfidf_baseline(
    train: ClassifyData,
    train_ids: list[int],
    splits: dict[str, tuple[ClassifyData, list[int]]],
    cfg: FinetuneRunConfig,
    labels: list,
) -> dict:
    """TF-IDF of word 1-2-grams + logistic regression on the same split: the classic strong baseline."""
    _require("sklearn", "scikit-learn")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    join = lambda d: d.texts if d.pairs is None else [f"{a} {b}" for a, b in zip(d.texts, d.pairs)]  # noqa: E731
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    x = vectorizer.fit_transform(join(train))
    weight = "balanced" if cfg.finetune.class_weights == "balanced" else None
    model = LogisticRegression(max_iter=2000, class_weight=weight, random_state=cfg.finetune.seed).fit(x, train_ids)
    return {
        name: _scalars(classify_metrics(gold, model.predict(vectorizer.transform(join(data))).tolist(), labels))
        for name, (data, gold) in splits.items()
    }


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
    """One fine-tuning from `init` weights: fit, restore the best epoch, score every evaluated split."""
    ft = ctx.cfg.finetune
    torch.manual_seed(ft.seed)  # each model starts from the same seed, whether baselines run or not
    model = Classifier(ctx.cfg.model, len(task.labels), ft.task, ft.pooling, ft.classifier_dropout)
    if init == "pretrained":
        load_encoder(model, source.state, source.origin)
    freeze(model, ft.freeze_layers)
    model.to(ctx.device)
    result = fit(model, ctx, task.encoded["train"], task.encoded["validation"], task.gold["validation"], progress)
    model.load_state_dict(result.best_state)
    scores = {n: evaluate(model, ctx, task.encoded[n], task.gold[n]) for n in task.encoded if n != "train"}
    return model, result, scores


def run_baselines(ctx: Context, source: Source, task: Task, random_init: bool, progress: bool) -> dict:
    """Majority class (always, classify), and with `random_init` the same fine-tuning from random weights
    plus TF-IDF + logistic regression (classify)."""
    evaluated = [name for name in task.encoded if name != "train"]
    out: dict = {}
    if ctx.task == "classify":
        out["majority"] = majority_baseline(task.gold["train"], {n: task.gold[n] for n in evaluated}, task.labels)
    if not random_init:
        return out
    log.info("baseline: the same fine-tuning from a randomly initialised encoder")
    _, result, scores = train_and_score(ctx, source, task, "random", progress)
    out["random_init"] = {"best_epoch": result.best["epoch"], **{n: _scalars(s) for n, s in scores.items()}}
    if ctx.task == "classify":
        log.info("baseline: TF-IDF + logistic regression")
        splits = {n: (task.data[n], task.gold[n]) for n in evaluated}
        out["tfidf_logreg"] = tfidf_baseline(task.data["train"], task.gold["train"], splits, ctx.cfg, task.labels)
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
) -> dict:
    """Fine-tune `model` (run, fine-tuned or HF folder) and write the folder `out`; returns metrics.json.

    `settings` are overrides like {"finetune": {"task": "ner", "lr": 1e-4}} or ["finetune.lr=1e-4"];
    they apply over `config_file`, which applies over the defaults and the source model's config.
    """
    source = load_source(model)
    base = {"model": to_dict(source.model)}
    cfg = build_config(FinetuneRunConfig, config_file=config_file, overrides=settings, base=base)
    out = Path(out)
    files.refuse_foreign_dir(out, LABELS_FILE, "a fine-tuning folder")
    paths = {"train": train, "validation": validation, **({"test": test} if test else {})}
    task = read_task(cfg, source.tokenizer, paths)
    ctx = make_context(cfg, source, task)
    log.info("fine-tuning %s for %s: %d labels, %s", source.origin, cfg.finetune.task, len(task.labels),
             ", ".join(f"{n} {len(e)}" for n, e in task.encoded.items()))
    classifier, result, scores = train_and_score(ctx, source, task, cfg.finetune.init, progress)
    metrics = {
        "task": cfg.finetune.task, "model": source.origin, "init": cfg.finetune.init, "labels": task.labels,
        "metric": cfg.finetune.best_metric, "examples": {n: len(e) for n, e in task.encoded.items()},
        "truncated": task.truncated, "epochs": result.history, "best": result.best,
        "scores": scores,
        "baselines": run_baselines(ctx, source, task, baselines, progress),
    }
    write_folder(out, cfg, source, task, ctx, classifier, metrics)
    return metrics


def write_folder(
    out: Path, cfg: FinetuneRunConfig, source: Source, task: Task, ctx: Context, model: Classifier, metrics: dict
) -> None:
    """Build the fine-tuning folder beside `out`, then move it into place whole."""
    tmp = files.make_tmp_dir(out)
    try:
        save_config(tmp / CONFIG_FILE, cfg)
        files.write_json(tmp / LABELS_FILE, {"task": cfg.finetune.task, "labels": task.labels})
        source.tokenizer.save(tmp / "tokenizer")
        files.save_tensors(tmp / MODEL_FILE, model.state_dict())
        files.write_json(tmp / METRICS_FILE, metrics)
        evaluated = {n: (task.encoded[n], task.gold[n]) for n in task.encoded if n != "train"}
        files.atomic_write_text(tmp / REPORT_FILE, report_text(ctx, model, evaluated))
        if cfg.finetune.task == "classify":
            shown = "test" if "test" in metrics["scores"] else "validation"
            png = confusion_png(metrics["scores"][shown]["confusion_matrix"], task.labels, f"{shown} split")
            files.atomic_write_bytes(tmp / CONFUSION_FILE, png)
        files.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("fine-tuned model, metrics and report -> %s", out)


def comparison_table(metrics: dict) -> str:
    """The fine-tuned model beside its baselines, one row each, on validation (and test)."""
    names = {"majority": "majority class", "tfidf_logreg": "TF-IDF + logistic regression",
             "random_init": "same fine-tuning, random init", "model": f"fine-tuned ({metrics['init']} init)"}
    keys = ("accuracy", "macro_f1") if metrics["task"] == "classify" else ("precision", "recall", "f1")
    splits = list(metrics["scores"])
    rows = [(names[k], v) for k, v in metrics["baselines"].items()] + [(names["model"], metrics["scores"])]
    header = f"{'':<32}" + "".join(f"{s + ' ' + k:>22}" for s in splits for k in keys)
    lines = [header]
    for name, scores in rows:
        cells = "".join(f"{scores[s][k]:>22.4f}" for s in splits for k in keys)
        lines.append(f"{name:<32}{cells}")
    return "\n".join(lines)


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
    from .train.checkpoint import load_model_weights

    path = Path(path)
    if not (path / LABELS_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise DataError(f"{path} is not a fine-tuned folder (no {LABELS_FILE}); make one with `bertforge finetune`")
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
