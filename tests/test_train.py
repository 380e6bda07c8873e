"""Pretraining: it learns, resume equals an uninterrupted run, checkpoints are safe."""

import json
import shutil

import pytest
import torch

from bertforge.config import build_config
from bertforge.errors import DataError
from bertforge.files import load_tensors
from bertforge.checkpoint import checkpoint_dirs
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics


def tiny_config(**train):
    return build_config(
        preset="tiny",
        overrides={
            "data": {"seq_len": 32},
            "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
            "train": {"batch_size": 8, "log_every_steps": 1, "eval_batches": 4, "warmup_steps": 3, **train},
        },
    )


def train_records(run):
    return [(r["step"], r["loss"]) for r in read_metrics(run, "train")]


def test_training_lowers_validation_loss(data_dir, tmp_path):
    cfg = tiny_config(max_steps=120, eval_every_steps=120, eval_batches=20, lr=3e-3, batch_size=16)
    result = pretrain(cfg, data_dir, tmp_path / "run", progress=False)
    evals = read_metrics(tmp_path / "run", "validation")
    assert [e["step"] for e in evals] == [0, 120]
    assert evals[-1]["loss"] < evals[0]["loss"] - 0.7  # from log(600) = 6.4 (uniform) to well below
    assert evals[-1]["masked_accuracy"] > evals[0]["masked_accuracy"] + 0.02
    assert result["validation"]["loss"] == evals[-1]["loss"]


def test_resume_equals_uninterrupted_run(data_dir, tmp_path):
    """Crash after the step-6 checkpoint: resuming gives the same losses and the same weights."""
    cfg = tiny_config(max_steps=12, save_every_steps=6, eval_every_steps=6, keep_last=5)
    run = tmp_path / "run"
    pretrain(cfg, data_dir, run, progress=False)  # dropout is on: the RNG state must be restored too
    uninterrupted = train_records(run)
    final = load_tensors(run / "checkpoints/step-00000012/model.safetensors")
    evals = [(e["step"], e["loss"]) for e in read_metrics(run, "validation")]

    shutil.rmtree(run / "checkpoints/step-00000012")  # as if killed between step 6 and 12
    pretrain(cfg, data_dir, run, resume=True, progress=False)

    assert train_records(run) == uninterrupted  # exact equality, every step
    assert [(e["step"], e["loss"]) for e in read_metrics(run, "validation")] == evals
    resumed = load_tensors(run / "checkpoints/step-00000012/model.safetensors")
    assert all(torch.equal(final[k], resumed[k]) for k in final)


def test_gradient_accumulation_reads_the_same_sequences_as_a_bigger_batch(data_dir, tmp_path):
    """2 micro-batches of 8 per step consume exactly the sequences of one batch of 16."""
    base = {"max_steps": 3, "eval_every_steps": 100, "save_every_steps": 100}
    for name, train in (("big", {"batch_size": 16}), ("acc", {"batch_size": 8, "grad_accum_steps": 2})):
        pretrain(tiny_config(**base, **train), data_dir, tmp_path / name, progress=False)
    big, acc = read_metrics(tmp_path / "big", "train"), read_metrics(tmp_path / "acc", "train")
    assert [r["tokens"] for r in big] == [r["tokens"] for r in acc]
    state = json.loads((tmp_path / "acc/checkpoints/step-00000003/trainer.json").read_text())
    assert state["batches"] == 6


def test_checkpoints_are_pruned_and_hold_everything_for_resume(data_dir, tmp_path):
    cfg = tiny_config(max_steps=8, save_every_steps=2, eval_every_steps=100, keep_last=2)
    pretrain(cfg, data_dir, tmp_path / "run", progress=False)
    dirs = checkpoint_dirs(tmp_path / "run")
    assert [d.name for d in dirs] == ["step-00000006", "step-00000008"]
    files = sorted(p.name for p in dirs[-1].iterdir())
    assert files == ["manifest.json", "model.safetensors", "optimizer.pt", "rng.pt", "trainer.json"]
    state = json.loads((dirs[-1] / "trainer.json").read_text())
    assert state["step"] == 8 and state["batches"] == 8 and state["tokens"] > 0
    torch.load(dirs[-1] / "optimizer.pt", weights_only=True)  # no pickled code needed
    assert not list((tmp_path / "run" / "checkpoints").glob(".*"))  # no temporary leftovers


def test_existing_run_is_not_overwritten_without_resume(data_dir, tmp_path):
    cfg = tiny_config(max_steps=2, eval_every_steps=100)
    pretrain(cfg, data_dir, tmp_path / "run", progress=False)
    with pytest.raises(DataError, match="--resume"):
        pretrain(cfg, data_dir, tmp_path / "run", progress=False)


def test_token_limit_stops_the_run(data_dir, tmp_path):
    cfg = tiny_config(max_steps=0, max_tokens=2000, eval_every_steps=100)
    result = pretrain(cfg, data_dir, tmp_path / "run", progress=False)
    assert 2000 <= result["tokens"] < 2000 + 8 * 32
