"""Speed benchmarks: bertforge and the Hugging Face reference on the same data, shape and settings.

Each benchmark runs both sides in one call, so both figures come from the same machine state:

- train: tokens/s of full steps (masking on the fly, forward, MLM loss, backward, clipping,
  AdamW) and peak memory. bertforge runs its own loop (`setup` + `train_step`); the reference is
  `RobertaForMaskedLM` / `BertForMaskedLM` with equal initial weights,
  `DataCollatorForLanguageModeling` and `torch.optim.AdamW`, fed the same sequences in the same
  order. On a GPU both also get MFU.
- prepare: MB/s from raw text to packed training blocks; the reference is run_mlm.py's
  `load_dataset("text")` + batched tokenizer `map` + `group_texts`, same tokenizer, same
  number of processes (tokenizer threads on our side).
- fill-mask: sentences/s for top-k answers on held-out sentences with one word masked; the
  reference is `pipeline("fill-mask")` on the exported model (equal weights), same batch size.

Each side runs in a fresh interpreter (multiprocessing "spawn"): its peak RSS is its own, and
neither inherits the other's imports, thread pools or allocator state. `transformers` and
`datasets` are imported on the reference side only (`pip install 'bertforge[bench]'`).
Timings belong here and in benchmarks/, never in test assertions.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from ..config import CorpusConfig, DataConfig, RunConfig, build_config, from_dict, save_config
from ..corpus import iter_documents
from ..errors import BertforgeError, ConfigError, DataError
from ..hf.exporter import export_run
from ..hf.keys import ARCHS, default_arch, hf_config, to_hf_state_dict
from ..files import atomic_write_bytes, read_json, write_json
from ..infer import fill_mask_batch, load_run
from ..model import MaskedLM, flops_per_token
from ..runtime import autocast, autocast_dtype, resolve_device
from ..shards import PackedShards, prepare
from ..tokenizer import SPECIAL_TOKENS, TextTokenizer, load_tokenizer, train_tokenizer
from ..train.batches import BatchOrder
from ..checkpoint import save_checkpoint
from ..train import TrainerState, resolve_config, setup, train_step
from ..train.optim import build_optimizer, optimizer_step

# The text the benchmarks read, by the layout of their data folder (--data-dir, else $BERTFORGE_DATA,
# else the repository's tests/data). `train` trains the tokenizer and gives the training sequences;
# `held_out` gives fill-mask's sentences. The repository's ~0.6 MB fills the tiny preset's vocabulary
# but not `small`'s 16k; the development machines' shared data folder (~5 MB) does, and gave the
# README's figures (`--data-dir ../shared/data`).
@dataclass(frozen=True)
class BenchText:
    name: str
    train: tuple[str, ...]
    held_out: str


LAYOUTS = (
    BenchText("repository tests/data", ("kant/kant.txt", "pydoc-wiki/wiki.valid.raw", "pydoc-wiki/wiki.test.raw"),
              "tinystories/tinystories_valid_head.txt"),
    BenchText("shared data folder", ("kant/kant.txt", "tinystories/tinystories_train_head.txt",
                                     "wikitext-2/wiki.valid.raw", "wikitext-2/wiki.test.raw"),
              "tinystories/tinystories_valid_head.txt"),
)
DATA_ENV = "BERTFORGE_DATA"
REPO_DATA = Path(__file__).resolve().parents[3] / "tests" / "data"  # there in a clone (and an editable install)
MB = 1e6  # benchmark megabytes are 10^6 bytes

# Dense bf16 tensor-core peak (FLOP/s, no sparsity) for MFU, by device name; first match wins.
BF16_PEAK_FLOPS = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12),
    ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12),
)

# Figures each benchmark compares; the table shows them in this order.
HEADLINE = {
    "train": ("tokens_per_s", "peak_memory_mb", "mfu"),
    "prepare": ("mb_per_s",),
    "fill-mask": ("sentences_per_s",),
}
LABELS = {
    "tokens_per_s": ("tokens/s", "{:,.0f}"),
    "peak_memory_mb": ("peak memory, MB (lower is better)", "{:,.0f}"),
    "mfu": ("MFU", "{:.1%}"),
    "mb_per_s": ("MB/s", "{:.2f}"),
    "sentences_per_s": ("sentences/s", "{:,.1f}"),
}


# ---------------------------------------------------------------- data and set-up


def bench_data_dir(data_dir: str | Path | None = None) -> Path:
    """`data_dir`, else $BERTFORGE_DATA, else the repository's tests/data; never a guess up the folder tree."""
    if data_dir:
        where, root = "--data-dir", Path(data_dir)
    elif os.environ.get(DATA_ENV):
        where, root = DATA_ENV, Path(os.environ[DATA_ENV])
    else:
        where, root = "the repository's tests/data", REPO_DATA
    if not root.is_dir():
        raise DataError(
            f"benchmark data: {where} ({root}) is not a folder; pass --data-dir DIR (or set {DATA_ENV}) "
            "or a text file with --corpus"
        )
    return root


