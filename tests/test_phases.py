"""Sequence-length phases (data.phases): shards at each length from the same documents, one LR
schedule across the switch, exact resume in either phase, and the bad settings."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from conftest import assert_one_line_error, run_cli
from safetensors.torch import load_file as load_tensors
from test_pairs import topics_corpus, train_records

from bertforge.config import CorpusConfig, build_config
from bertforge.corpus import iter_documents
from bertforge.files import read_json
from bertforge.shards import PackedShards, prepare
from bertforge.tokenizer import train_tokenizer
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from bertforge.train.schedule import train_lr_factor

PHASES = [{"seq_len": 32, "until": 0.5}, {"seq_len": 64}]
PHASES_SET = "data.phases=[{seq_len: 32, until: 0.5}, {seq_len: 64}]"


def phase_config(objective: str = "mlm", **train):
    return build_config(preset="tiny", overrides={
        "tokenizer": {"kind": "wordpiece", "vocab_size": 600},
        "data": {"phases": PHASES},
        "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 64, "type_vocab_size": 2},
        "train": {"objective": objective, "batch_size": 8, "max_steps": 8, "warmup_steps": 3, "log_every_steps": 1,
                  "eval_every_steps": 4, "eval_batches": 2, "save_every_steps": 2, "keep_last": 10, **train},
    })


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return topics_corpus(tmp_path_factory.mktemp("topics") / "topics.txt")


@pytest.fixture(scope="module")
def phase_data(corpus, tmp_path_factory):
    """Shards at 32 and 64 tokens, plain (mlm) and as NSP pairs."""
    root = tmp_path_factory.mktemp("phases")
    cfg = phase_config()
    tok = train_tokenizer(iter_documents([str(corpus)], CorpusConfig()), cfg.tokenizer, root / "tok")
    return {
        objective: prepare([str(corpus)], tok, phase_config(objective).data, CorpusConfig(), root / objective, progress=False)
        for objective in ("mlm", "mlm+nsp")
    }


def test_config_reads_phases_from_set_and_starts_with_the_first_length():
    cfg = build_config(preset="tiny", overrides=[PHASES_SET, "model.max_seq_len=64"])
    assert cfg.data.phases == [{"seq_len": 32, "until": 0.5}, {"seq_len": 64, "until": 1.0}]
    assert cfg.data.seq_len == 32


def test_shards_at_each_length_come_from_the_same_documents(phase_data):
    short, long = PackedShards(phase_data["mlm"], "train"), PackedShards(phase_data["mlm"] / "seq-64", "train")
    assert (short.seq_len, long.seq_len) == (32, 64)
    a, b = short.manifest, long.manifest
    assert a["phases"] == {"64": "seq-64"} and a["corpus"] == b["corpus"]
    assert a["tokenizer_fingerprint"] == b["tokenizer_fingerprint"]
    for split in ("train", "validation"):
        assert a["splits"][split]["documents"] == b["splits"][split]["documents"]
        assert a["splits"][split]["tokens"] - 2 * a["splits"][split]["sequences"] == \
            b["splits"][split]["tokens"] - 2 * b["splits"][split]["sequences"]  # the same text, framed differently


def test_switch_is_logged_and_the_schedule_runs_on(phase_data, tmp_path, caplog):
    cfg = phase_config()
    with caplog.at_level(logging.INFO, logger="bertforge.train.phases"):
        pretrain(cfg, phase_data["mlm"], tmp_path / "run", progress=False)
    assert "phase 2/2: step 4, sequences of 64 tokens" in caplog.text
    records = read_metrics(tmp_path / "run", "train")
    assert [r["lr"] for r in records] == [cfg.train.lr * train_lr_factor(s, cfg.train, 8) for s in range(8)]
    per_step = [b["tokens"] - a["tokens"] for a, b in zip(records, records[1:])]
    assert max(per_step[:3]) <= 8 * 32 < min(per_step[4:])  # 32-token rows, then 64-token rows


@pytest.mark.parametrize("objective", ["mlm", "mlm+nsp"])
@pytest.mark.parametrize("crash_after", [2, 6], ids=["in-phase-1", "in-phase-2"])
def test_resume_in_either_phase_equals_uninterrupted_run(objective, crash_after, phase_data, tmp_path):
    cfg = phase_config(objective)
    run = tmp_path / "run"
    pretrain(cfg, phase_data[objective], run, progress=False)
    records = train_records_any(run)
    final = load_tensors(run / "checkpoints/step-00000008/model.safetensors")
    for step in range(crash_after + 2, 9, 2):
        shutil.rmtree(run / f"checkpoints/step-{step:08d}")
    pretrain(cfg, phase_data[objective], run, resume=True, progress=False)
    assert train_records_any(run) == records and len(records) == 8
    resumed = load_tensors(run / "checkpoints/step-00000008/model.safetensors")
    assert final.keys() == resumed.keys() and all(torch.equal(final[k], resumed[k]) for k in final)


def train_records_any(run):
    """train_records of test_pairs, for runs with or without the sentence loss."""
    records = read_metrics(run, "train")
    if "sentence_loss" in records[0]:
        return train_records(run)
    return [(r["step"], r["loss"], r["lr"], r["grad_norm"], r["tokens"]) for r in records]


# ---------------------------------------------------------------- bad settings


def pretrain_cli(corpus, tmp_path, *sets: str):
    args = [arg for s in sets for arg in ("--set", s)]
    return run_cli("pretrain", "--corpus", str(corpus), "--preset", "tiny", *args, "--out", str(tmp_path / "run"))


def test_phases_that_do_not_cover_the_run_are_one_error_line(corpus, tmp_path):
    result = pretrain_cli(corpus, tmp_path, "data.phases=[{seq_len: 32, until: 0.5}, {seq_len: 64, until: 0.8}]")
    assert_one_line_error(result, "do not cover the run")
    assert not (tmp_path / "run").exists()


def test_phase_longer_than_the_position_table_is_one_error_line(corpus, tmp_path):
    result = pretrain_cli(corpus, tmp_path, "data.phases=[{seq_len: 64, until: 0.9}, {seq_len: 512}]")
    assert_one_line_error(result, "512-token phase", "model.max_seq_len")


@pytest.mark.parametrize("phases, message", [
    ("[{seq_len: 32, until: 0.6}, {seq_len: 48, until: 0.4}, {seq_len: 64}]", "rise"),
    ("[{seq_len: 32}, {seq_len: 64}]", "needs until"),
    ("[{seq_len: 4, until: 0.5}, {seq_len: 64}]", "seq_len must be an integer >= 8"),
    ("[{seq_len: 32, untill: 0.5}, {seq_len: 64}]", "unknown key 'untill'"),
    ("128", "must be a list"),
])
def test_malformed_phase_lists_are_one_error_line(phases, message, corpus, tmp_path):
    assert_one_line_error(pretrain_cli(corpus, tmp_path, f"data.phases={phases}"), message)


def test_phases_need_max_steps(corpus, tmp_path):
    result = pretrain_cli(corpus, tmp_path, PHASES_SET, "train.max_steps=0", "train.max_tokens=5000")
    assert_one_line_error(result, "train.max_steps")


def test_phases_on_data_without_the_longer_shards_are_one_error_line(phase_data, tmp_path):
    plain = phase_data["mlm"] / "seq-64"  # a data folder of 64-token rows only
    result = run_cli(
        "pretrain", "--data", str(plain), "--preset", "tiny", "--set", PHASES_SET, "--set", "tokenizer.kind=wordpiece",
        "--out", str(tmp_path / "run"),
    )
    assert_one_line_error(result, "data.phases needs [32, 64]")
    assert read_json(plain / "manifest.json")["seq_len"] == 64
