"""BERT's second objective (train.objective mlm+nsp / mlm+sop): pair construction, the sentence head
learning a task whose answer is known, exact resume, BertForPreTraining export and the bad settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli
from safetensors.torch import load_file as load_tensors

from bertforge.config import CorpusConfig, build_config
from bertforge.corpus import iter_documents
from bertforge.pairs import build_pairs, pair_arrays, pair_rows, split_sentences
from bertforge.shards import PackedShards, prepare
from bertforge.tokenizer import train_tokenizer
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics

TOLERANCE = 1e-4
BERT_MODEL = {  # a BERT-style tiny model: segment embeddings, positions from 0
    "hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 64,
    "type_vocab_size": 2, "layer_norm_eps": 1e-12,
}


def train_records(run: Path) -> list[tuple]:
    """What must repeat exactly after a resume (not the wall-clock figures)."""
    keys = ("step", "loss", "mlm_loss", "sentence_loss", "lr", "grad_norm", "tokens")
    return [tuple(r[k] for k in keys) for r in read_metrics(run, "train")]


def topics_corpus(path: Path) -> Path:
    """Python's own help topics (they ship with Python), one document per topic, paragraphs joined."""
    from pydoc_data.topics import topics

    path.write_text("\n\n".join(" ".join(text.split()) for text in topics.values()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return topics_corpus(tmp_path_factory.mktemp("topics") / "topics.txt")


@pytest.fixture(scope="module")
def wordpiece(corpus, tmp_path_factory):
    cfg = build_config(preset="tiny", overrides={"tokenizer": {"kind": "wordpiece", "vocab_size": 600}})
    return train_tokenizer(iter_documents([str(corpus)], CorpusConfig()), cfg.tokenizer, tmp_path_factory.mktemp("tok"))


def pair_config(objective: str, **train):
    return build_config(preset="tiny", overrides={
        "data": {"seq_len": 64},
        "model": BERT_MODEL,
        "train": {"objective": objective, "batch_size": 8, "max_steps": 8, "log_every_steps": 1,
                  "eval_every_steps": 4, "eval_batches": 2, "save_every_steps": 2, "keep_last": 10, **train},
    })


@pytest.fixture(scope="module")
def pair_data(corpus, wordpiece, tmp_path_factory):
    """NSP and SOP shards of the topics corpus, 64 tokens."""
    root = tmp_path_factory.mktemp("pairs")
    return {
        kind: prepare([str(corpus)], wordpiece, pair_config(f"mlm+{kind}").data, CorpusConfig(), root / kind, progress=False)
        for kind in ("nsp", "sop")
    }


# ---------------------------------------------------------------- pair construction (pure functions)


def synthetic_docs(num_docs: int = 60, seed: int = 0) -> list[list[list[int]]]:
    """Documents of 3-9 sentences; every token id says its document and sentence: d * 1000 + s * 10 + k,
    and each sentence ends with its own "full stop" k = 9."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(num_docs):
        sentences = []
        for s in range(int(rng.integers(3, 10))):
            length = int(rng.integers(2, 9))
            sentences.append([d * 1000 + s * 10 + k for k in range(length)] + [d * 1000 + s * 10 + 9])
        docs.append(sentences)
    return docs


def doc_of(ids: list[int]) -> set[int]:
    return {t // 1000 for t in ids}


def contiguous(ids: list[int], doc: list[list[int]]) -> bool:
    """`ids` are whole consecutive sentences of `doc`, in order."""
    stream = [t for s in doc for t in s]
    n = len(ids)
    return any(stream[i : i + n] == ids for i in range(len(stream) - n + 1))


def test_split_sentences_at_full_stops_question_and_exclamation_marks():
    text = 'It rains. Does it? "Yes!" (It does.) Version 3.12 is out... e.g.x stays'
    assert split_sentences(text) == ["It rains.", "Does it?", '"Yes!"', "(It does.)", "Version 3.12 is out...", "e.g.x stays"]
    assert split_sentences("One sentence without an end") == ["One sentence without an end"]


@pytest.mark.parametrize("kind", ["nsp", "sop"])
def test_segments_end_on_sentence_boundaries(kind):
    docs = synthetic_docs(150)
    pairs = build_pairs(docs, kind, room=40, rng=np.random.default_rng(0))
    assert len(pairs) > 150
    for a, b, _, _ in pairs:
        assert a and b and len(a) + len(b) <= 40
        assert a[-1] % 10 == 9 and b[-1] % 10 == 9  # each segment ends with a sentence's full stop


@pytest.mark.parametrize("kind", ["nsp", "sop"])
def test_labels_are_half_positive_and_fixed_by_the_seed(kind):
    docs = synthetic_docs(1000)
    pairs = build_pairs(docs, kind, room=40, rng=np.random.default_rng(3))
    labels = np.array([label for _, _, label, _ in pairs])
    assert len(labels) > 1000 and abs(labels.mean() - 0.5) < 0.05  # 50% positives (label 0), binomial noise
    assert build_pairs(docs, kind, room=40, rng=np.random.default_rng(3)) == pairs  # same seed, same pairs
    assert build_pairs(docs, kind, room=40, rng=np.random.default_rng(4)) != pairs


def test_nsp_positives_continue_the_document_and_negatives_come_from_another_one():
    docs = synthetic_docs(30)
    pairs = build_pairs(docs, "nsp", room=40, rng=np.random.default_rng(1))
    for a, b, label, d in pairs:
        assert doc_of(a) == {d} and contiguous(a, docs[d])
        if label == 0:  # B is the text right after A
            assert contiguous(a + b, docs[d])
        else:  # B: whole sentences of one other document, never A's own
            (other,) = doc_of(b)
            assert other != d and contiguous(b, docs[other])
    assert {label for *_, label, _ in pairs} == {0, 1}


def test_sop_negatives_are_exactly_the_swapped_segments():
    docs = synthetic_docs(30)
    pairs = build_pairs(docs, "sop", room=40, rng=np.random.default_rng(2))
    for a, b, label, d in pairs:
        assert doc_of(a + b) == {d}
        if label == 0:
            assert contiguous(a + b, docs[d])
        else:  # the same two segments in the other order
            assert contiguous(b + a, docs[d]) and not contiguous(a + b, docs[d])


@pytest.mark.parametrize("scheme", ["bert", "roberta"])
def test_pair_rows_frame_segments_with_separators_and_segment_ids(scheme):
    ids, seg, labels = pair_rows([([5, 6], [7], 1, 0)], 10, scheme, bos=0, eos=2, pad=1)
    if scheme == "bert":  # [CLS] A [SEP] B [SEP]
        assert ids[0].tolist() == [0, 5, 6, 2, 7, 2, 1, 1, 1, 1]
        assert seg[0].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    else:  # <s> A </s></s> B </s>
        assert ids[0].tolist() == [0, 5, 6, 2, 2, 7, 2, 1, 1, 1]
        assert seg[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert labels.tolist() == [1]


def test_prepared_pairs_decode_to_sentences_of_the_corpus(pair_data, wordpiece):
    shards = PackedShards(pair_data["nsp"], "train")
    assert shards.pairs == "nsp" and shards.seq_len == 64
    seg, labels = pair_arrays(shards, np.arange(len(shards)))
    assert abs(labels.mean() - 0.5) < 0.08
    whole = 0
    for row, s in zip(shards[np.arange(len(shards))], seg):
        sep = np.flatnonzero(row == wordpiece.eos_id)
        assert row[0] == wordpiece.bos_id and len(sep) == 2
        assert not s[: sep[0] + 1].any() and s[sep[0] + 1 : sep[1] + 1].all() and not s[sep[1] + 1 :].any()
        if sep[1] < shards.seq_len - 1:  # not cut to fit: A is whole sentences, ending on . ! or ?
            whole += 1
            assert wordpiece.decode(row[1 : sep[0]].tolist()).rstrip()[-1:] in ".!?\"')]", wordpiece.decode(row.tolist())
    assert whole >= 100


# ---------------------------------------------------------------- training


def test_sop_head_learns_the_order_of_a_synthetic_corpus(tmp_path):
    """Every document is "first ... . last ... ." : the order is known, so the head must learn it;
    the masked LM trains beside it."""
    rng = np.random.default_rng(0)
    words = "red green blue cat dog sun moon tree rock sand wind rain".split()
    docs = [
        f"First {' '.join(rng.choice(words, 4))}. Last {' '.join(rng.choice(words, 4))}."
        for _ in range(600)
    ]
    (tmp_path / "order.txt").write_text("\n".join(docs), encoding="utf-8")
    result = run_cli(
        "pretrain", "--corpus", str(tmp_path / "order.txt"), "--doc-per", "line", "--preset", "tiny",
        "--objective", "mlm+sop", "--set", "tokenizer.kind=wordpiece", "--set", "tokenizer.vocab_size=200", "--seq-len", "24",
        "--set", "model.type_vocab_size=2", "--set", "train.max_steps=600", "--set", "train.eval_every_steps=600",
        "--set", "train.schedule=constant", "--set", "data.val_fraction=0.1",
        "--out", str(tmp_path / "run"), "--quiet",
    )
    assert result.returncode == 0, result.stderr
    first, last = read_metrics(tmp_path / "run", "validation")
    assert first["sentence_accuracy"] < 0.7 and last["sentence_accuracy"] > 0.95, (first, last)
    assert last["masked_accuracy"] > first["masked_accuracy"]
    train = read_metrics(tmp_path / "run", "train")
    assert all("sentence_loss" in r and "mlm_loss" in r for r in train)
    assert train[-1]["loss"] == pytest.approx(train[-1]["mlm_loss"] + train[-1]["sentence_loss"], rel=1e-6)


@pytest.mark.parametrize("kind", ["nsp", "sop"])
def test_resume_equals_uninterrupted_run(kind, pair_data, tmp_path):
    """Killed after the step-4 checkpoint: resuming gives the same losses and bit-identical weights."""
    cfg = pair_config(f"mlm+{kind}")
    run = tmp_path / "run"
    pretrain(cfg, pair_data[kind], run, progress=False)
    records = train_records(run)
    final = load_tensors(run / "checkpoints/step-00000008/model.safetensors")
    for step in (6, 8):
        shutil.rmtree(run / f"checkpoints/step-{step:08d}")
    pretrain(cfg, pair_data[kind], run, resume=True, progress=False)
    assert train_records(run) == records and len(records) == 8
    resumed = load_tensors(run / "checkpoints/step-00000008/model.safetensors")
    assert final.keys() == resumed.keys() and all(torch.equal(final[k], resumed[k]) for k in final)
    assert "sentence.pooler.weight" in final
    validation = read_metrics(run, "validation")
    assert all(0 <= v["sentence_accuracy"] <= 1 and v["masked_accuracy"] >= 0 for v in validation)


# ---------------------------------------------------------------- export to transformers and back


def test_bert_for_pretraining_export_gives_equal_mlm_and_nsp_logits_and_imports_back(pair_data, tmp_path):
    import transformers

    from bertforge.hf.exporter import export_run
    from bertforge.hf.importer import import_hf
    from bertforge.infer import load_run

    cfg = pair_config("mlm+nsp", max_steps=4, save_every_steps=4, eval_every_steps=4)
    pretrain(cfg, pair_data["nsp"], tmp_path / "run", progress=False)
    hf_dir = export_run(tmp_path / "run", tmp_path / "hf")
    theirs = transformers.BertForPreTraining.from_pretrained(hf_dir).eval()
    assert theirs.config.architectures == ["BertForPreTraining"]
    run = load_run(tmp_path / "run", device="cpu")
    shards = PackedShards(pair_data["nsp"], "validation")
    index = np.arange(min(8, len(shards)))
    ids = torch.from_numpy(shards[index])
    seg, labels = pair_arrays(shards, index)
    types = torch.from_numpy(seg.astype(np.int64))
    mask = (ids != shards.pad_id).long()
    with torch.no_grad():
        ours = run.model(ids, mask, token_type_ids=types)
        hf = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
    keep = mask.bool()
    assert (ours.logits - hf.prediction_logits)[keep].abs().max().item() <= TOLERANCE
    assert (ours.sentence_logits - hf.seq_relationship_logits).abs().max().item() <= TOLERANCE

    imported = import_hf(hf_dir, tmp_path / "imported")
    back = load_run(imported, device="cpu")
    assert back.config.model.sentence_head and back.config.train.objective == "mlm+nsp"
    original = load_tensors(sorted((tmp_path / "run/checkpoints").iterdir())[-1] / "model.safetensors")
    again = load_tensors(imported / "checkpoints/step-00000000/model.safetensors")
    assert original.keys() == again.keys() and all(torch.equal(original[k], again[k]) for k in original)


def test_pooler_carries_into_the_text_classifier(pair_data, tmp_path):
    from bertforge.finetune.model import Classifier, load_encoder

    cfg = pair_config("mlm+nsp", max_steps=2, save_every_steps=2, eval_every_steps=2)
    pretrain(cfg, pair_data["nsp"], tmp_path / "run", progress=False)
    state = load_tensors(tmp_path / "run/checkpoints/step-00000002/model.safetensors")
    from bertforge.infer import load_run

    model_cfg = load_run(tmp_path / "run", device="cpu").config.model
    classifier = Classifier(model_cfg, num_labels=3, task="classify")
    load_encoder(classifier, state, "run")
    assert torch.equal(classifier.head.dense.weight, state["sentence.pooler.weight"])
    assert torch.equal(classifier.head.dense.bias, state["sentence.pooler.bias"])


# ---------------------------------------------------------------- bad settings


def test_nsp_on_one_sentence_documents_is_one_error_line(tmp_path):
    lines = [f"Line number {i} says one thing about item {i % 7}." for i in range(300)]
    (tmp_path / "lines.txt").write_text("\n".join(lines), encoding="utf-8")
    result = run_cli(
        "pretrain", "--corpus", str(tmp_path / "lines.txt"), "--doc-per", "line", "--preset", "tiny",
        "--objective", "mlm+nsp", "--set", "tokenizer.vocab_size=300", "--out", str(tmp_path / "run"),
    )
    assert_one_line_error(result, "two or more sentences")


def test_pair_objective_on_plain_shards_is_one_error_line(corpus, wordpiece, tmp_path):
    plain = prepare([str(corpus)], wordpiece, pair_config("mlm").data, CorpusConfig(), tmp_path / "plain", progress=False)
    result = run_cli(
        "pretrain", "--data", str(plain), "--preset", "tiny", "--objective", "mlm+sop", "--set", "model.max_seq_len=64",
        "--out", str(tmp_path / "run"),
    )
    assert_one_line_error(result, "no sentence pairs", "--objective")


def test_init_from_a_run_with_another_objective_keeps_the_encoder(pair_data, corpus, wordpiece, tmp_path):
    """Continued pretraining may add or drop the sentence task: the encoder and MLM head carry over."""
    from dataclasses import replace

    from bertforge.config import load_config
    from bertforge.train.loop import setup

    plain = prepare([str(corpus)], wordpiece, pair_config("mlm").data, CorpusConfig(), tmp_path / "plain", progress=False)
    pretrain(pair_config("mlm+nsp", max_steps=2, eval_every_steps=2), pair_data["nsp"], tmp_path / "nsp", progress=False)
    pretrain(pair_config("mlm", max_steps=2, eval_every_steps=2), plain, tmp_path / "mlm", progress=False)
    for start, objective, data in (("nsp", "mlm", plain), ("mlm", "mlm+sop", pair_data["sop"])):
        weights = load_tensors(tmp_path / start / "checkpoints/step-00000002/model.safetensors")
        base = load_config(tmp_path / start / "config.yaml")  # what `pretrain --init-from` starts from
        cfg = replace(base, train=replace(base.train, objective=objective))
        t = setup(cfg, data, tmp_path / f"{start}-to-{objective}", False, tmp_path / start)
        state = t.model.state_dict()
        assert (t.model.sentence is not None) == (objective != "mlm")
        shared = [k for k in state if not k.startswith("sentence.")]
        assert shared and all(torch.equal(state[k], weights[k]) for k in shared)
