"""The pretraining loop, built from named steps: set up, (resume), train steps, evaluate, save.

Exact resume comes from these choices: the data order is a pure function of the batch counter
(batches.py), a sequence's masks are a pure function of (seed, epoch, sequence index)
(masking.py), the LR is a pure function of the step (schedule.py), and everything else that
changes (weights, AdamW moments, dropout RNG, grad scaler) is in the checkpoint.

Many processes (torchrun, see distributed.py): `train.batch_size` is the *global* micro-batch;
each of the N ranks reads and trains on its own batch_size / N sequences of it, so one config
trains the same model on any number of ranks. The global batch of an optimizer step is
batch_size x grad_accum_steps = (batch_size / N) per rank x grad_accum_steps x N ranks.
The loss of a step is the mean cross-entropy over *all* its masked tokens, on every rank and
in every micro-batch (`train_step`), so 2 ranks x 8 sequences, 1 rank x 16, or 1 rank x 2
micro-batches of 8 give the same loss and the same gradient. Only rank 0 logs, writes
metrics and checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch

from ..checkpoint import (
    checkpoint_dirs,
    latest_intact_checkpoint,
    load_model_weights,
    read_optimizer,
    read_rng,
    rng_state,
    set_aside_newer,
    set_rng_state,
    write_checkpoint,
)
from ..config import RunConfig, TrainConfig, load_config
from ..console import show_logs_without_setup
from ..errors import ConfigError, DataError, DivergedError
from ..evaluate import (
    ACCURACY_KEY,
    attention_mask_for,
    eval_sequences,
    evaluate_sums,
    metrics_from_sums,
)
from ..files import read_json
from ..masking import causal_labels, mask_tokens, masking_vocab, sequence_seeds
from ..model import IGNORE_INDEX, build_model
from ..pairs import load_start_weights, pair_inputs
from ..runtime import autocast, autocast_dtype, precision_choice, resolve_device
from ..shards import PackedShards, check_compatible, load_manifest
from ..tokenizer import TextTokenizer, load_tokenizer
from . import distributed, phases
from .batches import BatchOrder, batch_order
from .distributed import World
from .guard import (
    Interrupted,
    Poison,
    all_finite,
    signal_name,
    stop_signals,
    weights_finite,
)
from .metrics import MetricsWriter
from .optim import build_optimizer, optimizer_step, set_lr
from .progress import LogWindow, describe, info, log_train_record, progress_bar
from .run_folder import (
    check_resume_settings,
    remove_leftovers,
    run_lock,
    should_resume,
    write_run_files,
)
from .samples import log_samples
from .schedule import planned_steps, time_fraction, train_lr_factor
from .state import Trainer, TrainerState

log = logging.getLogger(__name__)


def resolve_config(
    cfg: RunConfig, tokenizer: TextTokenizer, seq_len: int, init_from: Path | None = None, template: str = ""
) -> RunConfig:
    """Fit the model to the tokenizer and shards it trains on (vocab, pad id, position style, the
    shards' template, which `generate` wraps prompts in).

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
    model = replace(model, causal=cfg.train.objective == "clm")  # saved in config.yaml: load_run rebuilds it right
    if seq_len > model.max_seq_len:
        raise ConfigError(
            f"the shards hold {seq_len}-token sequences but model.max_seq_len is {model.max_seq_len}; "
            "raise model.max_seq_len or prepare with a shorter data.seq_len"
        )
    return replace(cfg, model=model, data=replace(cfg.data, seq_len=seq_len, template=template))


def open_data(data_dir: Path) -> tuple[TextTokenizer, PackedShards, PackedShards | None]:
    manifest = load_manifest(data_dir)
    tokenizer = load_tokenizer(Path(data_dir) / "tokenizer")
    check_compatible(manifest, tokenizer)
    train = PackedShards(data_dir, "train")
    val = PackedShards(data_dir, "validation") if manifest.get("splits", {}).get("validation") else None
    return tokenizer, train, val


def setup(
    cfg: RunConfig,
    data_dir: Path,
    run_dir: Path,
    resume: bool,
    init_from: Path | None,
    world: World | None = None,
    allow_changed_settings: bool = False,
) -> Trainer:
    """Build everything the loop needs, resuming from the latest checkpoint when asked.

    Under torchrun every rank checks its inputs, then the ranks compare verdicts before anything
    else: a problem found by any rank stops all of them, and rank 0 reports it.
    """
    world = world or World()
    run_dir = Path(run_dir)
    if world.is_main:
        remove_leftovers(run_dir)
    checked = world.agree(
        lambda: check_inputs(cfg, Path(data_dir), run_dir, resume, init_from, world, allow_changed_settings)
    )
    cfg, resume, tokenizer, train_data, val_data, order, device, amp_dtype = checked
    checkpoint = latest_intact_checkpoint(run_dir, for_training=True) if resume else None
    if checkpoint is not None and world.is_main:
        set_aside_newer(run_dir, checkpoint)
    torch.manual_seed(cfg.train.seed)  # the one seeding point: init weights (the same on every rank)
    model = build_model(cfg.model, cfg.train.rtd_weight).to(device)
    if checkpoint is not None or init_from is not None:  # weights go in before DDP/FSDP copy or shard them
        if checkpoint is not None:
            load_model_weights(model, checkpoint)
        else:  # a start run trained with or without a sentence head (pairs.py)
            load_start_weights(model, latest_intact_checkpoint(init_from))
    if world.rank and checkpoint is None:
        torch.manual_seed(dropout_seed(cfg.train.seed, world.rank))  # each rank its own dropout masks
    parallel = distributed.wrap_model(model, cfg.train.strategy, world, device, list(model.encoder.layers))
    optimizer = build_optimizer(model, cfg.train, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    state = TrainerState(world_size=world.size)
    if checkpoint is not None:
        state = restore(checkpoint, parallel, optimizer, scaler, world, device, cfg.train.seed)
    if world.is_main:
        write_run_files(cfg, run_dir, data_dir, tokenizer, init_from)
    metrics = MetricsWriter(run_dir, enabled=world.is_main)
    metrics.truncate_after(state.step if resume else -1)  # records past the checkpoint are written again
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum_steps * cfg.data.seq_len
    t = Trainer(
        cfg=cfg,
        run_dir=run_dir,
        model=model,
        parallel=parallel,
        train_model=torch.compile(parallel) if cfg.train.compile else parallel,
        optimizer=optimizer,
        scaler=scaler,
        train_data=train_data,
        val_data=val_data,
        order=order,
        vocab=masking_vocab(tokenizer),
        device=device,
        amp_dtype=amp_dtype,
        metrics=metrics,
        state=state,
        total_steps=planned_steps(cfg.train, tokens_per_step),
        world=world,
        poison=Poison(cfg.train),
    )
    phases.attach(t, Path(data_dir))  # sequence-length phases: the shards of the phase this step is in
    return t


class Checked(NamedTuple):
    """What `check_inputs` found usable."""

    cfg: RunConfig  # fitted to the tokenizer and shards
    resume: bool
    tokenizer: TextTokenizer
    train_data: PackedShards
    val_data: PackedShards | None
    order: BatchOrder
    device: torch.device
    amp_dtype: torch.dtype | None


def check_inputs(
    cfg: RunConfig,
    data_dir: Path,
    run_dir: Path,
    resume: bool,
    init_from: Path | None,
    world: World,
    allow_changed_settings: bool = False,
) -> Checked:
    """Every user error a run can meet before it trains: run folder, data, batch split, device, changed settings."""
    resume = should_resume(run_dir, resume, world)
    tokenizer, train_data, val_data = open_data(data_dir)
    template = train_data.manifest.get("data", {}).get("template", "")
    cfg = resolve_config(cfg, tokenizer, train_data.seq_len, None if resume else init_from, template)
    if cfg.train.loss_on == "response" and not train_data.has_loss_mask:
        train_data.loss_mask([0])  # the DataError that says how to make shards with a loss mask
    phases.check_data(cfg, train_data)  # pairs for mlm+nsp/sop, shards for every sequence-length phase
    order = batch_order(cfg.train, len(train_data), world)
    device, amp_dtype = devices(cfg.train, world)
    cfg = record_precision(cfg, device, world)
    if resume and (run_dir / "config.yaml").is_file():  # `auto` resolved on both sides (older runs saved "auto")
        saved = load_config(run_dir / "config.yaml")
        saved = replace(saved, train=replace(saved.train, precision=precision_choice(saved.train.precision, device)[0]))
        check_resume_settings(saved, cfg, allow_changed_settings, world)
    return Checked(cfg, resume, tokenizer, train_data, val_data, order, device, amp_dtype)


def preflight(
    cfg: RunConfig,
    data_dir: Path,
    run_dir: Path,
    resume: bool,
    init_from: Path | None,
    ranks: int,
    allow_changed_settings: bool = False,
) -> None:
    """The checks of `setup`, for a launcher before it starts `ranks` processes (`pretrain --nproc`)."""
    world = World(size=ranks, launched=True)
    check_inputs(cfg, Path(data_dir), Path(run_dir), resume, init_from, world, allow_changed_settings)


def devices(cfg: TrainConfig, world: World) -> tuple[torch.device, torch.dtype | None]:
    """The device this rank trains on and its autocast dtype (None: fp32)."""
    device = distributed.training_device(resolve_device(cfg.device), world)
    amp_dtype = autocast_dtype(cfg.precision, device)
    if amp_dtype == torch.float16 and world.launched and cfg.strategy == "fsdp":
        raise ConfigError("train.precision fp16 is not supported with train.strategy fsdp; use bf16")
    return device, amp_dtype


def record_precision(cfg: RunConfig, device: torch.device, world: World) -> RunConfig:
    """Say which precision `auto` chose and why, and keep the choice in config.yaml (issue 17)."""
    chosen, reason = precision_choice(cfg.train.precision, device)
    if world.is_main:
        log.info("precision: %s (%s)", chosen, reason)
    return replace(cfg, train=replace(cfg.train, precision=chosen))


def dropout_seed(seed: int, rank: int) -> int:
    return seed + 1_000_003 * rank


def restore(
    checkpoint: Path,
    parallel: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    world: World,
    device: torch.device,
    seed: int,
) -> TrainerState:
    """Optimizer, scaler, this rank's RNG and the counters (the weights are already loaded)."""
    sharded = distributed.is_sharded(parallel)  # FSDP: the full state stays on the CPU, each rank keeps its shard
    optim = read_optimizer(checkpoint, torch.device("cpu") if sharded else device)
    distributed.load_optimizer_state(parallel, optimizer, optim["optimizer"])
    if scaler is not None and optim["scaler"]:
        scaler.load_state_dict(optim["scaler"])
    state = TrainerState(**read_json(checkpoint / "trainer.json"))
    rng = read_rng(checkpoint, world.rank)
    if rng is not None:
        set_rng_state(rng, device)
    else:  # the run continues on more ranks than wrote the checkpoint
        torch.manual_seed(dropout_seed(seed, world.rank) + state.step)
    if state.world_size != world.size and world.is_main:
        log.warning(
            "%s was written by %d ranks, this run has %d: weights, optimizer and data position carry over "
            "(the global batch is the same); dropout draws differ from an unbroken run",
            checkpoint, state.world_size, world.size,
        )
    if world.is_main:
        log.info("resumed from %s (step %d, %d tokens)", checkpoint, state.step, state.tokens)
    return replace(state, world_size=world.size)


@dataclass
class MicroBatch:
    """This rank's part of one global micro-batch, masked and on the device."""

    inputs: torch.Tensor  # (B, T) ids with the chosen positions masked
    attention_mask: torch.Tensor | None  # (B, T), None when nothing is padded
    labels: torch.Tensor  # (B, T) original ids at chosen positions, -100 elsewhere
    masked: int  # positions with a label
    tokens: int  # non-padding tokens
    extra: dict  # mlm+nsp / mlm+sop: token_type_ids and sentence_labels (pairs.py), else empty


def next_batch(t: Trainer) -> MicroBatch:
    """Read, mask (MLM) or shift (CLM) and move this rank's sequences of the next global micro-batch."""
    indices = t.order.indices(t.state.batches)
    ids = t.train_data[indices]  # (B, T) numpy, B = batch_size / world size
    if t.cfg.train.objective == "clm":
        inputs, labels = objective_inputs(t.cfg.train, t.train_data, ids, indices)
    else:
        seeds = sequence_seeds(t.cfg.train.seed, t.order.epoch_of(t.state.batches), indices)
        inputs, labels = mask_tokens(torch.from_numpy(ids), t.vocab, t.cfg.masking, seeds)
    mask = attention_mask_for(ids, t.train_data.pad_id, t.train_data.eos_id if t.cfg.data.isolate_documents else None)
    t.state.batches += 1
    to = lambda x: None if x is None else x.to(t.device, non_blocking=True)  # noqa: E731
    masked, tokens = int((labels != IGNORE_INDEX).sum()), int((ids != t.train_data.pad_id).sum())
    return MicroBatch(to(inputs), to(mask), to(labels), masked, tokens, pair_inputs(t.train_data, indices, t.device))


def objective_inputs(cfg: TrainConfig, shards: PackedShards, ids, indices) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal LM: the ids as they are, and next-token labels (only on responses with loss_on=response)."""
    loss_mask = torch.from_numpy(shards.loss_mask(indices)) if cfg.loss_on == "response" else None
    ids = torch.from_numpy(ids)
    return ids, causal_labels(ids, shards.pad_id, loss_mask)


def train_step(t: Trainer) -> dict:
    """One optimizer step over `grad_accum_steps` micro-batches on every rank.

    The loss is sum(cross-entropy) / (masked tokens of the whole step, all ranks and micro-batches).
    The step's micro-batches are read first, so that count is known (one all-reduce of two
    integers on the CPU) before the first forward. Each micro-batch's mean loss is weighted by
    its share of the masked tokens and multiplied by the world size, because DDP and FSDP
    average gradients over ranks: the result is the gradient of the global mean, whatever the
    split into ranks and micro-batches. Gradients are reduced over ranks only after the last
    micro-batch (`no_sync` before it).
    """
    cfg = t.cfg.train
    if t.state.step == cfg.warmup_steps:
        t.state.warmup_end_s = t.state.elapsed_s
    spent = time_fraction(t.state.elapsed_s, t.state.warmup_end_s, cfg.max_time_s)
    lr = cfg.lr * t.state.lr_scale * train_lr_factor(t.state.step, cfg, t.total_steps, spent)
    set_lr(t.optimizer, lr)
    batches = [next_batch(t) for _ in range(cfg.grad_accum_steps)]
    poison = t.poison.now(t.state.step)
    counts = torch.tensor([sum(b.masked for b in batches), sum(b.tokens for b in batches)])
    masked, tokens = t.world.all_reduce_sum(counts).tolist()
    loss_sum = torch.zeros((), device=t.device)  # this rank's part of the step's mean loss
    second_sum = torch.zeros((), device=t.device)  # its second objective's part: NSP/SOP, or ELECTRA's weighted detection
    for i, b in enumerate(batches):
        with distributed.gradient_sync(t.parallel, enabled=i == len(batches) - 1):
            with autocast(t.device, t.amp_dtype):
                out = t.train_model(b.inputs, b.attention_mask, b.labels, **b.extra)
                # A CLM micro-batch of prompt-only pieces (loss_on=response) has nothing to predict:
                # its mean loss is NaN, so it adds a zero that still runs backward (DDP syncs there).
                loss = out.loss if b.masked else out.logits.sum() * 0.0
                if poison:
                    loss = loss * float("nan")
                share = loss * (b.masked / max(masked, 1))
            scaled = share * t.world.size
            (t.scaler.scale(scaled) if t.scaler else scaled).backward()
        loss_sum += share.detach()
        if out.sentence_loss is not None:
            second_sum += out.sentence_loss.detach() * (b.masked / max(masked, 1))
        elif out.rtd_loss is not None:
            second_sum += out.rtd_loss.detach() * (cfg.rtd_weight * b.masked / max(masked, 1))
    t.state.tokens += tokens
    grad_norm, applied = optimizer_step(
        t.optimizer, t.model.parameters(), cfg.clip_grad_norm, scaler=t.scaler, clip=distributed.clip_grad_norm,
        accept=lambda norm: step_is_finite(t, loss_sum, norm),  # never let a NaN/inf reach the weights
    )
    t.state.step += 1
    t.state.skipped_steps += not applied
    return {"loss": loss_sum, "grad_norm": grad_norm, "lr": lr, "second_loss": second_sum, "skipped": not applied}


def step_is_finite(t: Trainer, loss_sum: torch.Tensor, grad_norm: torch.Tensor) -> bool:
    """Every rank's loss and the gradient norm are finite (all ranks agree, so all skip together).

    With fp16's grad scaler an inf gradient is routine (the scaler skips that step and lowers its
    scale), so only the loss is judged there.
    """
    finite = all_finite(loss_sum) if t.scaler else all_finite(loss_sum, grad_norm)
    if t.world.launched:
        finite = t.world.max(0.0 if finite else 1.0) == 0.0
    return finite


def run_evaluation(t: Trainer) -> dict | None:
    """Validation metrics: each rank evaluates its own batches, the sums are added over ranks."""
    if t.val_data is None:
        return None
    cfg = t.cfg.train
    count = eval_sequences(len(t.val_data), cfg.batch_size, cfg.eval_batches)
    sums = evaluate_sums(
        t.model, t.val_data, t.vocab, cfg.batch_size // t.world.size, count, cfg.eval_seed, t.device, t.amp_dtype,
        rank=t.world.rank, world_size=t.world.size, lockstep=distributed.is_sharded(t.model),
        objective=cfg.objective, loss_on=cfg.loss_on, isolate_documents=t.cfg.data.isolate_documents,
    )
    result = metrics_from_sums(t.world.sum_values(sums), cfg.objective)
    t.metrics.write("validation", t.state.step, {**result, "tokens": t.state.tokens})
    accuracy = "next-token" if cfg.objective == "clm" else "masked"
    if cfg.objective != "clm":
        log_samples(t)  # fill-mask guesses on fixed validation sentences (rank 0)
    info(
        t, "step %d validation: loss %.4f  perplexity %.2f  %s accuracy %.4f",
        t.state.step, result["loss"], result["perplexity"], accuracy, result[ACCURACY_KEY[cfg.objective]],
    )
    if "sentence_accuracy" in result:
        info(t, "step %d validation: sentence task (%s) loss %.4f  accuracy %.4f", t.state.step,
             t.cfg.data.pairs, result["sentence_loss"], result["sentence_accuracy"])
    if "detection_accuracy" in result:
        info(t, "step %d validation: replaced-token detection loss %.4f  accuracy %.4f  recall of replaced %.4f",
             t.state.step, result["detection_loss"], result["detection_accuracy"], result["replaced_recall"])
    return result


def save(t: Trainer) -> Path | None:
    """Checkpoint on rank 0; every rank calls this (FSDP gathers the shards, ranks send RNG states).

    Weights with a NaN or inf are never written (None is returned): the newest checkpoint on disk
    is always one to go back to.
    """
    model_state, optim_state = distributed.full_state_dicts(t.model, t.optimizer)
    if not t.world.max(0.0 if weights_finite(model_state) else 1.0) == 0.0:
        if t.world.is_main:
            log.warning("step %d: the weights hold non-finite values; no checkpoint written", t.state.step)
        return None
    rng_states = t.world.gather(rng_state(t.device))
    final = t.run_dir / "checkpoints" / f"step-{t.state.step:08d}"
    if t.world.is_main:
        optim = {"optimizer": optim_state, "scaler": t.scaler.state_dict() if t.scaler else {}}
        try:
            write_checkpoint(t.run_dir, model_state, optim, rng_states, asdict(t.state), t.cfg.train.keep_last)
        except OSError as e:  # a full disk, a lost mount: the temporary folder is gone, older checkpoints intact
            kept = checkpoint_dirs(t.run_dir)
            raise DataError(
                f"could not write checkpoint {final.name}: {e.strerror or e}; the newest checkpoint on disk is "
                f"{kept[-1].name if kept else 'none'} (intact): free space, then --resume"
            ) from None
    t.world.barrier()
    return final


def finished(t: Trainer) -> bool:
    cfg, s = t.cfg.train, t.state
    return bool(
        (cfg.max_steps and s.step >= cfg.max_steps)
        or (cfg.max_tokens and s.tokens >= cfg.max_tokens)
        or (cfg.max_time_s and s.elapsed_s >= cfg.max_time_s)
    )


def due(t: Trainer, every: int) -> bool:
    return t.state.step % every == 0 and not finished(t)


def pretrain(
    cfg: RunConfig,
    data_dir: str | Path,
    run_dir: str | Path,
    resume: bool = False,
    init_from: str | Path | None = None,
    progress: bool = True,
    allow_changed_settings: bool = False,
) -> dict:
    """Train until max_steps / max_tokens / max_time_s; returns the last validation metrics.

    Under torchrun every rank calls this with the same arguments (it joins the process group).
    Rank 0 holds the run folder's writer lock for the whole run. On --resume, settings that change
    the math are refused unless `allow_changed_settings`.
    """
    show_logs_without_setup()
    run_dir = Path(run_dir)
    with distributed.process_group() as world:
        with run_lock(run_dir) if world.is_main else contextlib.nullcontext():
            init = Path(init_from) if init_from else None
            return set_up_and_train(cfg, Path(data_dir), run_dir, resume, init, world, allow_changed_settings, progress)


def set_up_and_train(cfg, data_dir, run_dir, resume, init, world, allow_changed_settings, progress) -> dict:
    """The trainer lives in this frame only: it is gone (and with it DDP's hold on the process
    group) before `process_group` destroys the group."""
    return train(setup(cfg, data_dir, run_dir, resume, init, world, allow_changed_settings), progress)


def train(t: Trainer, progress: bool = True) -> dict:
    """The loop: steps, logs, evaluations and checkpoints until a budget is spent or a signal stops it."""
    describe(t)
    last_eval = run_evaluation(t) if t.state.step == 0 else None
    bar = progress_bar(t, progress)
    window = LogWindow(t.state.tokens)
    clock = time.perf_counter()
    with stop_signals() as stop:
        try:
            while not finished(t) and not stopping(t, stop):
                phases.switch_if_due(t)  # sequence-length phases (train/phases.py)
                out = train_step(t)
                t.state.elapsed_s += time.perf_counter() - clock
                if t.cfg.train.max_time_s:  # the time budget and the LR schedule must agree on every rank
                    t.state.elapsed_s = t.world.max(t.state.elapsed_s)
                bar.update(1)
                if out["skipped"]:
                    window.skipped += 1
                    if bad_step(t, out):  # rolled back: the loop goes on from the checkpoint's step
                        window, clock = LogWindow(t.state.tokens), time.perf_counter()
                        continue
                else:
                    t.bad_in_a_row = 0
                    window.add(out["loss"], out["second_loss"])
                if t.state.step % t.cfg.train.log_every_steps == 0 or finished(t):
                    log_train_record(t, bar, window.record(t, out))
                    window = LogWindow(t.state.tokens)
                if due(t, t.cfg.train.eval_every_steps):
                    last_eval = run_evaluation(t)
                if due(t, t.cfg.train.save_every_steps):
                    save(t)
                clock = time.perf_counter()  # evaluation and saving do not count against a time budget
            if stop.raised():
                bar.close()
                path = save(t)
                t.metrics.close()
                log.warning(
                    "interrupted (%s) at step %d; saved %s; continue with --resume",
                    signal_name(stop.signum), t.state.step, path,
                )
                raise Interrupted(stop.signum)
        except Interrupted:
            raise
        except KeyboardInterrupt:  # a second signal: stop now; the newest complete checkpoint stays
            bar.close()
            t.metrics.close()
            kept = checkpoint_dirs(t.run_dir)
            log.warning("stopped at once; the last complete checkpoint is %s", kept[-1] if kept else "none")
            raise
    bar.close()
    last_eval = run_evaluation(t) or last_eval
    path = save(t)
    t.metrics.close()
    if path is None:
        raise DivergedError(
            f"the run ended with non-finite weights at step {t.state.step}; nothing was saved for it. "
            "Resume from the last good checkpoint with a lower train.lr"
        )
    info(t, "done: step %d, %s tokens, %.1f s; checkpoint %s", t.state.step, f"{t.state.tokens:,}", t.state.elapsed_s, path)
    return {"step": t.state.step, "tokens": t.state.tokens, "elapsed_s": t.state.elapsed_s, "validation": last_eval}


def stopping(t: Trainer, stop) -> bool:
    """A stop signal arrived (on any rank: under torchrun all ranks stop at the same step)."""
    raised = stop.raised()
    if t.world.launched:
        raised = t.world.max(1.0 if raised else 0.0) > 0.0
        if raised and stop.signum is None:
            stop.stop_for_peer()  # another rank's signal: save and stop with it
    return raised


def bad_step(t: Trainer, out: dict) -> bool:
    """Count a skipped step; after max_bad_steps in a row roll back to the newest intact checkpoint (True)."""
    cfg = t.cfg.train
    t.bad_in_a_row += 1
    if t.world.is_main:
        log.warning(
            "step %d: loss or gradient norm is not finite (loss %s, grad norm %s): step skipped, weights unchanged "
            "(%d in a row, %d of %d allowed)",
            t.state.step, float(out["loss"]), float(out["grad_norm"]), t.bad_in_a_row, t.bad_in_a_row, cfg.max_bad_steps,
        )
    t.metrics.write("guard", t.state.step, {"event": "skipped", "in_a_row": t.bad_in_a_row, "skipped_steps": t.state.skipped_steps})
    if t.bad_in_a_row < cfg.max_bad_steps:
        return False
    rollback(t)
    return True


def rollback(t: Trainer) -> None:
    """Go back to the newest intact checkpoint with a lower LR; stop after max_rollbacks."""
    cfg = t.cfg.train
    if t.state.rollbacks >= cfg.max_rollbacks:
        raise DivergedError(
            f"training diverged: {t.bad_in_a_row} non-finite steps in a row at step {t.state.step} after "
            f"{t.state.rollbacks} rollbacks (train.max_rollbacks); the checkpoints on disk are finite. "
            "Lower train.lr, raise train.warmup_steps or check the data, then --resume"
        )
    dirs = checkpoint_dirs(t.run_dir)
    if not dirs:
        raise DivergedError(
            f"training diverged at step {t.state.step} ({t.bad_in_a_row} non-finite steps in a row) before its "
            "first checkpoint: lower train.lr or raise train.warmup_steps"
        )
    if distributed.is_sharded(t.model):
        raise DivergedError(
            f"training diverged at step {t.state.step}; rollback is not supported with train.strategy fsdp: "
            "--resume with a lower train.lr"
        )
    checkpoint = latest_intact_checkpoint(t.run_dir, for_training=True)
    if t.world.is_main:
        set_aside_newer(t.run_dir, checkpoint)
    load_model_weights(t.model, checkpoint)
    kept = t.state
    t.state = restore(checkpoint, t.parallel, t.optimizer, t.scaler, t.world, t.device, cfg.seed)
    t.state.skipped_steps = kept.skipped_steps
    t.state.rollbacks = kept.rollbacks + 1
    t.state.lr_scale = kept.lr_scale * cfg.rollback_lr_factor
    t.bad_in_a_row = 0
    t.metrics.truncate_after(t.state.step)  # the abandoned steps are done again
    t.metrics.write("guard", t.state.step, {
        "event": "rollback", "from_step": kept.step, "checkpoint": checkpoint.name, "lr_scale": t.state.lr_scale,
        "rollbacks": t.state.rollbacks, "skipped_steps": t.state.skipped_steps,
    })
    if t.world.is_main:
        log.warning(
            "rolled back from step %d to %s; LR now x%g of the schedule (rollback %d of %d)",
            kept.step, checkpoint, t.state.lr_scale, t.state.rollbacks, cfg.max_rollbacks,
        )
