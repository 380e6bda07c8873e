"""The pretraining loop, built from named steps: set up, (resume), train steps, evaluate, save.

Exact resume comes from three choices: the data order and the masks are pure functions of
the batch counter (batches.py, masking.step_generator), the LR is a pure function of the
step (schedule.py), and everything else that changes (weights, AdamW moments, dropout RNG,
grad scaler) is in the checkpoint.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..config import RunConfig, save_config
from ..errors import ConfigError, DataError
from ..evaluate import attention_mask_for, evaluate_split
from ..files import read_json, write_json
from ..masking import MaskingVocab, mask_tokens, step_generator
from ..model import MaskedLM, count_parameters
from ..runtime import autocast, autocast_dtype, resolve_device
from ..shards import PackedShards, check_compatible, load_manifest
from ..tokenizer import TextTokenizer, load_tokenizer
from .batches import BatchOrder
from .checkpoint import checkpoint_dirs, latest_checkpoint, load_checkpoint, load_model_weights, save_checkpoint
from .metrics import MetricsWriter
from .schedule import lr_factor, planned_steps

log = logging.getLogger(__name__)


@dataclass
class TrainerState:
    """The counters a checkpoint stores besides tensors."""

    step: int = 0  # optimizer steps taken
    batches: int = 0  # micro-batches consumed = position in the data order
    tokens: int = 0  # non-padding training tokens seen
    elapsed_s: float = 0.0  # training wall-clock time, carried over resumes


@dataclass
class Trainer:
    """What the steps of the loop share."""

    cfg: RunConfig
    run_dir: Path
    model: MaskedLM
    train_model: torch.nn.Module  # `model`, possibly wrapped by torch.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    train_data: PackedShards
    val_data: PackedShards | None
    order: BatchOrder
    vocab: MaskingVocab
    device: torch.device
    amp_dtype: torch.dtype | None
    metrics: MetricsWriter
    state: TrainerState
    total_steps: int


def resolve_config(cfg: RunConfig, tokenizer: TextTokenizer, seq_len: int, init_from: Path | None = None) -> RunConfig:
    """Fit the model to the tokenizer and shards it trains on (vocab, pad id, position style).

    A model initialised from another run keeps its shape; its tokenizer must be the data's."""
    if init_from is not None:
        model = cfg.model
        if load_tokenizer(init_from / "tokenizer").fingerprint != tokenizer.fingerprint:
            raise DataError(
                f"the shards were made with another tokenizer than the model in {init_from}; "
                f"prepare them with --tokenizer {init_from / 'tokenizer'}"
            )
    else:
        offset = tokenizer.pad_id + 1 if tokenizer.scheme == "roberta" else 0
        model = replace(cfg.model, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, position_offset=offset)
    if seq_len > model.max_seq_len:
        raise ConfigError(
            f"the shards hold {seq_len}-token sequences but model.max_seq_len is {model.max_seq_len}; "
            "raise model.max_seq_len or prepare with a shorter data.seq_len"
        )
    return replace(cfg, model=model, data=replace(cfg.data, seq_len=seq_len))


def build_optimizer(model: torch.nn.Module, cfg, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: biases and LayerNorm gains are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, **fast
    )


def open_data(data_dir: Path) -> tuple[TextTokenizer, PackedShards, PackedShards | None]:
    manifest = load_manifest(data_dir)
    tokenizer = load_tokenizer(Path(data_dir) / "tokenizer")
    check_compatible(manifest, tokenizer)
    train = PackedShards(data_dir, "train")
    val = PackedShards(data_dir, "validation") if manifest.get("splits", {}).get("validation") else None
    return tokenizer, train, val


def masking_vocab(tokenizer: TextTokenizer) -> MaskingVocab:
    return MaskingVocab.build(
        tokenizer.vocab_size, tokenizer.special_ids, tokenizer.mask_id, tokenizer.word_start_table()
    )


