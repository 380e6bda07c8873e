"""Chaos: does a long run survive what happens to long runs, and does every command refuse bad input cleanly?

Part 1 (kills): a `tiny`-preset `bertforge pretrain` is hit N times, at random moments, by SIGKILL,
SIGINT or SIGTERM (sent to its process group, as a terminal's Ctrl-C or a scheduler does), and
resumed with `--resume` after each; its final weights are compared with an unbroken run's
(bit-identical, or the largest difference).

Part 2 (bad inputs): a table of bad inputs fed to every command (missing, empty, binary and
non-UTF-8 files, bad --set values, wrong columns, zero/negative counts, damaged checkpoints and
shards, a model with NaN weights, ...) with the exit code, the number of stderr lines, whether a
Python traceback appeared and whether anything was left behind where the command was told to write.
The house rule is: exit 2, one `error:` line, no traceback, nothing left behind.

    python benchmarks/chaos.py                  # both parts, Markdown tables on stdout (~5 min, one core)
    python benchmarks/chaos.py --kills 20 --seed 1 --json chaos.json
    python benchmarks/chaos.py --part inputs    # only the bad-input table

Not a test: the kills land at random moments, so a single run proves little and says so; run
it with several seeds. Everything is written under --work (a temporary folder by default).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "data" / "tinystories" / "tinystories_valid_head.txt"
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


def bertforge(*args, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """`python -m bertforge ARGS` on one thread, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "bertforge", *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env=env(), stdin=subprocess.DEVNULL, **popen,
    )


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


# ---------------------------------------------------------------- fixtures


def build_data(work: Path) -> Path:
    """Tokenizer (1,000 ids) and 64-token shards of the TinyStories head shipped in tests/data."""
    data = work / "data"
    if not (data / "manifest.json").is_file():
        check(bertforge("tokenizer", "train", "--corpus", CORPUS, "--out", work / "tok", "--vocab-size", 1000, "--quiet"))
        check(bertforge("prepare", "--corpus", CORPUS, "--tokenizer", work / "tok", "--out", data, "--seq-len", 64,
                        "--quiet"))
    return data


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        sys.exit(f"chaos: setup failed: {result.args}\n{result.stderr}")
    return result


def train_args(data: Path, out: Path, steps: int, save_every: int) -> list:
    return ["pretrain", "--data", data, "--out", out, "--preset", "tiny", "--max-steps", steps, "--device", "cpu",
            "--set", f"train.save_every_steps={save_every}", "--set", "train.eval_every_steps=1000",
            "--set", "train.eval_batches=2", "--set", "train.log_every_steps=1", "--quiet"]


def checkpoints(run: Path) -> list[Path]:
    return sorted(p for p in (run / "checkpoints").glob("step-*") if p.is_dir() and ".tmp" not in p.name)


def weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoints(run)[-1] / "model.safetensors"))


# ---------------------------------------------------------------- part 1: kills


@dataclass
class Kill:
    signal: str
    at_step: int  # the last step logged when the signal was sent
    after_s: float  # seconds after the launch
    exit_code: int | None
    checkpoint_after: int | None  # the step of the newest checkpoint once the process is gone
    traceback: bool


def kill_campaign(work: Path, data: Path, kills: int, steps: int, save_every: int, rng: random.Random) -> dict:
    """An unbroken run, then the same run killed `kills` times and resumed; their final weights compared."""
    ref = work / "unbroken"
    shutil.rmtree(ref, ignore_errors=True)
    start = time.monotonic()
    check(bertforge(*train_args(data, ref, steps, save_every), timeout=1800))
    wall = time.monotonic() - start
    run = work / "killed"
    shutil.rmtree(run, ignore_errors=True)
    log, launches = [], 0
    targets = sorted(rng.sample(range(1, steps), min(kills, steps - 1)))  # random steps, spread over the run
    for target in targets:
        # metrics.jsonl still holds the killed launch's records until the resume truncates them:
        # wait for a step past those, so the signal always hits the new process in training
        target = max(target, logged_step(run) + 1)
        if target >= steps:
            break
        launches += 1
        proc = launch(data, run, steps, save_every)
        jitter = rng.uniform(0.0, 0.25)  # then a random moment inside it (a step or a checkpoint write)
        started = time.monotonic()
        while proc.poll() is None and logged_step(run) < target:
            time.sleep(0.01)
        time.sleep(jitter)
        if proc.poll() is not None:  # it finished (or failed) before the signal
            _, err = proc.communicate()
            if proc.returncode != 0:
                sys.exit(f"chaos: a resumed run failed (exit {proc.returncode}):\n{err}")
            break
        name = rng.choice(sorted(SIGNALS))
        at = logged_step(run)
        os.killpg(proc.pid, SIGNALS[name])
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        steps_now = checkpoint_step(run)
        log.append(Kill(name, at, round(time.monotonic() - started, 2), proc.returncode, steps_now,
                        "Traceback" in err))
        print(f"  kill {len(log)}/{kills}: {name} at step ~{at} -> exit {proc.returncode}, "
              f"newest checkpoint {steps_now}", file=sys.stderr)
    while checkpoint_step(run) != steps:  # run to the end
        launches += 1
        proc = launch(data, run, steps, save_every)
        _, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            sys.exit(f"chaos: the final resume failed (exit {proc.returncode}):\n{err}")
    return {**compare(weights(ref), weights(run)), "kills": [asdict(k) for k in log], "launches": launches,
            "steps": steps, "save_every": save_every, "unbroken_s": round(wall, 1),
            "leftover_tmp": sorted(p.name for p in (run / "checkpoints").iterdir() if ".tmp" in p.name)}


