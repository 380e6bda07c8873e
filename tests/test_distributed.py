"""torchrun on CPU (gloo): ranks split the data, not the result.

2 ranks give the loss curve of 1 rank with the same global batch; the ranks read disjoint
sequences; a killed group resumes (by hand or by torchrun's restart) to the same weights as an
unbroken run; FSDP trains the same model as DDP; bad input is one line, exit 2, no hang.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.config import MaskingConfig, build_config
from bertforge.evaluate import evaluate_sums, metrics_from_sums
from bertforge.files import load_tensors
from bertforge.masking import MaskingVocab, mask_tokens, sequence_seeds
from bertforge.model import MaskedLM
from bertforge.shards import PackedShards
from bertforge.tokenizer import load_tokenizer
from bertforge.train.batches import BatchOrder
from bertforge.checkpoint import checkpoint_dirs
from bertforge.masking import masking_vocab
from bertforge.train.metrics import read_metrics
from conftest import assert_one_line_error, datafile

TIMEOUT = 120  # no run may hang: every subprocess has a deadline

TINY = [
    "--preset", "tiny", "--set", "data.seq_len=32", "--set", "model.max_seq_len=32", "--set", "model.hidden_size=32",
    "--set", "model.intermediate_size=64", "--set", "train.log_every_steps=1", "--set", "train.warmup_steps=3",
    "--set", "train.eval_batches=0", "--set", "train.keep_last=20",
]
NO_DROPOUT = ["--set", "model.hidden_dropout=0", "--set", "model.attention_dropout=0"]


def env() -> dict:
    # One thread per process: the ranks share the machine's cores (torchrun sets this too).
    # A store per torchrun attempt: restarted ranks may otherwise read stale addresses of the
    # killed ones (pytorch/pytorch#135712); `pretrain --nproc` sets this itself.
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")


def bertforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertforge", *args], capture_output=True, text=True, env=env(), timeout=TIMEOUT)


def torchrun_cmd(nproc: int, *args: str, restarts: int = 0) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [*launcher, f"--max-restarts={restarts}", "-m", "bertforge", *args]


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_cmd(nproc, *args), capture_output=True, text=True, env=env(), timeout=TIMEOUT)


def pretrain_args(data_dir, out, *extra: str) -> list[str]:
    return ["pretrain", "--data", str(data_dir), "--out", str(out), *TINY, *extra]


def curve(run: Path) -> list[tuple]:
    return [(r["split"], r["step"], r["loss"]) for r in read_metrics(run)]


def final_weights(run: Path, step: int) -> dict:
    return load_tensors(run / f"checkpoints/step-{step:08d}/model.safetensors")


# ---------------------------------------------------------------- the data split


def test_ranks_read_disjoint_slices_that_make_up_the_global_batch():
    """Over two epochs (the last partial batch dropped), each global batch is split without overlap."""
    single = BatchOrder(103, 12, seed=5)
    for world in (2, 3, 4):
        orders = [BatchOrder(103, 12 // world, seed=5, rank=r, world_size=world) for r in range(world)]
        assert orders[0].batches_per_epoch == single.batches_per_epoch
        for k in range(2 * single.batches_per_epoch):
            parts = [o.indices(k) for o in orders]
            together = np.concatenate(parts)
            assert len(np.unique(together)) == len(together) == 12  # disjoint
            assert np.array_equal(np.sort(together), single.indices(k))  # the same global batch


def test_masks_of_a_sequence_do_not_depend_on_its_batch():
    """Masks are a function of (seed, epoch, sequence index), so any split over ranks masks alike."""
    vocab = MaskingVocab.build(1000, [0, 1, 2, 3, 4], mask_id=4)
    ids = torch.randint(5, 1000, (16, 64), generator=torch.Generator().manual_seed(0))
    index = np.arange(100, 116)
    whole = mask_tokens(ids, vocab, MaskingConfig(), sequence_seeds(3, 1, index))
    halves = [mask_tokens(ids[s], vocab, MaskingConfig(), sequence_seeds(3, 1, index[s])) for s in (slice(0, 8), slice(8, 16))]
    assert torch.equal(whole[0], torch.cat([h[0] for h in halves]))
    assert torch.equal(whole[1], torch.cat([h[1] for h in halves]))
    other_epoch = mask_tokens(ids, vocab, MaskingConfig(), sequence_seeds(3, 2, index))
    assert not torch.equal(whole[1], other_epoch[1])


@pytest.fixture
def one_thread():
    """Small in-process models run fastest on one thread of a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_evaluation_adds_up_sums_over_ranks(data_dir, one_thread):
    """Each rank's sums over its own batches add up to one process's metrics (not a mean of means)."""
    cfg = build_config(preset="tiny", overrides={"data": {"seq_len": 32}, "model": {"vocab_size": 600, "pad_id": 1}})
    torch.manual_seed(0)
    model = MaskedLM(cfg.model)
    val = PackedShards(data_dir, "validation")
    vocab = masking_vocab(load_tokenizer(data_dir / "tokenizer"))
    one = evaluate_sums(model, val, vocab, 8, 44)
    parts = [evaluate_sums(model, val, vocab, 4, 44, rank=r, world_size=3, lockstep=True) for r in range(3)]
    added = {k: sum(p[k] for p in parts) for k in one}
    assert added["masked_tokens"] == one["masked_tokens"]  # the same masks, whatever the batches
    assert abs(added["correct"] - one["correct"]) <= 1  # (a near-tie may flip with the batch shape)
    assert metrics_from_sums(added)["loss"] == pytest.approx(metrics_from_sums(one)["loss"], rel=1e-6)


