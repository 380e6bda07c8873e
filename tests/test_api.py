"""The Python API (bertforge/api.py) does what the CLI does, and the shared helpers the refactor
introduced (folder kinds, atomic folders, the one optimizer step) behave as their callers rely on."""

from __future__ import annotations

import json

import pytest
import torch

import bertforge
from bertforge import api
from bertforge.checkpoint import checkpoint_problem, latest_checkpoint
from bertforge.errors import ConfigError, DataError
from bertforge.files import atomic_dir, load_tensors
from bertforge.folders import FINETUNED, HF, RUN, folder_kind, kind_or_none
from bertforge.train.optim import optimizer_step
from conftest import assert_one_line_error, datafile, run_cli

TINY = {"model.hidden_size": 32, "model.intermediate_size": 64, "model.num_heads": 4, "model.max_seq_len": 32,
        "data.seq_len": 32, "tokenizer.vocab_size": 400, "train.batch_size": 8, "train.eval_batches": 1,
        "train.log_every_steps": 2, "train.eval_every_steps": 4, "train.warmup_steps": 2}


def test_bits_per_byte_is_the_loss_per_byte_of_the_masked_text(tiny_run):
    """`evaluate` divides the summed loss by the bytes behind the masked tokens (in bits): with a
    table of one byte per token it is the loss in bits, with the tokenizer's it is smaller."""
    import dataclasses
    import math

    from bertforge.evaluate import evaluate_split
    from bertforge.folders import run_data_dir
    from bertforge.masking import masking_vocab
    from bertforge.shards import PackedShards

    run = api.load_run(tiny_run)
    val = PackedShards(run_data_dir(tiny_run), "validation")
    vocab = masking_vocab(run.tokenizer)
    real = evaluate_split(run.model, val, vocab, 4, 2)
    ones = dataclasses.replace(vocab, byte_length=torch.ones_like(vocab.byte_length))
    per_token = evaluate_split(run.model, val, ones, 4, 2)
    assert per_token["loss"] == real["loss"]
    assert per_token["bits_per_byte"] == pytest.approx(real["loss"] / math.log(2), rel=1e-12)
    table = torch.as_tensor(run.tokenizer.byte_length_table())
    longest = table.max().item()
    assert real["loss"] / math.log(2) / longest <= real["bits_per_byte"] < real["loss"] / math.log(2)
    assert api.evaluate(tiny_run, batch_size=4, batches=2)["bits_per_byte"] == pytest.approx(real["bits_per_byte"])


