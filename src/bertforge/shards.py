"""Tokenize a corpus once and pack it into fixed-length sequences in memory-mapped shard files.

A data folder (made by `prepare`, read by `PackedShards`):

    manifest.json            what was built, from what, and the build key that names it
    tokenizer/               the tokenizer the ids come from, so the folder is self-contained
    train-00000.bin ...      raw little-endian uint16 (uint32 for vocabularies > 65535),
    validation-00000.bin     shape (sequences, seq_len), at most data.shard_max_sequences per file
    train-00000.loss.bin     with a template (data.template) only: uint8 loss mask, same shape, 1
                             where a causal LM's response tokens (and their closing eos) sit

Packing (`data.packing`), every sequence `seq_len` long and starting with bos:

    full   RoBERTa's FULL-SENTENCES (Liu et al. 2019, sec. 4.2): all documents joined into one
           stream `doc1 eos doc2 eos ...`, cut into blocks of seq_len - 2, each written as
           `bos block eos`. Only the very last block is padded, so no token is lost or wasted.
    pad    each document cut into pieces of seq_len - 2, each `bos piece eos pad...`.
    line   one document per sequence, `bos doc eos pad...`, cut at seq_len - 2 (counted).

The whole folder is built beside `out_dir` and moved into place at the end, so a crash never
leaves a half-written data folder; a build with the same key is reused, not redone.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import __version__, corpus, files
from .config import CorpusConfig, DataConfig, to_dict
from .console import live_progress
from .errors import DataError
from .pairs import write_pair_splits
from .templates import Example, encode_examples, iter_examples, load_template
from .tokenizer import TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"
_EMPTY = np.empty(0, dtype=np.int64)


# ---------------------------------------------------------------- packing: pure functions


def frame(pieces: Sequence[Sequence[int]], seq_len: int, bos_id: int, eos_id: int, pad_id: int) -> np.ndarray:
    """(len(pieces), seq_len) int64 rows `bos piece eos pad...`; each piece holds <= seq_len - 2 ids."""
    rows = np.full((len(pieces), seq_len), pad_id, dtype=np.int64)
    rows[:, 0] = bos_id
    for row, piece in zip(rows, pieces):
        row[1 : len(piece) + 1] = piece
        row[len(piece) + 1] = eos_id
    return rows


def join_docs(token_lists: Iterable[Sequence[int]], eos_id: int) -> np.ndarray:
    """One int64 stream `doc1 eos doc2 eos ...`; documents without tokens are skipped."""
    stream = itertools.chain.from_iterable([*tokens, eos_id] for tokens in token_lists if len(tokens))
    return np.fromiter(stream, dtype=np.int64)


def cut_full(stream: np.ndarray, seq_len: int, bos_id: int, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows `bos block eos` for every whole block of seq_len - 2 in `stream`, and the tokens left over."""
    block = seq_len - 2
    whole = len(stream) // block * block
    blocks = stream[:whole].reshape(-1, block)  # (n, seq_len - 2)
    ends = np.full((len(blocks), 1), bos_id, dtype=np.int64), np.full((len(blocks), 1), eos_id, dtype=np.int64)
    return np.hstack([ends[0], blocks, ends[1]]), stream[whole:]


def pad_rows(token_lists: Iterable[Sequence[int]], seq_len: int, bos_id: int, eos_id: int, pad_id: int) -> np.ndarray:
    """Each document cut into pieces of seq_len - 2, one padded row per piece."""
    block = seq_len - 2
    pieces = [tokens[i : i + block] for tokens in token_lists for i in range(0, len(tokens), block)]
    return frame(pieces, seq_len, bos_id, eos_id, pad_id)


def line_rows(token_lists: Iterable[Sequence[int]], seq_len: int, bos_id: int, eos_id: int, pad_id: int) -> np.ndarray:
    """One padded row per document, cut at seq_len - 2 tokens."""
    pieces = [tokens[: seq_len - 2] for tokens in token_lists if len(tokens)]
    return frame(pieces, seq_len, bos_id, eos_id, pad_id)


def pack_full(
    token_lists: Iterable[Sequence[int]], seq_len: int, bos_id: int, eos_id: int, pad_id: int
) -> Iterator[np.ndarray]:
    """(n, seq_len) blocks of FULL-SENTENCES rows as documents come in; the last row is padded."""
    carry = _EMPTY
    for tokens in token_lists:
        rows, carry = cut_full(np.concatenate([carry, join_docs([tokens], eos_id)]), seq_len, bos_id, eos_id)
        if len(rows):
            yield rows
    if len(carry):
        yield frame([carry], seq_len, bos_id, eos_id, pad_id)