# ---------------------------------------------------------------- 1 rank == 2 ranks


@pytest.fixture(scope="module")
def two_ranks(data_dir, tmp_path_factory):
    """2 ranks x 4 sequences x 2 accumulation steps (global batch 16), dropout off; evaluation on the
    whole validation split, so it does not depend on the micro-batch size."""
    run = tmp_path_factory.mktemp("ranks") / "two"
    args = pretrain_args(data_dir, run, *NO_DROPOUT, "--batch-size", "8", "--set", "train.grad_accum_steps=2",
                         "--max-steps", "8", "--set", "train.eval_every_steps=4", "--set", "train.save_every_steps=4")
    r = bertforge(*args, "--nproc", "2")  # the shortcut: checks, then starts torchrun with this command line
    assert r.returncode == 0, r.stderr
    return run, r


def test_two_ranks_train_like_one_rank_with_the_same_global_batch(data_dir, two_ranks, tmp_path):
    run, r = two_ranks
    assert "global batch 16 sequences = 4 per rank x 2 accumulation x 2 ranks (ddp)" in r.stderr
    one = tmp_path / "one"
    single = bertforge(*pretrain_args(data_dir, one, *NO_DROPOUT, "--batch-size", "16", "--max-steps", "8",
                                      "--set", "train.eval_every_steps=4", "--set", "train.save_every_steps=8"))
    assert single.returncode == 0, single.stderr
    a, b = curve(one), curve(run)
    assert [x[:2] for x in a] == [x[:2] for x in b]
    assert np.allclose([x[2] for x in a], [x[2] for x in b], rtol=0, atol=1e-5), (a, b)
    assert [m["tokens"] for m in read_metrics(one, "train")] == [m["tokens"] for m in read_metrics(run, "train")]
    w1, w2 = final_weights(one, 8), final_weights(run, 8)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5


def test_only_rank_0_writes_and_every_rank_saves_its_rng(two_ranks):
    run, r = two_ranks
    checkpoint = run / "checkpoints/step-00000008"
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "manifest.json", "model.safetensors", "optimizer.pt", "rng-rank1.pt", "rng.pt", "trainer.json"
    ]
    assert json.loads((checkpoint / "trainer.json").read_text())["world_size"] == 2
    assert r.stderr.count("step 8  loss") == 1  # one log line per step, from rank 0
    assert len(read_metrics(run, "train")) == 8


def test_a_two_rank_run_continues_on_one_rank_with_the_same_global_batch(two_ranks, tmp_path):
    """The data position counts global batches, and checkpoints hold full tensors: any number of
    ranks that divides the global batch can continue (here without dropout, so exactly)."""
    run = tmp_path / "run"
    shutil.copytree(two_ranks[0], run)
    shutil.rmtree(run / "checkpoints/step-00000008")
    r = bertforge("pretrain", "--out", str(run), "--resume")
    assert r.returncode == 0, r.stderr
    assert "written by 2 ranks, this run has 1" in r.stderr
    assert np.allclose([x[2] for x in curve(run)], [x[2] for x in curve(two_ranks[0])], rtol=0, atol=1e-5)
    w1, w2 = final_weights(two_ranks[0], 8), final_weights(run, 8)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5


def test_fsdp_resumes_a_ddp_checkpoint(two_ranks, tmp_path):
    """Checkpoints hold full tensors in one format: FSDP shards a DDP checkpoint's weights and
    AdamW moments when it loads them, and continues the same curve."""
    run = tmp_path / "run"
    shutil.copytree(two_ranks[0], run)
    shutil.rmtree(run / "checkpoints/step-00000008")
    r = torchrun(2, "pretrain", "--out", str(run), "--resume", "--strategy", "fsdp")
    assert r.returncode == 0, r.stderr
    assert "2 ranks (fsdp)" in r.stderr
    assert np.allclose([x[2] for x in curve(run)], [x[2] for x in curve(two_ranks[0])], rtol=0, atol=1e-5)
    w1, w2 = final_weights(two_ranks[0], 8), final_weights(run, 8)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5


