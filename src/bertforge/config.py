"""Dataclass configs for every stage, YAML presets, and `--set key=value` overrides.

Values merge in this order: dataclass defaults < preset or `--config file.yaml` < `--set`.
Every value is checked against its field's type, and each dataclass checks its own ranges in
`__post_init__`, so a bad value fails early with a message that names the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .files import write_yaml

PRESET_DIR = Path(__file__).parent / "presets"


def check_choice(section: str, name: str, value: str, allowed: tuple[str, ...]) -> None:
    """A string setting must be one of `allowed`; the message names `section.name`."""
    if value not in allowed:
        raise ConfigError(f"{section}.{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive(section: str, **values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {value}")


def _non_negative(section: str, **values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ConfigError(f"{section}.{name} must be >= 0, got {value}")


# "auto": "all_exhausted" when any source has a weight (weights are shares), otherwise each document once
UNTIL_CHOICES = ("auto", "all_exhausted", "first_exhausted", "all_exhausted_without_replacement")


@dataclass(frozen=True)
class CorpusConfig:
    text_field: str = "text"  # JSON field / CSV column / Parquet column with the text (a number for headerless CSV)
    doc_per: str = "paragraph"  # .txt files: one document per "line" or per blank-line "paragraph"
    until: str = "auto"  # when a mix of sources ends: see UNTIL_CHOICES and corpus._interleave
    seed: int = 0  # seed of the weighted interleave

    def __post_init__(self) -> None:
        check_choice("corpus", "doc_per", self.doc_per, ("line", "paragraph"))
        check_choice("corpus", "until", self.until, UNTIL_CHOICES)


TOKENIZER_KINDS = ("bytelevel-bpe", "wordpiece", "sentencepiece-bpe", "unigram")


@dataclass(frozen=True)
class TokenizerConfig:
    kind: str = "bytelevel-bpe"  # bytelevel-bpe (RoBERTa), wordpiece (BERT), sentencepiece-bpe, unigram
    vocab_size: int = 16000  # target vocabulary size, special tokens included
    min_frequency: int = 2  # a merge/piece must occur this often to be learned
    special_tokens: str = "auto"  # "roberta" (<s> <pad> </s> <unk> <mask>), "bert" ([CLS] ...), or auto by kind
    lowercase: bool = False  # lowercase text before tokenizing (BERT-uncased style)
    max_docs: int = 0  # train on at most this many documents (0 = all)

    def __post_init__(self) -> None:
        check_choice("tokenizer", "kind", self.kind, TOKENIZER_KINDS)
        check_choice("tokenizer", "special_tokens", self.special_tokens, ("auto", "roberta", "bert"))
        _positive("tokenizer", vocab_size=self.vocab_size, min_frequency=self.min_frequency)
        _non_negative("tokenizer", max_docs=self.max_docs)

    @property
    def scheme(self) -> str:
        """Special-token scheme: BERT's for WordPiece, RoBERTa's otherwise, unless set."""
        if self.special_tokens != "auto":
            return self.special_tokens
        return "bert" if self.kind == "wordpiece" else "roberta"


PAIR_KINDS = ("", "nsp", "sop")


def check_phases(phases: Any) -> list[dict]:
    """data.phases as [{seq_len, until}, ...]: lengths >= 8, `until` rising in (0, 1), the last phase
    without one (or 1.0), so the phases cover the whole run."""
    if not isinstance(phases, (list, tuple)) or not all(isinstance(p, dict) for p in phases):
        raise ConfigError(f"data.phases must be a list like [{{seq_len: 128, until: 0.9}}, {{seq_len: 512}}], got {phases!r}")
    out, previous = [], 0.0
    for i, phase in enumerate(phases):
        unknown = sorted(set(phase) - {"seq_len", "until"})
        if unknown:
            raise ConfigError(f"data.phases[{i}]: unknown key {unknown[0]!r}; a phase has seq_len and until")
        seq_len = phase.get("seq_len")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 8:
            raise ConfigError(f"data.phases[{i}].seq_len must be an integer >= 8, got {seq_len!r}")
        last = i == len(phases) - 1
        until = phase.get("until", 1.0 if last else None)
        if isinstance(until, bool) or not isinstance(until, (int, float)):
            raise ConfigError(f"data.phases[{i}] needs until (a share of train.max_steps in (0, 1)), got {until!r}")
        until = float(until)
        if last and until != 1.0:
            raise ConfigError(
                f"data.phases do not cover the run: the last phase ends at until={until}, not 1.0; "
                "leave out the last phase's until (it trains to the end)"
            )
        if not previous < until <= 1.0 or (not last and until >= 1.0):
            raise ConfigError(
                f"data.phases[{i}].until must be in ({previous}, 1) and rise from phase to phase, got {until}"
            )
        out.append({"seq_len": seq_len, "until": until})
        previous = until
    return out


@dataclass(frozen=True)
class DataConfig:
    seq_len: int = 128  # tokens per training sequence, special tokens included
    packing: str = "full"  # "full" (documents joined, no padding), "pad" (chunk + pad), "line" (one doc per sequence)
    val_fraction: float = 0.05  # share of documents held out for validation (ignored with a validation corpus)
    seed: int = 0  # seed of the train/validation split
    encode_batch_docs: int = 2000  # documents per batch sent to the tokenizer (it encodes a batch on all cores)
    shard_max_sequences: int = 262144  # sequences per shard file
    template: str = ""  # JSON/CSV records -> one text each: "alpaca" or e.g. "User: {prompt}\nAgent: {response}" (templates.py)
    pairs: str = ""  # "nsp" / "sop": one sentence pair per row (pairs.py); set by train.objective mlm+nsp / mlm+sop
    # Sequence-length phases, e.g. [{seq_len: 128, until: 0.9}, {seq_len: 512}]: shards at each length,
    # phase i trains until `until` x train.max_steps (the last one to the end); see train/phases.py.
    phases: list = field(default_factory=list)
    # Packed rows hold several documents; true: each token attends only to its own document
    # (a block-diagonal attention mask), as fine-tuning and inference will see one text at a time.
    # A training-time view of the same shards: changing it needs no new `prepare`.
    isolate_documents: bool = False

    def __post_init__(self) -> None:
        check_choice("data", "packing", self.packing, ("full", "pad", "line"))
        check_choice("data", "pairs", self.pairs, PAIR_KINDS)
        if self.phases:
            object.__setattr__(self, "phases", check_phases(self.phases))
            object.__setattr__(self, "seq_len", self.phases[0]["seq_len"])  # the first phase's shards are the main ones
        if self.seq_len < 8:
            raise ConfigError(f"data.seq_len must be >= 8, got {self.seq_len}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        _positive("data", encode_batch_docs=self.encode_batch_docs, shard_max_sequences=self.shard_max_sequences)


@dataclass(frozen=True)
class MaskingConfig:
    mask_prob: float = 0.15  # share of maskable tokens chosen for prediction
    mask_token_prob: float = 0.8  # of the chosen: replaced by the mask token
    random_token_prob: float = 0.1  # of the chosen: replaced by a random non-special token (rest kept)
    whole_word: bool = False  # choose whole words instead of single pieces

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise ConfigError(f"masking.mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.mask_token_prob < 0 or self.random_token_prob < 0 or self.mask_token_prob + self.random_token_prob > 1:
            raise ConfigError(
                "masking.mask_token_prob and masking.random_token_prob must be >= 0 and sum to at most 1, "
                f"got {self.mask_token_prob} and {self.random_token_prob}"
            )


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 16000  # rows of the token embedding (set from the tokenizer when pretraining)
    hidden_size: int = 256  # width of the residual stream
    num_layers: int = 4  # encoder blocks
    num_heads: int = 8  # attention heads; must divide hidden_size
    intermediate_size: int = 1024  # feed-forward inner width
    max_seq_len: int = 128  # longest input, special tokens included
    position_offset: int = 0  # RoBERTa counts positions from pad_id + 1; BERT from 0
    type_vocab_size: int = 2  # token-type (segment) embeddings; 0 = none, RoBERTa uses 1
    pad_id: int = 0  # padding token id (its embedding row starts at zero)
    norm: str = "post"  # "post": LayerNorm after each residual (BERT); "pre": before, plus a final LayerNorm
    activation: str = "gelu"  # feed-forward and MLM-head activation
    hidden_dropout: float = 0.1  # dropout on embeddings and residual branches
    attention_dropout: float = 0.1  # dropout on attention probabilities
    layer_norm_eps: float = 1e-12  # BERT uses 1e-12, RoBERTa 1e-5
    initializer_range: float = 0.02  # std of the normal init of weights
    position_init: str = "normal"  # "sinusoidal": position rows start as sine waves (relative offsets visible from step 0)
    document_positions: bool = False  # with data.isolate_documents: each packed document counts its positions from 0
    sparse_prediction: bool = True  # run the MLM decoder only on masked positions (same loss, less compute)
    causal: bool = False  # causal self-attention (a decoder, RobertaForCausalLM); set by train.objective
    sentence_head: bool = False  # pooler + 2-way sentence-pair head (NSP/SOP, BertForPreTraining); set by train.objective
    discriminator: bool = False  # ELECTRA: a replaced-token detector trained with a small generator; set by train.objective
    generator_fraction: float = 0.25  # ELECTRA: the generator's width (hidden, heads, FFN) as a share of this model's

    def __post_init__(self) -> None:
        _positive(
            "model",
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_seq_len=self.max_seq_len,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        _non_negative("model", position_offset=self.position_offset, type_vocab_size=self.type_vocab_size)
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.num_heads ({self.num_heads}) must divide model.hidden_size ({self.hidden_size})"
            )
        check_choice("model", "norm", self.norm, ("post", "pre"))
        check_choice("model", "position_init", self.position_init, ("normal", "sinusoidal"))
        check_choice("model", "activation", self.activation, ("gelu", "gelu_tanh", "relu", "silu"))
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"model.pad_id must be in [0, vocab_size), got {self.pad_id}")
        if not 0.0 < self.generator_fraction <= 1.0:
            raise ConfigError(f"model.generator_fraction must be in (0, 1], got {self.generator_fraction}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_positions(self) -> int:
        """Rows of the position table (RoBERTa's 514 = 512 + offset 2)."""
        return self.max_seq_len + self.position_offset


OBJECTIVES = ("mlm", "clm", "mlm+nsp", "mlm+sop", "electra")
PAIR_OBJECTIVES = {"mlm+nsp": "nsp", "mlm+sop": "sop"}  # objective -> data.pairs
PACKED_OBJECTIVES = ("mlm", "electra")  # read rows that pack several documents (data.isolate_documents applies)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 32  # sequences per micro-batch, all ranks together (each of N ranks takes batch_size / N)
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    lr: float = 5e-4  # peak learning rate
    min_lr_ratio: float = 0.0  # final LR as a share of the peak
    schedule: str = "linear"  # decay after warmup: "linear", "cosine" or "constant"
    warmup_steps: int = 100  # linear warmup from 0 to the peak LR
    weight_decay: float = 0.01  # AdamW decay, on matrices only (not biases, LayerNorms)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-6
    clip_grad_norm: float = 1.0  # 0 = no clipping
    max_steps: int = 1000  # optimizer steps (0 = no limit; then max_tokens or max_time_s must be set)
    max_tokens: int = 0  # stop after this many training tokens (0 = no limit)
    max_time_s: float = 0.0  # stop after this many seconds of training (0 = no limit)
    eval_every_steps: int = 200  # validate every N steps (and at the end)
    eval_batches: int = 50  # validation batches per evaluation (0 = the whole split)
    log_every_steps: int = 10  # training metrics every N steps
    save_every_steps: int = 500  # checkpoint every N steps (and at the end)
    keep_last: int = 3  # checkpoints kept on disk
    precision: str = "auto"  # "auto" (bf16 on a GPU that has it, else fp32), "fp32", "bf16", "fp16"
    compile: bool = False  # wrap the model in torch.compile
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    strategy: str = "ddp"  # under torchrun: "ddp" (a full replica per rank) or "fsdp" (FSDP2, sharded over ranks)
    seed: int = 0  # seeds init, data order, masks and dropout
    eval_seed: int = 1234  # fixed masks for validation, so evaluations compare
    objective: str = "mlm"  # "mlm" (masked LM, an encoder), "clm" (next token, a decoder), "mlm+nsp" / "mlm+sop" (BERT / ALBERT),
    # "electra" (replaced-token detection, Clark et al. 2020: a small generator fills the masks, the model learns which tokens were replaced)
    rtd_weight: float = 50.0  # electra: weight of the detection loss against the generator's MLM loss (the paper's lambda)
    loss_on: str = "all"  # clm: "all" tokens, or only the "response" part of templated records (data.template)
    recipe: str = ""  # the `--budget` recipe this run follows (recipes/budget.yaml), for the record
    fill_mask_samples: int = 3  # validation sentences whose masked word's top-3 guesses each evaluation logs (0 = none)
    # Divergence guard: a step whose loss or gradient norm is not finite never reaches the weights.
    max_bad_steps: int = 3  # consecutive skipped (non-finite) steps before rolling back to the last checkpoint
    rollback_lr_factor: float = 0.5  # each rollback multiplies the LR by this
    max_rollbacks: int = 3  # rollbacks allowed before the run stops with an error
    debug_nan_at_step: int = 0  # test hook: poison the loss of this step index once per process (0 = off)
    debug_nan_steps: int = 1  # ... and of this many consecutive steps from there

    def __post_init__(self) -> None:
        _positive("train", batch_size=self.batch_size, grad_accum_steps=self.grad_accum_steps, lr=self.lr)
        _positive("train", log_every_steps=self.log_every_steps, eval_every_steps=self.eval_every_steps)
        _positive("train", save_every_steps=self.save_every_steps, keep_last=self.keep_last)
        _non_negative(
            "train",
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            clip_grad_norm=self.clip_grad_norm,
            max_steps=self.max_steps,
            max_tokens=self.max_tokens,
            max_time_s=self.max_time_s,
            eval_batches=self.eval_batches,
            fill_mask_samples=self.fill_mask_samples,
        )
        check_choice("train", "schedule", self.schedule, ("linear", "cosine", "constant"))
        check_choice("train", "precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        check_choice("train", "strategy", self.strategy, ("ddp", "fsdp"))
        check_choice("train", "objective", self.objective, OBJECTIVES)
        check_choice("train", "loss_on", self.loss_on, ("all", "response"))
        _positive("train", max_bad_steps=self.max_bad_steps, debug_nan_steps=self.debug_nan_steps)
        _non_negative("train", max_rollbacks=self.max_rollbacks, debug_nan_at_step=self.debug_nan_at_step)
        if not math.isfinite(self.lr):
            raise ConfigError(f"train.lr must be a finite number, got {self.lr}")
        if not 0.0 < self.rollback_lr_factor <= 1.0:
            raise ConfigError(f"train.rollback_lr_factor must be in (0, 1], got {self.rollback_lr_factor}")
        if not (math.isfinite(self.rtd_weight) and self.rtd_weight > 0):
            raise ConfigError(f"train.rtd_weight must be a positive number, got {self.rtd_weight}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not self.max_steps and not self.max_tokens and not self.max_time_s:
            raise ConfigError("set one of train.max_steps, train.max_tokens or train.max_time_s (all are 0)")


@dataclass(frozen=True)
class Sampling:
    """How `generate` picks the next token. temperature 0 = greedy (the most likely token, no randomness).
    Here, without torch, so the CLI rejects a bad setting before it loads a model."""

    max_new_tokens: int = 64
    temperature: float = 0.8  # < 1 sharpens, > 1 flattens the distribution
    top_k: int = 0  # keep only the k most likely tokens (0 = all)
    top_p: float = 0.95  # keep the smallest set of tokens whose probability reaches p (1 = all)
    seed: int | None = None  # the same seed gives the same text (None: a fresh random seed)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:  # also catches NaN
            raise ConfigError(f"--temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be >= 0 (0 = no limit), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class RunConfig:
    """Everything a pretraining run needs; saved as config.yaml in the run folder."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # mlm+nsp / mlm+sop decide the data (sentence pairs) and the model (a sentence head): set both here,
        # so `prepare`, `pretrain` and config.yaml agree.
        pairs = PAIR_OBJECTIVES.get(self.train.objective, "")
        if pairs or self.data.pairs:
            object.__setattr__(self, "data", dataclasses.replace(self.data, pairs=pairs))
        if self.model.sentence_head != bool(pairs):
            object.__setattr__(self, "model", dataclasses.replace(self.model, sentence_head=bool(pairs)))
        electra = self.train.objective == "electra"
        if self.model.discriminator != electra:
            object.__setattr__(self, "model", dataclasses.replace(self.model, discriminator=electra))
        if self.data.phases:
            longest = max(p["seq_len"] for p in self.data.phases)
            if longest > self.model.max_seq_len:
                raise ConfigError(
                    f"data.phases has a {longest}-token phase but the position table, model.max_seq_len, "
                    f"holds {self.model.max_seq_len}; raise model.max_seq_len to at least {longest}"
                )
            if not self.train.max_steps:
                raise ConfigError("data.phases end at shares of train.max_steps; set train.max_steps (not only tokens or time)")
        if self.data.isolate_documents and self.train.objective not in PACKED_OBJECTIVES:
            raise ConfigError(
                f"data.isolate_documents is for masked-LM objectives on packed text, not train.objective={self.train.objective}"
            )
        if self.model.document_positions and not self.data.isolate_documents:
            raise ConfigError(
                "model.document_positions numbers positions per document; it needs data.isolate_documents=true"
            )
        if self.train.loss_on == "response" and self.train.objective != "clm":
            raise ConfigError("train.loss_on=response needs train.objective=clm (a masked LM predicts masked tokens)")
        if self.data.seq_len > self.model.max_seq_len:
            raise ConfigError(
                f"data.seq_len ({self.data.seq_len}) is longer than the position table, "
                f"model.max_seq_len ({self.model.max_seq_len}); shorten one or raise the other"
            )


# ---------------------------------------------------------------- dict <-> dataclass


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _check_type(key: str, value: Any, expected: Any) -> Any:
    """Return `value` as `expected` type, or raise a ConfigError naming the key."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):
        try:  # YAML reads "5e-4" as a string; accept it as a float
            return float(value)
        except ValueError:
            pass
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if expected is str and not isinstance(value, str):
        return str(value)
    if expected in (int, float, str, bool) and not isinstance(value, expected):
        raise ConfigError(f"{key} must be a {expected.__name__}, got {value!r}")
    return value


def _unknown_key(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def from_dict(cls: type, data: dict | None, prefix: str = "") -> Any:
    """Build dataclass `cls` from a (possibly partial) nested dict, checking keys and types."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise _unknown_key(full, names)
        expected = hints[key]
        if dataclasses.is_dataclass(expected):
            kwargs[key] = from_dict(expected, value, prefix=f"{full}.")
        else:
            kwargs[key] = _check_type(full, value, expected)
    return cls(**kwargs)


def merge(base: dict, update: dict) -> dict:
    """Deep-merge `update` into a copy of `base`."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: list[str]) -> dict:
    """Turn ["train.lr=3e-4", "model.num_layers=2"] into a nested dict of YAML-parsed values."""
    result: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is a value, not a section")
        node[parts[-1]] = value
    return result


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def preset_dict(name: str) -> dict:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(list_presets())}")
    return load_yaml(path)


def build_config(
    cls: type = RunConfig,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | dict | None = None,
    base: dict | None = None,
    recipe: dict | None = None,
) -> Any:
    """Defaults < `base` < preset < budget recipe < config file < overrides, validated into `cls`."""
    return from_dict(cls, merged_settings(preset, config_file, overrides, base, recipe))


def merged_settings(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | dict | None = None,
    base: dict | None = None,
    recipe: dict | None = None,
) -> dict:
    """The sections `build_config` would validate, before defaults and checks (a budget recipe reads
    the objective from them: a check may need the recipe's own settings)."""
    data: dict = dict(base or {})
    if preset:
        data = merge(data, preset_dict(preset))
    if recipe:
        data = merge(data, recipe)
    if config_file:
        data = merge(data, load_yaml(config_file))
    if overrides:
        data = merge(data, overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    return data


def save_config(path: str | Path, cfg: Any) -> None:
    write_yaml(path, to_dict(cfg))


def load_config(path: str | Path, cls: type = RunConfig) -> Any:
    return from_dict(cls, load_yaml(path))
