"""Fine-tuning settings (`FinetuneConfig`, `FinetuneRunConfig`), task names, metrics and file names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ..config import ModelConfig, check_choice
from ..errors import ConfigError
from ..folders import LABELS_FILE  # noqa: F401  (re-exported: the fine-tuned folder's files are named here)

TASKS = ("classify", "ner")
METRICS = {"classify": ("accuracy", "macro_f1", "mcc", "loss"), "ner": ("f1", "precision", "recall", "accuracy", "loss")}
CONFIG_FILE, MODEL_FILE = "config.yaml", "model.safetensors"  # and folders.LABELS_FILE, which marks the folder
METRICS_FILE, REPORT_FILE, CONFUSION_FILE = "metrics.json", "report.txt", "confusion_matrix.png"
WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")  # words of raw text for NER: CoNLL-like, punctuation apart
INTEGER = re.compile(r"[+-]?\d+")


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class FinetuneConfig:
    task: str = "classify"  # "classify" (one label per text or text pair) or "ner" (one IOB2 tag per word)
    text_column: str = "text"  # column / JSON field of the text (all digits: 0-based column of a headerless file)
    text_pair_column: str = ""  # second text of a pair (entity, hypothesis, ...); "" = single texts
    label_column: str = "label"  # column of the class: strings or integers
    pooling: str = "cls"  # sentence vector: "cls" (first token, [CLS] / <s>) or "mean" of the real tokens
    max_seq_len: int = 0  # tokens per input, specials included; longer ones are truncated (0 = the model's limit)
    epochs: int = 3  # passes over the training split
    max_steps: int = 0  # optimizer steps instead of whole epochs (0 = epochs decide)
    batch_size: int = 32  # training examples per step
    eval_batch_size: int = 64  # examples per evaluation / prediction batch
    lr: float = 0.0  # peak learning rate; 0 = by the encoder's width (`auto_lr`): 5e-5 at BERT-base's 768, more for the small models bertforge makes
    warmup_fraction: float = 0.1  # share of the steps spent warming up linearly; then linear decay to 0
    weight_decay: float = 0.01  # AdamW decay, on matrices only
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    clip_grad_norm: float = 1.0  # 0 = no clipping
    classifier_dropout: float = 0.1  # dropout inside the head (the encoder keeps model.hidden_dropout)
    metric: str = "auto"  # picks the best epoch: auto (accuracy / ner: f1), macro_f1, mcc, precision, recall, loss
    patience: int = 0  # stop after this many evaluations without improvement (0 = run to the end)
    class_weights: str = "none"  # "balanced": weight the loss by n / (classes x count) against skewed labels
    freeze_layers: int = 0  # keep the embeddings and the lowest N blocks fixed (0 = train everything)
    layer_lr_decay: float = 1.0  # each block's LR = this x the LR of the block above; head at full LR (1 = off; ELECTRA uses 0.8)
    init: str = "pretrained"  # "random": same shape, fresh weights: the baseline that shows what pretraining bought
    seed: int = 0  # seeds head init, dropout and the data order
    device: str = "auto"  # "auto", "cpu", "cuda", ...
    precision: str = "auto"  # "auto" (bf16 on a GPU that has it, else fp32), "fp32", "bf16"

    def __post_init__(self) -> None:
        check_choice("finetune", "task", self.task, TASKS)
        check_choice("finetune", "pooling", self.pooling, ("cls", "mean"))
        check_choice("finetune", "metric", self.metric, ("auto", *METRICS[self.task]))
        check_choice("finetune", "class_weights", self.class_weights, ("none", "balanced"))
        check_choice("finetune", "init", self.init, ("pretrained", "random"))
        check_choice("finetune", "precision", self.precision, ("auto", "fp32", "bf16"))  # fp16 would need a grad scaler
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"finetune.{name} must be > 0, got {getattr(self, name)}")
        for name in ("lr", "max_steps", "weight_decay", "clip_grad_norm", "patience", "freeze_layers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"finetune.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_seq_len and self.max_seq_len < 8:
            raise ConfigError(f"finetune.max_seq_len must be 0 (the model's limit) or >= 8, got {self.max_seq_len}")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise ConfigError(f"finetune.layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}")
        for name in ("warmup_fraction", "classifier_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"finetune.{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def best_metric(self) -> str:
        """The metric that picks the best epoch, `auto` resolved."""
        if self.metric != "auto":
            return self.metric
        return "accuracy" if self.task == "classify" else "f1"


# Peak fine-tuning LR by encoder width. BERT's paper fine-tunes base/large at 2e-5..5e-5; the small
# encoders bertforge pretrains on a budget stay at the majority class at 5e-5 (SST-2, 2,000 sentences,
# 3 epochs: 0.509) and learn at 2e-4 (0.674).
AUTO_LR = ((768, 5e-5), (384, 1e-4), (0, 2e-4))  # (hidden_size at least, lr)


def auto_lr(hidden_size: int) -> float:
    return next(lr for width, lr in AUTO_LR if hidden_size >= width)


def with_auto_lr(cfg: FinetuneRunConfig) -> FinetuneRunConfig:
    """finetune.lr = 0 resolved to the width's default, so config.yaml records the LR used."""
    if cfg.finetune.lr:
        return cfg
    return replace(cfg, finetune=replace(cfg.finetune, lr=auto_lr(cfg.model.hidden_size)))


@dataclass(frozen=True)
class FinetuneRunConfig:
    """What a fine-tuning folder's config.yaml holds: the recipe and the encoder's shape."""

    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.finetune.max_seq_len > self.model.max_seq_len:
            raise ConfigError(
                f"finetune.max_seq_len ({self.finetune.max_seq_len}) is longer than the model's position table "
                f"({self.model.max_seq_len})"
            )
        if self.finetune.freeze_layers > self.model.num_layers:
            raise ConfigError(
                f"finetune.freeze_layers ({self.finetune.freeze_layers}) is more than the model's "
                f"{self.model.num_layers} layers"
            )

    @property
    def seq_len(self) -> int:
        return self.finetune.max_seq_len or self.model.max_seq_len