def pack_pad(
    token_lists: Iterable[Sequence[int]], seq_len: int, bos_id: int, eos_id: int, pad_id: int
) -> Iterator[np.ndarray]:
    """(n, seq_len) rows per document, each piece of it padded on its own."""
    for tokens in token_lists:
        if len(tokens):
            yield pad_rows([tokens], seq_len, bos_id, eos_id, pad_id)


def pack_line(
    token_lists: Iterable[Sequence[int]], seq_len: int, bos_id: int, eos_id: int, pad_id: int
) -> Iterator[np.ndarray]:
    """(1, seq_len) per document, cut at seq_len - 2 tokens."""
    for tokens in token_lists:
        if len(tokens):
            yield line_rows([tokens], seq_len, bos_id, eos_id, pad_id)


def storage_dtype(vocab_size: int) -> np.dtype:
    """Smallest unsigned little-endian integer for the ids: half the disk and page cache of uint32."""
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


# ---------------------------------------------------------------- writing one split


class _SplitWriter:
    """Packs one split's documents as they arrive and appends the rows to its shard files.

    Memory stays bounded by one encode batch: rows go to disk at once, and only full packing
    carries state (fewer than seq_len - 2 tokens waiting for the next documents).
    """

    def __init__(
        self, folder: Path, name: str, dtype: np.dtype, data_cfg: DataConfig, tok: TextTokenizer, masks: bool = False
    ) -> None:
        self.folder, self.name, self.dtype = folder, name, dtype
        self.seq_len, self.packing, self.max_rows = data_cfg.seq_len, data_cfg.packing, data_cfg.shard_max_sequences
        self.bos_id, self.eos_id, self.pad_id = tok.bos_id, tok.eos_id, tok.pad_id
        self.carry = self.mask_carry = _EMPTY
        self.masks = masks  # also pack a loss mask, token for token (templated records)
        self.shards: list[list] = []  # [file name, rows] per shard file
        self.documents = self.tokens = self.truncated = 0

    def add(self, token_lists: list[list[int]], mask_lists: list[list[int]] | None = None) -> None:
        self.documents += len(token_lists)
        if self.packing == "line":
            self.truncated += sum(len(tokens) > self.seq_len - 2 for tokens in token_lists)
        rows, self.carry = self._pack(token_lists, self.carry, self.bos_id, self.eos_id, self.pad_id)
        mask_rows = None
        if self.masks:
            # The same packing on the masks: bos, frame eos and padding are 0, a document's own eos is 1.
            mask_rows, self.mask_carry = self._pack(mask_lists, self.mask_carry, 0, 1, 0, frame_eos=0)
        self._write(rows, mask_rows)

    def _pack(self, lists, carry, bos: int, eos: int, pad: int, frame_eos: int | None = None):
        frame_eos = eos if frame_eos is None else frame_eos
        if self.packing == "full":
            return cut_full(np.concatenate([carry, join_docs(lists, eos)]), self.seq_len, bos, frame_eos)
        pack = pad_rows if self.packing == "pad" else line_rows
        return pack(lists, self.seq_len, bos, eos, pad), carry

    def close(self) -> dict:
        """Write the padded last row (full packing), sync the files, and return the manifest entry."""
        if len(self.carry):
            last = frame([self.carry], self.seq_len, self.bos_id, self.eos_id, self.pad_id)
            self._write(last, frame([self.mask_carry], self.seq_len, 0, 0, 0) if self.masks else None)
            self.carry = self.mask_carry = _EMPTY
        for name, _ in self.shards:
            _fsync(self.folder / name)
            if self.masks:
                _fsync(self.folder / mask_file(name))
        return {
            "shards": [{"file": name, "sequences": rows} for name, rows in self.shards],
            "loss_mask": self.masks,
            "sequences": sum(rows for _, rows in self.shards),
            "tokens": self.tokens,
            "documents": self.documents,
            "truncated": self.truncated,
        }

    def _write(self, rows: np.ndarray, mask_rows: np.ndarray | None = None) -> None:
        self.tokens += int(np.count_nonzero(rows != self.pad_id))
        start = 0
        while start < len(rows):
            if not self.shards or self.shards[-1][1] == self.max_rows:
                self.shards.append([f"{self.name}-{len(self.shards):05d}.bin", 0])
            name, count = self.shards[-1]
            take = min(self.max_rows - count, len(rows) - start)
            with open(self.folder / name, "ab") as f:
                f.write(rows[start : start + take].astype(self.dtype).tobytes())
            if mask_rows is not None:
                with open(self.folder / mask_file(name), "ab") as f:
                    f.write(mask_rows[start : start + take].astype(np.uint8).tobytes())
            self.shards[-1][1] += take
            start += take