def bench_text(data_dir: str | Path | None = None) -> tuple[list[str], str]:
    """(training files, held-out file) of the data folder, in whichever known layout it has."""
    root = bench_data_dir(data_dir)
    for layout in LAYOUTS:
        if all((root / name).is_file() for name in (*layout.train, layout.held_out)):
            return [str(root / name) for name in layout.train], str(root / layout.held_out)
    expected = "; or ".join(f"{', '.join((*x.train, x.held_out))} ({x.name})" for x in LAYOUTS)
    raise DataError(f"benchmark data: {root} lacks the benchmark text: expected {expected}")


def corpus_files(corpus: str | Path | list[str] | None, data_dir: str | Path | None) -> list[str]:
    """The benchmark's training text: `corpus` when given, else the data folder's."""
    if corpus:
        return [str(corpus)] if isinstance(corpus, (str, Path)) else [str(c) for c in corpus]
    return bench_text(data_dir)[0]


def bench_tokenizer(cfg: RunConfig, sources: list[str], out_dir: Path) -> TextTokenizer:
    """The preset's tokenizer trained on `sources`; min_frequency 1 so a small corpus still fills the vocabulary."""
    tok_cfg = replace(cfg.tokenizer, min_frequency=1)
    return train_tokenizer(iter_documents(sources, cfg.corpus), tok_cfg, out_dir, progress=False)


def bench_config(preset: str, seq_len: int, train: dict | None = None) -> RunConfig:
    """The preset with the benchmark's sequence length; the position table grows if it must."""
    base = build_config(RunConfig, preset=preset)
    overrides = {
        "data": {"seq_len": seq_len, "val_fraction": 0.0},
        "model": {"max_seq_len": max(base.model.max_seq_len, seq_len)},
        "train": train or {},
    }
    return build_config(RunConfig, preset=preset, overrides=overrides)


def at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"bench: {name} must be at least {low:g}, got {value}")


def require_reference(*packages: str) -> None:
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise DataError(
            f"the reference side needs {' and '.join(missing)}: pip install 'bertforge[bench]' (or pass --no-reference)"
        )


def hf_tokenizer(tokenizer: TextTokenizer):
    """Our tokenizer as a `PreTrainedTokenizerFast` with its special tokens named (for the collator)."""
    from transformers import PreTrainedTokenizerFast

    s = SPECIAL_TOKENS[tokenizer.scheme]
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.tokenizer, bos_token=s["bos"], eos_token=s["eos"], unk_token=s["unk"],
        pad_token=s["pad"], mask_token=s["mask"], cls_token=s["bos"], sep_token=s["eos"],
    )


