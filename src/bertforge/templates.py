"""Instruction and dialogue records -> training texts that know where the response starts.

A template is text with `{field}` placeholders, filled from each JSON record or CSV row:

    --template alpaca                                  (built in, Stanford Alpaca's prompt)
    --template "User: {prompt}\\nAgent: {response}"     (CSV columns prompt, response)

The *last* placeholder is the response: its text (and the EOS that closes every document) is
what a causal LM learns to write with `train.loss_on=response`; everything before it is the
prompt, read but not trained on. A blank-line separated block whose placeholders are all empty
is left out, so Alpaca's "### Input:" block disappears for a record without input. Each record
becomes one document. `generate` fills the first placeholder with the user's prompt and stops
the template where the response starts (`Template.prompt`).
"""

from __future__ import annotations

import csv
import functools
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import corpus
from .config import CorpusConfig
from .errors import ConfigError, DataError

BUILTIN = {
    "alpaca": "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}",
}
BLOCK_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Example:
    """One rendered record: the document's text and the character where its response starts."""

    text: str
    response_start: int


@dataclass(frozen=True)
class Template:
    source: str  # the template text, placeholders included

    @property
    def blocks(self) -> list[list[tuple[str, str | None]]]:
        """Blank-line separated blocks, each a list of (literal text, field name or None)."""
        return [_parse(block) for block in self.source.split(BLOCK_SEPARATOR)]

    @property
    def fields(self) -> list[str]:
        return [name for block in self.blocks for _, name in block if name is not None]

    @property
    def response_field(self) -> str:
        return self.fields[-1]

    def render(self, record: dict, where: str = "record") -> Example:
        """The document for one record; a missing field is a DataError that lists the record's fields."""
        missing = [name for name in self.fields if name not in record]
        if missing:
            have = ", ".join(map(str, record)) or "none"
            raise DataError(
                f"{where}: no field '{missing[0]}' for the template (the record's fields: {have}); "
                "change data.template (--template) or corpus.text_field"
            )
        return self._fill({name: _as_text(record[name], name, where) for name in self.fields})

    def prompt(self, text: str) -> str:
        """What the model reads before it answers `text`: the first field filled, the others empty,
        cut where the response starts (trailing spaces go: in training they begin the response's first token)."""
        values = dict.fromkeys(self.fields, "")
        values[self.fields[0]] = text
        example = self._fill(values)
        return example.text[: example.response_start].rstrip(" ")

    def turn(self, prompt: str, reply: str) -> str:
        """A whole exchange as training saw it, for a chat's history."""
        values = dict.fromkeys(self.fields, "")
        values[self.fields[0]], values[self.response_field] = prompt, reply
        return self._fill(values).text

    def _fill(self, values: dict[str, str]) -> Example:
        parts, start = [], None
        for block in self.blocks:
            names = [name for _, name in block if name is not None]
            if names and self.response_field not in names and not any(values[n].strip() for n in names):
                continue  # an optional block with nothing in it
            text = "".join(parts) + (BLOCK_SEPARATOR if parts else "")
            for literal, name in block:
                text += literal
                if name == self.response_field and start is None:
                    start = len(text)
                if name is not None:
                    text += values[name]
            parts = [text]
        text = "".join(parts)
        return Example(text, len(text) if start is None else start)


def _parse(block: str) -> list[tuple[str, str | None]]:
    try:
        pieces = list(string.Formatter().parse(block))
    except ValueError as e:
        raise ConfigError(f"data.template: {e} (write {{{{ and }}}} for literal braces)") from None
    out = []
    for literal, name, spec, conversion in pieces:
        if name is not None and (not name.isidentifier() or spec or conversion):
            raise ConfigError(f"data.template: {{{name}}} is not a field name; write fields as {{name}}")
        out.append((literal, name))
    return out


def _as_text(value: object, name: str, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise DataError(f"{where}: field '{name}' holds {type(value).__name__}, not text")
    return str(value).strip()


def load_template(spec: str) -> Template:
    """A built-in name (alpaca) or template text with at least one {field}."""
    template = Template(BUILTIN.get(spec, spec.replace("\\n", "\n")))
    if not template.fields:
        names = ", ".join(BUILTIN)
        raise ConfigError(
            f"data.template {spec!r} has no {{field}}; use a built-in ({names}) or text like 'User: {{prompt}}\\nAgent: {{response}}'"
        )
    return template


# ---------------------------------------------------------------- reading records


def iter_examples(sources: Sequence, cfg: CorpusConfig, template: Template) -> Iterator[Example]:
    """The sources' records rendered by `template`, interleaved by weight like `corpus.iter_documents`.

    Every source's first record is rendered now, so a wrong field fails before any work."""
    parsed = corpus._as_sources(sources)
    if not parsed:
        raise DataError("no corpus sources given; pass at least one JSON or CSV file")
    reopen = []  # reopen[i]() streams source i from its first record
    for source in parsed:
        if source.is_hf:
            raise DataError(f"{source.location}: --template reads JSON, JSONL, CSV or TSV files, not hf: datasets")
        paths = corpus._resolve_files(source.location)
        first = next(_examples(paths[:1], template), None)
        if first is None:
            raise DataError(f"{source.location}: no records to fill the template with")
        reopen.append(functools.partial(_examples, paths, template))
    streams = [open_stream() for open_stream in reopen]
    if len(streams) == 1:
        return streams[0]
    return corpus.interleave_sources(parsed, streams, reopen, cfg)


def _examples(paths: list[Path], template: Template) -> Iterator[Example]:
    for path in paths:
        for where, record in _records(path):
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected an object with fields, got {type(record).__name__}")
            example = template.render(record, where)
            if example.text.strip():
                yield example


def _records(path: Path) -> Iterator[tuple[str, object]]:
    """(where, record) of a JSON array / JSON lines file, or the rows of a CSV/TSV file with a header."""
    ext = corpus.extension(path)
    with corpus.reading(path), corpus.open_text(path) as f:
        if ext in corpus.JSON_EXTENSIONS:
            for line, record in corpus.json_records(f, path):
                yield f"{path}: line {line}", record
        elif ext in corpus.TABLE_DELIMITERS:
            csv.field_size_limit(corpus.CSV_FIELD_LIMIT)
            rows = csv.DictReader(f, delimiter=corpus.TABLE_DELIMITERS[ext])
            for row in rows:
                yield f"{path}: line {rows.line_num}", {k.strip(): v for k, v in row.items() if k is not None}
        else:
            raise DataError(f"{path}: --template reads JSON, JSONL, CSV or TSV records, not {ext or 'plain'} text")


# ---------------------------------------------------------------- tokens


def encode_examples(tokenizer, examples: Sequence[Example]) -> tuple[list[list[int]], list[list[int]]]:
    """Ids of each example (no special tokens) and a 0/1 loss mask: 1 for the tokens that end
    after the response starts (a token that straddles the start, like `Ġanswer`, is the response's)."""
    encodings = tokenizer.tokenizer.encode_batch([e.text for e in examples], add_special_tokens=False)
    ids = [enc.ids for enc in encodings]
    masks = [[int(end > e.response_start) for _, end in enc.offsets] for enc, e in zip(encodings, examples)]
    return ids, masks