def mask_file(shard: str) -> str:
    """The loss-mask file beside a shard: train-00000.bin -> train-00000.loss.bin."""
    return shard.removesuffix(".bin") + ".loss.bin"


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# ---------------------------------------------------------------- routing documents to splits


def split_by_fraction(docs: Iterable, fraction: float, seed: int) -> Iterator[tuple[str, object]]:
    """(split, doc): validation when a seeded hash of the document's text falls below `fraction`.

    Decided by the text, not by a draw, so copies of one document (a source repeated by its
    weight, or written into the corpus twice) all land on one side: validation never scores
    text the model trained on. If no document went to validation (a tiny corpus), the last one
    does, so a validation split asked for is never empty; until the first, one training
    document is held back for that.
    """
    held, drawn = None, False
    for doc in docs:
        to_validation = text_draw(doc.text if isinstance(doc, Example) else doc, seed) < fraction
        if held is not None and (to_validation or not drawn):
            yield "train", held
            held = None
        if to_validation:
            drawn = True
            yield "validation", doc
        elif drawn:
            yield "train", doc
        else:
            held = doc
    if held is not None:
        log.warning("no document was drawn for validation (data.val_fraction=%s); using the last one", fraction)
        yield "validation", held


def text_draw(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by the text and the seed, uniform over texts (BLAKE2b keyed by the seed)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "little") / 2**64


def _routed(
    sources: Sequence, val_sources: Sequence | None, data_cfg: DataConfig, corpus_cfg: CorpusConfig
) -> Iterator[tuple[str, str]]:
    """(split, document) for the whole build; every source is checked before the first one."""
    docs = documents(sources, corpus_cfg, data_cfg)
    if val_sources:
        val_docs = documents(val_sources, corpus_cfg, data_cfg)
        return itertools.chain((("validation", d) for d in val_docs), (("train", d) for d in docs))
    if data_cfg.val_fraction > 0:
        return split_by_fraction(docs, data_cfg.val_fraction, data_cfg.seed)
    return (("train", d) for d in docs)


def documents(sources: Sequence, corpus_cfg: CorpusConfig, data_cfg: DataConfig) -> Iterator[str | Example]:
    """The corpus's documents: strings, or templated records (`Example`) with `data.template`."""
    if data_cfg.template:
        return iter_examples(sources, corpus_cfg, load_template(data_cfg.template))
    return corpus.iter_documents(sources, corpus_cfg)


def document_texts(sources: Sequence, corpus_cfg: CorpusConfig, data_cfg: DataConfig) -> Iterator[str]:
    """Plain texts of `documents`, e.g. to train a tokenizer on what the model will read."""
    for doc in documents(sources, corpus_cfg, data_cfg):
        yield doc.text if isinstance(doc, Example) else doc


