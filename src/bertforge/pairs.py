"""Sentence pairs for BERT's second objective: next-sentence (NSP) or sentence-order (SOP) prediction.

Built at `prepare` time (data.pairs, set by train.objective mlm+nsp / mlm+sop), so a row's pair and
label are fixed bytes on disk and exact resume needs nothing more. As in BERT's
`create_pretraining_data.py`: a document's sentences are gathered into chunks of at most the
row's room, a chunk is split at a random sentence boundary into A and B, and

- NSP (Devlin et al. 2018): half the time B is replaced by sentences from another document
  (label 1); the sentences of the chunk it did not use go back into the document;
- SOP (ALBERT, Lan et al. 2019): half the time A and B are swapped (label 1).

Label 0 is the positive, as `BertForPreTraining`'s `next_sentence_label`. Rows are
`[CLS] A [SEP] B [SEP]` (BERT scheme) or `<s> A </s></s> B </s>` (RoBERTa scheme) with segment
ids 0 up to the first separator(s) and 1 after. A document of one sentence gives no pair; where
two sentences do not fit in the row together, the longer segment is cut at its end (the only
segments that do not end on a sentence boundary).

Files beside each shard `train-00000.bin`: `train-00000.seg.bin` (uint8 segment ids, same shape)
and `train-00000.pair.bin` (uint8 label per row). The whole split is built in memory: pairs
need random access to other documents, and sentence-pair corpora for this toolkit are small.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model_weights
from .errors import DataError
from .files import load_tensors

log = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
SPLIT_SEEDS = {"train": 0, "validation": 1}


def split_sentences(text: str) -> list[str]:
    """Sentences at `.`, `!` or `?` (and closing quotes/brackets) followed by whitespace; no model, no language."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        out.append(text[start : m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def segment_file(shard: str) -> str:
    return shard.removesuffix(".bin") + ".seg.bin"


def label_file(shard: str) -> str:
    return shard.removesuffix(".bin") + ".pair.bin"


# ---------------------------------------------------------------- building pairs: pure functions


def specials(scheme: str) -> int:
    """Special tokens in a pair row: [CLS] A [SEP] B [SEP] is 3, <s> A </s></s> B </s> is 4."""
    return 4 if scheme == "roberta" else 3


def take_sentences(sentences: list[list[int]], start: int, room: int) -> tuple[list[list[int]], int]:
    """Whole sentences from `start` while they fit in `room` tokens (at least one, cut to `room`); and the next index."""
    chunk, used, i = [], 0, start
    while i < len(sentences) and (not chunk or used + len(sentences[i]) <= room):
        piece = sentences[i][: room - used] if not chunk else sentences[i]
        chunk.append(piece)
        used += len(piece)
        i += 1
    return chunk, i


def build_pairs(
    docs: list[list[list[int]]], kind: str, room: int, rng: np.random.Generator, pool: list[list[list[int]]] | None = None
) -> list[tuple[list[int], list[int], int, int]]:
    """(A ids, B ids, label, source document) for every pair of `docs` (lists of tokenized sentences).

    `room`: tokens A and B may hold together. `pool`: documents NSP negatives come from (default
    `docs`); the negative's document is never the pair's own (same index in `pool` is skipped
    when pool is docs)."""
    pool = docs if pool is None else pool
    same = pool is docs
    out = []
    for d, sentences in enumerate(docs):
        i = 0
        while i < len(sentences):
            chunk, end = take_sentences(sentences, i, room)
            if len(chunk) < 2 and end < len(sentences):  # long sentences: this one and the next, cut to fit
                chunk, end = [sentences[i], sentences[end]], end + 1
            elif len(chunk) < 2:  # the document's last sentence alone: no boundary to split at
                i = end
                continue
            a_end = int(rng.integers(1, len(chunk)))
            a, b = truncate_pair(_flat(chunk[:a_end]), _flat(chunk[a_end:]), room)
            label = int(rng.random() < 0.5)
            if label and kind == "nsp":
                other = _other_document(d if same else -1, len(pool), rng)
                start = int(rng.integers(len(pool[other])))
                a = _flat(chunk[:a_end])  # A uncut: only the new B decides what must be cut
                b = _flat(take_sentences(pool[other], start, max(1, room - len(a)))[0])
                a, b = truncate_pair(a, b, room)
                end = i + a_end  # the chunk's unused sentences go back (BERT's num_unused_segments)
            elif label:  # sop: the same two segments, swapped
                a, b = b, a
            out.append((a, b, label, d))
            i = end
    return out


