"""The fine-tuning model: heads on a pretrained encoder, freezing, and loading the source encoder."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import files
from ..config import ModelConfig, load_config
from ..errors import DataError
from ..checkpoint import latest_intact_checkpoint
from ..finite import check_finite_model
from ..folders import FINETUNED, RUN, RUN_CONFIG, folder_kind
from ..hf.importer import import_hf
from ..model import Encoder, init_model
from ..tokenizer import TextTokenizer, load_tokenizer
from .config import CONFIG_FILE, MODEL_FILE, FinetuneRunConfig

# ---------------------------------------------------------------- model


class ClassificationHead(nn.Module):
    """dropout -> dense (H, H) -> tanh -> dropout -> out_proj (H, labels), as RobertaClassificationHead."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(x))  # (B, labels)


class TokenClassificationHead(nn.Module):
    """dropout -> out_proj (H, labels) on every token, as BERT/RoBERTa's ForTokenClassification."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(h))  # (B, T, labels)


class Classifier(nn.Module):
    """Encoder + head: logits per text (B, labels) or per token (B, T, labels)."""

    def __init__(self, cfg: ModelConfig, num_labels: int, task: str, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        self.task, self.pooling = task, pooling
        self.token_types = cfg.type_vocab_size >= 2  # BERT-style segment ids for text pairs
        self.encoder = Encoder(cfg)
        head = ClassificationHead if task == "classify" else TokenClassificationHead
        self.head = head(cfg.hidden_size, num_labels, dropout)
        init_model(self, cfg)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.encoder(input_ids, attention_mask, token_type_ids if self.token_types else None)  # (B, T, H)
        if self.task == "ner":
            return self.head(h)
        if self.pooling == "cls" or attention_mask is None:
            pooled = h[:, 0] if self.pooling == "cls" else h.mean(dim=1)
        else:
            keep = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            pooled = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
        return self.head(pooled)


def load_encoder(model: Classifier, state: dict[str, torch.Tensor], origin: str) -> None:
    """Copy the `encoder.*` tensors of a MaskedLM (or fine-tuned) state dict into the classifier."""
    expected = model.encoder.state_dict()
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    missing, unexpected = sorted(set(expected) - set(encoder)), sorted(set(encoder) - set(expected))
    if missing or unexpected:
        raise DataError(
            f"{origin}: encoder weights do not match the model (missing: {missing[:3]}, unexpected: {unexpected[:3]})"
        )
    for key, tensor in encoder.items():
        if tensor.shape != expected[key].shape:
            shapes = f"{tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}"
            raise DataError(f"{origin}: encoder.{key} has shape {shapes}")
    check_finite_model(encoder, origin)  # a diverged run would fine-tune into a NaN classifier
    model.encoder.load_state_dict(encoder)
    carry_pooler(model, state)


def carry_pooler(model: Classifier, state: dict[str, torch.Tensor]) -> None:
    """An encoder pretrained with NSP/SOP has BERT's pooler (dense + tanh on [CLS]); a text classifier
    starts its dense layer from it, as BertForSequenceClassification does."""
    if model.task == "classify" and "sentence.pooler.weight" in state and hasattr(model.head, "dense"):
        model.head.dense.load_state_dict({"weight": state["sentence.pooler.weight"], "bias": state["sentence.pooler.bias"]})


def layer_lr_scales(model: Classifier, decay: float) -> dict[str, float]:
    """Layer-wise LR decay (ELECTRA, ULMFiT): LR factor per parameter name. The head and the final
    norm train at the full LR, each block below at `decay` times the one above, the embeddings
    lowest: the lower layers hold the most general features, so fine-tuning moves them least."""
    top = len(model.encoder.layers) + 1
    scales = {}
    for name, _ in model.named_parameters():
        if name.startswith("encoder.embeddings."):
            depth = 0
        elif name.startswith("encoder.layers."):
            depth = int(name.split(".")[2]) + 1
        else:
            depth = top
        scales[name] = decay ** (top - depth)
    return scales


def freeze(model: Classifier, num_layers: int) -> None:
    """Keep the embeddings and the lowest `num_layers` blocks fixed (the head always trains)."""
    if num_layers <= 0:
        return
    model.encoder.embeddings.requires_grad_(False)
    for layer in model.encoder.layers[:num_layers]:
        layer.requires_grad_(False)
    if num_layers == len(model.encoder.layers) and model.encoder.final_norm is not None:
        model.encoder.final_norm.requires_grad_(False)


@dataclass
class Source:
    """The encoder to fine-tune: shape, tokenizer, weights, and where they came from."""

    model: ModelConfig
    tokenizer: TextTokenizer
    state: dict[str, torch.Tensor]
    origin: str


def load_source(path: str | Path) -> Source:
    """A run's latest checkpoint, a fine-tuned folder's encoder, or a Hugging Face BERT/RoBERTa folder."""
    path = Path(path)
    kind = folder_kind(path)
    if kind == FINETUNED:
        cfg = load_config(path / CONFIG_FILE, FinetuneRunConfig).model
        return Source(cfg, load_tokenizer(path / "tokenizer"), files.load_tensors(path / MODEL_FILE), str(path))
    if kind == RUN:
        checkpoint = latest_intact_checkpoint(path)
        cfg = load_config(path / RUN_CONFIG).model
        state = files.load_tensors(checkpoint / MODEL_FILE)
        return Source(cfg, load_tokenizer(path / "tokenizer"), state, str(checkpoint))
    with tempfile.TemporaryDirectory() as tmp:
        source = load_source(import_hf(path, Path(tmp) / "run"))
    return Source(source.model, source.tokenizer, source.state, str(path))