def hf_masked_lm(cfg, tokenizer: TextTokenizer, arch: str, state: dict[str, torch.Tensor]):
    """`{Bert,Roberta}ForMaskedLM` of our shape holding our weights (the decoder is tied, so HF fills it)."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    settings = hf_config(cfg, tokenizer, arch)
    model = AutoModelForMaskedLM.from_config(AutoConfig.for_model(settings.pop("model_type"), **settings))
    missing, unexpected = model.load_state_dict(to_hf_state_dict(state, cfg, arch), strict=False)
    assert set(missing) <= set(ARCHS[arch].decoder) and not unexpected, (missing, unexpected)
    return model


@contextmanager
def work_folder(work_dir: str | Path | None) -> Iterator[Path]:
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="bertforge-bench-") as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------- measuring


def run_isolated(side: str, job) -> dict:
    """`SIDES[side](job)` in a fresh interpreter; its result, or its error raised here.

    A subprocess rather than multiprocessing: nothing of the caller's `__main__` is re-run, and the
    job and the result travel as JSON.
    """
    with tempfile.TemporaryDirectory(prefix="bertforge-bench-side-") as tmp:
        out = Path(tmp) / "result.json"
        request = json.dumps({"side": side, "job": dataclasses.asdict(job), "out": str(out)})
        code = "from bertforge.bench.speed import child_main; child_main()"
        done = subprocess.run([sys.executable, "-c", code], input=request, text=True)
        reply = read_json(out) if out.is_file() else {"error": f"exit code {done.returncode}", "kind": None}
    if "error" not in reply:
        return reply["result"]
    if reply["kind"] in USER_ERRORS:
        raise USER_ERRORS[reply["kind"]](reply["error"])
    raise RuntimeError(f"benchmark side {side} failed: {reply['error']}")


def child_main() -> None:
    """Entry point of a benchmark side: a JSON request on stdin, a JSON reply in the file it names."""
    request = json.loads(sys.stdin.read())
    fn, job_type = SIDES[request["side"]]
    try:
        reply = {"result": fn(from_dict(job_type, request["job"]))}
    except BertforgeError as e:
        reply = {"error": str(e), "kind": type(e).__name__}
    except Exception:  # a bug: its traceback goes to the parent's message
        reply = {"error": traceback.format_exc(), "kind": None}
    write_json(request["out"], reply)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak RSS of this process (CPU) or peak allocated tensor memory (GPU), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def timed_steps(
    step: Callable[[], tuple[int, torch.Tensor]], steps: int, warmup_steps: int, device: torch.device
) -> dict:
    """Run `warmup_steps` untimed steps, then `steps` timed ones; `step()` returns (tokens, loss)."""
    for _ in range(warmup_steps):
        step()
    synchronize(device)
    start, tokens, losses = time.perf_counter(), 0, []
    for _ in range(steps):
        n, loss = step()
        tokens += n
        losses.append(loss.detach())
    synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "tokens_per_s": tokens / seconds,
        "peak_memory_mb": peak_memory_mb(device),
        "tokens": tokens,
        "seconds": seconds,
        "loss": float(torch.stack(losses).float().mean()),
    }


def machine_info(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": str(device), "device_name": name}


def cpu_name() -> str:
    """The CPU model ("model name" in /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in BF16_PEAK_FLOPS if key in name), None)


def bench_result(bench: str, settings: dict, ours: dict, reference: dict | None, device: torch.device) -> dict:
    """The common result shape; ratio = bertforge / reference for each headline figure both have."""
    reference = reference or {}
    ratio = {
        key: ours[key] / reference[key]
        for key in HEADLINE[bench]
        if ours.get(key) is not None and reference.get(key)
    }
    return {"bench": bench, "settings": settings, "bertforge": ours, "reference": reference, "ratio": ratio,
            "machine": machine_info(device)}


# ---------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainJob:
    cfg: RunConfig  # resolved to the tokenizer: both sides build exactly this shape
    data_dir: str
    run_dir: str
    arch: str  # "roberta" or "bert": the reference model class
    steps: int
    warmup_steps: int