def test_resume_on_ranks_that_cannot_split_the_batch_is_one_line_error(two_ranks, tmp_path):
    r = bertforge("pretrain", "--out", str(two_ranks[0]), "--resume", "--nproc", "3")
    assert_one_line_error(r, "train.batch_size 8", "3 ranks")


def test_fsdp_trains_the_same_model_as_ddp(data_dir, two_ranks, tmp_path):
    """FSDP2 (sharded) on CPU: the same curve, and a checkpoint in the same single-process format."""
    ddp_run, _ = two_ranks
    run = tmp_path / "fsdp"
    r = torchrun(2, *pretrain_args(data_dir, run, *NO_DROPOUT, "--batch-size", "8", "--set", "train.grad_accum_steps=2",
                                   "--max-steps", "8", "--set", "train.eval_every_steps=4",
                                   "--set", "train.save_every_steps=8", "--strategy", "fsdp"))
    assert r.returncode == 0, r.stderr
    assert np.allclose([x[2] for x in curve(run)], [x[2] for x in curve(ddp_run)], rtol=0, atol=1e-5)
    w1, w2 = final_weights(ddp_run, 8), final_weights(run, 8)
    assert sorted(w1) == sorted(w2) and max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5
    o1, o2 = (torch.load(x / "checkpoints/step-00000008/optimizer.pt", weights_only=True) for x in (ddp_run, run))
    assert o1["optimizer"]["param_groups"] == o2["optimizer"]["param_groups"]
    assert sorted(o1["optimizer"]["state"]) == sorted(o2["optimizer"]["state"])


# ---------------------------------------------------------------- killed and resumed


RESUMABLE = ["--batch-size", "8", "--max-steps", "60", "--set", "train.save_every_steps=5",
             "--set", "train.eval_every_steps=30"]  # dropout on: each rank's RNG must come back too


