"""Train and load subword tokenizers, assembled from `tokenizers` parts with BERT or RoBERTa specials.

A tokenizer folder holds `tokenizer.json` (the `tokenizers` file, which Hugging Face's
`PreTrainedTokenizerFast` also reads) and `bertforge_tokenizer.json` (kind, special-token scheme,
ids, fingerprint). Four recipes, one per `TokenizerConfig.kind`:

- `bytelevel-bpe`: RoBERTa/GPT-2 byte-level BPE. Every byte is in the vocabulary, so no text is
  ever unknown and decoding is exact.
- `wordpiece`: BERT's WordPiece, with BERT's normalizer and pre-tokenizer and `##` continuations.
- `sentencepiece-bpe` and `unigram`: SentencePiece-style, NFKC and `▁` marking word starts.

The special tokens take ids 0..4, in the order of the scheme's table below.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm

from . import files
from .config import TokenizerConfig
from .console import live_progress
from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

# role -> token, in id order (0..4). RoBERTa's order (<s>=0, <pad>=1, </s>=2, <unk>=3) keeps ids
# compatible with fairseq/Hugging Face RoBERTa checkpoints; BERT's puts [PAD] at 0.
SPECIAL_TOKENS = {
    "bert": {"pad": "[PAD]", "unk": "[UNK]", "bos": "[CLS]", "eos": "[SEP]", "mask": "[MASK]"},
    "roberta": {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"},
}
BERT_SPECIALS = tuple(SPECIAL_TOKENS["bert"].values())
ROBERTA_SPECIALS = tuple(SPECIAL_TOKENS["roberta"].values())

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "bertforge_tokenizer.json"
FORMAT_VERSION = 1
TRAIN_BATCH_DOCS = 1000  # documents per list handed to the Rust trainer (fewer Python round trips)

# What marks the first piece of a word in each kind's vocabulary (wordpiece marks the others).
_WORD_START = {"bytelevel-bpe": "Ġ", "sentencepiece-bpe": "▁", "unigram": "▁"}


# ---------------------------------------------------------------- the wrapper


class TextTokenizer:
    """A trained `tokenizers.Tokenizer` plus the facts bertforge needs: kind, scheme, special ids."""

    def __init__(self, tokenizer: Tokenizer, kind: str, scheme: str, lowercase: bool = False) -> None:
        if scheme not in SPECIAL_TOKENS:
            raise DataError(f"unknown special-token scheme {scheme!r}; expected one of {', '.join(SPECIAL_TOKENS)}")
        tokens = SPECIAL_TOKENS[scheme]
        ids = {role: tokenizer.token_to_id(token) for role, token in tokens.items()}
        missing = [tokens[role] for role, i in ids.items() if i is None]
        if missing:
            raise DataError(f"tokenizer lacks the {scheme} special token(s) {', '.join(missing)}")
        self.tokenizer = tokenizer
        self.kind, self.scheme, self.lowercase = kind, scheme, lowercase
        self.pad_id, self.unk_id, self.mask_id = ids["pad"], ids["unk"], ids["mask"]
        self.bos_id, self.eos_id = ids["bos"], ids["eos"]
        self.pad_token, self.mask_token = tokens["pad"], tokens["mask"]
        self.special_ids = sorted(ids.values())
        self.fingerprint = _fingerprint(self._json())

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.kind!r}, scheme={self.scheme!r}, vocab_size={self.vocab_size})"

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text without special tokens; the Rust side spreads the batch over all cores."""
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def tokens(self, text: str, add_special_tokens: bool = True) -> list[str]:
        """The pieces of `text` as the vocabulary spells them (`Ġ`, `▁`, `##` included)."""
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).tokens

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def decode_token(self, token_id: int) -> str:
        """One token as a reader would write it ("Ġhuman" -> "human"), for fill-mask answers."""
        piece = self.tokenizer.decode([token_id], skip_special_tokens=False).strip()
        return piece or (self.tokenizer.id_to_token(token_id) or "")

    def word_start_table(self) -> np.ndarray:
        """(vocab_size,) bool, True where a token begins a word; whole-word masking groups the rest.

        Byte-level BPE marks a word start with `Ġ`, SentencePiece with `▁`, WordPiece marks the
        continuations with `##`. Special tokens count as word starts. A byte-level word with no
        space before it (a document's first word, punctuation) joins the word before it.
        """
        table = np.zeros(self.vocab_size, dtype=bool)
        for token, idx in self.tokenizer.get_vocab().items():
            table[idx] = _starts_word(token, self.kind)
        table[self.special_ids] = True
        return table

    def byte_length_table(self) -> np.ndarray:
        """(vocab_size,) int64: the UTF-8 bytes of text each token stands for, the space before a
        word included; 0 for special tokens. Dividing a loss by these bytes instead of by tokens
        gives bits per byte, which compares models whose tokenizers differ (Gao et al., The Pile).

        Byte-level BPE spells one byte per character (`Ġ` is the space). SentencePiece's `▁` is the
        space and `<0xNN>` one byte. WordPiece drops spaces: a word's first piece counts one for the
        space before it, `##` pieces count their text (so punctuation counts one byte too many).
        """
        table = np.zeros(self.vocab_size, dtype=np.int64)
        for token, idx in self.tokenizer.get_vocab().items():
            table[idx] = _byte_length(token, self.kind)
        table[self.special_ids] = 0
        return table

    def meta(self) -> dict:
        """What `bertforge_tokenizer.json` records, for people and for `load_tokenizer`."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "scheme": self.scheme,
            "lowercase": self.lowercase,
            "special_tokens": dict(SPECIAL_TOKENS[self.scheme]),
            "special_ids": {
                "pad": self.pad_id, "unk": self.unk_id, "bos": self.bos_id, "eos": self.eos_id, "mask": self.mask_id
            },
            "vocab_size": self.vocab_size,
            "fingerprint": self.fingerprint,
        }

    def save(self, out_dir: str | Path) -> None:
        """Write `tokenizer.json` and `bertforge_tokenizer.json` into `out_dir`, each atomically."""
        out_dir = Path(out_dir)
        files.atomic_write_text(out_dir / TOKENIZER_FILE, self._json())
        files.write_json(out_dir / META_FILE, self.meta())

    def _json(self) -> str:
        return self.tokenizer.to_str(pretty=True)


def _fingerprint(tokenizer_json: str) -> str:
    """Hash of the `tokenizer.json` text; equals `files.file_hash` of the saved file."""
    return hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest()[:16]


def _starts_word(token: str, kind: str) -> bool:
    if kind == "wordpiece":
        return not token.startswith("##")
    return token.startswith(_WORD_START[kind])


# ---------------------------------------------------------------- recipes


def _byte_length(token: str, kind: str) -> int:
    if kind == "bytelevel-bpe":
        return len(token)
    if kind == "wordpiece":
        return len(token[2:].encode()) if token.startswith("##") else len(token.encode()) + 1
    if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", token):  # SentencePiece's byte fallback
        return 1
    return len(token.replace("▁", " ").encode())


def _special_tokens(scheme: str) -> list[AddedToken]:
    """The scheme's specials in id order. RoBERTa's mask eats the space before it ("human <mask>.")."""
    return [
        AddedToken(token, special=True, lstrip=(scheme == "roberta" and role == "mask"))
        for role, token in SPECIAL_TOKENS[scheme].items()
    ]


def _normalizer(cfg: TokenizerConfig, *parts: normalizers.Normalizer) -> normalizers.Normalizer | None:
    chain = [*parts, normalizers.Lowercase()] if cfg.lowercase else list(parts)
    if not chain:
        return None
    return chain[0] if len(chain) == 1 else normalizers.Sequence(chain)


def _bytelevel_bpe(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    """RoBERTa's recipe (as in its tokenizer.json): no prefix space, every byte in the alphabet."""
    tok = Tokenizer(models.BPE())
    if (norm := _normalizer(cfg)) is not None:
        tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=_special_tokens(cfg.scheme),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tok, trainer


