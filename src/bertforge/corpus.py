"""Corpus readers: files, folders and Hugging Face datasets -> one stream of documents.

A source is a file, a folder of files, or `hf:NAME[:CONFIG][@SPLIT]`, optionally followed by
`:WEIGHT`. Files are read by extension, looking through a `.gz` or `.zst` suffix:

    .jsonl .json .ndjson   field `corpus.text_field` of each object (a JSON array is streamed)
    .csv .tsv              column `corpus.text_field` (all digits: a 0-based index, no header row)
    .parquet               column `corpus.text_field`, read in batches
    anything else          UTF-8 text, one document per line or per blank-line paragraph

Several sources are interleaved at random in proportion to their weights, the way
`datasets.interleave_datasets` does: weights are shares, so a small source with a large share
repeats. Every source is checked before the first document comes out, so a typo in the last of
five paths fails at once rather than an hour into a run.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import functools
import gzip
import io
import itertools
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np

from .config import CorpusConfig
from .errors import DataError, require

log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
HEAD_BYTES = 8192  # bytes of each file checked up front for NUL bytes and UTF-8
CHUNK_CHARS = 1 << 20  # JSON is decoded from buffered reads of this many characters
CSV_FIELD_LIMIT = 2**31 - 1  # csv's default 128 KiB per field rejects long documents
JSON_EXTENSIONS = (".json", ".jsonl", ".ndjson")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True)
class CorpusSource:
    location: str  # file, folder, or "hf:NAME[:CONFIG][@SPLIT]"
    weight: float | None = None  # share in the interleave relative to the other sources (None = 1.0)

    @property
    def is_hf(self) -> bool:
        return self.location.startswith(HF_PREFIX)

    @property
    def draw_weight(self) -> float:
        return 1.0 if self.weight is None else self.weight


def parse_source(spec: str) -> CorpusSource:
    """Split "LOCATION[:WEIGHT]"; a path that exists exactly as written is never split.

    `hf:NAME:CONFIG:0.5` reads 0.5 as the weight; write `hf:NAME:2@train` for a numeric config.
    """
    if not spec:
        raise DataError("empty corpus source; pass a file, a folder or hf:NAME")
    location, _, tail = spec.rpartition(":")
    if not location or os.path.exists(spec) or not _is_number(tail):
        return CorpusSource(spec)
    weight = float(tail)
    if not (math.isfinite(weight) and weight > 0):
        raise DataError(f"corpus source {spec!r}: the weight must be a number > 0, got {tail!r}")
    return CorpusSource(location, weight)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_sources(sources: Sequence[str | CorpusSource] | str | CorpusSource) -> list[CorpusSource]:
    if isinstance(sources, (str, os.PathLike, CorpusSource)):  # one source, not a sequence of characters
        sources = [sources]
    return [s if isinstance(s, CorpusSource) else parse_source(os.fspath(s)) for s in sources]


# ---------------------------------------------------------------- public entry points


def iter_documents(sources: Sequence[str | CorpusSource], cfg: CorpusConfig) -> Iterator[str]:
    """Check every source now, then stream their documents (non-empty, stripped strings).

    One source gives its documents in order; several are interleaved by weight with
    `numpy.random.default_rng(cfg.seed)` until `cfg.until` (see `_interleave`).
    """
    parsed = _as_sources(sources)
    if not parsed:
        raise DataError("no corpus sources given; pass at least one file, folder or hf:NAME")
    reopen = [functools.partial(_open_source, source, cfg) for source in parsed]  # each call checks, then streams
    streams = [open_stream() for open_stream in reopen]
    if len(streams) == 1:
        return streams[0]
    return interleave_sources(parsed, streams, reopen, cfg)


def interleave_sources(
    parsed: Sequence[CorpusSource], streams: list[Iterator], reopen: Sequence[Callable[[], Iterator]], cfg: CorpusConfig
) -> Iterator:
    """The weighted mix of several checked sources; `reopen[i]()` starts source i again from its first document."""
    until = resolved_until(cfg.until, parsed)
    weights = [source.draw_weight for source in parsed]
    names = [Path(source.location).name or source.location for source in parsed]
    return _interleave(streams, reopen, weights, until, np.random.default_rng(cfg.seed), names)


def resolved_until(until: str, sources: Sequence[CorpusSource]) -> str:
    """"auto" reads weights as shares (smaller sources repeat) when any source has one, else each document once."""
    if until != "auto":
        return until
    weighted = any(source.weight is not None for source in sources)
    return "all_exhausted" if weighted else "all_exhausted_without_replacement"


def _interleave(
    streams: list[Iterator],
    reopen: Sequence[Callable[[], Iterator]],
    weights: Sequence[float],
    until: str,
    rng: np.random.Generator,
    names: Sequence[str],
) -> Iterator:
    """Each document comes from a source drawn with probability proportional to its weight.

    What happens when a drawn source has nothing left, as in `datasets.interleave_datasets`:
    "first_exhausted" stops (shares exact, the other sources' tails unread); "all_exhausted" starts
    that source again from its first document, until every source has been read to its end at
    least once (shares exact, smaller shares' sources repeat); "all_exhausted_without_replacement"
    drops it and goes on with the rest (every document once, so the shares drift to what is left).
    """
    live = list(range(len(streams)))
    cumulative = np.cumsum(weights, dtype=np.float64)
    counts, finished, passes = [0] * len(streams), [False] * len(streams), [1] * len(streams)
    while live:
        k = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(live) - 1)
        i = live[k]
        doc = next(streams[i], None)
        if doc is not None:
            counts[i] += 1
            yield doc
            continue
        finished[i] = True
        if until == "first_exhausted" or (until == "all_exhausted" and all(finished)):
            break
        if until == "all_exhausted":
            streams[i], passes[i] = reopen[i](), passes[i] + 1
            continue
        del live[k]
        cumulative = np.cumsum([weights[j] for j in live], dtype=np.float64)
    _log_mix(names, counts, passes)


def _log_mix(names: Sequence[str], counts: Sequence[int], passes: Sequence[int]) -> None:
    """One line saying what the mix held: the share of each source and how often a repeated one was read."""
    total = max(sum(counts), 1)
    parts = [
        f"{name} {count:,} ({count / total:.0%}{f', {p} passes' if p > 1 else ''})"
        for name, count, p in zip(names, counts, passes)
    ]
    log.info("corpus mix, documents per source: %s", "; ".join(parts))


def source_fingerprint(sources: Sequence[str | CorpusSource], cfg: CorpusConfig) -> dict:
    """A cheap JSON-able identity of the corpus (paths, sizes, mtimes, weights, settings): a cache key."""
    entries = []
    for source in _as_sources(sources):
        entry: dict[str, Any] = {"location": source.location, "weight": source.draw_weight}
        if not source.is_hf:
            entry["location"] = os.path.abspath(Path(source.location).expanduser())
            entry["files"] = [_file_identity(path) for path in _resolve_files(source.location)]
        entries.append(entry)
    return {"sources": entries, "corpus": dataclasses.asdict(cfg)}


def _file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def count_bytes(sources: Sequence[str | CorpusSource]) -> int | None:
    """Total on-disk size of the sources' files, for MB/s progress; None when a source is hf:."""
    parsed = _as_sources(sources)
    if any(source.is_hf for source in parsed):
        return None
    return sum(path.stat().st_size for source in parsed for path in _resolve_files(source.location))


# ---------------------------------------------------------------- checking sources up front


def _open_source(source: CorpusSource, cfg: CorpusConfig) -> Iterator[str]:
    """Check one source (fail fast, with one line) and return its lazy document stream."""
    if source.is_hf:
        dataset = _hf_dataset(source.location, cfg.text_field)
        has_documents = _first(_hf_documents(dataset, source.location, cfg.text_field)) is not None
        stream = _hf_documents(dataset, source.location, cfg.text_field)
    else:
        files, has_documents = _checked_files(source.location, cfg)
        stream = _files_documents(files, cfg)
    if not has_documents:
        raise DataError(
            f"{source.location}: no documents, only blank text; check the file and corpus.text_field/doc_per"
        )
    return stream


def _resolve_files(location: str) -> list[Path]:
    """The files a file or folder source reads, in path order; hidden files and folders are skipped."""
    path = Path(location).expanduser()
    if path.is_file():
        return [path]
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; check the corpus path")
    if not path.is_dir():
        raise DataError(f"{path}: not a regular file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and not _is_hidden(p.relative_to(path)))
    if not files:
        raise DataError(f"{path}: folder has no files (hidden ones are skipped); add text files to it")
    return files


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _checked_files(location: str, cfg: CorpusConfig) -> tuple[list[Path], bool]:
    """Check each file of a source; returns the files to read and whether any holds a document."""
    files = _resolve_files(location)
    in_folder = Path(location).expanduser().is_dir()
    readable, has_documents = [], False
    for path in files:
        if path.stat().st_size == 0:
            if not in_folder:
                raise DataError(f"{path}: file is empty; pass a file that holds text")
            log.warning("skipping empty file %s", path)
            continue
        has_documents = _check_file(path, cfg) or has_documents
        readable.append(path)
    if not readable:
        raise DataError(f"{location}: folder has no readable files (all are empty); add text files to it")
    return readable, has_documents


def _check_file(path: Path, cfg: CorpusConfig) -> bool:
    """Fail now on a binary file, a non-UTF-8 start or a wrong field; True if it holds a document."""
    if extension(path) != ".parquet":
        with reading(path), _open_binary(path) as f:
            head = f.read(HEAD_BYTES)
        nul = head.find(b"\0")
        if nul >= 0:
            raise DataError(f"{path}: binary file (NUL byte at offset {nul}); pass UTF-8 text, JSON, CSV or Parquet")
        offset = _bad_utf8_offset([head], final=False)
        if offset is not None:
            raise DataError(_not_utf8(path, offset))
    return _first(_file_documents(path, cfg)) is not None


def _first(docs: Iterator[str]) -> str | None:
    """The first document of a stream, closing it so its file is released."""
    try:
        return next(docs, None)
    finally:
        docs.close()


# ---------------------------------------------------------------- opening and decoding files


def extension(path: Path) -> str:
    """The format-giving extension: '.jsonl' for both 'a.jsonl' and 'a.jsonl.gz'."""
    name = path.name.lower()
    for compression in (".gz", ".zst"):
        name = name.removesuffix(compression)
    return Path(name).suffix


def _require(module: str, package: str, extra: str, needed_by: object) -> ModuleType:
    """Import an optional dependency, or say which package to install."""
    return require(
        module, f"{needed_by}: reading it needs {package}: pip install {package} (or pip install 'bertforge[{extra}]')"
    )


def _open_binary(path: Path) -> IO[bytes]:
    """The file's (decompressed) bytes."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".zst":
        zstd = _require("zstandard", "zstandard", "zstd", path)
        # read_across_frames: files from `pzstd` or `cat a.zst b.zst` hold several frames
        reader = zstd.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True, closefd=True)
        return io.BufferedReader(reader)
    return open(path, "rb")


def open_text(path: Path) -> IO[str]:
    """UTF-8 text without a byte-order mark, CRLF and CR turned into LF."""
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", newline=None)


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn low-level read and decode failures of `path` into one-line DataErrors."""
    try:
        yield
    except UnicodeDecodeError:
        raise DataError(_not_utf8(path, _file_bad_utf8_offset(path))) from None
    except _damage_errors() as e:
        raise DataError(f"{path}: cannot read it ({e}); check the file and its compression") from None


def _damage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean a file is unreadable, truncated or badly compressed."""
    zstd = sys.modules.get("zstandard")  # only imported once a .zst file was opened
    return (OSError, EOFError) + ((zstd.ZstdError,) if zstd else ())


def _not_utf8(path: Path, offset: int) -> str:
    where = " after decompression" if path.suffix.lower() in (".gz", ".zst") else ""
    return f"{path}: not UTF-8 text (invalid byte at offset {offset}{where}); convert it to UTF-8"


def _bad_utf8_offset(chunks: Iterable[bytes], final: bool = True) -> int | None:
    """Byte offset of the first invalid UTF-8 sequence in the chunks, or None if they decode."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    for chunk in chunks:
        pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as e:
            return offset - pending + e.start
        offset += len(chunk)
    if final:
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            return offset - pending + e.start
    return None


def _file_bad_utf8_offset(path: Path) -> int:
    """Rescan a file for the offset of a decode error the text reader hit (error path only)."""
    with _open_binary(path) as f:
        offset = _bad_utf8_offset(iter(lambda: f.read(1 << 20), b""))
    return -1 if offset is None else offset


# ---------------------------------------------------------------- documents of one file


def _files_documents(files: list[Path], cfg: CorpusConfig) -> Iterator[str]:
    for path in files:
        yield from _file_documents(path, cfg)


def _file_documents(path: Path, cfg: CorpusConfig) -> Iterator[str]:
    """Documents of one file, read by its extension."""
    ext = extension(path)
    if ext == ".parquet":
        yield from _parquet_documents(path, cfg.text_field)
        return
    with reading(path), open_text(path) as f:
        if ext in JSON_EXTENSIONS:
            yield from _json_documents(f, path, cfg.text_field)
        elif ext in TABLE_DELIMITERS:
            yield from _table_documents(f, path, cfg.text_field, TABLE_DELIMITERS[ext])
        elif cfg.doc_per == "line":
            yield from _lines_to_documents(f)
        else:
            yield from _paragraphs_to_documents(f)


def _lines_to_documents(lines: Iterable[str]) -> Iterator[str]:
    """One document per non-blank line."""
    for line in lines:
        text = line.strip()
        if text:
            yield text


def _paragraphs_to_documents(lines: Iterable[str]) -> Iterator[str]:
    """One document per run of non-blank lines, joined with single spaces (undoes hard wrapping)."""
    paragraph: list[str] = []
    for line in lines:
        text = line.strip()
        if text:
            paragraph.append(text)
        elif paragraph:
            yield " ".join(paragraph)
            paragraph = []
    if paragraph:
        yield " ".join(paragraph)


def _table_documents(f: IO[str], path: Path, field: str, delimiter: str) -> Iterator[str]:
    """Column `field` of a CSV/TSV file; quoted fields may span lines.

    A row with more fields than the header (or, without a header, than the first row) holds the
    delimiter unquoted: when the text is the last column its pieces are joined back (what the
    writer meant); anywhere else the split is ambiguous, so it is an error, never a cut text.
    """
    csv.field_size_limit(CSV_FIELD_LIMIT)  # process-wide, but only ever raised
    rows = csv.reader(f, delimiter=delimiter)
    column, width = _column_index(rows, path, field)
    for row in rows:
        if not row:
            continue  # a blank line
        width = width or len(row)
        if column >= len(row):
            raise DataError(
                f"{path}: line {rows.line_num} has {len(row)} columns, so no column {column} "
                "(0-based); set corpus.text_field to a column name or a smaller index"
            )
        if len(row) > width:
            row = _rejoin(row, column, width, delimiter, f"{path}: line {rows.line_num}")
        text = row[column].strip()
        if text:
            yield text


def _rejoin(row: list[str], column: int, width: int, delimiter: str, where: str) -> list[str]:
    """`row` split on an unquoted delimiter inside the text: put the last column back together."""
    if column != width - 1:
        shown = {",": "comma", "\t": "tab"}.get(delimiter, repr(delimiter))
        raise DataError(
            f"{where} has {len(row)} fields where {width} are expected: a {shown} inside unquoted text; "
            f'quote the text column ("...") or make it the last column'
        )
    return row[:column] + [delimiter.join(row[column:])]


def _column_index(rows: Iterator[list[str]], path: Path, field: str) -> tuple[int, int | None]:
    """Column number of the text (an all-digit field is a 0-based index: no header row) and the
    header's width (None without a header)."""
    if field.isascii() and field.isdigit():
        return int(field), None
    header = next((row for row in rows if row), [])
    names = [name.strip() for name in header]
    if field not in names:
        shown = ", ".join(name if len(name) <= 40 else name[:37] + "..." for name in names)
        raise DataError(
            f"{path}: no column '{field}' (columns: {shown}); set corpus.text_field to one of them, "
            "or to a 0-based column number if the file has no header row"
        )
    return names.index(field), len(names)


def _json_documents(f: IO[str], path: Path, field: str) -> Iterator[str]:
    for line, record in json_records(f, path):
        text = _record_text(record, field, f"{path}: line {line}")
        if text:
            yield text


def _record_text(record: object, field: str, where: str) -> str:
    """The text of one JSON value or dataset row: a string, or `field` of an object (null = empty)."""
    if isinstance(record, str):
        return record.strip()
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object or a string, got {_json_type(record)}")
    if field not in record:
        raise DataError(f"{where}: no field '{field}' (fields: {', '.join(map(str, record))}); set corpus.text_field")
    value = record[field]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{field}' holds {_json_type(value)}, not text; set corpus.text_field")
    return value.strip()


def _json_type(value: object) -> str:
    """JSON's name for a decoded value's type, for error messages."""
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def json_records(f: IO[str], path: Path) -> Iterator[tuple[int, object]]:
    """(line, value): the elements of a top-level JSON array, else one value per line (JSON lines)."""
    head = f.read(CHUNK_CHARS)  # not a line: a minified array may be one huge line
    if head.lstrip().startswith("["):
        yield from _array_elements(_JsonStream(f, path, head))
        return
    lines = itertools.chain(io.StringIO(head + f.readline()), f)  # readline ends the cut line
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, _json_line(line, number, path)


def _json_line(line: str, number: int, path: Path) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {number}: invalid JSON ({e.msg}); fix or remove that line") from None


def _array_elements(stream: _JsonStream) -> Iterator[tuple[int, object]]:
    stream.take("[")
    if stream.peek() == "]":
        stream.take("]")
    else:
        yield stream.value()
        while stream.take(",]") == ",":
            yield stream.value()
    if stream.peek() is not None:
        raise DataError(f"{stream.path}: line {stream.line}: unexpected data after the JSON array")


class _JsonStream:
    """JSON values decoded one at a time from a text stream, keeping only a window of it in memory."""

    def __init__(self, f: IO[str], path: Path, head: str = "") -> None:
        self.f, self.path = f, path
        self.buf, self.pos = head, 0
        self.line = 1  # line number at buf[pos]
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        """Drop the consumed text and read more (doubling for huge values); False at end of file."""
        rest = self.buf[self.pos :]
        chunk = self.f.read(max(CHUNK_CHARS, len(rest)))
        self.buf, self.pos = rest + chunk, 0
        return bool(chunk)

    def _advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def peek(self) -> str | None:
        """The next non-space character, not consumed; None at end of file."""
        while True:
            self._advance(_JSON_SPACE.match(self.buf, self.pos).end())
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return None

    def take(self, allowed: str) -> str:
        char = self.peek()
        if char is None or char not in allowed:
            expected = " or ".join(repr(c) for c in allowed)
            raise DataError(f"{self.path}: line {self.line}: invalid JSON (expected {expected}, got {char!r})")
        self._advance(self.pos + 1)
        return char

    def value(self) -> tuple[int, object]:
        """(line, value) of the next JSON value."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # Cut off by the buffer end only if the error is on the buffer's last line
                # (JSON strings cannot hold raw newlines); otherwise the JSON is bad.
                if "\n" not in self.buf[e.pos :] and self._fill():
                    continue
                line = self.line + self.buf.count("\n", self.pos, e.pos)
                raise DataError(f"{self.path}: line {line}: invalid JSON ({e.msg}); fix that record") from None
            if end == len(self.buf) and self._fill():
                continue  # a number at the buffer end may go on in the next read
            line = self.line
            self._advance(end)
            return line, value


def _parquet_documents(path: Path, field: str) -> Iterator[str]:
    """Column `field` of a Parquet file, read in record batches."""
    if path.suffix.lower() != ".parquet":
        raise DataError(f"{path}: compressed Parquet is not supported; decompress it (Parquet compresses itself)")
    pq = _require("pyarrow.parquet", "pyarrow", "parquet", path)
    pa = _require("pyarrow", "pyarrow", "parquet", path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    schema = parquet.schema_arrow
    if field not in schema.names:
        raise DataError(f"{path}: no column '{field}' (columns: {', '.join(schema.names)}); set corpus.text_field")
    kind = schema.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{path}: column '{field}' holds {kind}, not text; set corpus.text_field")
    try:
        with parquet:
            for batch in parquet.iter_batches(columns=[field], batch_size=4096):
                yield from _lines_to_documents(value for value in batch.column(0).to_pylist() if value)
    except pa.ArrowException as e:
        raise DataError(f"{path}: cannot read it ({_first_line(e)}); the Parquet file may be damaged") from None


# ---------------------------------------------------------------- Hugging Face datasets


def _hf_parts(location: str) -> tuple[str, str | None, str]:
    """("NAME", "CONFIG" or None, "SPLIT") of "hf:NAME[:CONFIG][@SPLIT]"; the split defaults to train."""
    body, _, split = location.removeprefix(HF_PREFIX).partition("@")
    name, _, config = body.partition(":")
    if not name:
        raise DataError(f"{location}: no dataset name; write hf:NAME[:CONFIG][@SPLIT]")
    return name, config or None, split or "train"


def _hf_dataset(location: str, field: str) -> Any:
    """Open a Hugging Face dataset as a stream and check its text field, failing with one line."""
    name, config, split = _hf_parts(location)
    datasets = _require("datasets", "datasets", "datasets", location)
    try:
        dataset = datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as e:  # the hub, the network and every builder fail in their own ways
        reason = _first_line(e)
        raise DataError(f"{location}: cannot load the dataset ({reason}); check name, config and split") from None
    columns = dataset.column_names  # None when the builder cannot tell without reading
    if columns is not None and field not in columns:
        raise DataError(f"{location}: no field '{field}' (fields: {', '.join(columns)}); set corpus.text_field")
    return dataset


def _hf_documents(dataset: Iterable[dict], location: str, field: str) -> Iterator[str]:
    for index, row in enumerate(_hf_rows(dataset, location)):
        text = _record_text(row, field, f"{location}: row {index}")
        if text:
            yield text


def _hf_rows(dataset: Iterable[dict], location: str) -> Iterator[dict]:
    try:
        yield from dataset
    except Exception as e:  # a download or decode failure deep inside `datasets`
        raise DataError(f"{location}: reading the dataset failed ({_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