def _batched(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


# ---------------------------------------------------------------- prepare


def build_key(
    sources: Sequence, val_sources: Sequence | None, tok: TextTokenizer, data_cfg: DataConfig, corpus_cfg: CorpusConfig
) -> str:
    """Hash of everything that decides the shards' bytes: corpus files, tokenizer, data settings."""
    data = to_dict(data_cfg)
    del data["encode_batch_docs"]  # how many documents go to the tokenizer at once changes nothing
    del data["isolate_documents"]  # how training reads the rows, not what they hold
    for name in ("template", "pairs", "phases"):
        if not data[name]:
            del data[name]  # keeps the keys of folders built before these settings existed
    return files.stable_hash(
        {
            "format_version": FORMAT_VERSION,
            "corpus": corpus.source_fingerprint(sources, corpus_cfg),
            "val_corpus": corpus.source_fingerprint(val_sources, corpus_cfg) if val_sources else None,
            "tokenizer": tok.fingerprint,
            "data": data,
        }
    )


def prepare(
    sources: Sequence | str,
    tokenizer: TextTokenizer | str | Path,
    data_cfg: DataConfig,
    corpus_cfg: CorpusConfig,
    out_dir: str | Path,
    val_sources: Sequence | str | None = None,
    progress: bool = True,
) -> Path:
    """Tokenize and pack `sources` into a data folder at `out_dir`; reused if its build key matches."""
    out_dir = Path(out_dir)
    sources, val_sources = _as_list(sources), _as_list(val_sources)
    tok = tokenizer if isinstance(tokenizer, TextTokenizer) else load_tokenizer(tokenizer)
    key = build_key(sources, val_sources, tok, data_cfg, corpus_cfg)
    if _existing_build_key(out_dir) == key:
        log.info("reusing %s (same corpus, tokenizer and data settings)", out_dir)
        return out_dir
    files.refuse_foreign_dir(out_dir, MANIFEST_FILE, "a bertforge data folder")
    with files.atomic_dir(out_dir) as tmp:
        splits = _write_splits(tmp, sources, val_sources, tok, data_cfg, corpus_cfg, progress)
        for phase in data_cfg.phases[1:]:  # the later sequence-length phases: the same documents, longer rows
            phase_cfg = replace(data_cfg, phases=[], seq_len=phase["seq_len"])
            prepare(sources, tok, phase_cfg, corpus_cfg, tmp / phase_dir(phase["seq_len"]), val_sources, progress)
        tok.save(tmp / TOKENIZER_DIR)
        manifest = _manifest(key, sources, val_sources, tok, data_cfg, corpus_cfg, splits)
        files.write_json(tmp / MANIFEST_FILE, manifest)
    for name, split in splits.items():
        counts = split["sequences"], split["tokens"], split["documents"]
        log.info("%s: %d sequences, %d tokens, %d documents", name, *counts)
    return out_dir


def phase_dir(seq_len: int) -> str:
    """The data folder, inside the main one, of a later sequence-length phase (data.phases)."""
    return f"seq-{seq_len}"


def _as_list(sources: Sequence | str | None) -> list:
    """Sources as a list: one path or CorpusSource is a list of one, not of its characters."""
    if sources is None:
        return []
    if isinstance(sources, (str, os.PathLike, corpus.CorpusSource)):
        return [sources]
    return list(sources)


def _write_splits(
    folder: Path,
    sources: list,
    val_sources: list,
    tok: TextTokenizer,
    data_cfg: DataConfig,
    corpus_cfg: CorpusConfig,
    progress: bool,
) -> dict[str, dict]:
    """Read, encode (a batch at a time, on all cores) and pack every document; manifest entries per split."""
    names = ["train", "validation"] if val_sources or data_cfg.val_fraction > 0 else ["train"]
    dtype = storage_dtype(tok.vocab_size)
    if data_cfg.pairs:  # NSP / SOP: one sentence pair per row (pairs.py)
        splits = write_pair_splits(folder, _routed(sources, val_sources, data_cfg, corpus_cfg), names, tok, data_cfg, dtype)
        _check_splits(splits, data_cfg)
        return splits
    templated = bool(data_cfg.template)
    writers = {name: _SplitWriter(folder, name, dtype, data_cfg, tok, masks=templated) for name in names}
    routed = _routed(sources, val_sources, data_cfg, corpus_cfg)
    with _progress_bar(sources, val_sources, progress) as bar:
        for batch in _batched(routed, data_cfg.encode_batch_docs):
            if templated:
                ids, masks = encode_examples(tok, [doc for _, doc in batch])
            else:
                ids, masks = tok.encode_batch([text for _, text in batch]), None
            for name, writer in writers.items():
                mine = [i for i, (split, _) in enumerate(batch) if split == name]
                writer.add([ids[i] for i in mine], [masks[i] for i in mine] if masks else None)
            if not bar.disable:
                bar.update(sum(len((doc.text if templated else doc).encode("utf-8")) for _, doc in batch))
        if bar.total:  # documents leave out blank lines and markup: end at 100%, not 97%
            bar.update(max(0, bar.total - bar.n))
    splits = {name: writer.close() for name, writer in writers.items()}
    _check_splits(splits, data_cfg)
    return splits


def _check_splits(splits: dict[str, dict], data_cfg: DataConfig) -> None:
    train = splits["train"]
    if not train["sequences"]:
        raise DataError(
            f"the corpus gave no training sequences ({train['documents']} documents for training); "
            "use a larger corpus or data.val_fraction=0"
            + ("; a .txt file without blank lines is one document: --doc-per line makes each line one"
               if not train["documents"] else "")
        )
    if train["truncated"]:
        log.warning(
            "line packing cut %d of %d training documents to data.seq_len=%d tokens",
            train["truncated"], train["documents"], data_cfg.seq_len,
        )


def _progress_bar(sources: list, val_sources: list, enabled: bool) -> tqdm:
    """Bytes read so far and MB/s, on stderr; only on a terminal or in a notebook."""
    enabled = live_progress(enabled)
    sizes = [corpus.count_bytes(s) for s in (sources, val_sources) if s] if enabled else [None]
    total = None if None in sizes else sum(sizes)
    return tqdm(total=total, desc="prepare", unit="B", unit_scale=True, file=sys.stderr, disable=not enabled)


def _manifest(
    key: str,
    sources: list,
    val_sources: list,
    tok: TextTokenizer,
    data_cfg: DataConfig,
    corpus_cfg: CorpusConfig,
    splits: dict[str, dict],
) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "bertforge_version": __version__,
        "build_key": key,
        "dtype": storage_dtype(tok.vocab_size).name,
        "seq_len": data_cfg.seq_len,
        "packing": data_cfg.packing,
        "pairs": data_cfg.pairs,
        "phases": {str(p["seq_len"]): phase_dir(p["seq_len"]) for p in data_cfg.phases[1:]},
        "vocab_size": tok.vocab_size,
        "pad_id": tok.pad_id,
        "bos_id": tok.bos_id,
        "eos_id": tok.eos_id,
        "mask_id": tok.mask_id,
        "tokenizer_fingerprint": tok.fingerprint,
        "tokenizer_dir": TOKENIZER_DIR,
        "validation_from": "val_sources" if val_sources else "val_fraction" if "validation" in splits else "none",
        "data": to_dict(data_cfg),
        "corpus": corpus.source_fingerprint(sources, corpus_cfg),
        "val_corpus": corpus.source_fingerprint(val_sources, corpus_cfg) if val_sources else None,
        "splits": splits,
    }