def bench_train(
    preset: str = "small",
    steps: int = 20,
    warmup_steps: int = 3,
    batch_size: int = 32,
    seq_len: int = 128,
    precision: str = "fp32",
    corpus: str | list[str] | None = None,
    device: str = "auto",
    compile: bool = False,
    reference: bool = True,
    data_dir: str | Path | None = None,
) -> dict:
    """Training tokens/s and peak memory of bertforge and of HF's MaskedLM + collator + AdamW.

    On a GPU both sides also get MFU: 6 x params x tokens/s plus the attention term
    (`model.flops_per_token`), over the GPU's dense bf16 peak.
    """
    at_least("steps", steps, 1)
    at_least("warmup_steps", warmup_steps, 0)
    if reference:
        require_reference("transformers")
    torch_device = resolve_device(device)
    sources = corpus_files(corpus, data_dir)
    train = {"batch_size": batch_size, "precision": precision, "device": device, "compile": compile,
             "max_steps": steps + warmup_steps, "schedule": "constant", "warmup_steps": 0}
    cfg = bench_config(preset, seq_len, train)
    with tempfile.TemporaryDirectory(prefix="bertforge-bench-") as tmp:
        tokenizer = bench_tokenizer(cfg, sources, Path(tmp) / "tokenizer")
        data_dir = prepare(sources, tokenizer, cfg.data, cfg.corpus, Path(tmp) / "data", progress=False)
        cfg = resolve_config(cfg, tokenizer, seq_len)
        job = TrainJob(cfg, str(data_dir), str(Path(tmp) / "run"), default_arch(tokenizer), steps, warmup_steps)
        ours = run_isolated("train_bertforge", job)
        ref = run_isolated("train_reference", job) if reference else None
    if (peak := bf16_peak_flops(torch_device)) is not None:
        for side in filter(None, (ours, ref)):
            side["mfu"] = side["tokens_per_s"] * flops_per_token(cfg.model, seq_len) / peak
    settings = {
        "preset": preset, "seq_len": seq_len, "batch_size": batch_size, "precision": precision, "compile": compile,
        "steps": steps, "warmup_steps": warmup_steps, "vocab_size": cfg.model.vocab_size,
        "sparse_prediction": cfg.model.sparse_prediction, "corpus": [Path(s).name for s in sources],
        "reference": f"{ARCHS[job.arch].mlm_class} + DataCollatorForLanguageModeling({cfg.masking.mask_prob}) "
                     "+ torch.optim.AdamW",
    }
    return bench_result("train", settings, ours, ref, torch_device)


def train_bertforge(job: TrainJob) -> dict:
    """bertforge's own training steps: batches read from the memmap, masked, trained (loop.train_step)."""
    t = setup(job.cfg, Path(job.data_dir), Path(job.run_dir), resume=False, init_from=None)

    def step() -> tuple[int, torch.Tensor]:
        before = t.state.tokens
        loss = train_step(t)["loss"]
        return t.state.tokens - before, loss

    return timed_steps(step, job.steps, job.warmup_steps, t.device)


def train_reference(job: TrainJob) -> dict:
    """HF's recipe: {Bert,Roberta}ForMaskedLM, DataCollatorForLanguageModeling, torch.optim.AdamW."""
    from transformers import DataCollatorForLanguageModeling
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg, t = job.cfg, job.cfg.train
    device = resolve_device(t.device)
    amp_dtype = autocast_dtype(t.precision, device)
    tokenizer = load_tokenizer(Path(job.data_dir) / "tokenizer")
    torch.manual_seed(t.seed)  # the same seed and init as the bertforge side: equal initial weights
    model = hf_masked_lm(cfg.model, tokenizer, job.arch, MaskedLM(cfg.model).state_dict()).to(device).train()
    train_model = torch.compile(model) if t.compile else model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps, weight_decay=t.weight_decay
    )
    collator = DataCollatorForLanguageModeling(hf_tokenizer(tokenizer), mlm_probability=cfg.masking.mask_prob)
    batches = iter(reference_batches(job, tokenizer))

    def step() -> tuple[int, torch.Tensor]:
        examples = next(batches)
        batch = {k: v.to(device) for k, v in collator(examples).items()}
        with autocast(device, amp_dtype):
            loss = train_model(**batch).loss
        loss.backward()
        optimizer_step(optimizer, model.parameters(), t.clip_grad_norm)
        return sum(sum(e["attention_mask"]) for e in examples), loss

    return timed_steps(step, job.steps, job.warmup_steps, device)


def reference_batches(job: TrainJob, tokenizer: TextTokenizer) -> list[list[dict]]:
    """The bertforge side's sequences in its order, as run_mlm.py's examples (ids, attention and special masks)."""
    shards = PackedShards(job.data_dir, "train")
    order = BatchOrder(len(shards), job.cfg.train.batch_size, job.cfg.train.seed)
    special = special_token_table(tokenizer)
    return [run_mlm_examples(shards[order.indices(i)], shards.pad_id, special) for i in range(job.warmup_steps + job.steps)]


def special_token_table(tokenizer: TextTokenizer) -> np.ndarray:
    """(V,) bool: which token ids are special (the collator must never mask them)."""
    return np.isin(np.arange(tokenizer.vocab_size), tokenizer.special_ids)