def _wordpiece(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    """BERT's recipe: BertNormalizer (optionally uncased), BertPreTokenizer, `##` continuations."""
    unk = SPECIAL_TOKENS[cfg.scheme]["unk"]
    tok = Tokenizer(models.WordPiece(unk_token=unk, continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=cfg.lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=_special_tokens(cfg.scheme),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    return tok, trainer


def _metaspace(tok: Tokenizer, cfg: TokenizerConfig) -> Tokenizer:
    """SentencePiece conventions: NFKC, spaces become `▁` at the start of the following word."""
    tok.normalizer = _normalizer(cfg, normalizers.NFKC())
    # prepend_scheme="first": only the text's start gets a `▁`, not each piece after a special
    # token, so "human <mask>." ends in "." rather than "▁" + ".".
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tok.decoder = decoders.Metaspace(prepend_scheme="first")
    return tok


def _sentencepiece_bpe(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    unk = SPECIAL_TOKENS[cfg.scheme]["unk"]
    tok = _metaspace(Tokenizer(models.BPE(unk_token=unk)), cfg)
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=_special_tokens(cfg.scheme),
        show_progress=False,
    )
    return tok, trainer


def _unigram(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    """SentencePiece's unigram LM; it has no min_frequency (pieces are pruned by likelihood)."""
    tok = _metaspace(Tokenizer(models.Unigram()), cfg)
    trainer = trainers.UnigramTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=_special_tokens(cfg.scheme),
        unk_token=SPECIAL_TOKENS[cfg.scheme]["unk"],
        show_progress=False,
    )
    return tok, trainer


RECIPES = {
    "bytelevel-bpe": _bytelevel_bpe,
    "wordpiece": _wordpiece,
    "sentencepiece-bpe": _sentencepiece_bpe,
    "unigram": _unigram,
}


def _post_processor(tok: Tokenizer, kind: str, scheme: str) -> processors.PostProcessor:
    """Adds bos/eos around a text: `<s> A </s></s> B </s>` (RoBERTa) or `[CLS] A [SEP] B [SEP]` (BERT)."""
    bos, eos = SPECIAL_TOKENS[scheme]["bos"], SPECIAL_TOKENS[scheme]["eos"]
    bos_id, eos_id = tok.token_to_id(bos), tok.token_to_id(eos)
    if scheme == "roberta" and kind == "bytelevel-bpe":
        # As RoBERTa's tokenizer.json; trim_offsets keeps the `Ġ` space out of the offsets.
        return processors.RobertaProcessing((eos, eos_id), (bos, bos_id), trim_offsets=True, add_prefix_space=False)
    pair = f"{bos} $A {eos} {eos} $B {eos}" if scheme == "roberta" else f"{bos} $A {eos} $B:1 {eos}:1"
    return processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=pair, special_tokens=[(bos, bos_id), (eos, eos_id)]
    )


# ---------------------------------------------------------------- train / load


def min_vocab_size(kind: str) -> int:
    """Smallest `tokenizer.vocab_size` that leaves room for text: specials (+ 256 bytes for byte-level)."""
    return len(BERT_SPECIALS) + (256 if kind == "bytelevel-bpe" else 1)


def _check_vocab_size(cfg: TokenizerConfig) -> None:
    need = min_vocab_size(cfg.kind)
    if cfg.vocab_size < need:
        why = "256 bytes + 5 special tokens" if cfg.kind == "bytelevel-bpe" else "5 special tokens + text"
        raise ConfigError(f"tokenizer.vocab_size must be at least {need} for {cfg.kind} ({why}), got {cfg.vocab_size}")


def _training_batches(documents: Iterable[str], max_docs: int, progress: bool) -> Iterator[list[str]]:
    """Documents in lists for the trainer; DataError if there are none."""
    docs = iter(documents) if max_docs <= 0 else itertools.islice(documents, max_docs)
    first = next(docs, None)
    if first is None:
        raise DataError("no documents to train the tokenizer on (the corpus is empty)")
    docs = itertools.chain([first], docs)
    bar = tqdm(desc="tokenizer", unit=" docs", file=sys.stderr, disable=not live_progress(progress))
    with bar:
        while batch := list(itertools.islice(docs, TRAIN_BATCH_DOCS)):
            bar.update(len(batch))
            yield batch


def train_tokenizer(
    documents: Iterable[str], cfg: TokenizerConfig, out_dir: str | Path, progress: bool = True
) -> TextTokenizer:
    """Train a tokenizer on `documents` and save it to `out_dir` (replaced whole, never half-written)."""
    _check_vocab_size(cfg)
    out_dir = Path(out_dir)
    files.refuse_foreign_dir(out_dir, TOKENIZER_FILE, "a tokenizer folder")
    tok, trainer = RECIPES[cfg.kind](cfg)
    try:
        tok.train_from_iterator(_training_batches(documents, cfg.max_docs, progress), trainer=trainer)
    except Exception as e:
        if type(e) is not Exception:  # our DataError or a bug: keep it; the Rust trainer raises bare Exception
            raise
        hint = f"tokenizer.vocab_size={cfg.vocab_size}; try a larger one"
        raise ConfigError(f"tokenizer training failed: {e} ({hint})") from None
    tok.post_processor = _post_processor(tok, cfg.kind, cfg.scheme)
    # Reload from JSON so the tokenizer we return is the one later loads see: unigram scores
    # change in their last digit on the first round trip, which would change the fingerprint.
    tok = Tokenizer.from_str(tok.to_str())
    result = TextTokenizer(tok, cfg.kind, cfg.scheme, cfg.lowercase)
    with files.atomic_dir(out_dir) as tmp:
        result.save(tmp)
    log.info("trained %s tokenizer (%s specials), %d tokens -> %s", cfg.kind, cfg.scheme, result.vocab_size, out_dir)
    if result.vocab_size < cfg.vocab_size:
        log.info("%s", short_vocabulary_note(result.vocab_size, cfg))
    return result


def short_vocabulary_note(size: int, cfg: TokenizerConfig) -> str:
    """Why a vocabulary came out smaller than asked: the corpus ran out of pieces worth a token."""
    return (
        f"note: {size:,} tokens, not the {cfg.vocab_size:,} asked (tokenizer.vocab_size): the corpus has no more "
        f"pieces seen at least tokenizer.min_frequency={cfg.min_frequency} times to merge into tokens; "
        "more text (or a lower min_frequency) gives a larger vocabulary, and a smaller one is fine for a small corpus"
    )


def load_tokenizer(path: str | Path) -> TextTokenizer:
    """Load a tokenizer folder (or a bare `tokenizer.json`, e.g. Hugging Face's roberta-base)."""
    path = Path(path)
    tok_file = path if path.is_file() else path / TOKENIZER_FILE
    if not tok_file.is_file():
        raise DataError(f"no tokenizer at {path} (missing {TOKENIZER_FILE}); run `bertforge tokenizer train` first")
    try:
        tok = Tokenizer.from_file(str(tok_file))
    except Exception as e:  # the Rust side raises a bare Exception for any parse error
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"{tok_file}: not a valid tokenizer file ({reason}); run `bertforge tokenizer train` again"
        ) from None
    meta = _read_meta(tok_file.parent / META_FILE) or _infer_meta(tok)
    return TextTokenizer(tok, meta["kind"], meta["scheme"], bool(meta.get("lowercase", False)))


def _read_meta(path: Path) -> dict | None:
    if not path.is_file():
        return None
    meta = files.read_json_file(path, "run `bertforge tokenizer train` again")
    if not isinstance(meta, dict) or meta.get("kind") not in RECIPES or meta.get("scheme") not in SPECIAL_TOKENS:
        raise DataError(f"{path}: missing or unknown kind/scheme; run `bertforge tokenizer train` again")
    return meta


def _infer_meta(tok: Tokenizer) -> dict:
    """Kind and scheme of a tokenizer.json made elsewhere, read from its parts."""
    vocab = tok.get_vocab()
    scheme = "roberta" if "<mask>" in vocab else "bert" if "[MASK]" in vocab else None
    if scheme is None:
        raise DataError("tokenizer has neither <mask> nor [MASK]; bertforge needs RoBERTa or BERT special tokens")
    if isinstance(tok.model, models.WordPiece):
        kind = "wordpiece"
    elif isinstance(tok.model, models.Unigram):
        kind = "unigram"
    else:
        kind = "bytelevel-bpe" if isinstance(tok.decoder, decoders.ByteLevel) else "sentencepiece-bpe"
    return {"kind": kind, "scheme": scheme, "lowercase": False}