def launch(data: Path, run: Path, steps: int, save_every: int) -> subprocess.Popen:
    """A fresh start, or `--resume` (the run's own data and settings) once a checkpoint exists."""
    args = train_args(data, run, steps, save_every)
    if checkpoints(run):
        args = ["pretrain", "--out", run, "--resume", "--device", "cpu", "--quiet"]
    return subprocess.Popen(
        [sys.executable, "-m", "bertforge", *map(str, args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env(),
        start_new_session=True,  # its own process group: the signal reaches it and its workers, never us
    )


def logged_step(run: Path) -> int:
    """The step of the last training record in metrics.jsonl (0 before the first)."""
    try:
        lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if record.get("split") == "train":
            return int(record["step"])
    return 0


def checkpoint_step(run: Path) -> int | None:
    found = checkpoints(run) if (run / "checkpoints").is_dir() else []
    return int(found[-1].name.removeprefix("step-")) if found else None


def compare(a: dict, b: dict) -> dict:
    import torch

    if a.keys() != b.keys():
        return {"bit_identical": False, "max_abs_diff": None, "note": "different tensor names"}
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    return {"bit_identical": all(torch.equal(a[k], b[k]) for k in a), "max_abs_diff": diff}


# ---------------------------------------------------------------- part 2: bad inputs


@dataclass
class Case:
    command: str
    bad_input: str
    args: list
    out: Path | None = None  # where the command was told to write: must not exist after a refusal
    expect: str = "error"  # "error": one `error:` line, exit 2; "recover": exit 0 after saying on stderr
    # which damaged checkpoint it skipped (the newest intact one is used instead)


def make_bad_files(work: Path, data: Path, run: Path) -> dict[str, Path]:
    """The bad inputs: files, folders, damaged copies of a good run and of its shards."""
    bad = work / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    bad.mkdir(parents=True)
    f = {name: bad / name for name in ("missing.txt", "empty.txt", "binary.bin", "latin1.txt", "wrong-column.csv",
                                       "commas.csv", "empty-dir", "a-file")}
    f["empty.txt"].write_bytes(b"")
    f["binary.bin"].write_bytes(bytes(range(256)) * 64)
    f["latin1.txt"].write_bytes("caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n".encode("latin-1") * 50)
    f["wrong-column.csv"].write_text("sentence,label\nhello there,1\nbye now,0\n" * 20)
    f["commas.csv"].write_text("text,label\n" + "fine words here,1\n" * 20 + "Loved it, truly,0\n")
    f["empty-dir"].mkdir()
    f["a-file"].write_text("not a folder\n")
    f["nan-run"] = damaged_run(run, bad / "nan-run", poison_nan)
    f["truncated-run"] = damaged_run(run, bad / "truncated-run", lambda ck: truncate(ck / "model.safetensors"))
    f["emptied-run"] = damaged_run(run, bad / "emptied-run", lambda ck: (ck / "model.safetensors").write_bytes(b""))
    f["no-trainer-run"] = damaged_run(run, bad / "no-trainer-run", lambda ck: (ck / "trainer.json").unlink())
    f["no-rng-run"] = damaged_run(run, bad / "no-rng-run", lambda ck: unlink_any(ck, "rng"))
    for name in ("truncated-run", "no-trainer-run", "no-rng-run"):  # --resume repairs its copy: its own
        f[f"resume-{name}"] = bad / f"resume-{name}"
        shutil.copytree(f[name], f[f"resume-{name}"])
    f["damaged-data"] = damaged_data(data, bad / "damaged-data")
    return f


def damaged_run(run: Path, copy: Path, damage) -> Path:
    shutil.copytree(run, copy)
    damage(checkpoints(copy)[-1])
    return copy


def poison_nan(checkpoint: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(checkpoint / "model.safetensors"))
    name = next(k for k in tensors if k.endswith("weight"))
    tensors[name].view(-1)[:3] = float("nan")
    save_file(tensors, str(checkpoint / "model.safetensors"))
    try:  # a NaN checkpoint written as a whole (an older bertforge, another tool): not damage
        from bertforge.checkpoint import MANIFEST, write_manifest
    except ImportError:  # before checkpoint manifests
        return
    if (checkpoint / MANIFEST).is_file():
        write_manifest(checkpoint)


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def unlink_any(folder: Path, stem: str) -> None:
    for p in folder.glob(f"{stem}*"):
        p.unlink()


def damaged_data(data: Path, copy: Path) -> Path:
    """The shard folder with ten ids of each split overwritten by 65535 (outside any 1,000-id vocabulary)."""
    import numpy as np

    shutil.copytree(data, copy)
    for split in ("train", "validation"):
        ids = np.memmap(sorted(copy.glob(f"{split}-*.bin"))[0], dtype="<u2", mode="r+")
        ids[100:110] = 65535
        ids.flush()
        del ids
    return copy


def bad_input_cases(f: dict[str, Path], data: Path, run: Path, out: Path) -> list[Case]:
    """(command, what is bad, argv, output path): every command, the inputs users get wrong."""
    o = iter(range(1000))

    def fresh(suffix: str = "") -> Path:
        return out / f"out-{next(o):03d}{suffix}"

    def case(command, bad_input, *args, out_at: Path | None = None, expect: str = "error"):
        return Case(command, bad_input, list(args), out_at, expect)

    t = fresh()
    cases = [
        case("tokenizer train", "missing corpus", "tokenizer", "train", "--corpus", f["missing.txt"], "--out", t, out_at=t),
    ]
    for name in ("empty.txt", "binary.bin", "latin1.txt"):
        t = fresh()
        cases.append(case("tokenizer train", name.split(".")[0] + " corpus", "tokenizer", "train", "--corpus", f[name],
                          "--out", t, out_at=t))
    t = fresh()
    cases += [
        case("tokenizer train", "CSV, wrong column", "tokenizer", "train", "--corpus", f["wrong-column.csv"], "--out", t,
             out_at=t),
        case("tokenizer train", "CSV, unquoted comma in the text", "tokenizer", "train", "--corpus", f["commas.csv"],
             "--out", (t2 := fresh()), out_at=t2),
        case("tokenizer train", "--vocab-size 0", "tokenizer", "train", "--corpus", CORPUS, "--vocab-size", 0, "--out",
             (t3 := fresh()), out_at=t3),
        case("tokenizer train", "--set tokenizer.vocab_size=abc", "tokenizer", "train", "--corpus", CORPUS, "--set",
             "tokenizer.vocab_size=abc", "--out", (t4 := fresh()), out_at=t4),
        case("tokenizer encode", "missing tokenizer folder", "tokenizer", "encode", f["missing.txt"], "hello"),
        case("tokenizer encode", "binary file as tokenizer", "tokenizer", "encode", f["binary.bin"], "hello"),
        case("prepare", "missing corpus", "prepare", "--corpus", f["missing.txt"], "--tokenizer", run / "tokenizer",
             "--out", (p := fresh()), out_at=p),
        case("prepare", "binary corpus", "prepare", "--corpus", f["binary.bin"], "--tokenizer", run / "tokenizer",
             "--out", (p := fresh()), out_at=p),
        case("prepare", "empty corpus", "prepare", "--corpus", f["empty.txt"], "--tokenizer", run / "tokenizer",
             "--out", (p := fresh()), out_at=p),
        case("prepare", "--seq-len 0", "prepare", "--corpus", CORPUS, "--tokenizer", run / "tokenizer", "--seq-len", 0,
             "--out", (p := fresh()), out_at=p),
        case("prepare", "--val-fraction 2", "prepare", "--corpus", CORPUS, "--tokenizer", run / "tokenizer",
             "--val-fraction", 2, "--out", (p := fresh()), out_at=p),
        case("prepare", "tokenizer folder is empty", "prepare", "--corpus", CORPUS, "--tokenizer", f["empty-dir"],
             "--out", (p := fresh()), out_at=p),
    ]
    pre = ["--preset", "tiny", "--max-steps", 2, "--device", "cpu"]
    cases += [
        case("pretrain", "missing --data", "pretrain", "--data", f["missing.txt"], "--out", (r := fresh()), *pre, out_at=r),
        case("pretrain", "empty --corpus", "pretrain", "--corpus", f["empty.txt"], "--out", (r := fresh()), *pre, out_at=r),
        case("pretrain", "binary --corpus", "pretrain", "--corpus", f["binary.bin"], "--out", (r := fresh()), *pre,
             out_at=r),
        case("pretrain", "--set train.lr=abc", "pretrain", "--data", data, "--out", (r := fresh()), *pre, "--set",
             "train.lr=abc", out_at=r),
        case("pretrain", "--set train.batch_size=0", "pretrain", "--data", data, "--out", (r := fresh()), *pre, "--set",
             "train.batch_size=0", out_at=r),
        case("pretrain", "--set no.such=1", "pretrain", "--data", data, "--out", (r := fresh()), *pre, "--set",
             "no.such=1", out_at=r),
        case("pretrain", "--max-steps -1", "pretrain", "--data", data, "--out", (r := fresh()), "--preset", "tiny",
             "--max-steps", -1, out_at=r),
        case("pretrain", "shard ids outside the vocabulary", "pretrain", "--data", f["damaged-data"], "--out",
             (r := fresh()), *pre, out_at=r),
        case("pretrain", "--out is an existing file", "pretrain", "--data", data, "--out", f["a-file"], *pre),
        case("pretrain", "--resume, nothing to resume", "pretrain", "--out", (r := fresh()), "--resume", out_at=r),
        case("pretrain", "--init-from a NaN run", "pretrain", "--data", data, "--out", (r := fresh()), "--init-from",
             f["nan-run"], "--max-steps", 2, "--device", "cpu", out_at=r),
        case("pretrain", "--resume, truncated model.safetensors", "pretrain", "--out", f["resume-truncated-run"], "--resume",
             "--device", "cpu", expect="recover"),
        case("pretrain", "--resume, missing trainer.json", "pretrain", "--out", f["resume-no-trainer-run"], "--resume",
             "--device", "cpu", expect="recover"),
        case("pretrain", "--resume, missing RNG state", "pretrain", "--out", f["resume-no-rng-run"], "--resume",
             "--device", "cpu", expect="recover"),
    ]
    cases += [
        case("evaluate", "not a run folder", "evaluate", f["empty-dir"]),
        case("evaluate", "--batch-size 0", "evaluate", run, "--batch-size", 0),
        case("evaluate", "--batches -1", "evaluate", run, "--batches", -1),
        case("evaluate", "NaN weights", "evaluate", f["nan-run"], "--json"),
        case("evaluate", "truncated model.safetensors", "evaluate", f["truncated-run"], expect="recover"),
        case("evaluate", "emptied model.safetensors", "evaluate", f["emptied-run"], expect="recover"),
        case("evaluate", "shard ids outside the vocabulary", "evaluate", run, "--data", f["damaged-data"]),
        case("evaluate", "binary --corpus", "evaluate", run, "--corpus", f["binary.bin"]),
        case("fill-mask", "no mask in the text", "fill-mask", run, "hello there"),
        case("fill-mask", "--top-k 0", "fill-mask", run, "a <mask> b", "--top-k", 0),
        case("fill-mask", "--top-k -3", "fill-mask", run, "a <mask> b", "--top-k", -3),
        case("fill-mask", "NaN weights", "fill-mask", f["nan-run"], "a <mask> b", "--json"),
        case("fill-mask", "truncated model.safetensors", "fill-mask", f["truncated-run"], "a <mask> b",
             expect="recover"),
        case("similar", "--top-k 0", "similar", run, "the", "--top-k", 0),
        case("similar", "--top-k -1", "similar", run, "the", "--top-k", -1),
        case("similar", "empty word", "similar", run, " "),
        case("embed", "missing --input", "embed", run, "--input", f["missing.txt"], "--out", (e := fresh(".npy")),
             out_at=e),
        case("embed", "binary --input", "embed", run, "--input", f["binary.bin"], "--out", (e := fresh(".npy")),
             out_at=e),
        case("embed", "latin-1 --input", "embed", run, "--input", f["latin1.txt"], "--out", (e := fresh(".npy")),
             out_at=e),
        case("embed", "empty --input", "embed", run, "--input", f["empty.txt"], "--out", (e := fresh(".npy")), out_at=e),
        case("embed", "--batch-size 0", "embed", run, "--input", CORPUS, "--out", (e := fresh(".npy")), "--batch-size", 0,
             out_at=e),
        case("export", "NaN weights", "export", f["nan-run"], "--out", (x := fresh()), out_at=x),
        case("export", "truncated model.safetensors", "export", f["truncated-run"], "--out", (x := fresh()),
             expect="recover"),
        case("export", "not a run folder", "export", f["empty-dir"], "--out", (x := fresh()), out_at=x),
        case("export", "--out is an existing file", "export", run, "--out", f["a-file"]),
        case("import", "missing folder", "import", f["missing.txt"], "--out", (x := fresh()), out_at=x),
        case("import", "empty folder", "import", f["empty-dir"], "--out", (x := fresh()), out_at=x),
        case("generate", "a masked LM (not causal)", "generate", run, "Once"),
        case("generate", "--temperature -1", "generate", run, "Once", "--temperature", -1),
        case("chat", "a masked LM (not causal)", "chat", run),
        case("plot", "not a run folder", "plot", f["empty-dir"], "--out", (x := fresh(".png")), out_at=x),
        case("report", "not a run folder", "report", f["empty-dir"], "--out", (x := fresh(".html")), out_at=x),
        case("viz embeddings", "not a run folder", "viz", "embeddings", f["empty-dir"], "--top", 10, "--out",
             (x := fresh()), out_at=x),
        case("serve", "NaN weights", "serve", f["nan-run"], "--port", free_port(), "--device", "cpu"),
        case("serve", "--port 70000", "serve", run, "--port", 70000),
        case("serve", "not a model folder", "serve", f["empty-dir"], "--port", free_port()),
        case("model summary", "unknown preset", "model", "summary", "--preset", "no-such-preset"),
        case("finetune classify", "missing --train", "finetune", "classify", "--model", run, "--train", f["missing.txt"],
             "--validation", f["missing.txt"], "--out", (x := fresh()), out_at=x),
        case("finetune classify", "binary --train", "finetune", "classify", "--model", run, "--train", f["binary.bin"],
             "--validation", f["binary.bin"], "--out", (x := fresh()), out_at=x),
        case("finetune classify", "wrong --label-column", "finetune", "classify", "--model", run, "--train",
             f["wrong-column.csv"], "--validation", f["wrong-column.csv"], "--text-column", "sentence",
             "--label-column", "nope", "--out", (x := fresh()), out_at=x),
        case("finetune classify", "NaN model", "finetune", "classify", "--model", f["nan-run"], "--train",
             f["wrong-column.csv"], "--validation", f["wrong-column.csv"], "--text-column", "sentence",
             "--out", (x := fresh()), out_at=x),
        case("predict", "not a fine-tuned folder", "predict", run, "hello"),
        case("bench", "unknown preset", "bench", "train", "--preset", "no-such-preset"),
        case("demo", "missing --corpus", "demo", "--corpus", f["missing.txt"], "--out", (x := fresh()), out_at=x),
    ]
    return cases


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Outcome:
    command: str
    bad_input: str
    expect: str
    exit_code: int | None
    stderr_lines: int
    error_lines: int
    said_damaged: bool  # a stderr line names a damaged checkpoint or the intact one used instead
    traceback: bool
    left_behind: bool
    first_error: str


def run_case(c: Case) -> Outcome:
    try:
        result = bertforge(*c.args, timeout=180)
        code, err = result.returncode, result.stderr
    except subprocess.TimeoutExpired as e:  # a command that hangs on bad input is a failure too
        stderr = e.stderr or ""
        code, err = None, stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [line for line in err.splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith("error:")), lines[-1] if lines else "")
    left = c.out is not None and c.out.exists()
    errors = sum(line.startswith("error:") for line in lines)
    said = any("damaged" in line or "intact" in line for line in lines)
    first = next((line for line in lines if "damaged" in line), first) if c.expect == "recover" else first
    return Outcome(c.command, c.bad_input, c.expect, code, len(lines), errors, said, "Traceback" in err, left,
                   first[:160])


def clean(o: Outcome) -> bool:
    """The house rule: exit 2, one `error:` line (progress lines before it are fine), no traceback,
    nothing left where the command was told to write. A damaged latest checkpoint is recovered
    from instead: exit 0, the damage named on stderr, no traceback."""
    if o.expect == "recover":
        return o.exit_code == 0 and o.said_damaged and not o.traceback and o.error_lines == 0
    return o.exit_code == 2 and o.error_lines == 1 and not o.traceback and not o.left_behind


# ---------------------------------------------------------------- report


def kills_markdown(k: dict) -> str:
    rows = ["| # | signal | at step | after (s) | exit code | newest checkpoint after | traceback |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {i} | {x['signal']} | {x['at_step']} | {x['after_s']} | {x['exit_code']} | {x['checkpoint_after']} | "
             f"{'yes' if x['traceback'] else 'no'} |" for i, x in enumerate(k["kills"], 1)]
    counts = {s: sum(x["signal"] == s for x in k["kills"]) for s in sorted(SIGNALS)}
    verdict = "bit-identical" if k["bit_identical"] else f"NOT bit-identical (max abs diff {k['max_abs_diff']:.3g})"
    head = (f"**Kills:** {len(k['kills'])} survived ({', '.join(f'{n} {s}' for s, n in counts.items())}) over "
            f"{k['launches']} launches of a {k['steps']}-step tiny run (checkpoint every {k['save_every']} steps; "
            f"unbroken run {k['unbroken_s']} s). Final weights vs the unbroken run: **{verdict}**. "
            f"Leftover temporary folders: {len(k['leftover_tmp'])}.")
    return head + "\n\n" + "\n".join(rows)


def inputs_markdown(outcomes: list[Outcome]) -> str:
    rows = ["| command | bad input | expected | exit | stderr lines | traceback | left behind | message |",
            "|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        mark = "" if clean(o) else " **!**"
        rows.append(f"| {o.command} | {o.bad_input}{mark} | {o.expect} | {o.exit_code} | {o.stderr_lines} | "
                    f"{'yes' if o.traceback else 'no'} | {'yes' if o.left_behind else 'no'} | "
                    f"{o.first_error.replace('|', '/')} |")
    n = len(outcomes)
    errors = [o for o in outcomes if o.expect == "error"]
    recovers = [o for o in outcomes if o.expect == "recover"]
    head = (f"**Bad inputs:** {n} tried on {len({o.command for o in outcomes})} commands; "
            f"refused cleanly (exit 2, one `error:` line, nothing left behind): {sum(map(clean, errors))}/{len(errors)}; "
            f"damaged latest checkpoint recovered from (exit 0, the damage named on stderr): "
            f"{sum(map(clean, recovers))}/{len(recovers)}; "
            f"tracebacks: {sum(o.traceback for o in outcomes)}; left behind after a refusal: {sum(o.left_behind for o in errors)}; "
            f"bad input accepted (exit 0): {sum(o.exit_code == 0 for o in errors)}.")
    return head + "\n\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("all", "kills", "inputs"), default="all")
    p.add_argument("--kills", type=int, default=12, help="signals to send during the run (default 12)")
    p.add_argument("--steps", type=int, default=200, help="training steps of the tiny run (default 200)")
    p.add_argument("--save-every", type=int, default=10, help="checkpoint every N steps (default 10)")
    p.add_argument("--seed", type=int, default=0, help="which moments and signals (default 0)")
    p.add_argument("--work", help="folder for runs and bad inputs (default: a temporary folder, removed)")
    p.add_argument("--json", metavar="FILE", help="also write the full results as JSON")
    args = p.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bertforge-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    results: dict = {"seed": args.seed, "python": sys.version.split()[0]}
    started = time.monotonic()
    try:
        data = build_data(work)
        if args.part in ("all", "kills"):
            print(f"chaos: part 1, {args.kills} kills ...", file=sys.stderr)
            results["kills"] = kill_campaign(work, data, args.kills, args.steps, args.save_every, rng)
            print(kills_markdown(results["kills"]) + "\n")
        if args.part in ("all", "inputs"):
            run = work / "good-run"
            if not checkpoints(run):
                shutil.rmtree(run, ignore_errors=True)
                check(bertforge(*train_args(data, run, 20, 10)))
            out = work / "outputs"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            cases = bad_input_cases(make_bad_files(work, data, run), data, run, out)
            print(f"chaos: part 2, {len(cases)} bad inputs ...", file=sys.stderr)
            outcomes = [run_case(c) for c in cases]
            results["inputs"] = [asdict(o) for o in outcomes]
            print(inputs_markdown(outcomes))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    results["wall_s"] = round(time.monotonic() - started, 1)
    print(f"\n(chaos.py --seed {args.seed}: {results['wall_s']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