def run_mlm_examples(rows: np.ndarray, pad_id: int, special: np.ndarray) -> list[dict]:
    """(B, T) token rows as run_mlm.py's examples: ids, attention mask, special-tokens mask."""
    return [
        {"input_ids": row.tolist(), "attention_mask": (row != pad_id).astype(int).tolist(),
         "special_tokens_mask": special[row].astype(int).tolist()}
        for row in rows
    ]


# ---------------------------------------------------------------- prepare


@dataclass(frozen=True)
class PrepareJob:
    corpus: str  # one text file of corpus_mb MB
    tokenizer_dir: str
    out_dir: str
    cache_dir: str  # the reference's HF_DATASETS_CACHE, empty at the start
    processes: int
    seq_len: int


def bench_prepare(
    corpus_mb: float = 40,
    processes: int = 2,
    seq_len: int = 128,
    reference: bool = True,
    work_dir: str | Path | None = None,
    preset: str = "small",
    data_dir: str | Path | None = None,
) -> dict:
    """MB/s from raw text to packed `seq_len` blocks: `shards.prepare` against datasets + map + group_texts."""
    at_least("corpus_mb", corpus_mb, 0.001)
    at_least("processes", processes, 1)
    if reference:
        require_reference("transformers", "datasets")
    cfg = build_config(RunConfig, preset=preset)
    with work_folder(work_dir) as root:
        train, held_out = bench_text(data_dir)
        corpus = repeated_corpus(root, corpus_mb, [*train, held_out])
        tokenizer = bench_tokenizer(cfg, train, root / "prepare-tokenizer")
        job = PrepareJob(str(corpus), str(root / "prepare-tokenizer"), str(root / "prepare-out"),
                         str(root / "hf-cache"), processes, seq_len)
        remove_folders(job.out_dir, job.cache_dir)  # an earlier crashed run must not leave a warm cache
        try:
            ours = run_isolated("prepare_bertforge", job)
            ref = run_isolated("prepare_reference", job) if reference else None
        finally:
            remove_folders(job.out_dir, job.cache_dir, job.tokenizer_dir)
    settings = {"corpus_mb": round(ours["bytes"] / MB, 1), "processes": processes, "seq_len": seq_len,
                "vocab_size": tokenizer.vocab_size,
                "reference": "load_dataset('text') + map(tokenizer, batched) + map(group_texts, batched)"}
    return bench_result("prepare", settings, ours, ref, torch.device("cpu"))


def remove_folders(*paths: str) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def repeated_corpus(folder: Path, megabytes: float, sources: list[str]) -> Path:
    """`megabytes` MB of text (to the end of a line) made by repeating `sources`; reused when already there."""
    path = folder / f"corpus-{megabytes:g}mb.txt"
    target = math.ceil(megabytes * MB)
    if path.is_file():
        return path
    texts = [Path(s).read_bytes().rstrip(b"\n") + b"\n\n" for s in sources]
    data = b"".join(texts * math.ceil(target / sum(len(t) for t in texts)))
    end = data.find(b"\n", target - 1)
    atomic_write_bytes(path, data if end < 0 else data[: end + 1])
    return path


def prepare_bertforge(job: PrepareJob) -> dict:
    # The Rust encoder uses one thread per core unless told; give it as many as the reference's processes.
    os.environ["RAYON_NUM_THREADS"] = str(job.processes)
    tokenizer = load_tokenizer(job.tokenizer_dir)
    start = time.perf_counter()
    out = prepare([job.corpus], tokenizer, DataConfig(seq_len=job.seq_len, val_fraction=0.0), CorpusConfig(),
                  job.out_dir, progress=False)
    seconds = time.perf_counter() - start
    split = read_json(Path(out) / "manifest.json")["splits"]["train"]
    return prepare_figures(job, seconds, split["sequences"], split["tokens"])