def truncate_pair(a: list[int], b: list[int], room: int) -> tuple[list[int], list[int]]:
    """Cut the longer segment's end until both fit in `room` (BERT's truncate_seq_pair, from the end only)."""
    while len(a) + len(b) > room:
        if len(a) > len(b):
            a = a[:-1]
        else:
            b = b[:-1]
    return a, b


def _flat(sentences: list[list[int]]) -> list[int]:
    return [t for s in sentences for t in s]


def _other_document(d: int, n: int, rng: np.random.Generator) -> int:
    """A uniform document index in [0, n) other than `d` (d = -1: any)."""
    if d < 0:
        return int(rng.integers(n))
    j = int(rng.integers(n - 1))
    return j + (j >= d)


def pair_rows(
    pairs: list[tuple[list[int], list[int], int, int]], seq_len: int, scheme: str, bos: int, eos: int, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, segment ids, labels): (n, seq_len) int64, (n, seq_len) uint8, (n,) uint8."""
    ids = np.full((len(pairs), seq_len), pad, dtype=np.int64)
    seg = np.zeros((len(pairs), seq_len), dtype=np.uint8)
    labels = np.zeros(len(pairs), dtype=np.uint8)
    middle = [eos, eos] if scheme == "roberta" else [eos]
    for r, (a, b, label, _) in enumerate(pairs):
        first = [bos, *a, *middle]
        row = [*first, *b, eos]
        ids[r, : len(row)] = row
        seg[r, len(first) : len(row)] = 1
        labels[r] = label
    return ids, seg, labels


# ---------------------------------------------------------------- prepare: a split's files


def tokenize_documents(tok, texts: list[str]) -> list[list[list[int]]]:
    """Each text as a list of tokenized sentences (empty sentences dropped)."""
    sentences = [split_sentences(text) for text in texts]
    flat = tok.encode_batch([s for doc in sentences for s in doc]) if any(sentences) else []
    out, k = [], 0
    for doc in sentences:
        out.append([ids for ids in flat[k : k + len(doc)] if ids])
        k += len(doc)
    return out


def write_pair_splits(folder: Path, routed: Iterable[tuple[str, str]], names: list[str], tok, data_cfg, dtype) -> dict:
    """Read every document, build the pairs of each split and write its files; manifest entries per split."""
    texts: dict[str, list[str]] = {name: [] for name in names}
    for split, doc in routed:
        texts[split].append(doc.text if hasattr(doc, "text") else doc)
    docs = {name: tokenize_documents(tok, texts[name]) for name in names}
    check_documents(docs["train"], data_cfg.pairs)
    room = data_cfg.seq_len - specials(tok.scheme)
    every = [d for name in names for d in docs[name]]
    splits = {}
    for name in names:
        rng = np.random.default_rng([data_cfg.seed, SPLIT_SEEDS[name], 7])
        pool = docs[name] if len(docs[name]) > 1 else every  # a one-document validation split: negatives from all
        pairs = build_pairs(docs[name], data_cfg.pairs, room, rng, None if pool is docs[name] else pool)
        ids, seg, labels = pair_rows(pairs, data_cfg.seq_len, tok.scheme, tok.bos_id, tok.eos_id, tok.pad_id)
        splits[name] = _write_split(folder, name, ids, seg, labels, dtype, data_cfg, tok.pad_id)
        splits[name]["documents"] = len(docs[name])
        splits[name]["pairs"] = data_cfg.pairs
        positive = 100 * float((labels == 0).mean()) if len(labels) else 0.0
        log.info("%s: %d %s pairs (%.1f%% positive)", name, len(pairs), data_cfg.pairs, positive)
    return splits


def check_documents(docs: list[list[list[int]]], kind: str) -> None:
    """Pairs need documents of two or more sentences (and NSP a second document for its negatives)."""
    usable = sum(len(d) >= 2 for d in docs)
    if not usable:
        raise DataError(
            f"data.pairs={kind} (train.objective mlm+{kind}) needs documents of two or more sentences, but all "
            f"{len(docs)} training documents have at most one; give whole paragraphs or files as documents "
            "(--doc-per paragraph) or use --objective mlm"
        )
    if kind == "nsp" and sum(bool(d) for d in docs) < 2:
        raise DataError("train.objective mlm+nsp draws negatives from another document, but the corpus has one document")


def _write_split(folder: Path, name: str, ids, seg, labels, dtype, data_cfg, pad_id: int) -> dict:
    shards, rows = [], len(ids)
    for k, start in enumerate(range(0, rows, data_cfg.shard_max_sequences)):
        stop = min(rows, start + data_cfg.shard_max_sequences)
        file = f"{name}-{k:05d}.bin"
        for path, array in ((file, ids[start:stop].astype(dtype)), (segment_file(file), seg[start:stop]),
                            (label_file(file), labels[start:stop])):
            with open(folder / path, "wb") as f:
                f.write(array.tobytes())
                f.flush()
                os.fsync(f.fileno())
        shards.append({"file": file, "sequences": stop - start})
    return {
        "shards": shards, "loss_mask": False, "sequences": rows,
        "tokens": int(np.count_nonzero(ids != pad_id)), "truncated": 0,
    }


# ---------------------------------------------------------------- reading


def pair_arrays(shards, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segment ids (n, seq_len) uint8, labels (n,) uint8) of the rows `indices` of a pair split."""
    if not getattr(shards, "pairs", ""):
        raise DataError(
            f"{shards.data_dir}: the shards hold no sentence pairs; prepare them with --objective mlm+nsp or mlm+sop"
        )
    if shards._pair_maps is None:
        shards._pair_maps = [
            (np.memmap(path.with_name(segment_file(path.name)), dtype=np.uint8, mode="r", shape=(rows, shards.seq_len)),
             np.memmap(path.with_name(label_file(path.name)), dtype=np.uint8, mode="r", shape=(rows,)))
            for path, rows in shards._files
        ]
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    seg = shards._rows(idx, [m[0] for m in shards._pair_maps], np.uint8)
    shard = np.searchsorted(shards._starts, idx, side="right") - 1
    labels = np.array([shards._pair_maps[s][1][i - shards._starts[s]] for s, i in zip(shard, idx)], dtype=np.uint8)
    return seg, labels


