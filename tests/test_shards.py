"""Shards: lossless packing, storage dtype, shard boundaries, the split, the cache, safe failure."""

import itertools
import logging
import math

import numpy as np
import pytest
from conftest import datafile
from tokenizers import Tokenizer

from bertforge import files
from bertforge.config import CorpusConfig, DataConfig, TokenizerConfig
from bertforge.corpus import iter_documents
from bertforge.errors import DataError
from bertforge.shards import (
    PackedShards,
    check_compatible,
    load_manifest,
    pack_full,
    pack_line,
    pack_pad,
    prepare,
    split_by_fraction,
    text_draw,
    storage_dtype,
)
from bertforge.tokenizer import TextTokenizer, load_tokenizer, train_tokenizer

SEQ_LEN = 64
CORPUS = CorpusConfig()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    docs = iter_documents([datafile("tinystories/tinystories_valid_head.txt")], CORPUS)
    cfg = TokenizerConfig(vocab_size=1000, max_docs=3000)
    return train_tokenizer(docs, cfg, tmp_path_factory.mktemp("tok") / "tok", progress=False)


@pytest.fixture(scope="module")
def kant():
    return str(datafile("kant/kant.txt"))


def kant_tokens(tok, n=400) -> list[list[int]]:
    docs = list(itertools.islice(iter_documents([datafile("kant/kant.txt")], CORPUS), n))
    return tok.encode_batch(docs)


def strip(row: np.ndarray, tok) -> list[int]:
    """The tokens between a row's bos and its final eos (pads removed)."""
    assert row[0] == tok.bos_id
    body = row[1 : np.flatnonzero(row != tok.pad_id)[-1] + 1]
    assert body[-1] == tok.eos_id
    return body[:-1].tolist()


def data_cfg(**kw) -> DataConfig:
    return DataConfig(**{"seq_len": SEQ_LEN, "val_fraction": 0.0, **kw})


# ---------------------------------------------------------------- pure packing


def test_full_packing_round_trips_the_token_stream(tok):
    docs = kant_tokens(tok)
    rows = np.concatenate(list(pack_full(docs, SEQ_LEN, tok.bos_id, tok.eos_id, tok.pad_id)))
    assert rows.shape[1] == SEQ_LEN and (rows[:, 0] == tok.bos_id).all()
    assert (rows[:-1] != tok.pad_id).all()  # only the last row has padding
    stream = list(itertools.chain.from_iterable(strip(row, tok) for row in rows))
    assert stream == list(itertools.chain.from_iterable(doc + [tok.eos_id] for doc in docs))
    assert len(rows) == math.ceil(len(stream) / (SEQ_LEN - 2))


def test_pad_packing_keeps_each_document_in_its_own_rows(tok):
    docs = kant_tokens(tok)
    per_doc = list(pack_pad(docs, SEQ_LEN, tok.bos_id, tok.eos_id, tok.pad_id))
    assert len(per_doc) == len(docs)
    for doc, rows in zip(docs, per_doc):
        assert rows.shape == (math.ceil(len(doc) / (SEQ_LEN - 2)), SEQ_LEN)
        assert list(itertools.chain.from_iterable(strip(row, tok) for row in rows)) == doc


def test_line_packing_is_one_row_per_document_cut_at_seq_len(tok):
    docs = kant_tokens(tok)
    rows = np.concatenate(list(pack_line(docs, SEQ_LEN, tok.bos_id, tok.eos_id, tok.pad_id)))
    assert len(rows) == len(docs)
    assert any(len(doc) > SEQ_LEN - 2 for doc in docs) and any(len(doc) < SEQ_LEN - 2 for doc in docs)
    for doc, row in zip(docs, rows):
        assert strip(row, tok) == doc[: SEQ_LEN - 2]


def test_empty_documents_produce_no_rows(tok):
    ids = (tok.bos_id, tok.eos_id, tok.pad_id)
    for pack in (pack_full, pack_pad, pack_line):
        assert list(pack([[], []], SEQ_LEN, *ids)) == []
    rows = np.concatenate(list(pack_full([[7, 8], [], [9]], SEQ_LEN, *ids)))
    assert strip(rows[0], tok) == [7, 8, tok.eos_id, 9, tok.eos_id]