def prepare_reference(job: PrepareJob) -> dict:
    """run_mlm.py's preprocessing (without --line_by_line) into an empty cache."""
    os.environ["HF_DATASETS_CACHE"] = job.cache_dir  # read when datasets is imported
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    hf_tok = hf_tokenizer(load_tokenizer(job.tokenizer_dir))
    start = time.perf_counter()
    raw = datasets.load_dataset("text", data_files={"train": job.corpus}, cache_dir=job.cache_dir, split="train")
    tokenized = raw.map(partial(tokenize_lines, tokenizer=hf_tok), batched=True, num_proc=job.processes,
                        remove_columns=["text"])
    blocks = tokenized.map(partial(group_texts, block_size=job.seq_len), batched=True, num_proc=job.processes)
    seconds = time.perf_counter() - start
    return prepare_figures(job, seconds, len(blocks), len(blocks) * job.seq_len)


def tokenize_lines(examples: dict, tokenizer) -> dict:
    return tokenizer(examples["text"], return_special_tokens_mask=True)


def group_texts(examples: dict, block_size: int) -> dict:
    """run_mlm.py's group_texts: concatenate, drop the remainder, cut into blocks of block_size."""
    joined = {k: list(chain(*examples[k])) for k in examples}
    total = len(next(iter(joined.values()))) // block_size * block_size
    return {k: [t[i : i + block_size] for i in range(0, total, block_size)] for k, t in joined.items()}


def prepare_figures(job: PrepareJob, seconds: float, blocks: int, tokens: int) -> dict:
    size = Path(job.corpus).stat().st_size
    return {"mb_per_s": size / MB / seconds, "seconds": seconds, "bytes": size, "blocks": blocks, "tokens": tokens}


# ---------------------------------------------------------------- fill-mask


@dataclass(frozen=True)
class FillJob:
    run_dir: str
    hf_dir: str
    texts: list[str]
    top_k: int
    batch_size: int
    device: str


def bench_fill_mask(
    preset: str = "small",
    sentences: int = 1000,
    top_k: int = 5,
    reference: bool = True,
    device: str = "auto",
    batch_size: int = 32,
    corpus: str | list[str] | None = None,
    data_dir: str | Path | None = None,
) -> dict:
    """Sentences/s of top-k fill-mask: bertforge's batched path against `pipeline("fill-mask")`, equal weights.

    The model is random (speed does not depend on training), so with `corpus` given its sentences are
    masked too and no data folder is read; else the data folder's held-out text gives them."""
    for name, value in (("sentences", sentences), ("top_k", top_k), ("batch_size", batch_size)):
        at_least(name, value, 1)
    if reference:
        require_reference("transformers")
    torch_device = resolve_device(device)
    cfg = build_config(RunConfig, preset=preset)
    sources = corpus_files(corpus, data_dir)
    held_out = sources if corpus else [bench_text(data_dir)[1]]
    with tempfile.TemporaryDirectory(prefix="bertforge-bench-") as tmp:
        tokenizer = bench_tokenizer(cfg, sources, Path(tmp) / "tokenizer")
        cfg = resolve_config(cfg, tokenizer, cfg.data.seq_len)
        run_dir = random_run(cfg, tokenizer, Path(tmp) / "run")
        texts = masked_sentences(held_out, sentences, tokenizer, cfg.model.max_seq_len)
        hf_dir = export_run(run_dir, Path(tmp) / "hf", default_arch(tokenizer)) if reference else ""
        job = FillJob(str(run_dir), str(hf_dir), texts, top_k, batch_size, device)
        ours = run_isolated("fill_bertforge", job)
        ref = run_isolated("fill_reference", job) if reference else None
    top1 = ours.pop("top1")
    agreement = top1_agreement(top1, ref.pop("top1")) if ref else None
    settings = {"preset": preset, "sentences": len(texts), "top_k": top_k, "batch_size": batch_size,
                "vocab_size": cfg.model.vocab_size, "source": [Path(p).name for p in held_out],
                "reference": f"pipeline('fill-mask', batch_size={batch_size}) on the exported model"}
    result = bench_result("fill-mask", settings, ours, ref, torch_device)
    result["top1_agreement"] = agreement  # equal weights: the answers should be the same
    return result


def random_run(cfg: RunConfig, tokenizer: TextTokenizer, run_dir: Path) -> Path:
    """A run folder holding a randomly initialised model (speed does not depend on training)."""
    torch.manual_seed(cfg.train.seed)
    model = MaskedLM(cfg.model)
    save_config(run_dir / "config.yaml", cfg)
    tokenizer.save(run_dir / "tokenizer")
    state = dataclasses.asdict(TrainerState())
    save_checkpoint(run_dir, model, build_optimizer(model, cfg.train, torch.device("cpu")), state)
    return run_dir


