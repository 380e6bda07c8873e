"""data.isolate_documents: in a packed row each token attends only to its own document.

A packed row is `bos doc1 eos doc2 eos ... eos`; the document numbers come from the eos alone,
so the same shards serve both settings. Proved here: the numbers, that a document's vectors do
not depend on its neighbours (and do without the setting), that a lone document is computed as
if it were alone, that training, evaluation and resume all use it, and the settings it refuses.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge import api
from bertforge import model as model_module
from bertforge.config import CorpusConfig, build_config
from bertforge.errors import ConfigError
from bertforge.evaluate import attention_mask_for, evaluate_split
from bertforge.files import load_tensors
from bertforge.infer import load_run
from bertforge.masking import masking_vocab
from bertforge.model import MaskedLM, build_model, generator_config, padding_mask
from bertforge.shards import PackedShards, build_key
from bertforge.tokenizer import load_tokenizer
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from conftest import assert_one_line_error, datafile, run_cli
from test_model import tiny

BOS, EOS, PAD = 0, 2, 1


def test_document_numbers_count_the_eos_before_each_token():
    ids = np.array([
        [BOS, 7, 8, EOS, 9, EOS, 10, 11, 12, EOS],  # three documents; the last eos closes the row
        [BOS, 7, 8, 9, EOS, PAD, PAD, PAD, PAD, PAD],  # the padded last row: one document
    ])
    docs = attention_mask_for(ids, PAD, EOS)
    assert docs.tolist() == [[1, 1, 1, 1, 2, 2, 3, 3, 3, 3], [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]]
    # without the setting: the usual 1/0 padding mask
    assert attention_mask_for(ids, PAD).long().tolist() == [[1] * 10, [1] * 5 + [0] * 5]


def test_masks_are_block_diagonal_and_one_document_rows_keep_the_usual_mask():
    docs = torch.tensor([[1, 1, 2, 2, 2, 0]])
    mask = padding_mask(docs)[0, 0]
    assert mask.tolist() == [
        [True, True, False, False, False, False],
        [True, True, False, False, False, False],
        [False, False, True, True, True, False],
        [False, False, True, True, True, False],
        [False, False, True, True, True, False],
        [False, False, False, False, False, True],  # padding sees padding: no empty row, no NaN
    ]
    one = torch.tensor([[1, 1, 1, 0]])
    assert torch.equal(padding_mask(one), padding_mask(one.bool().long()))
    assert padding_mask(torch.ones(2, 4, dtype=torch.long)) is None  # nothing to hide: SDPA's fast path


def rows_with_two_documents(first: list[int]) -> np.ndarray:
    return np.array([[BOS, *first, EOS, 50, 51, 52, 53, EOS]])


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_a_document_does_not_see_its_neighbour(norm):
    torch.manual_seed(0)
    model = MaskedLM(tiny(norm=norm)).eval()
    a, b = rows_with_two_documents([10, 11, 12]), rows_with_two_documents([40, 41, 42])
    second = slice(5, 10)  # the second document's positions
    with torch.no_grad():
        isolated = [model.encoder(torch.from_numpy(r), attention_mask_for(r, PAD, EOS)) for r in (a, b)]
        shared = [model.encoder(torch.from_numpy(r), attention_mask_for(r, PAD)) for r in (a, b)]
        # the first document, alone in a padded row, gives the same vectors as next to the second
        alone = np.array([[BOS, 10, 11, 12, EOS, PAD, PAD, PAD, PAD, PAD]])
        alone_h = model.encoder(torch.from_numpy(alone), attention_mask_for(alone, PAD))
        # the padded last row of a shard with two documents: padding attends to padding, nothing is NaN
        last = np.array([[BOS, 10, 11, 12, EOS, 50, EOS, PAD, PAD, PAD]])
        last_h = model.encoder(torch.from_numpy(last), attention_mask_for(last, PAD, EOS))
    assert torch.allclose(isolated[0][:, second], isolated[1][:, second], atol=1e-6)
    assert not torch.allclose(shared[0][:, second], shared[1][:, second], atol=1e-3)
    assert torch.allclose(isolated[0][:, :5], alone_h[:, :5], atol=1e-5)
    assert torch.isfinite(last_h).all() and torch.allclose(last_h[:, :5], alone_h[:, :5], atol=1e-5)


def test_electra_generator_isolates_documents_too():
    torch.manual_seed(0)
    cfg = tiny(discriminator=True, norm="pre")
    electra = build_model(cfg).eval()
    assert generator_config(cfg).hidden_size < cfg.hidden_size
    outs = []
    for r in (rows_with_two_documents([10, 11, 12]), rows_with_two_documents([40, 41, 42])):
        ids = torch.from_numpy(r)
        with torch.no_grad():
            outs.append(electra.generator(electra.encoder.embeddings(ids), padding_mask(attention_mask_for(r, PAD, EOS))))
    assert torch.allclose(outs[0][:, 5:], outs[1][:, 5:], atol=1e-6)


def isolated_config(**train):
    return build_config(
        preset="tiny",
        overrides={
            "data": {"seq_len": 32, "isolate_documents": True},
            "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
            "train": {"batch_size": 8, "log_every_steps": 1, "eval_batches": 4, "warmup_steps": 3, **train},
        },
    )


def documents_seen(monkeypatch) -> list[int]:
    """The most documents in one row of every mask the encoder builds from here on."""
    seen, build = [], model_module.padding_mask

    def spy(attention_mask):
        seen.append(0 if attention_mask is None else int(attention_mask.max()))
        return build(attention_mask)

    monkeypatch.setattr(model_module, "padding_mask", spy)
    return seen


def test_training_evaluation_and_resume_use_the_setting(data_dir, tmp_path, monkeypatch):
    shards = PackedShards(data_dir, "validation")
    rows = shards[np.arange(32)]
    assert ((rows[:, 1:-1] == shards.eos_id).sum(axis=1) > 0).mean() > 0.25  # a third of the fixture's rows hold two documents or more

    cfg = isolated_config(max_steps=8, save_every_steps=4, eval_every_steps=4, keep_last=5)
    run = tmp_path / "run"
    seen = documents_seen(monkeypatch)
    pretrain(cfg, data_dir, run, progress=False)
    assert max(seen) > 1  # training and its evaluations gave the encoder document numbers
    records = [(r["step"], r["loss"]) for r in read_metrics(run, "train")]
    final = load_tensors(run / "checkpoints/step-00000008/model.safetensors")
    last = read_metrics(run, "validation")[-1]

    # `evaluate` reads the setting from the run: document numbers, and the training's own figure
    seen.clear()
    assert api.evaluate(run, batch_size=8, batches=4)["loss"] == pytest.approx(last["loss"], rel=1e-6)
    assert max(seen) > 1
    seen.clear()
    loaded = load_run(run)
    evaluate_split(loaded.model, shards, masking_vocab(loaded.tokenizer), 8, 4, isolate_documents=False)
    assert max(seen) <= 1  # without it, the usual padding mask (none at all on full rows)

    shutil.rmtree(run / "checkpoints/step-00000008")  # killed between step 4 and 8
    pretrain(cfg, data_dir, run, resume=True, progress=False)
    assert [(r["step"], r["loss"]) for r in read_metrics(run, "train")] == records
    resumed = load_tensors(run / "checkpoints/step-00000008/model.safetensors")
    assert all(torch.equal(final[k], resumed[k]) for k in final)

    # switching it on a resume changes the math: refused like any such setting
    flipped = replace(cfg, data=replace(cfg.data, isolate_documents=False))
    with pytest.raises(ConfigError, match="data.isolate_documents True -> False"):
        pretrain(flipped, data_dir, run, resume=True, progress=False)


def test_the_setting_needs_no_new_shards(data_dir):
    cfg = build_config(preset="tiny", overrides={"data": {"seq_len": 32}})
    on = build_config(preset="tiny", overrides={"data": {"seq_len": 32, "isolate_documents": True}})
    tok = load_tokenizer(Path(data_dir).parent / "tok")
    source = [str(datafile("tinystories/tinystories_valid_head.txt"))]
    assert build_key(source, None, tok, cfg.data, CorpusConfig()) == build_key(source, None, tok, on.data, CorpusConfig())


@pytest.mark.parametrize("objective", ["mlm+nsp", "mlm+sop", "clm"])
def test_objectives_without_packed_documents_refuse_it(objective):
    with pytest.raises(ConfigError, match="data.isolate_documents"):
        build_config(preset="tiny", overrides={"data": {"isolate_documents": True}, "train": {"objective": objective}})


def test_cli_refuses_it_for_sentence_pairs_in_one_line(tmp_path):
    result = run_cli("pretrain", "--corpus", "missing.txt", "--out", str(tmp_path / "run"), "--preset", "tiny",
                     "--set", "data.isolate_documents=true", "--set", "train.objective=mlm+nsp")
    assert_one_line_error(result, "data.isolate_documents", "mlm+nsp")