def cli_sets(settings: dict) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def test_api_pretrain_equals_the_cli_bit_for_bit(tmp_path):
    """`bertforge.pretrain(corpus=..., out=...)` is what `bertforge pretrain --corpus ...` runs."""
    corpus = str(datafile("kant/kant.txt"))
    result = bertforge.pretrain(corpus=corpus, out=tmp_path / "api", preset="tiny", settings=TINY, max_steps=4,
                                progress=False)
    assert result["step"] == 4 and result["validation"]["loss"] > 0
    r = run_cli("pretrain", "--corpus", corpus, "--out", str(tmp_path / "cli"), "--preset", "tiny",
                *cli_sets(TINY), "--max-steps", "4", "--quiet")
    assert r.returncode == 0, r.stderr
    ours = load_tensors(latest_checkpoint(tmp_path / "api") / "model.safetensors")
    theirs = load_tensors(latest_checkpoint(tmp_path / "cli") / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # and the evaluation through the API is the CLI's, number for number
    r = run_cli("evaluate", str(tmp_path / "cli"), "--json", "--batches", "2")
    assert r.returncode == 0, r.stderr
    assert api.evaluate(tmp_path / "api", batches=2) == pytest.approx(json.loads(r.stdout))


def test_api_resume_and_errors_are_the_clis(tmp_path):
    corpus = str(datafile("kant/kant.txt"))
    with pytest.raises(ConfigError, match="give either --data"):
        bertforge.pretrain(out=tmp_path / "none", preset="tiny")
    with pytest.raises(ConfigError, match="nothing to resume"):
        bertforge.pretrain(out=tmp_path / "none", resume=True)
    with pytest.raises(ConfigError, match="--budget sets when training stops"):
        api.run_config(budget="10m", max_steps=5)
    bertforge.pretrain(corpus=corpus, out=tmp_path / "run", preset="tiny", settings=TINY, max_steps=4, progress=False)
    bertforge.pretrain(out=tmp_path / "run", resume=True, settings={"train.max_steps": 6}, progress=False,
                       allow_changed_settings=True)
    assert latest_checkpoint(tmp_path / "run").name == "step-00000006"


def test_settings_in_three_spellings_are_one_config():
    nested = api.run_config("tiny", settings={"train": {"lr": 1e-3}, "model": {"num_layers": 1}})[0]
    flat = api.run_config("tiny", settings={"train.lr": 1e-3, "model.num_layers": 1})[0]
    strings = api.run_config("tiny", settings=["train.lr=1e-3", "model.num_layers=1"])[0]
    assert nested == flat == strings
    assert nested.train.lr == 1e-3 and nested.model.num_layers == 1
    with pytest.raises(ConfigError):
        api.run_config("tiny", settings="train.lr=1e-3")  # a bare string is a mistake, not 11 settings


def test_a_stop_limit_given_to_the_api_is_the_only_one():
    cfg, _ = api.run_config("small", max_time="30m")
    assert (cfg.train.max_steps, cfg.train.max_tokens, cfg.train.max_time_s) == (0, 0, 1800.0)
    cfg, _ = api.run_config("small", max_time="30m", settings={"train.max_steps": 7})  # settings win
    assert (cfg.train.max_steps, cfg.train.max_time_s) == (7, 1800.0)


def test_budget_recipe_lines_come_back_with_the_config():
    cfg, lines = api.run_config(budget="10m", settings={"train.device": "cpu"})
    assert cfg.train.max_time_s == 600 and lines


# ---------------------------------------------------------------- one module decides folder kinds


def test_folder_kinds_and_what_each_reader_accepts(tiny_run, tmp_path):
    assert folder_kind(tiny_run) == RUN and kind_or_none(tmp_path) is None
    (tmp_path / "ft").mkdir()
    for name in ("labels.json", "config.yaml"):  # a fine-tuned folder has a config.yaml too
        (tmp_path / "ft" / name).write_text("{}")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert kind_or_none(tmp_path / "ft") == FINETUNED and kind_or_none(tmp_path / "hf") == HF
    with pytest.raises(DataError, match=r"expected a bertforge run \(config.yaml\); it is a fine-tuned folder"):
        folder_kind(tmp_path / "ft", (RUN,), "--init-from")
    with pytest.raises(DataError, match="no such folder"):
        folder_kind(tmp_path / "missing")
    # the CLI says the same in one line, for every reader
    assert_one_line_error(run_cli("fill-mask", str(tmp_path / "hf"), "a <mask>"), "expected a bertforge run")
    assert_one_line_error(run_cli("export", str(tmp_path / "hf"), "--out", str(tmp_path / "x")),
                          "expected a bertforge run (config.yaml) or a fine-tuned folder")


# ---------------------------------------------------------------- shared helpers


def test_atomic_dir_replaces_whole_or_leaves_the_old_folder(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("disk full halfway")
    assert (final / "a.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no scratch folder left behind


def test_optimizer_step_clips_applies_or_skips():
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = model.weight.detach().clone()
    model(torch.ones(1, 4)).sum().mul(100).backward()
    norm, applied = optimizer_step(optimizer, model.parameters(), 1.0, accept=lambda n: False)
    assert not applied and norm > 1 and torch.equal(model.weight, before)
    assert all(p.grad is None for p in model.parameters())  # cleared even when skipped
    model(torch.ones(1, 4)).sum().mul(100).backward()
    bias_before = model.bias.detach().clone()
    norm, applied = optimizer_step(optimizer, model.parameters(), 1.0)
    assert applied and norm > 1
    moved = torch.cat([(before - model.weight.detach()).flatten(), bias_before - model.bias.detach()])
    assert moved.norm() == pytest.approx(1.0, rel=1e-5)  # SGD with lr 1 moves by the clipped gradient: norm 1


def test_imported_run_checkpoint_is_written_by_the_checkpoint_module(tiny_run, tmp_path):
    """HF import writes step 0 through checkpoint.py: it has a manifest and passes the same check."""
    hf = bertforge.export(tiny_run, tmp_path / "hf")
    run = bertforge.import_hf(hf, tmp_path / "imported")
    step0 = latest_checkpoint(run)
    assert (step0 / "manifest.json").is_file() and checkpoint_problem(step0, for_training=False) is None
