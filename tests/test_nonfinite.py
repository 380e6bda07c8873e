"""Issue 14, item 2 (the readers' side): a model with NaN/inf weights is refused by every command
that would use it (one `error:` line, exit 2), and every `--json` output is strict JSON (RFC 8259:
no NaN or Infinity) in every case."""

from __future__ import annotations

import json
import math
import shutil
import socket

import pytest
import torch

from bertforge.files import load_tensors, save_tensors
from bertforge.finite import dumps, json_safe
from bertforge.checkpoint import MANIFEST, latest_checkpoint, write_manifest
from conftest import assert_one_line_error, make_causal_run, run_cli


def rewrite_weights(run, edit) -> None:
    """Apply `edit(tensors)` to the latest checkpoint's weights, in place, and write its manifest
    again: a checkpoint as written before the divergence guard (or by another tool), not damage."""
    checkpoint = latest_checkpoint(run)
    tensors = load_tensors(checkpoint / "model.safetensors")
    edit(tensors)
    save_tensors(checkpoint / "model.safetensors", tensors)
    if (checkpoint / MANIFEST).is_file():
        write_manifest(checkpoint)


@pytest.fixture(scope="module")
def nan_run(tiny_run, tmp_path_factory):
    """The tiny run with one NaN and one inf in its word embeddings: what a diverged run leaves."""
    run = tmp_path_factory.mktemp("nan") / "run"
    shutil.copytree(tiny_run, run)

    def poison(tensors):
        name = next(k for k in tensors if "embeddings.tokens" in k)
        tensors[name][5, 3] = float("nan")
        tensors[name][7, 0] = float("inf")

    rewrite_weights(run, poison)
    return run


@pytest.fixture(scope="module")
def overflow_run(tiny_run, tmp_path_factory):
    """Finite weights (every value a float32) whose forward pass overflows: an embedding LayerNorm
    gain of 3e38 makes every hidden state inf, so the loss and every score are NaN."""
    run = tmp_path_factory.mktemp("overflow") / "run"
    shutil.copytree(tiny_run, run)

    def blow_up(tensors):
        name = next(k for k in tensors if "embeddings" in k and "norm" in k and k.endswith("weight"))
        tensors[name].fill_(3e38)

    rewrite_weights(run, blow_up)
    return run


def strict_json(text: str):
    """Parse as RFC 8259 JSON: `NaN`, `Infinity` and `-Infinity` are refused."""
    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------- refusal


@pytest.mark.parametrize("command", [
    ("evaluate", "{run}"),
    ("evaluate", "{run}", "--json"),
    ("fill-mask", "{run}", "She <mask> home.", "--json"),
    ("similar", "{run}", "the"),
    ("export", "{run}", "--out", "{tmp}/hf"),
])
def test_a_model_with_nan_weights_is_refused_in_one_line(nan_run, tmp_path, command):
    result = run_cli(*[a.format(run=nan_run, tmp=tmp_path) for a in command])
    assert_one_line_error(result, "weights are not finite", "2 NaN/inf values", "lower train.lr")
    assert result.stdout == ""
    assert not (tmp_path / "hf").exists()  # export writes nothing


def test_pretrain_init_from_a_nan_run_is_refused_before_writing(nan_run, data_dir, tmp_path):
    out = tmp_path / "run"
    result = run_cli("pretrain", "--data", str(data_dir), "--out", str(out), "--init-from", str(nan_run),
                     "--max-steps", "2", "--device", "cpu")
    assert_one_line_error(result, "weights are not finite")
    assert not out.exists()


def test_import_of_a_nan_hugging_face_folder_is_refused(tiny_run, tmp_path):
    hf = tmp_path / "hf"
    assert run_cli("export", str(tiny_run), "--out", str(hf)).returncode == 0
    tensors = load_tensors(hf / "model.safetensors")
    next(v for k, v in tensors.items() if k.endswith("weight")).view(-1)[0] = float("inf")
    save_tensors(hf / "model.safetensors", tensors, metadata={"format": "pt"})
    assert_one_line_error(run_cli("import", str(hf), "--out", str(tmp_path / "run")), "weights are not finite")
    assert not (tmp_path / "run").exists()


def test_serve_refuses_a_nan_model_at_start(nan_run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli("serve", str(nan_run), "--port", str(port), "--device", "cpu", timeout=120)
    assert_one_line_error(result, "weights are not finite")


def test_a_causal_run_with_nan_weights_cannot_generate(data_dir, tmp_path):
    from bertforge.tokenizer import load_tokenizer

    run = make_causal_run(tmp_path / "clm", load_tokenizer(data_dir / "tokenizer"))
    assert run_cli("generate", str(run), "Once", "--max-new-tokens", "3", "--json").returncode == 0
    rewrite_weights(run, lambda t: next(v for k, v in t.items() if k.endswith("weight")).fill_(float("nan")))
    assert_one_line_error(run_cli("generate", str(run), "Once", "--json"), "weights are not finite")


# ---------------------------------------------------------------- strict JSON


def test_finite_weights_that_overflow_give_null_not_nan_in_evaluate_json(overflow_run):
    result = run_cli("evaluate", str(overflow_run), "--json")
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    metrics = strict_json(result.stdout)
    assert metrics["loss"] is None and metrics["perplexity"] is None, metrics
    assert metrics["masked_tokens"] > 0


def test_fill_mask_json_of_an_overflowing_model_is_strict_json(overflow_run):
    result = run_cli("fill-mask", str(overflow_run), "She <mask> home.", "--json")
    assert result.returncode == 0, result.stderr
    candidates = strict_json(result.stdout)[0]
    assert len(candidates) == 5 and all(c["score"] is None for c in candidates), candidates


@pytest.mark.parametrize("command", [
    ("evaluate", "{run}", "--json", "--batches", "2"),
    ("fill-mask", "{run}", "She <mask> home.", "--json"),
    ("similar", "{run}", "the", "--json"),
    ("model", "summary", "--preset", "tiny", "--json"),
    ("tokenizer", "encode", "{run}/tokenizer", "Once upon a time", "--json"),
])
def test_every_json_output_of_a_healthy_run_is_strict_json(tiny_run, command):
    result = run_cli(*[a.format(run=tiny_run) for a in command])
    assert result.returncode == 0, result.stderr
    assert strict_json(result.stdout)


def test_pretrain_json_is_strict_json(data_dir, tmp_path):
    result = run_cli("pretrain", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--preset", "tiny",
                     "--max-steps", "2", "--set", "train.eval_batches=1", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    assert isinstance(strict_json(result.stdout), dict)


def test_dumps_writes_null_for_every_non_finite_number():
    value = {"loss": math.nan, "ppl": math.inf, "low": -math.inf, "rows": [1.5, (math.nan, 2)], "n": 3}
    assert dumps(value, sort_keys=True) == (
        '{"loss": null, "low": null, "n": 3, "ppl": null, "rows": [1.5, [null, 2]]}'
    )
    assert json_safe(torch.tensor(1.0).item()) == 1.0
