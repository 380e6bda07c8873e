"""A run that lasts days: signals, divergence, damaged checkpoints, a second launch, changed settings.

Each fault is tried as a user meets it (a real `bertforge pretrain` process where it matters), and
the standard is the kill -9 one: what resumes is bit-identical to a run that never broke.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from bertforge.config import build_config
from bertforge.errors import DataError, DivergedError
from bertforge.files import LOCK_FILE, load_tensors
from bertforge.checkpoint import checkpoint_dirs, checkpoint_problem, latest_intact_checkpoint
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from conftest import assert_one_line_error, datafile, run_cli

SHAPE = ["--preset", "tiny", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64",
         "--set", "model.num_heads=4", "--set", "model.max_seq_len=32", "--set", "data.seq_len=32", "--set", "train.batch_size=8",
         "--set", "train.eval_batches=2", "--set", "train.log_every_steps=1", "--set", "train.warmup_steps=3"]


def tiny_config(**train):
    return build_config(preset="tiny", overrides={
        "data": {"seq_len": 32},
        "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
        "train": {"batch_size": 8, "log_every_steps": 1, "eval_batches": 2, "warmup_steps": 3, **train},
    })


def final_weights(run):
    return load_tensors(checkpoint_dirs(run)[-1] / "model.safetensors")


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def cli(*args):
    return [sys.executable, "-m", "bertforge", *args]


def start(args, env=None):
    """A `bertforge` process in the background, as a user's terminal or a scheduler starts it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_step(run, step, proc, timeout=120):
    """Until metrics.jsonl has a train record at `step` or later (the process must still be running)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {proc.stderr.read()}")
        if any(r["step"] >= step for r in read_metrics(run, "train")):  # a line being written is left out
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


# ---------------------------------------------------------------- signals


@pytest.fixture(scope="module")
def unbroken(data_dir, tmp_path_factory):
    """The reference: the same 300 steps with no interruption (dropout on: RNG state matters)."""
    run = tmp_path_factory.mktemp("unbroken") / "run"
    r = subprocess.run(cli("pretrain", "--data", str(data_dir), "--out", str(run), *SIGNAL_RUN, "--quiet"),
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    return final_weights(run)


SIGNAL_RUN = [*SHAPE, "--max-steps", "300", "--set", "train.save_every_steps=100000", "--set",
              "train.eval_every_steps=100000"]


@pytest.mark.parametrize("signum, seed", [(signal.SIGINT, 1), (signal.SIGTERM, 2), (signal.SIGINT, 3)])
def test_signal_saves_an_exact_checkpoint_and_resume_is_bit_identical(data_dir, tmp_path, unbroken, signum, seed):
    run = tmp_path / "run"
    proc = start(["pretrain", "--data", str(data_dir), "--out", str(run), *SIGNAL_RUN])
    wait_for_step(run, random.Random(seed).randint(5, 150), proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert f"interrupted ({signal.Signals(signum).name}) at step" in err
    state = json.loads((checkpoint_dirs(run)[-1] / "trainer.json").read_text())
    assert state["batches"] == state["step"] < 300  # the counters describe exactly the state saved
    r = subprocess.run(cli("pretrain", "--out", str(run), "--resume", "--quiet"), capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert same_weights(final_weights(run), unbroken)


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    args = [*SHAPE, "--max-steps", "100000", "--set", "train.save_every_steps=5", "--set", "train.eval_every_steps=100000",
            "--set", "train.schedule=constant"]  # so that --resume --max-steps 1 below changes no math
    proc = start(["pretrain", "--data", str(data_dir), "--out", str(run), *args])
    wait_for_step(run, 12, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
    assert all(checkpoint_problem(d, for_training=True) is None for d in checkpoint_dirs(run))
    r = run_cli("pretrain", "--out", str(run), "--resume", "--max-steps", "1", "--quiet")  # nothing lost: resumable
    assert r.returncode == 0, r.stderr


def test_sigterm_during_prepare_removes_the_half_built_folder(data_dir, tmp_path):
    """A scheduler's SIGTERM (or `kill`) outside a training loop unwinds like Ctrl-C: no hidden
    `.out.tmp-*` scratch folder is left beside the output, and the exit says so (128 + 15)."""
    corpus = tmp_path / "big.txt"
    corpus.write_text(datafile("kant/kant.txt").read_text() * 40)  # 14 MB: seconds of encoding
    out = tmp_path / "out"
    proc = start(["prepare", "--corpus", str(corpus), "--tokenizer", str(data_dir.parent / "tok"), "--out", str(out)])
    deadline = time.time() + 120
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]:  # the data folder is being built
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]  # no output, no scratch folder


def test_the_cli_puts_back_the_sigterm_handler_it_found():
    from bertforge.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert main(["tokenizer", "train", "--corpus", "/no/such/file.txt", "--out", "/tmp/x", "--quiet"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------- divergence


def all_checkpoints_finite(run) -> bool:
    return all(
        bool(torch.isfinite(t).all()) for d in checkpoint_dirs(run)
        for t in load_tensors(d / "model.safetensors").values()
    )


def test_a_rank_told_of_a_peers_signal_still_takes_its_own_first_signal_as_the_first():
    """torchrun: the ranks agree to stop on rank 0's signal; rank 1's own copy of the scheduler's
    signal, arriving a moment later, must not count as the "second signal" that abandons the save
    (rank 0 would wait in the save's collective for a rank that left). Its own second one still does."""
    from bertforge.train.guard import StopFlag

    flag = StopFlag()
    flag.stop_for_peer()
    assert flag.raised() and flag.signum == signal.SIGTERM
    flag.handle(signal.SIGINT, None)  # its own first signal: noted, no interrupt
    assert flag.signum == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        flag.handle(signal.SIGINT, None)


def test_one_nan_step_is_skipped_and_the_run_finishes_finite(data_dir, tmp_path):
    run = tmp_path / "run"
    pretrain(tiny_config(max_steps=20, save_every_steps=5, eval_every_steps=10, debug_nan_at_step=7), data_dir, run,
             progress=False)
    guard = read_metrics(run, "guard")
    assert [(g["step"], g["event"]) for g in guard] == [(8, "skipped")]
    train = {r["step"]: r for r in read_metrics(run, "train")}
    assert train[8]["loss"] is None and train[8]["skipped_steps"] == 1  # no NaN in metrics.jsonl
    state = json.loads((checkpoint_dirs(run)[-1] / "trainer.json").read_text())
    assert (state["step"], state["skipped_steps"], state["rollbacks"]) == (20, 1, 0)
    assert all_checkpoints_finite(run)
    json.loads("[" + ",".join((run / "metrics.jsonl").read_text().splitlines()) + "]")  # RFC 8259 (no NaN)


def test_bad_steps_in_a_row_roll_back_with_a_lower_lr(data_dir, tmp_path):
    run, reference = tmp_path / "run", tmp_path / "reference"
    settings = dict(max_steps=16, save_every_steps=5, eval_every_steps=100, keep_last=10, schedule="constant")
    pretrain(tiny_config(**settings), data_dir, reference, progress=False)
    pretrain(tiny_config(**settings, debug_nan_at_step=7, debug_nan_steps=3), data_dir, run, progress=False)
    rollback = [g for g in read_metrics(run, "guard") if g["event"] == "rollback"]
    assert len(rollback) == 1
    assert (rollback[0]["from_step"], rollback[0]["checkpoint"], rollback[0]["lr_scale"]) == (10, "step-00000005", 0.5)
    lrs = {r["step"]: r["lr"] for r in read_metrics(run, "train")}
    reference_lrs = {r["step"]: r["lr"] for r in read_metrics(reference, "train")}
    assert lrs[5] == reference_lrs[5] and lrs[6] == reference_lrs[6] / 2  # halved from the rollback on
    state = json.loads((checkpoint_dirs(run)[-1] / "trainer.json").read_text())
    assert (state["step"], state["rollbacks"], state["lr_scale"], state["skipped_steps"]) == (16, 1, 0.5, 3)
    assert all_checkpoints_finite(run)


def test_exhausted_rollbacks_stop_with_one_error_and_finite_checkpoints(data_dir, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(max_steps=30, save_every_steps=5, debug_nan_at_step=7, debug_nan_steps=3, max_rollbacks=0)
    with pytest.raises(DivergedError, match="training diverged"):
        pretrain(cfg, data_dir, run, progress=False)
    assert [d.name for d in checkpoint_dirs(run)] == ["step-00000005"] and all_checkpoints_finite(run)


def test_a_huge_lr_ends_in_one_error_line_and_nothing_non_finite_on_disk(data_dir, tmp_path):
    run = tmp_path / "run"
    r = run_cli("pretrain", "--data", str(data_dir), "--out", str(run), *SHAPE, "--max-steps", "40",
                "--set", "train.lr=1000", "--set", "train.save_every_steps=2")
    assert r.returncode == 2, r.stderr
    assert_one_line_error(r, "diverged")
    assert all_checkpoints_finite(run)
    for bad in ("nan", "inf"):
        r = run_cli("pretrain", "--data", str(data_dir), "--out", str(tmp_path / bad), *SHAPE, "--set", f"train.lr={bad}")
        assert_one_line_error(r, "train.lr")


# ---------------------------------------------------------------- damaged checkpoints


@pytest.fixture(scope="module")
def three_checkpoints(data_dir, tmp_path_factory):
    """A run with checkpoints at steps 4, 8 and 12, and the weights an unbroken run ends with."""
    run = tmp_path_factory.mktemp("damage") / "run"
    pretrain(tiny_config(max_steps=12, save_every_steps=4, eval_every_steps=100, keep_last=5), data_dir, run,
             progress=False)
    return run, final_weights(run)


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero_middle(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


DAMAGE = {
    "model truncated": lambda c: truncate(c / "model.safetensors"),
    "model emptied": lambda c: (c / "model.safetensors").write_bytes(b""),
    "model bytes zeroed, same size": lambda c: zero_middle(c / "model.safetensors"),
    "optimizer missing": lambda c: (c / "optimizer.pt").unlink(),
    "optimizer truncated": lambda c: truncate(c / "optimizer.pt"),
    "trainer.json missing": lambda c: (c / "trainer.json").unlink(),
    "rng missing": lambda c: (c / "rng.pt").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_latest_checkpoint_is_named_and_the_newest_intact_one_used(three_checkpoints, tmp_path, damage, caplog):
    source, _ = three_checkpoints
    run = tmp_path / "run"
    shutil.copytree(source, run)
    DAMAGE[damage](run / "checkpoints/step-00000012")
    with caplog.at_level("WARNING", logger="bertforge"):
        assert latest_intact_checkpoint(run, for_training=True).name == "step-00000008"
    assert "step-00000012 is damaged" in caplog.text


def test_resume_falls_back_and_is_still_exact(three_checkpoints, tmp_path):
    source, unbroken_final = three_checkpoints
    run = tmp_path / "run"
    shutil.copytree(source, run)
    zero_middle(run / "checkpoints/step-00000012/model.safetensors")  # silent before: a worse model, no word
    (run / "checkpoints/.step-00000016.tmp-abc").mkdir()  # as a kill during a write leaves it
    (run / "checkpoints/.step-00000016.tmp-abc/model.safetensors").write_bytes(b"x" * 1000)
    r = run_cli("pretrain", "--out", str(run), "--resume")
    assert r.returncode == 0, r.stderr
    assert "step-00000012 is damaged" in r.stderr and "using step-00000008" in r.stderr
    assert "removed" in r.stderr and not (run / "checkpoints/.step-00000016.tmp-abc").exists()
    assert same_weights(final_weights(run), unbroken_final)  # steps 9-12 done again, exactly


def test_readers_fall_back_too_and_fail_in_one_line_when_nothing_is_intact(three_checkpoints, tmp_path):
    source, _ = three_checkpoints
    run = tmp_path / "run"
    shutil.copytree(source, run)
    truncate(run / "checkpoints/step-00000012/model.safetensors")
    r = run_cli("evaluate", str(run), "--json")
    assert r.returncode == 0, r.stderr
    assert "step-00000012 is damaged" in r.stderr and "using step-00000008" in r.stderr
    assert json.loads(r.stdout)["loss"] > 0
    for checkpoint in checkpoint_dirs(run):
        (checkpoint / "model.safetensors").write_bytes(b"")
    for command in (["evaluate", str(run)], ["fill-mask", str(run), "a <mask> b"], ["pretrain", "--out", str(run), "--resume"]):
        assert_one_line_error(run_cli(*command), "every checkpoint is damaged")


def test_old_checkpoints_without_a_manifest_still_load(three_checkpoints, tmp_path):
    source, _ = three_checkpoints
    run = tmp_path / "run"
    shutil.copytree(source, run)
    for checkpoint in checkpoint_dirs(run):
        (checkpoint / "manifest.json").unlink()
    assert latest_intact_checkpoint(run, for_training=True).name == "step-00000012"
    truncate(run / "checkpoints/step-00000012/model.safetensors")  # unverifiable: the load itself says so
    assert_one_line_error(run_cli("evaluate", str(run)), "damaged")


# ---------------------------------------------------------------- one writer per run folder


def test_a_second_writer_is_refused_naming_the_first_and_a_killed_one_leaves_no_lock(data_dir, tmp_path):
    run = tmp_path / "run"
    args = [*SHAPE, "--max-steps", "100000", "--set", "train.save_every_steps=3", "--set", "train.eval_every_steps=100000",
            "--set", "train.schedule=constant"]
    first = start(["pretrain", "--data", str(data_dir), "--out", str(run), *args])
    try:
        wait_for_step(run, 4, first)
        for second in (["pretrain", "--out", str(run), "--resume"],
                       ["pretrain", "--data", str(data_dir), "--out", str(run), *args]):
            assert_one_line_error(run_cli(*second), f"PID {first.pid}")
        r = run_cli("evaluate", str(run), "--json")  # readers keep working while it writes
        assert r.returncode == 0, r.stderr
    finally:
        first.kill()
        first.wait()
    r = run_cli("pretrain", "--out", str(run), "--resume", "--max-steps", "3", "--quiet")  # no stale lock: the kernel dropped it
    assert r.returncode == 0, r.stderr
    assert (run / LOCK_FILE).exists()


def test_the_python_api_takes_the_lock_too(data_dir, tmp_path):
    from bertforge.files import writer_lock

    run = tmp_path / "run"
    with writer_lock(tmp_path / "other.lock", "x"), writer_lock(tmp_path / "other.lock", "x"):  # re-entrant
        pass
    run.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "f.write('4242'); f.flush(); print('locked', flush=True); time.sleep(60)"), str(run / LOCK_FILE)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match="in use by another bertforge process"):
            pretrain(tiny_config(max_steps=2), data_dir, run, progress=False)
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- resume with changed settings, --out


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    r = run_cli("pretrain", "--data", str(data_dir), "--out", str(run), *SHAPE, "--max-steps", "6", "--quiet")
    assert r.returncode == 0, r.stderr
    return run


def test_resume_refuses_settings_that_change_the_math(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    r = run_cli("pretrain", "--out", str(run), "--resume", "--set", "train.seed=7", "--set", "train.batch_size=16")
    assert_one_line_error(r, "train.seed 0 -> 7", "train.batch_size 8 -> 16", "--allow-changed-settings")
    r = run_cli("pretrain", "--out", str(run), "--resume", "--set", "train.seed=7", "--allow-changed-settings",
                "--max-steps", "8")
    assert r.returncode == 0, r.stderr
    assert "resuming with changed settings" in r.stderr


def test_resume_accepts_harmless_settings(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    r = run_cli("pretrain", "--out", str(run), "--resume", "--set", "train.eval_every_steps=3",
                "--set", "train.keep_last=2", "--quiet")
    assert r.returncode == 0, r.stderr


def test_a_metrics_line_cut_by_a_kill_is_left_out_and_resume_rewrites_the_file(finished_run, tmp_path):
    """SIGKILL in the middle of appending a record leaves `{"split": "tr` at the end of
    metrics.jsonl (a live run's reader sees the same): readers skip it, `--resume` drops it."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = read_metrics(run, "train")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"split": "train", "step": 7, "lo')
    assert read_metrics(run, "train") == before
    image = tmp_path / "curves.png"
    assert run_cli("plot", str(run), "--out", str(image)).returncode == 0 and image.stat().st_size > 0
    r = run_cli("pretrain", "--out", str(run), "--resume", "--allow-changed-settings", "--max-steps", "8", "--quiet")
    assert r.returncode == 0, r.stderr
    text = (run / "metrics.jsonl").read_text()
    assert text.endswith("\n") and '"lo' not in text.replace('"loss"', "")
    assert [r["step"] for r in read_metrics(run, "train")] == [r["step"] for r in before] + [7, 8]


def test_a_damaged_metrics_line_is_one_error_naming_it(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = "garbage\n"
    (run / "metrics.jsonl").write_text("".join(lines))
    assert_one_line_error(run_cli("plot", str(run), "--out", str(tmp_path / "c.png")), "metrics.jsonl: line 2")
    assert_one_line_error(run_cli("pretrain", "--out", str(run), "--resume", "--allow-changed-settings", "--max-steps", "8", "--quiet"), "line 2")


def test_out_must_be_a_run_folder_an_empty_one_or_new(data_dir, tmp_path):
    somebody = tmp_path / "notes"
    somebody.mkdir()
    (somebody / "thesis.tex").write_text("precious", encoding="utf-8")
    assert_one_line_error(run_cli("pretrain", "--data", str(data_dir), "--out", str(somebody), *SHAPE),
                          "not a bertforge run folder")
    assert [p.name for p in somebody.iterdir()] == ["thesis.tex"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    assert_one_line_error(run_cli("pretrain", "--data", str(data_dir), "--out", str(a_file), *SHAPE), "is a file")


def test_a_second_finetune_into_the_same_folder_is_refused(tiny_run, tmp_path):
    from bertforge.finetune import finetune

    out = tmp_path / "ft"
    proc = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "f.write(str(os.getpid())); f.flush(); print('locked', flush=True); time.sleep(60)"), str(tmp_path / ".ft.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match=rf"fine-tuning folder .* \(PID {proc.pid}\)"):
            finetune(tiny_run, tmp_path / "train.tsv", tmp_path / "train.tsv", out, progress=False)
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()


def test_a_full_disk_at_a_save_is_one_error_line_and_the_previous_checkpoint_survives(data_dir, tmp_path, monkeypatch):
    import errno

    import bertforge.train.loop as loop

    real = loop.write_checkpoint
    calls = []

    def full_disk(run_dir, model_state, *args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(run_dir, model_state, *args)

    monkeypatch.setattr(loop, "write_checkpoint", full_disk)
    run = tmp_path / "run"
    with pytest.raises(DataError, match="No space left on device; the newest checkpoint on disk is step-00000004"):
        pretrain(tiny_config(max_steps=12, save_every_steps=4), data_dir, run, progress=False)
    assert [d.name for d in checkpoint_dirs(run)] == ["step-00000004"]
    assert checkpoint_problem(checkpoint_dirs(run)[0], for_training=True) is None


def test_an_os_error_outside_a_save_is_one_error_line(tmp_path):
    """A full disk or an impossible path while writing is the machine's problem: one line, no traceback."""
    from conftest import datafile

    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    r = run_cli("tokenizer", "train", "--corpus", str(datafile("kant/kant.txt")), "--vocab-size", "300",
                "--out", str(a_file / "tok"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and str(a_file) in lines[-1]


def test_a_damaged_newer_checkpoint_never_makes_rotation_delete_the_good_ones(three_checkpoints, tmp_path):
    """keep_last counts the newest checkpoints: a damaged one left in place would evict the good ones."""
    source, _ = three_checkpoints
    run = tmp_path / "run"
    shutil.copytree(source, run)
    shutil.copytree(run / "checkpoints/step-00000012", run / "checkpoints/step-00000020")
    zero_middle(run / "checkpoints/step-00000020/model.safetensors")
    r = run_cli("pretrain", "--out", str(run), "--resume", "--set", "train.keep_last=1")
    assert r.returncode == 0, r.stderr
    assert [d.name for d in checkpoint_dirs(run)] == ["step-00000012"]
    assert checkpoint_problem(run / "checkpoints/step-00000012", for_training=True) is None
    assert (run / "checkpoints/damaged/step-00000020").is_dir() and "moved the damaged step-00000020" in r.stderr