def _existing_build_key(out_dir: Path) -> str | None:
    try:
        return files.read_json(out_dir / MANIFEST_FILE).get("build_key")
    except (OSError, ValueError, AttributeError):
        return None


# ---------------------------------------------------------------- reading


def load_manifest(data_dir: str | Path) -> dict:
    """The folder's manifest.json, plus `data_dir` (where it was read from, for messages)."""
    path = Path(data_dir) / MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{data_dir}: no {MANIFEST_FILE}; run `bertforge prepare` first")
    manifest = files.read_json_file(path, "run `bertforge prepare` again")
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise DataError(
            f"{path}: shard format {version}, this bertforge reads {FORMAT_VERSION}; run `bertforge prepare` again"
        )
    return {**manifest, "data_dir": str(data_dir)}


def check_compatible(manifest: dict, tokenizer: TextTokenizer) -> None:
    """The shards' ids must come from this tokenizer; any other one would train on noise."""
    made_with = manifest.get("tokenizer_fingerprint")
    if made_with != tokenizer.fingerprint:
        where = manifest.get("data_dir", "the data folder")
        raise DataError(
            f"shards in {where} were made with another tokenizer (fingerprint {made_with} != "
            f"{tokenizer.fingerprint}); run `bertforge prepare` again"
        )


