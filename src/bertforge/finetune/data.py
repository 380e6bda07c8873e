"""Labelled data for fine-tuning: reading tables and CoNLL files, label maps, encoding, batches."""

from __future__ import annotations

import bisect
import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..corpus import (
    JSON_EXTENSIONS,
    TABLE_DELIMITERS,
    extension,
    json_records,
    open_text,
    reading,
)
from ..errors import DataError, require
from ..model import IGNORE_INDEX
from ..tokenizer import TextTokenizer
from .config import INTEGER, FinetuneConfig

log = logging.getLogger(__name__)

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


def require_package(module: str, package: str):
    """Import an optional dependency of fine-tuning, or say which package to install."""
    return require(module, f"fine-tuning needs {package}: pip install {package} (or pip install 'bertforge[finetune]')")


def read_table(path: str | Path, columns: dict[str, str]) -> list[dict[str, str]]:
    """The wanted columns (role -> column name) of a CSV, TSV or JSON-lines file, as rows of strings."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    ext = extension(path)
    with reading(path), open_text(path) as f:
        if ext in JSON_EXTENSIONS:
            return list(_json_rows(f, path, columns))
        if ext in TABLE_DELIMITERS:
            return list(_csv_rows(csv.reader(f, delimiter=TABLE_DELIMITERS[ext]), path, columns))
    raise DataError(f"{path}: unsupported file type {ext or '(none)'}; use .csv, .tsv or .jsonl")


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
    for line, record in json_records(f, path):
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
