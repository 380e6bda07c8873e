"""`pretrain --budget`: recipe choice, the schedule tied to the clock, resume, and bad input."""

import json
import shutil

import pytest
import yaml

from bertforge.budget import load_recipes, parse_duration, pick_recipe
from bertforge.config import RunConfig, build_config
from bertforge.errors import ConfigError
from bertforge.checkpoint import checkpoint_dirs
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from bertforge.train.schedule import train_lr_factor
from conftest import assert_one_line_error, datafile, run_cli


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5h", 5400), ("45", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "-5m", "0m", "ten minutes"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="bad duration"):
        parse_duration(text)


def test_recipe_is_chosen_by_machine_and_budget():
    assert pick_recipe(600, "cpu").name == "cpu-minutes"
    assert pick_recipe(1800, "cpu").name == "cpu-minutes"
    assert pick_recipe(1801, "cpu").name == "cpu-hours"
    assert pick_recipe(86400, "cpu").name == "cpu-hours"
    assert pick_recipe(2 * 86400, "cpu").name == "cpu-days"
    assert pick_recipe(1800, "gpu").name == "gpu-cramming"


def test_every_recipe_is_a_valid_config_with_its_budget_schedule():
    for recipe in load_recipes():
        cfg = build_config(RunConfig, preset=recipe.preset, recipe=recipe.overrides(3600))
        assert cfg.train.max_time_s == 3600 and cfg.train.max_steps == 0 and cfg.train.max_tokens == 0
        assert cfg.train.recipe == recipe.name
        assert cfg.train.schedule == "linear" and cfg.train.min_lr_ratio == 0.0
        assert recipe.why  # every recipe says why it exists


@pytest.mark.parametrize("budget", ["10m", "1h", "3d"])
def test_cpu_recipes_start_positions_as_sinusoids_and_plain_runs_do_not(budget):
    from bertforge.api import run_config

    cfg, lines = run_config(budget=budget, settings=["train.device=cpu"])
    assert cfg.model.position_init == "sinusoidal" and "  model.position_init = sinusoidal" in lines
    plain, _ = run_config(settings=["train.device=cpu"])
    assert plain.model.position_init == "normal"  # BERT's init unless a recipe (or --set) asks


@pytest.mark.parametrize("objective, isolated", [("mlm", True), ("electra", True), ("clm", False),
                                                 ("mlm+nsp", False), ("mlm+sop", False)])
def test_minute_recipe_numbers_positions_per_document_only_where_rows_pack_documents(objective, isolated):
    """cpu-minutes numbers each packed document's positions from its own start; where rows are not
    packed documents the setting is left out with the isolation it needs, and the recipe says so."""
    from bertforge.api import run_config

    cfg, lines = run_config(budget="10m", settings=[f"train.objective={objective}", "train.device=cpu"])
    assert cfg.train.recipe == "cpu-minutes" and cfg.model.document_positions is isolated
    shown = [line for line in lines if "document_positions" in line]
    assert shown == (["  model.document_positions = True"] if isolated
                     else [f"  model.document_positions: left out (not for train.objective={objective})"])
    hour, _ = run_config(budget="1h", settings=["train.device=cpu"])
    assert not hour.model.document_positions  # measured at 10 minutes only (README)


@pytest.mark.parametrize("objective, isolated", [("mlm", True), ("electra", True), ("clm", False),
                                                 ("mlm+nsp", False), ("mlm+sop", False)])
def test_hour_recipes_isolate_documents_only_where_rows_pack_documents(objective, isolated):
    """cpu-hours isolates the documents of packed rows; a sentence-pair or causal objective gets the rest
    of the recipe, and the printed recipe says what was left out and why."""
    from bertforge.api import run_config

    cfg, lines = run_config(budget="1h", settings=[f"train.objective={objective}", "train.device=cpu"])
    assert cfg.train.recipe == "cpu-hours" and cfg.data.isolate_documents is isolated
    assert cfg.model.norm == "pre"  # the rest of the recipe applies either way
    shown = [line for line in lines if "isolate_documents" in line]
    assert shown == (["  data.isolate_documents = True"] if isolated
                     else [f"  data.isolate_documents: left out (not for train.objective={objective})"])
    # the user's own setting is never dropped: asked for where it cannot apply, it is an error
    if not isolated:
        with pytest.raises(ConfigError, match="data.isolate_documents"):
            run_config(budget="1h", settings=[f"train.objective={objective}", "data.isolate_documents=true"])


def test_lr_reaches_its_floor_exactly_at_the_budget():
    cfg = build_config(RunConfig, preset="small", recipe=pick_recipe(600, "cpu").overrides(600)).train
    warm = cfg.warmup_steps
    assert train_lr_factor(warm - 1, cfg, 0, 0.01) == pytest.approx(1.0)  # end of warmup: the peak
    assert train_lr_factor(warm + 10, cfg, 0, 0.5) == pytest.approx(0.5)
    assert train_lr_factor(warm + 10, cfg, 0, 0.999) == pytest.approx(0.001)
    assert train_lr_factor(warm + 10, cfg, 0, 1.0) == 0.0


def tiny_budget_config(budget_s, **train):
    recipe = pick_recipe(budget_s, "cpu")
    return build_config(
        preset="tiny", recipe=recipe.overrides(budget_s),
        overrides={"data": {"seq_len": 32},
                   "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
                   "train": {"batch_size": 8, "log_every_steps": 1, "eval_batches": 2, "warmup_steps": 0, **train}},
    )


