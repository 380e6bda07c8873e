"""Tokenizers: special-token layout, exact round trips, mask handling, save/load, word starts."""

import itertools
import unicodedata

import numpy as np
import pytest
from conftest import datafile

from bertforge import files
from bertforge.config import CorpusConfig, TokenizerConfig
from bertforge.corpus import iter_documents
from bertforge.errors import ConfigError, DataError
from bertforge.tokenizer import BERT_SPECIALS, ROBERTA_SPECIALS, load_tokenizer, min_vocab_size, train_tokenizer

KINDS = ("bytelevel-bpe", "wordpiece", "sentencepiece-bpe", "unigram")
VOCAB = 1000
MAX_DOCS = 3000


def kant_docs(n: int = 300) -> list[str]:
    return list(itertools.islice(iter_documents([datafile("kant/kant.txt")], CorpusConfig()), n))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tokenizer per kind, trained once on Kant; {kind: (tokenizer, folder)}."""
    docs = list(iter_documents([datafile("kant/kant.txt")], CorpusConfig()))
    out = {}
    for kind in KINDS:
        folder = tmp_path_factory.mktemp(kind) / "tok"
        cfg = TokenizerConfig(kind=kind, vocab_size=VOCAB, max_docs=MAX_DOCS)
        out[kind] = (train_tokenizer(docs, cfg, folder, progress=False), folder)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_take_ids_0_to_4_in_scheme_order(trained, kind):
    tok, _ = trained[kind]
    expected = BERT_SPECIALS if kind == "wordpiece" else ROBERTA_SPECIALS
    assert [tok.tokenizer.id_to_token(i) for i in range(5)] == list(expected)
    assert tok.special_ids == [0, 1, 2, 3, 4]
    if kind == "wordpiece":  # [PAD] [UNK] [CLS] [SEP] [MASK]
        assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 3, 4)
    else:  # <s> <pad> </s> <unk> <mask>, as RoBERTa
        assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert 0.9 * VOCAB <= tok.vocab_size <= VOCAB


def test_bytelevel_bpe_round_trips_any_text_exactly(trained):
    tok, _ = trained["bytelevel-bpe"]
    lines = iter_documents([datafile("pydoc-wiki/wiki.valid.raw")], CorpusConfig(doc_per="line"))
    texts = list(itertools.islice(lines, 300))
    texts.append("Unseen characters: naïve café — 東京 🙂\ttab  two spaces")
    for text, ids in zip(texts, tok.encode_batch(texts)):
        assert tok.decode(ids) == text


@pytest.mark.parametrize("kind", ["sentencepiece-bpe", "unigram"])
def test_sentencepiece_kinds_round_trip_nfkc_text_exactly(trained, kind):
    tok, _ = trained[kind]
    for text in kant_docs():
        assert tok.decode(tok.encode(text)) == unicodedata.normalize("NFKC", text)


def test_wordpiece_round_trips_up_to_spacing(trained):
    tok, _ = trained["wordpiece"]
    for text in kant_docs():
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.unk_id not in ids
        assert "".join(tok.decode(ids).split()) == "".join(text.split())


def test_lowercase_folds_case(tmp_path):
    cfg = TokenizerConfig(kind="wordpiece", vocab_size=VOCAB, lowercase=True)
    tok = train_tokenizer(kant_docs(1000), cfg, tmp_path / "tok", progress=False)
    assert tok.encode("The Critique of PURE Reason") == tok.encode("the critique of pure reason")
    assert tok.decode(tok.encode("The Critique")) == "the critique"


@pytest.mark.parametrize("kind", KINDS)
def test_encode_adds_bos_and_eos_around_the_text(trained, kind):
    tok, _ = trained[kind]
    plain = tok.encode("the idea of reason", add_special_tokens=False)
    assert tok.encode("the idea of reason") == [tok.bos_id, *plain, tok.eos_id]
    assert tok.encode_batch(["the idea of reason"]) == [plain]
    assert not set(plain) & set(tok.special_ids)


@pytest.mark.parametrize("kind", KINDS)
def test_mask_in_text_is_one_mask_token(trained, kind):
    tok, _ = trained[kind]
    assert tok.mask_token == ("[MASK]" if kind == "wordpiece" else "<mask>")
    ids = tok.encode(f"human {tok.mask_token}.", add_special_tokens=False)
    assert ids.count(tok.mask_id) == 1
    # RoBERTa's <mask> absorbs the space before it, so the text around it encodes as if alone.
    before, after = ids[: ids.index(tok.mask_id)], ids[ids.index(tok.mask_id) + 1 :]
    assert before == tok.encode("human", add_special_tokens=False)
    assert tok.decode(after) == "."


@pytest.mark.parametrize("kind, too_small", [("bytelevel-bpe", 260), ("wordpiece", 5), ("unigram", 3)])
def test_vocab_too_small_is_config_error_naming_the_minimum(tmp_path, kind, too_small):
    with pytest.raises(ConfigError, match=rf"tokenizer\.vocab_size must be at least {min_vocab_size(kind)}"):
        train_tokenizer(["some text"], TokenizerConfig(kind=kind, vocab_size=too_small), tmp_path / "tok")
    assert min_vocab_size("bytelevel-bpe") == 261
    assert not (tmp_path / "tok").exists()


def test_empty_corpus_is_data_error_and_writes_nothing(tmp_path):
    with pytest.raises(DataError, match="no documents"):
        train_tokenizer(iter([]), TokenizerConfig(vocab_size=VOCAB), tmp_path / "tok")
    assert list(tmp_path.iterdir()) == []


def test_max_docs_limits_the_documents_read(tmp_path):
    pulled = []
    docs = (pulled.append(d) or d for d in kant_docs(500))
    train_tokenizer(docs, TokenizerConfig(vocab_size=300, max_docs=40), tmp_path / "tok", progress=False)
    assert len(pulled) == 40


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_give_identical_ids_and_fingerprint(trained, kind):
    tok, folder = trained[kind]
    loaded = load_tokenizer(folder)
    texts = kant_docs(50)
    assert loaded.encode_batch(texts) == tok.encode_batch(texts)
    assert loaded.fingerprint == tok.fingerprint == files.file_hash(folder / "tokenizer.json")
    assert (loaded.kind, loaded.scheme, loaded.vocab_size) == (kind, tok.scheme, tok.vocab_size)
    assert loaded.special_ids == tok.special_ids
    meta = files.read_json(folder / "bertforge_tokenizer.json")
    assert meta["fingerprint"] == tok.fingerprint and meta["special_ids"]["mask"] == tok.mask_id


def test_bare_tokenizer_json_loads_with_kind_and_scheme_inferred(trained, tmp_path):
    for kind in KINDS:
        tok, folder = trained[kind]
        bare = tmp_path / kind / "tokenizer.json"
        bare.parent.mkdir()
        bare.write_bytes((folder / "tokenizer.json").read_bytes())
        loaded = load_tokenizer(bare)
        assert (loaded.kind, loaded.scheme, loaded.mask_id) == (kind, tok.scheme, tok.mask_id)


def test_missing_or_broken_tokenizer_is_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match="run `bertforge tokenizer train` first"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "tokenizer.json").write_text("{ not json")
    with pytest.raises(DataError, match="not a valid tokenizer file") as err:
        load_tokenizer(tmp_path)
    assert "\n" not in str(err.value)


def test_training_refuses_to_replace_a_folder_that_is_not_a_tokenizer(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a tokenizer folder"):
        train_tokenizer(["some text"], TokenizerConfig(vocab_size=300), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("kind, first_word_marked", [
    ("bytelevel-bpe", False),  # RoBERTa adds no space before the first word, so no `Ġ`
    ("wordpiece", True),
    ("sentencepiece-bpe", True),
    ("unigram", True),
])
def test_word_start_table_marks_one_start_per_word(trained, kind, first_word_marked):
    tok, _ = trained[kind]
    table = tok.word_start_table()
    assert table.shape == (tok.vocab_size,) and table.dtype == np.bool_
    assert table[tok.special_ids].all()
    text = "the critique of telescopes and quantum bicycles with marmalade"
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) > len(text.split())  # some words are split into pieces
    assert table[ids].sum() == len(text.split()) - (0 if first_word_marked else 1)
    assert table[ids[1:]].sum() == len(text.split()) - 1  # the pieces after the first start each other word


def test_word_start_table_on_known_pieces(trained):
    bpe, _ = trained["bytelevel-bpe"]
    wp, _ = trained["wordpiece"]
    assert bpe.word_start_table()[bpe.tokenizer.token_to_id("Ġthe")]
    assert not bpe.word_start_table()[bpe.tokenizer.token_to_id("the")]
    continuation = next(t for t in wp.tokens("quantum bicycles with marmalade") if t.startswith("##"))
    assert not wp.word_start_table()[wp.tokenizer.token_to_id(continuation)]
    assert wp.word_start_table()[wp.tokenizer.token_to_id("the")]


@pytest.mark.parametrize("kind, space_before_first", [
    ("bytelevel-bpe", 0), ("wordpiece", 1), ("sentencepiece-bpe", 1), ("unigram", 1),
])
def test_byte_length_table_adds_up_to_the_texts_bytes(trained, kind, space_before_first):
    """Bits per byte divide a loss by these lengths: over a text's tokens they add up to its UTF-8
    bytes (plus the space SentencePiece and WordPiece count before the first word)."""
    tok, _ = trained[kind]
    table = tok.byte_length_table()
    assert table.shape == (tok.vocab_size,) and table.dtype == np.int64
    assert (table[tok.special_ids] == 0).all() and (np.delete(table, tok.special_ids) > 0).all()
    text = "the critique of telescopes and quantum bicycles with marmalade"
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) > len(text.split())  # pieces, not whole words
    assert table[ids].sum() == len(text) + space_before_first


def test_byte_length_table_counts_every_byte_of_real_text(trained):
    tok, _ = trained["bytelevel-bpe"]
    table = tok.byte_length_table()
    texts = kant_docs(50) + ["Unseen characters: naïve café — 東京 🙂"]
    for text, ids in zip(texts, tok.encode_batch(texts)):
        assert table[ids].sum() == len(text.encode())


def test_decode_token_gives_readable_pieces(trained):
    bpe, _ = trained["bytelevel-bpe"]
    assert bpe.decode_token(bpe.tokenizer.token_to_id("Ġthe")) == "the"
    assert bpe.decode_token(bpe.mask_id) == "<mask>"
    sp, _ = trained["sentencepiece-bpe"]
    assert sp.decode_token(sp.tokenizer.token_to_id("▁the")) == "the"
    wp, _ = trained["wordpiece"]
    assert wp.decode_token(wp.tokenizer.token_to_id("the")) == "the"


def test_vocab_below_the_corpus_alphabet_is_config_error(tmp_path):
    """Unigram must hold every character; the trainer's bare Exception becomes a ConfigError."""
    with pytest.raises(ConfigError, match="tokenizer.vocab_size=6"):
        train_tokenizer(kant_docs(), TokenizerConfig(kind="unigram", vocab_size=6), tmp_path / "tok", progress=False)
    assert list(tmp_path.iterdir()) == []