def test_storage_dtype_is_uint16_up_to_65535_tokens():
    assert storage_dtype(1000) == np.dtype("<u2")
    assert storage_dtype(65535) == np.dtype("<u2")
    assert storage_dtype(65536) == np.dtype("<u4")
    assert storage_dtype(250_002) == np.dtype("<u4")


# ---------------------------------------------------------------- prepare and read back


def test_prepared_train_split_equals_pure_packing_and_uses_uint16(tok, kant, tmp_path):
    out = prepare([kant], tok, data_cfg(), CORPUS, tmp_path / "data", progress=False)
    shards = PackedShards(out)
    expected = np.concatenate(list(pack_full(kant_tokens(tok, 10**6), SEQ_LEN, tok.bos_id, tok.eos_id, tok.pad_id)))
    assert np.array_equal(shards[:], expected)
    manifest = load_manifest(out)
    assert manifest["dtype"] == "uint16" and manifest["validation_from"] == "none"
    assert (tmp_path / "data" / "train-00000.bin").stat().st_size == len(expected) * SEQ_LEN * 2
    assert shards.num_tokens == manifest["splits"]["train"]["tokens"] == np.count_nonzero(expected != tok.pad_id)
    assert load_tokenizer(out / "tokenizer").fingerprint == tok.fingerprint  # the folder is self-contained


def test_vocab_over_65535_is_stored_as_uint32_with_the_same_ids(tok, kant, tmp_path):
    big = Tokenizer.from_str(tok.tokenizer.to_str())
    big.add_tokens([f"qqxz{i}" for i in range(65_000)])  # ids past 65535 that plain text never hits
    big = TextTokenizer(big, tok.kind, tok.scheme)
    small_dir = prepare([kant], tok, data_cfg(), CORPUS, tmp_path / "small", progress=False)
    big_dir = prepare([kant], big, data_cfg(), CORPUS, tmp_path / "big", progress=False)
    assert load_manifest(big_dir)["dtype"] == "uint32"
    assert np.array_equal(PackedShards(big_dir)[:], PackedShards(small_dir)[:])
    assert (big_dir / "train-00000.bin").stat().st_size == 2 * (small_dir / "train-00000.bin").stat().st_size


def test_many_small_shards_read_back_identical_to_one(tok, kant, tmp_path):
    one = PackedShards(prepare([kant], tok, data_cfg(), CORPUS, tmp_path / "one", progress=False))
    many_dir = prepare([kant], tok, data_cfg(shard_max_sequences=7), CORPUS, tmp_path / "many", progress=False)
    many = PackedShards(many_dir)
    assert len(many.manifest["splits"]["train"]["shards"]) == math.ceil(len(one) / 7) > 1
    assert np.array_equal(many[:], one[:])
    rng = np.random.default_rng(0)
    idx = rng.integers(-len(one), len(one), size=500)
    assert np.array_equal(many[idx], one[idx])
    assert np.array_equal(many[13], one[13]) and many[13].shape == (SEQ_LEN,)
    assert np.array_equal(many[5:40:3], one[5:40:3])
    with pytest.raises(IndexError):
        many[len(one)]


@pytest.mark.parametrize("packing", ["pad", "line"])
def test_pad_and_line_prepare_keep_document_tokens(tok, kant, tmp_path, packing):
    out = prepare([kant], tok, data_cfg(packing=packing), CORPUS, tmp_path / "data", progress=False)
    rows = PackedShards(out)[:]
    docs = kant_tokens(tok, 10**6)
    pack = pack_pad if packing == "pad" else pack_line
    assert np.array_equal(rows, np.concatenate(list(pack(docs, SEQ_LEN, tok.bos_id, tok.eos_id, tok.pad_id))))
    truncated = sum(len(doc) > SEQ_LEN - 2 for doc in docs) if packing == "line" else 0
    assert load_manifest(out)["splits"]["train"]["truncated"] == truncated