def test_resume_keeps_the_budget_clock(data_dir, tmp_path):
    """Resumed from a mid-run checkpoint, the LR continues from the spent time and the run ends at the budget."""
    budget = 2.0
    cfg = tiny_budget_config(budget, save_every_steps=1, eval_every_steps=10_000, keep_last=10_000)
    run = tmp_path / "run"
    first = pretrain(cfg, data_dir, run, progress=False)
    dirs = checkpoint_dirs(run)
    spent_by_dir = [json.loads((d / "trainer.json").read_text())["elapsed_s"] for d in dirs]
    # the run stops after the step that crosses the budget: at most one step (and its save) late,
    # which a loaded machine makes longer than usual
    one_step = max(later - earlier for earlier, later in zip(spent_by_dir, spent_by_dir[1:]))
    assert budget <= first["elapsed_s"] < budget + max(0.5, 2 * one_step)
    index = next(i for i, spent in enumerate(spent_by_dir) if spent >= 0.3 * budget)
    middle, spent = dirs[index], spent_by_dir[index]
    assert spent < 0.9 * budget
    for later in dirs[index + 1:]:
        shutil.rmtree(later)  # as if the machine stopped after `middle`

    second = pretrain(cfg, data_dir, run, resume=True, progress=False)
    spent_after = [json.loads((d / "trainer.json").read_text())["elapsed_s"] for d in checkpoint_dirs(run)]
    one_step = max(later - earlier for earlier, later in zip(spent_after, spent_after[1:]))
    assert budget <= second["elapsed_s"] < budget + max(0.5, 2 * one_step)
    resumed = [r for r in read_metrics(run, "train") if r["step"] > int(middle.name.split("-")[1])]
    peak = cfg.train.lr
    assert resumed[0]["lr"] <= peak * (1 - spent / budget) + 1e-12  # a fresh clock would give ~peak
    assert resumed[-1]["lr"] <= peak * 0.2  # near the floor when the budget runs out


def test_budget_from_the_cli_prints_and_saves_its_choices(tmp_path):
    corpus = datafile("kant/kant.txt")
    out = tmp_path / "run"
    result = run_cli("pretrain", "--corpus", str(corpus), "--budget", "3s", "--out", str(out),
                     "--set", "tokenizer.vocab_size=600", "--set", "tokenizer.max_docs=2000",
                     "--set", "model.num_layers=1", "--set", "model.norm=post")
    assert result.returncode == 0, result.stderr
    assert "budget 3s on cpu: recipe cpu-minutes" in result.stderr
    assert "model.hidden_dropout = 0.0" in result.stderr
    # the printed recipe shows what the run uses: --set's value, and the recipe's beside it
    assert "  model.norm = post (yours; the recipe's is pre)" in result.stderr
    assert "  model.num_layers = 1 (yours; the recipe's is 2)" in result.stderr
    assert "  train.lr = 0.001\n" in result.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["recipe"] == "cpu-minutes"
    assert saved["train"]["max_time_s"] == 3.0 and saved["train"]["max_steps"] == 0
    assert saved["train"]["lr"] == 1e-3 and saved["model"]["hidden_dropout"] == 0.0  # from the recipe
    assert saved["model"]["norm"] == "post" and saved["model"]["num_layers"] == 1  # --set wins over it


@pytest.mark.parametrize("extra, fragment", [
    (["--budget", "soon"], "bad duration"),
    (["--budget", "10m", "--max-time", "5m"], "drop --max-time"),
    (["--budget", "10m", "--max-steps", "5"], "drop --max-time"),
])
def test_bad_budget_input(tmp_path, extra, fragment):
    result = run_cli("pretrain", "--corpus", str(datafile("kant/kant.txt")), "--out", str(tmp_path / "r"), *extra)
    assert_one_line_error(result, fragment)


def test_resume_refuses_a_new_budget(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("{}\n")
    result = run_cli("pretrain", "--out", str(tmp_path / "r"), "--resume", "--budget", "10m")
    assert_one_line_error(result, "drop --budget")


@pytest.mark.parametrize("objective, masks_30", [("mlm", True), ("mlm+nsp", True), ("mlm+sop", True),
                                                 ("electra", False), ("clm", False)])
@pytest.mark.parametrize("budget", ["10m", "1h", "3d"])
def test_cpu_recipes_mask_30_percent_for_masked_lm_objectives_only(budget, objective, masks_30):
    """The CPU recipes mask 30% of the tokens (measured with a masked LM: README); ELECTRA's generator
    and a causal LM keep the default 15%, and the printed recipe says the setting was left out."""
    from bertforge.api import run_config

    cfg, lines = run_config(budget=budget, settings=[f"train.objective={objective}", "train.device=cpu"])
    assert cfg.masking.mask_prob == (0.3 if masks_30 else 0.15)
    shown = [line for line in lines if "mask_prob" in line]
    assert shown == (["  masking.mask_prob = 0.3"] if masks_30
                     else [f"  masking.mask_prob: left out (not for train.objective={objective})"])
    mine, lines = run_config(budget=budget, settings=["masking.mask_prob=0.2", "train.device=cpu"])
    assert mine.masking.mask_prob == 0.2 and "  masking.mask_prob = 0.2 (yours; the recipe's is 0.3)" in lines
    plain, _ = run_config(settings=["train.device=cpu"])
    assert plain.masking.mask_prob == 0.15  # BERT's rate unless a recipe (or --set) asks