def setup(cfg: RunConfig, data_dir: Path, run_dir: Path, resume: bool, init_from: Path | None) -> Trainer:
    """Build everything the loop needs, resuming from the latest checkpoint when asked."""
    run_dir = Path(run_dir)
    has_checkpoints = bool(checkpoint_dirs(run_dir))
    if has_checkpoints and not resume:
        raise DataError(f"{run_dir} already holds checkpoints; pass --resume to continue it or pick another --out")
    if resume and not has_checkpoints:
        raise DataError(f"{run_dir}: no checkpoint to resume from")
    tokenizer, train_data, val_data = open_data(data_dir)
    cfg = resolve_config(cfg, tokenizer, train_data.seq_len, None if resume else init_from)
    device = resolve_device(cfg.train.device)
    amp_dtype = autocast_dtype(cfg.train.precision, device)
    torch.manual_seed(cfg.train.seed)  # the one seeding point: init weights and dropout
    model = MaskedLM(cfg.model).to(device)
    if init_from is not None and not resume:
        load_model_weights(model, latest_checkpoint(init_from))
    optimizer = build_optimizer(model, cfg.train, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    state = TrainerState()
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        state = TrainerState(**load_checkpoint(checkpoint, model, optimizer, scaler))
        log.info("resumed from %s (step %d, %d tokens)", checkpoint, state.step, state.tokens)
    write_run_files(cfg, run_dir, data_dir, tokenizer, init_from)
    metrics = MetricsWriter(run_dir)
    if resume:
        metrics.truncate_after(state.step)
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum_steps * cfg.data.seq_len
    return Trainer(
        cfg=cfg,
        run_dir=run_dir,
        model=model,
        train_model=torch.compile(model) if cfg.train.compile else model,
        optimizer=optimizer,
        scaler=scaler,
        train_data=train_data,
        val_data=val_data,
        order=BatchOrder(len(train_data), cfg.train.batch_size, cfg.train.seed),
        vocab=masking_vocab(tokenizer),
        device=device,
        amp_dtype=amp_dtype,
        metrics=metrics,
        state=state,
        total_steps=planned_steps(cfg.train, tokens_per_step),
    )


def write_run_files(
    cfg: RunConfig, run_dir: Path, data_dir: Path, tokenizer: TextTokenizer, init_from: Path | None
) -> None:
    """The resolved config, the tokenizer, where the data and start weights came from."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / "config.yaml", cfg)
    if not (run_dir / "tokenizer").exists():
        tokenizer.save(run_dir / "tokenizer")
    previous = run_dir / "run.json"
    info = read_json(previous) if previous.is_file() else {}  # a resume keeps where it started from
    info["data_dir"] = str(Path(data_dir).resolve())
    if init_from is not None:
        info["init_from"] = str(Path(init_from).resolve())
    write_json(run_dir / "run.json", info)


def next_batch(t: Trainer) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, int]:
    """Read, mask and move the next micro-batch; returns inputs, attention mask, labels, tokens."""
    ids = t.train_data[t.order.indices(t.state.batches)]  # (B, T) numpy
    generator = step_generator(t.cfg.train.seed, t.state.batches)
    inputs, labels = mask_tokens(torch.from_numpy(ids), t.vocab, t.cfg.masking, generator)
    mask = attention_mask_for(ids, t.train_data.pad_id)
    t.state.batches += 1
    tokens = int((ids != t.train_data.pad_id).sum())
    to = lambda x: None if x is None else x.to(t.device, non_blocking=True)  # noqa: E731
    return to(inputs), to(mask), to(labels), tokens


def train_step(t: Trainer) -> dict:
    """One optimizer step over `grad_accum_steps` micro-batches."""
    cfg = t.cfg.train
    time_fraction = t.state.elapsed_s / cfg.max_time_s if cfg.max_time_s else 0.0
    lr = cfg.lr * lr_factor(t.state.step, cfg, t.total_steps, time_fraction)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    loss_sum = torch.zeros((), device=t.device)
    for _ in range(cfg.grad_accum_steps):
        inputs, mask, labels, tokens = next_batch(t)
        with autocast(t.device, t.amp_dtype):
            loss = t.train_model(inputs, mask, labels).loss / cfg.grad_accum_steps
        (t.scaler.scale(loss) if t.scaler else loss).backward()
        loss_sum += loss.detach()
        t.state.tokens += tokens
    if t.scaler:
        t.scaler.unscale_(t.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), cfg.clip_grad_norm or float("inf"))
    if t.scaler:
        t.scaler.step(t.optimizer)
        t.scaler.update()
    else:
        t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)
    t.state.step += 1
    return {"loss": loss_sum, "grad_norm": grad_norm, "lr": lr}


def run_evaluation(t: Trainer) -> dict | None:
    if t.val_data is None:
        return None
    cfg = t.cfg.train
    result = evaluate_split(
        t.model, t.val_data, t.vocab, cfg.batch_size, cfg.eval_batches, cfg.eval_seed, t.device, t.amp_dtype
    )
    t.metrics.write("validation", t.state.step, {**result, "tokens": t.state.tokens})
    log.info(
        "step %d validation: loss %.4f  perplexity %.2f  masked accuracy %.4f",
        t.state.step, result["loss"], result["perplexity"], result["masked_accuracy"],
    )
    return result


def save(t: Trainer) -> Path:
    return save_checkpoint(t.run_dir, t.model, t.optimizer, asdict(t.state), t.scaler, t.cfg.train.keep_last)


def finished(t: Trainer) -> bool:
    cfg, s = t.cfg.train, t.state
    return bool(
        (cfg.max_steps and s.step >= cfg.max_steps)
        or (cfg.max_tokens and s.tokens >= cfg.max_tokens)
        or (cfg.max_time_s and s.elapsed_s >= cfg.max_time_s)
    )


def describe(t: Trainer) -> None:
    cfg = t.cfg
    per_step = cfg.train.batch_size * cfg.train.grad_accum_steps
    log.info(
        "model: %s parameters, %d layers, hidden %d, %s-LN | data: %d train sequences of %d tokens "
        "| batch %d sequences (%d x %d accumulation) | device %s, %s",
        f"{count_parameters(t.model):,}", cfg.model.num_layers, cfg.model.hidden_size, cfg.model.norm,
        len(t.train_data), cfg.data.seq_len, per_step, cfg.train.batch_size, cfg.train.grad_accum_steps,
        t.device, t.amp_dtype or "fp32",
    )


def progress_bar(t: Trainer, enabled: bool):
    """A tqdm bar on a terminal; off in logs and pipes (then each log record is a log line)."""
    from tqdm import tqdm

    on = enabled and sys.stderr.isatty()
    return tqdm(total=t.total_steps or None, initial=t.state.step, unit="step", disable=not on, dynamic_ncols=True)


def log_train_record(t: Trainer, bar, record: dict) -> None:
    t.metrics.write("train", t.state.step, record)
    if bar.disable:
        log.info(
            "step %d  loss %.4f  lr %.2e  %s tokens/s  %.0f s",
            t.state.step, record["loss"], record["lr"], f"{record['tokens_per_s']:,.0f}", record["elapsed_s"],
        )
    else:
        bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}")


class LogWindow:
    """Training loss and throughput since the last log record (loss stays on the device until then)."""

    def __init__(self, tokens: int):
        self.loss_sum: torch.Tensor | float = 0.0
        self.steps = 0
        self.tokens_at_start = tokens
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum = self.loss_sum + loss
        self.steps += 1

    def record(self, t: Trainer, out: dict) -> dict:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return {
            "loss": float(self.loss_sum) / self.steps,
            "lr": out["lr"],
            "grad_norm": float(out["grad_norm"]),
            "tokens": t.state.tokens,
            "tokens_per_s": (t.state.tokens - self.tokens_at_start) / seconds,
            "elapsed_s": t.state.elapsed_s,
        }


def due(t: Trainer, every: int) -> bool:
    return t.state.step % every == 0 and not finished(t)


def pretrain(
    cfg: RunConfig,
    data_dir: str | Path,
    run_dir: str | Path,
    resume: bool = False,
    init_from: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train until max_steps / max_tokens / max_time_s; returns the last validation metrics."""
    t = setup(cfg, Path(data_dir), Path(run_dir), resume, Path(init_from) if init_from else None)
    describe(t)
    last_eval = run_evaluation(t) if t.state.step == 0 else None
    bar = progress_bar(t, progress)
    window = LogWindow(t.state.tokens)
    clock = time.perf_counter()
    try:
        while not finished(t):
            out = train_step(t)
            t.state.elapsed_s += time.perf_counter() - clock
            window.add(out["loss"])
            bar.update(1)
            if t.state.step % t.cfg.train.log_every_steps == 0 or finished(t):
                log_train_record(t, bar, window.record(t, out))
                window = LogWindow(t.state.tokens)
            if due(t, t.cfg.train.eval_every_steps):
                last_eval = run_evaluation(t)
            if due(t, t.cfg.train.save_every_steps):
                save(t)
            clock = time.perf_counter()  # evaluation and saving do not count against a time budget
    except KeyboardInterrupt:
        bar.close()
        log.warning("interrupted at step %d; saved %s; continue with --resume", t.state.step, save(t))
        t.metrics.close()
        raise
    bar.close()
    last_eval = run_evaluation(t) or last_eval
    path = save(t)
    t.metrics.close()
    log.info("done: step %d, %s tokens, %.1f s; checkpoint %s", t.state.step, f"{t.state.tokens:,}", t.state.elapsed_s, path)
    return {"step": t.state.step, "tokens": t.state.tokens, "elapsed_s": t.state.elapsed_s, "validation": last_eval}
