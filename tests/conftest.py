"""Shared test helpers: where the test data lives, and running the CLI as a user does."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"  # small redistributable files, each folder with its PROVENANCE.md


def datafile(rel: str) -> Path:
    """Path of a file in tests/data; a missing one fails the test (never a skip: the data ships with the repo)."""
    path = TEST_DATA / rel
    if not path.exists():
        pytest.fail(f"test data missing: {path} (tests/data is part of the repository)")
    return path


# ---------------------------------------------------------------- skips

# The only parts a machine may lack: hardware and a system browser. Every other skip (missing data, a
# missing Python package of bertforge[dev]) fails the run when BERTFORGE_STRICT_SKIPS=1, as .ci/run sets.
OPTIONAL_PARTS = (
    (re.compile(r"\bCUDA\b|\bGPU\b"), "CUDA tests (no CUDA GPU here; run `make test` on a machine with one)"),
    (re.compile(r"chromium", re.I), "browser test (no chromium: `sudo apt-get install chromium`, as .ci/run does)"),
)
SKIPS: list[tuple[str, str]] = []  # (test id, reason)


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        SKIPS.append((report.nodeid, reason.removeprefix("Skipped: ")))


def optional_part(reason: str) -> str | None:
    return next((part for pattern, part in OPTIONAL_PARTS if pattern.search(reason)), None)


def pytest_sessionfinish(session, exitstatus):
    unexpected = [skip for skip in SKIPS if optional_part(skip[1]) is None]
    if unexpected and os.environ.get("BERTFORGE_STRICT_SKIPS") == "1" and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line: which optional parts were skipped and how to get them; then any other skip, loudly."""
    parts = sorted({part for _, reason in SKIPS if (part := optional_part(reason))})
    terminalreporter.write_line("optional parts skipped: " + ("; ".join(parts) if parts else "none"))
    unexpected = [skip for skip in SKIPS if optional_part(skip[1]) is None]
    if unexpected:
        why = ("not allowed (BERTFORGE_STRICT_SKIPS=1)" if os.environ.get("BERTFORGE_STRICT_SKIPS") == "1"
               else "`pip install -e '.[dev]'` gives every Python part")
        n = len(unexpected)
        terminalreporter.write_line(f"{n} test{'s' * (n != 1)} skipped for another reason, {why}:", red=True, bold=True)
        for nodeid, reason in unexpected[:10]:
            terminalreporter.write_line(f"  {nodeid}: {reason}", red=True)


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m bertforge ARGS` in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "bertforge", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: exit 2, one `error:` line on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), result.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment.lower() in errors[0].lower(), (fragment, errors[0])


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """Shards of real text (TinyStories validation head, 149 KB), tiny byte-level BPE vocabulary (600), 32 tokens."""
    from bertforge.config import CorpusConfig, build_config
    from bertforge.corpus import iter_documents
    from bertforge.shards import prepare
    from bertforge.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("data")
    source = str(datafile("tinystories/tinystories_valid_head.txt"))
    cfg = build_config(preset="tiny", overrides={"tokenizer": {"vocab_size": 600}, "data": {"seq_len": 32}})
    tokenizer = train_tokenizer(iter_documents([source], CorpusConfig()), cfg.tokenizer, root / "tok")
    return prepare([source], tokenizer, cfg.data, cfg.corpus, root / "data", progress=False)


@pytest.fixture(scope="session")
def tiny_run(data_dir, tmp_path_factory):
    """A tiny trained run (hidden 32, 6 steps, evaluations with fill-mask samples at steps 0, 3
    and 6) for the tests that read runs: viz, report, serve, the page in a browser."""
    from bertforge.config import build_config
    from bertforge.train.loop import pretrain

    cfg = build_config(preset="tiny", overrides={
        "data": {"seq_len": 32},
        "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
        "train": {"batch_size": 8, "max_steps": 6, "log_every_steps": 1, "eval_every_steps": 3, "eval_batches": 2},
    })
    out = tmp_path_factory.mktemp("tiny-run") / "run"
    pretrain(cfg, data_dir, out, progress=False)
    return out


def make_causal_run(run_dir: Path, tokenizer, template: str = "", seed: int = 0, **model) -> Path:
    """A causal-LM run folder with random weights (biases and LayerNorms perturbed too), no training."""
    import torch

    from bertforge.config import DataConfig, ModelConfig, RunConfig, TokenizerConfig, TrainConfig, save_config
    from bertforge.files import save_tensors, write_json
    from bertforge.model import MaskedLM

    offset = tokenizer.pad_id + 1 if tokenizer.scheme == "roberta" else 0
    shape = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_seq_len=48)
    cfg = ModelConfig(
        vocab_size=tokenizer.vocab_size, position_offset=offset, pad_id=tokenizer.pad_id, causal=True,
        **{**shape, **model},
    )
    torch.manual_seed(seed)
    net = MaskedLM(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    run_cfg = RunConfig(
        tokenizer=TokenizerConfig(kind=tokenizer.kind, vocab_size=tokenizer.vocab_size),
        data=DataConfig(seq_len=min(32, cfg.max_seq_len), template=template),
        model=cfg,
        train=TrainConfig(objective="clm"),
    )
    save_config(run_dir / "config.yaml", run_cfg)
    tokenizer.save(run_dir / "tokenizer")
    checkpoint = run_dir / "checkpoints" / "step-00000001"
    save_tensors(checkpoint / "model.safetensors", net.state_dict())
    write_json(checkpoint / "trainer.json", {"step": 1, "batches": 1, "tokens": 32, "elapsed_s": 1.0})
    return run_dir


@contextlib.contextmanager
def serving(run_dir: Path):
    """`bertforge serve RUN` on a free loopback port, as a user starts it: yields (port, /api/info,
    the process); stopped with SIGINT on exit (its stderr is then in `process.stderr_text`)."""
    import signal
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "bertforge", "serve", str(run_dir), "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        deadline, info = time.monotonic() + 60, None
        while info is None and time.monotonic() < deadline and server.poll() is None:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).json()
            except httpx.TransportError:
                time.sleep(0.2)
        assert info is not None, server.poll()
        yield port, info, server
    finally:
        server.send_signal(signal.SIGINT)
        _, server.stderr_text = server.communicate(timeout=30)