def test_line_packing_warns_about_cut_documents(tok, kant, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="bertforge.shards"):
        prepare([kant], tok, data_cfg(packing="line"), CORPUS, tmp_path / "data", progress=False)
    assert "cut" in caplog.text and "data.seq_len" in caplog.text


# ---------------------------------------------------------------- train / validation split


def test_split_by_fraction_draws_each_document_once_at_the_given_rate():
    docs = [f"doc {i}" for i in range(20_000)]
    routed = list(split_by_fraction(docs, 0.1, 0))
    assert [doc for _, doc in routed] == docs  # order kept, nothing lost or repeated
    share = sum(split == "validation" for split, _ in routed) / len(docs)
    assert abs(share - 0.1) < 0.01  # 4.7 standard deviations
    assert routed == list(split_by_fraction(docs, 0.1, 0))
    assert routed != list(split_by_fraction(docs, 0.1, 1))


def test_copies_of_a_document_land_on_one_side_of_the_split():
    docs = [f"doc {i}" for i in range(2_000)]
    routed = list(split_by_fraction(docs + docs[::-1] + docs, 0.2, 5))  # every text three times, reordered
    sides: dict[str, set[str]] = {}
    for split, doc in routed:
        sides.setdefault(doc, set()).add(split)
    assert all(len(split) == 1 for split in sides.values())  # validation never holds a training text
    assert 300 < sum(split == {"validation"} for split in sides.values()) < 500  # ~400 of 2,000
    assert text_draw("doc 7", 5) == text_draw("doc 7", 5) != text_draw("doc 7", 6)


def test_tiny_corpus_still_gets_one_validation_document(caplog):
    docs = ["a", "b", "c"]
    assert all(text_draw(doc, 0) >= 0.01 for doc in docs)  # none drawn: the fallback is what is tested
    with caplog.at_level(logging.WARNING, logger="bertforge.shards"):
        routed = list(split_by_fraction(docs, 0.01, 0))
    assert routed == [("train", "a"), ("train", "b"), ("validation", "c")]
    assert "validation" in caplog.text


def test_validation_split_is_deterministic_under_the_seed(tok, kant, tmp_path):
    def build(name, seed):
        cfg = data_cfg(val_fraction=0.1, seed=seed)
        return prepare([kant], tok, cfg, CORPUS, tmp_path / name, progress=False)

    a, b, c = build("a", 0), build("b", 0), build("c", 1)
    assert (a / "validation-00000.bin").read_bytes() == (b / "validation-00000.bin").read_bytes()
    assert (a / "validation-00000.bin").read_bytes() != (c / "validation-00000.bin").read_bytes()
    splits = load_manifest(a)["splits"]
    total = splits["train"]["documents"] + splits["validation"]["documents"]
    assert total == len(kant_tokens(tok, 10**6))
    assert 0.07 < splits["validation"]["documents"] / total < 0.13  # 1,854 documents: +-4 sd
    assert len(PackedShards(a, "validation")) == splits["validation"]["sequences"] > 0