def pair_inputs(shards, indices: np.ndarray, device=None) -> dict:
    """The model's extra inputs for a pair batch: token_type_ids and sentence_labels (empty without pairs)."""
    if not getattr(shards, "pairs", ""):
        return {}
    seg, labels = pair_arrays(shards, indices)
    out = {"token_type_ids": torch.from_numpy(seg.astype(np.int64)), "sentence_labels": torch.from_numpy(labels.astype(np.int64))}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


# Parts of a pretraining model that belong to its objective, not to the encoder: `pretrain --init-from`
# may start another objective's run from them (prefix -> what it is, for the log).
OBJECTIVE_PARTS = {
    "sentence.": "sentence-pair head",
    "head.": "MLM head",
    "generator.": "ELECTRA generator",
    "detector.": "ELECTRA detection head",
}


def load_start_weights(model, checkpoint: Path) -> None:
    """`pretrain --init-from` with another objective than the start run's: a part (sentence head,
    MLM head, ELECTRA generator / detector) the new run does not train is dropped, one it trains and
    the start run lacks starts fresh (BERT's init); the encoder must match, as `load_model_weights` checks."""
    state = load_tensors(Path(checkpoint) / "model.safetensors")
    own = model.state_dict()
    if set(state) == set(own):
        load_model_weights(model, checkpoint)
        return
    for prefix, part in OBJECTIVE_PARTS.items():
        theirs, ours = any(k.startswith(prefix) for k in state), any(k.startswith(prefix) for k in own)
        if theirs and not ours:
            log.info("--init-from %s: its %s is not used by this objective and is dropped", checkpoint, part)
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        elif ours and not theirs:
            log.info("--init-from %s has no %s: this run's starts from BERT's initialisation", checkpoint, part)
            state = {**state, **{k: v for k, v in own.items() if k.startswith(prefix)}}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected or any(state[k].shape != own[k].shape for k in own):
        load_model_weights(model, checkpoint)  # its DataError names what does not match
    model.load_state_dict(state)