class PackedShards:
    """One split of a data folder as a read-only (sequences, seq_len) array, memory-mapped per shard."""

    def __init__(self, data_dir: str | Path, split: str = "train") -> None:
        self.data_dir, self.split = Path(data_dir), split
        self.manifest = load_manifest(data_dir)
        info = self.manifest["splits"].get(split)
        if not info or not info["sequences"]:
            have = ", ".join(self.manifest["splits"])
            raise DataError(
                f"{data_dir}: no {split!r} sequences (splits: {have}); "
                "run `bertforge prepare` with data.val_fraction > 0 or --val-corpus"
            )
        self.seq_len, self.pad_id = self.manifest["seq_len"], self.manifest["pad_id"]
        self.eos_id = self.manifest.get("eos_id")  # closes every document in packed rows
        self.num_tokens = info["tokens"]  # non-pad tokens, bos/eos included
        self.has_loss_mask = bool(info.get("loss_mask"))  # templated records: where the responses are
        self.pairs = info.get("pairs", "")  # "nsp" / "sop": sentence-pair rows with segment ids and labels (pairs.py)
        self._pair_maps = None
        self._dtype = np.dtype(self.manifest["dtype"]).newbyteorder("<")
        self._files = [(self.data_dir / shard["file"], shard["sequences"]) for shard in info["shards"]]
        self._starts = np.cumsum([0] + [rows for _, rows in self._files])  # (num_shards + 1,) first row of each
        self._maps: list[np.memmap] | None = None
        self._mask_maps: list[np.memmap] | None = None
        self._check_sizes()
        self._check_ids()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int | np.ndarray | slice | Sequence[int]) -> np.ndarray:
        """int64 rows: (seq_len,) for an int, (n, seq_len) for a slice or an array of indices."""
        if isinstance(index, (int, np.integer)):
            return self._rows(np.array([index]))[0]
        if isinstance(index, slice):
            return self._rows(np.arange(*index.indices(len(self))))
        return self._rows(np.asarray(index, dtype=np.int64).reshape(-1))

    def __getstate__(self) -> dict:
        """Pickle (for DataLoader workers) without the maps; each process maps the files itself."""
        return {**self.__dict__, "_maps": None, "_mask_maps": None, "_pair_maps": None}

    def loss_mask(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        """(n, seq_len) uint8 loss mask of the rows `index` (1 on response tokens); templated shards only."""
        if not self.has_loss_mask:
            raise DataError(
                f"{self.data_dir}: the shards have no loss mask; prepare them with a template (--template) "
                "for train.loss_on=response"
            )
        if self._mask_maps is None:
            self._mask_maps = [
                np.memmap(path.with_name(mask_file(path.name)), dtype=np.uint8, mode="r", shape=(rows, self.seq_len))
                for path, rows in self._files
            ]
        return self._rows(np.asarray(index, dtype=np.int64).reshape(-1), self._mask_maps, np.uint8)

    def _rows(self, idx: np.ndarray, maps: list[np.memmap] | None = None, dtype=np.int64) -> np.ndarray:
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for {n} sequences in {self.data_dir} ({self.split})")
        idx = np.where(idx < 0, idx + n, idx)
        shard = np.searchsorted(self._starts, idx, side="right") - 1
        out = np.empty((len(idx), self.seq_len), dtype=dtype)
        maps = maps if maps is not None else self._open()
        for s in np.unique(shard):
            hit = shard == s
            out[hit] = maps[s][idx[hit] - self._starts[s]]
        return out

    def _open(self) -> list[np.memmap]:
        if self._maps is None:
            self._maps = [
                np.memmap(path, dtype=self._dtype, mode="r", shape=(rows, self.seq_len)) for path, rows in self._files
            ]
        return self._maps

    def _check_sizes(self) -> None:
        """A missing or cut-short shard file fails here, not as garbage in the middle of training."""
        for path, rows in self._files:
            expected = rows * self.seq_len * self._dtype.itemsize
            size = path.stat().st_size if path.is_file() else None
            if size != expected:
                found = "missing" if size is None else f"{size} bytes"
                raise DataError(f"{path}: expected {expected} bytes, found {found}; run `bertforge prepare` again")

    def _check_ids(self, chunk_rows: int = 1 << 16) -> None:
        """Every id below the manifest's vocab_size: a damaged shard (bytes overwritten) fails here
        with its file named, not as an IndexError inside the embedding after the run folder is made.
        One sequential read of the split (numpy max, chunked: memory stays bounded)."""
        vocab = self.manifest.get("vocab_size")
        if not vocab:
            return
        for path, rows in self._files:
            ids = np.memmap(path, dtype=self._dtype, mode="r", shape=(rows, self.seq_len))
            for start in range(0, rows, chunk_rows):
                block = ids[start : start + chunk_rows]
                if int(block.max()) >= vocab:
                    row = start + int(np.argmax(block.max(axis=1) >= vocab))
                    raise DataError(
                        f"{path}: token id {int(block.max())} in sequence {row} is outside the vocabulary "
                        f"({vocab} ids): the shard is damaged; run `bertforge prepare` again"
                    )