def test_tiny_corpus_prepare_has_a_validation_document(tok, tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("Once upon a time there was a cat.\n\nThe cat sat.\n\nThe end of the story.\n")
    out = prepare([corpus], tok, data_cfg(val_fraction=0.01), CORPUS, tmp_path / "data", progress=False)
    splits = load_manifest(out)["splits"]
    assert (splits["train"]["documents"], splits["validation"]["documents"]) == (2, 1)


def test_val_sources_become_the_validation_split(tok, kant, tmp_path):
    val = datafile("tinystories/tinystories_valid_head.txt")
    out = prepare([kant], tok, data_cfg(val_fraction=0.5), CORPUS, tmp_path / "data", val_sources=[val], progress=False)
    manifest = load_manifest(out)
    assert manifest["validation_from"] == "val_sources"
    assert manifest["splits"]["validation"]["documents"] == sum(1 for _ in iter_documents([val], CORPUS))
    assert manifest["splits"]["train"]["documents"] == len(kant_tokens(tok, 10**6))


def test_no_validation_split_when_val_fraction_is_zero(tok, kant, tmp_path):
    out = prepare([kant], tok, data_cfg(), CORPUS, tmp_path / "data", progress=False)
    assert "validation" not in load_manifest(out)["splits"]
    with pytest.raises(DataError, match="no 'validation' sequences"):
        PackedShards(out, "validation")


# ---------------------------------------------------------------- cache and failures


def test_second_prepare_reuses_and_a_new_seq_len_rebuilds(tok, kant, tmp_path, monkeypatch, caplog):
    out = prepare([kant], tok, data_cfg(), CORPUS, tmp_path / "data", progress=False)
    mtime = (out / "manifest.json").stat().st_mtime_ns

    def no_encoding(texts):
        raise AssertionError("the cached build was encoded again")

    monkeypatch.setattr(tok, "encode_batch", no_encoding)
    with caplog.at_level(logging.INFO, logger="bertforge.shards"):
        assert prepare([kant], tok, data_cfg(encode_batch_docs=7), CORPUS, out, progress=False) == out
    assert "reusing" in caplog.text
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    monkeypatch.undo()
    prepare([kant], tok, data_cfg(seq_len=32), CORPUS, out, progress=False)
    assert load_manifest(out)["seq_len"] == 32 and PackedShards(out)[0].shape == (32,)


def test_other_tokenizer_is_refused_with_one_line(tok, kant, tmp_path):
    out = prepare([kant], tok, data_cfg(), CORPUS, tmp_path / "data", progress=False)
    check_compatible(load_manifest(out), load_tokenizer(out / "tokenizer"))
    docs = itertools.islice(iter_documents([kant], CORPUS), 500)
    other = train_tokenizer(docs, TokenizerConfig(vocab_size=500), tmp_path / "other", progress=False)
    with pytest.raises(DataError, match=r"made with another tokenizer .*run `bertforge prepare` again") as err:
        check_compatible(load_manifest(out), other)
    assert str(out) in str(err.value) and "\n" not in str(err.value)


def test_exception_mid_build_leaves_no_folder_and_keeps_the_old_one(tok, kant, tmp_path, monkeypatch):
    calls = []

    def failing(texts):
        calls.append(len(texts))
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return TextTokenizer.encode_batch(tok, texts)

    monkeypatch.setattr(tok, "encode_batch", failing)
    with pytest.raises(RuntimeError):
        prepare([kant], tok, data_cfg(encode_batch_docs=50), CORPUS, tmp_path / "data", progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    out = prepare([kant], tok, data_cfg(), CORPUS, tmp_path / "data", progress=False)
    before = (out / "manifest.json").read_bytes()
    calls.clear()
    monkeypatch.setattr(tok, "encode_batch", failing)
    with pytest.raises(RuntimeError):
        prepare([kant], tok, data_cfg(seq_len=32, encode_batch_docs=50), CORPUS, out, progress=False)
    assert (out / "manifest.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_corpus_with_no_training_sequences_is_data_error(tok, tmp_path):
    corpus = tmp_path / "one.txt"
    corpus.write_text("Only one paragraph here.\n")
    with pytest.raises(DataError, match="no training sequences"):
        prepare([corpus], tok, data_cfg(val_fraction=0.5), CORPUS, tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()


def test_prepare_refuses_to_replace_a_folder_that_is_not_a_data_folder(tok, kant, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a bertforge data folder"):
        prepare([kant], tok, data_cfg(), CORPUS, tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_missing_manifest_and_cut_shard_are_data_errors(tok, kant, tmp_path):
    with pytest.raises(DataError, match="run `bertforge prepare` first"):
        load_manifest(tmp_path)
    out = prepare([kant], tok, data_cfg(), CORPUS, tmp_path / "data", progress=False)
    shard = out / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(DataError, match="train-00000.bin: expected"):
        PackedShards(out)


def test_prepare_takes_a_tokenizer_folder_path(tok, kant, tmp_path):
    tok.save(tmp_path / "tok")
    out = prepare(kant, str(tmp_path / "tok"), data_cfg(), CORPUS, tmp_path / "data", progress=False)
    assert load_manifest(out)["tokenizer_fingerprint"] == tok.fingerprint
    assert files.read_json(out / "tokenizer" / "bertforge_tokenizer.json")["fingerprint"] == tok.fingerprint
