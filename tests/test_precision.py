"""`train.precision auto` on the CPU: native-bf16 detection, its fallbacks, and the choice printed and saved."""

import logging

import pytest
import torch
import yaml

from bertforge import runtime
from bertforge.config import build_config
from bertforge.train.loop import pretrain

CPU = torch.device("cpu")


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\nflags\t\t: fpu {flags}\n")
    return str(path)


@pytest.mark.parametrize("flags, expected", [
    ("avx512f avx512_bf16", True), ("amx_tile amx_bf16", True), ("avx512f avx512bw", False), ("", False)])
def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    assert runtime.cpu_bf16_supported(cpuinfo(tmp_path, flags)) is expected


def test_without_cpu_flags_onednn_decides_and_a_failing_check_means_no(tmp_path, monkeypatch):
    missing = str(tmp_path / "absent")

    class Mkldnn:
        answer = True

        def _is_mkldnn_bf16_supported(self):
            if self.answer is None:
                raise RuntimeError("no oneDNN")
            return self.answer

    fake = Mkldnn()
    monkeypatch.setattr(torch.ops, "mkldnn", fake)
    assert runtime.cpu_bf16_supported(missing) is True
    fake.answer = False
    assert runtime.cpu_bf16_supported(missing) is False
    fake.answer = None
    assert runtime.cpu_bf16_supported(missing) is False


@pytest.mark.parametrize("native, auto_bf16, chosen", [
    (True, True, "bf16"), (True, False, "fp32"), (False, True, "fp32"), (False, False, "fp32")])
def test_auto_precision_on_the_cpu_follows_detection_and_the_measured_default(monkeypatch, native, auto_bf16, chosen):
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: native)
    monkeypatch.setattr(runtime, "CPU_AUTO_BF16", auto_bf16)
    name, reason = runtime.precision_choice("auto", CPU)
    assert name == chosen and reason.startswith("auto: ")
    assert ("no native bf16" in reason) is (not native)
    assert runtime.autocast_dtype("auto", CPU) == runtime.AUTOCAST_DTYPES[chosen]
    assert runtime.precision_choice("bf16", CPU) == ("bf16", "set by train.precision")


@pytest.mark.parametrize("native, chosen", [(True, "bf16"), (False, "fp32")])
def test_pretrain_prints_the_chosen_precision_and_saves_it(data_dir, tmp_path, monkeypatch, caplog, native, chosen):
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: native)
    monkeypatch.setattr(runtime, "CPU_AUTO_BF16", True)
    cfg = build_config(preset="tiny", overrides={
        "data": {"seq_len": 32},
        "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
        "train": {"batch_size": 8, "max_steps": 2, "device": "cpu", "precision": "auto"},
    })
    with caplog.at_level(logging.INFO, logger="bertforge"):
        pretrain(cfg, data_dir, tmp_path / "run", progress=False)
    assert f"precision: {chosen} (auto: " in caplog.text
    assert yaml.safe_load((tmp_path / "run/config.yaml").read_text())["train"]["precision"] == chosen


@pytest.mark.parametrize("native", [True, False])
def test_cpu_budget_recipes_train_in_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    from bertforge.budget import pick_recipe

    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: native)
    recipe = pick_recipe(180, "cpu")
    assert recipe.overrides(180)["train"].get("precision") == ("bf16" if native else None)
    assert any(line == "  train.precision = bf16" for line in recipe.describe(180)) is native
    assert ("bf16 as this CPU has it natively" in recipe.why) is native
    assert "bf16 as this CPU" not in pick_recipe(180, "gpu").why  # GPU recipes are left as they are