@pytest.fixture(scope="module")
def unbroken(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("unbroken") / "run"
    r = torchrun(2, *pretrain_args(data_dir, run, *RESUMABLE))
    assert r.returncode == 0, r.stderr
    return run


def test_two_rank_run_resumed_after_a_crash_equals_the_unbroken_run(unbroken, tmp_path):
    """As if the machine went down after step 30: `--resume` on 2 ranks gives the same result."""
    run = tmp_path / "run"
    shutil.copytree(unbroken, run)
    for checkpoint in checkpoint_dirs(run):
        if int(checkpoint.name.split("-")[1]) > 30:
            shutil.rmtree(checkpoint)
    r = torchrun(2, "pretrain", "--out", str(run), "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr and "step-00000030" in r.stderr
    assert curve(run) == curve(unbroken)  # exact: same ranks, same data, same RNG states
    w1, w2 = final_weights(unbroken, 60), final_weights(run, 60)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def start_and_kill_after_first_checkpoint(cmd: list[str], run: Path, kill) -> subprocess.Popen:
    """Start `cmd`, wait for its first checkpoint, then `kill(process)` while it trains on."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                            start_new_session=True)
    deadline = time.monotonic() + TIMEOUT
    while not list((run / "checkpoints").glob("step-*")):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    kill(proc)
    return proc


def workers(launcher: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes (Linux /proc)."""
    found = {}
    for pid in map(int, Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        found.update({int(v[5:]): pid for v in environ if v.startswith(b"RANK=")})
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through /proc")
def test_torchrun_restarts_a_killed_rank_from_the_last_checkpoint(data_dir, unbroken, tmp_path):
    run = tmp_path / "run"
    cmd = torchrun_cmd(2, *pretrain_args(data_dir, run, *RESUMABLE), restarts=1)
    proc = start_and_kill_after_first_checkpoint(cmd, run, lambda p: os.kill(workers(p.pid)[1], signal.SIGKILL))
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr
    assert "torchrun restart 1: resuming from the latest checkpoint" in stderr
    assert curve(run) == curve(unbroken)
    w1, w2 = final_weights(unbroken, 60), final_weights(run, 60)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


# ---------------------------------------------------------------- leaving the group


GROUP_USERS_FREED = r"""
import weakref
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from bertforge.errors import BertforgeError
from bertforge.train import distributed
from bertforge.train.guard import Interrupted

seen = []
destroy = dist.destroy_process_group
def checked_destroy(*args, **kwargs):
    seen.append(alive() is None)  # the DDP module (and its hold on the group) is gone already
    return destroy(*args, **kwargs)
dist.destroy_process_group = checked_destroy

def work(end):
    model = DistributedDataParallel(torch.nn.Linear(2, 2))
    model.loop = model  # a reference cycle, as a trainer's objects make: only gc frees it
    global alive
    alive = weakref.ref(model)
    model(torch.ones(1, 2)).sum().backward()
    if end == "user error":
        raise BertforgeError("stop")
    if end == "stop signal":
        raise Interrupted(15)
    return 1

for end in ("normal", "user error", "stop signal"):
    try:
        with distributed.process_group():
            work(end)
    except (BertforgeError, Interrupted):
        pass
    assert not dist.is_initialized()
print(seen)
"""


def test_the_process_group_outlives_everything_that_uses_it(tmp_path):
    """A rank that frees DDP (and gloo's work) only while the interpreter shuts down can die with
    SIGABRT ("terminate called without an active exception") after a good run: `process_group`
    collects the trainer's objects, after a normal end, a user error and a stop signal (which all
    ranks reach at the same step), before it destroys the group."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one_rank = dict(env(), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    r = subprocess.run([sys.executable, "-c", GROUP_USERS_FREED], capture_output=True, text=True, env=one_rank,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[True,", "True,", "True]"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through /proc")
def test_sigterm_to_every_rank_saves_one_step_and_resumes_to_the_unbroken_run(data_dir, unbroken, tmp_path):
    """A scheduler's SIGTERM to the training processes: the ranks agree on a step, save it, and
    exit with 128 + 15 (no SIGABRT), rank 0 saying so once; `--resume` on 2 ranks then
    ends with the unbroken run's curve and weights."""
    run = tmp_path / "run"
    cmd = torchrun_cmd(2, *pretrain_args(data_dir, run, *RESUMABLE))

    def terminate_ranks(proc):
        for pid in workers(proc.pid).values():
            os.kill(pid, signal.SIGTERM)

    proc = start_and_kill_after_first_checkpoint(cmd, run, terminate_ranks)
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode != 0 and "exitcode  : 143" in stderr, stderr
    assert "SIGABRT" not in stderr and "terminate called" not in stderr, stderr
    assert stderr.count("interrupted (SIGTERM) at step") == 1, stderr  # rank 0 says it, once
    r = torchrun(2, "pretrain", "--out", str(run), "--resume")
    assert r.returncode == 0, r.stderr
    assert curve(run) == curve(unbroken)
    w1, w2 = final_weights(unbroken, 60), final_weights(run, 60)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


# ---------------------------------------------------------------- bad input


def test_batch_not_divisible_by_the_ranks_is_one_line_error(data_dir, tmp_path):
    r = bertforge(*pretrain_args(data_dir, tmp_path / "run", "--batch-size", "9", "--nproc", "2"))
    assert_one_line_error(r, "train.batch_size 9", "2 ranks")
    assert not (tmp_path / "run").exists()  # checked before any rank started


def test_shards_too_small_for_the_global_batch_is_one_line_error(tmp_path):
    text = datafile("tinystories/tinystories_valid_head.txt").read_text(encoding="utf-8")[:2000]
    (tmp_path / "small.txt").write_text(text, encoding="utf-8")
    r = bertforge("pretrain", "--corpus", str(tmp_path / "small.txt"), "--out", str(tmp_path / "run"), *TINY,
                  "--set", "tokenizer.vocab_size=300", "--batch-size", "64", "--nproc", "2")
    assert_one_line_error(r, "fewer than one batch of 64", "32 per rank x 2 ranks")


def test_error_under_torchrun_comes_once_from_rank_0_and_nothing_hangs(data_dir, tmp_path):
    r = torchrun(2, *pretrain_args(data_dir, tmp_path / "run", "--batch-size", "9"))
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: train.batch_size 9 (the global micro-batch) is not divisible by the 2 ranks; "
                      "use a multiple of 2, e.g. 8 or 10"]
    # torchrun's own report: each rank exited with the user-error code, or was stopped by torchrun
    # (SIGTERM) once the first one had; no rank crashed or waited for the other.
    codes = [int(line.split(":")[1].split()[0]) for line in r.stderr.splitlines() if "exitcode  :" in line]
    assert len(codes) == 2 and 2 in codes and set(codes) <= {2, -signal.SIGTERM}, r.stderr
    assert "[rank" not in r.stderr  # no rank's traceback


# ---------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nccl_path_with_one_process_matches_a_plain_run(data_dir, tmp_path):
    args = [*NO_DROPOUT, "--batch-size", "16", "--max-steps", "6", "--device", "cuda", "--set", "train.precision=fp32"]
    r = torchrun(1, *pretrain_args(data_dir, tmp_path / "nccl", *args))
    assert r.returncode == 0, r.stderr
    assert "x 1 rank (ddp)" in r.stderr
    plain = bertforge(*pretrain_args(data_dir, tmp_path / "plain", *args))
    assert plain.returncode == 0, plain.stderr
    a, b = curve(tmp_path / "plain"), curve(tmp_path / "nccl")
    assert np.allclose([x[2] for x in a], [x[2] for x in b], rtol=0, atol=1e-4)