def masked_sentences(
    paths: list[str], count: int, tokenizer: TextTokenizer, max_tokens: int, seed: int = 0
) -> list[str]:
    """The first `count` sentences of 6-30 words (and at most `max_tokens` tokens) in `paths`, one
    random word of each replaced by the mask."""
    rng = np.random.default_rng(seed)
    text = "\n".join(Path(path).read_text(encoding="utf-8") for path in paths)
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        words = sentence.split()
        candidates = [i for i, w in enumerate(words) if w.isalpha()]
        if not 6 <= len(words) <= 30 or not candidates:
            continue
        words[candidates[rng.integers(len(candidates))]] = tokenizer.mask_token
        masked = " ".join(words)
        if len(tokenizer.encode(masked)) <= max_tokens:
            out.append(masked)
        if len(out) == count:
            return out
    raise DataError(f"{', '.join(paths)}: only {len(out)} usable sentences, fewer than the {count} asked for")


def fill_bertforge(job: FillJob) -> dict:
    run = load_run(job.run_dir, device=job.device)
    fill = partial(fill_mask_batch, run, top_k=job.top_k, batch_size=job.batch_size)
    return timed_fill(fill, job.texts, job.batch_size, run.device, lambda a: a[0][0]["token_id"])


def fill_reference(job: FillJob) -> dict:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    device = resolve_device(job.device)
    fill = pipeline("fill-mask", model=job.hf_dir, tokenizer=job.hf_dir, top_k=job.top_k, device=device)
    run = partial(fill, batch_size=job.batch_size)
    return timed_fill(run, job.texts, job.batch_size, device, lambda a: a[0]["token"])


def timed_fill(fill: Callable, texts: list[str], batch_size: int, device: torch.device, top1: Callable) -> dict:
    """One untimed batch, then all `texts` timed; sentences/s and each sentence's top token id."""
    fill(texts[:batch_size])
    synchronize(device)
    start = time.perf_counter()
    answers = fill(texts)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"sentences_per_s": len(answers) / seconds, "sentences": len(answers), "seconds": seconds,
            "top1": [top1(a) for a in answers]}


def top1_agreement(ours: list[int], theirs: list[int]) -> float:
    return sum(a == b for a, b in zip(ours, theirs)) / max(len(ours), 1)


# ---------------------------------------------------------------- output


def format_table(result: dict) -> str:
    """metric | bertforge | reference | ratio, under one line of settings."""
    ours, ref, ratio = result["bertforge"], result.get("reference") or {}, result["ratio"]
    plain = {k: v for k, v in result["settings"].items() if isinstance(v, (int, float, str)) and k != "reference"}
    title = f"{result['bench']}: " + ", ".join(f"{k} {v}" for k, v in plain.items())
    rows = [("metric", "bertforge", "reference", "ratio")]
    for key in HEADLINE[result["bench"]]:
        if ours.get(key) is None:
            continue
        label, fmt = LABELS[key]
        theirs = fmt.format(ref[key]) if ref.get(key) is not None else "-"
        rows.append((label, fmt.format(ours[key]), theirs, f"{ratio[key]:.2f}x" if key in ratio else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [title] + ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                                 enumerate(zip(row, widths))) for row in rows]
    machine = result["machine"]
    lines.append(f"({machine['device_name']}, {machine['cpu_count']} CPUs, torch {machine['torch']}; "
                 f"reference: {result['settings'].get('reference', '-')})")
    return "\n".join(lines)


# ---------------------------------------------------------------- sides by name (run_isolated)

SIDES: dict[str, tuple[Callable[..., dict], type]] = {
    "train_bertforge": (train_bertforge, TrainJob),
    "train_reference": (train_reference, TrainJob),
    "prepare_bertforge": (prepare_bertforge, PrepareJob),
    "prepare_reference": (prepare_reference, PrepareJob),
    "fill_bertforge": (fill_bertforge, FillJob),
    "fill_reference": (fill_reference, FillJob),
}
USER_ERRORS = {cls.__name__: cls for cls in (BertforgeError, ConfigError, DataError)}
