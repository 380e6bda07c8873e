"""Hugging Face interop: our MaskedLM <-> `BertForMaskedLM` / `RobertaForMaskedLM` /
`RobertaPreLayerNormForMaskedLM`, one key table per architecture, read both ways.

`export_run` writes a folder that `from_pretrained` reads offline (config.json, model.safetensors,
tokenizer files, README.md model card); `import_hf` turns such a folder into a bertforge run, so
`pretrain --init-from` can continue pretraining it on a new corpus (domain adaptation).

Both sides compute the same function; only names and layout differ:
- our fused QKV (3H, H), rows in q, k, v order, is HF's three (H, H) query / key / value;
- the decoder is tied to the token embedding on both sides, and HF also ties `decoder.bias` to the
  head's `bias`, so the file holds neither decoder tensor (as HF's own `save_pretrained` writes it);
- HF RoBERTa (and RoBERTa-PreLayerNorm) numbers positions from padding_idx + 1, HF BERT from 0; when
  our `position_offset` differs, the position table moves by whole rows (rows no real token reads
  are dropped or zero);
- HF always adds `token_type_embeddings[0]`, so a model without token types exports one zero row;
- post-LN models are BERT or RoBERTa; pre-LN models (`model.norm: pre`) are RoBERTa-PreLayerNorm,
  whose layers hold the LayerNorm before attention (`attention.LayerNorm`) and before the FFN
  (`intermediate.LayerNorm`), with the final LayerNorm on the encoder output (`<prefix>.LayerNorm`);
- `RobertaLMHead` hard-codes exact GELU, so other activations need `--arch bert` (post-LN only:
  a pre-LN model with another activation has no transformers equivalent and is refused).
A causal run (model.causal) exports as `BertLMHeadModel` / `RobertaForCausalLM` (pre-LN: `RobertaPreLayerNormForCausalLM`)
with `is_decoder`:
the same tensors under the same names (their LM heads are the MLM heads), only config.json differs.
Causal runs default to `BertLMHeadModel` whatever the tokenizer: transformers 5's `generate()`
builds position ids from 0 (attention_mask.cumsum - 1) for any model whose forward takes them,
while RoBERTa's forward numbers positions from padding_idx + 1, so a `RobertaForCausalLM`
generates from shifted positions unless `position_ids` are passed (`causal_position_ids`).
Hugging Face names appear only in this module.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

import torch

from ..config import ModelConfig
from ..errors import ConfigError, DataError
from ..model import MaskedLM
from ..tokenizer import SPECIAL_TOKENS, TextTokenizer

log = logging.getLogger(__name__)


# Ours -> HF (after the arch prefix). `{i}` is the layer index, `{w}` weight or bias. A tuple is
# one fused tensor of ours, split along dim 0 into those HF tensors, in that order.
EMBEDDING_KEYS = {
    "encoder.embeddings.tokens.weight": "embeddings.word_embeddings.weight",
    "encoder.embeddings.positions.weight": "embeddings.position_embeddings.weight",
    "encoder.embeddings.token_types.weight": "embeddings.token_type_embeddings.weight",
    "encoder.embeddings.norm.weight": "embeddings.LayerNorm.weight",
    "encoder.embeddings.norm.bias": "embeddings.LayerNorm.bias",
}
_QKV = tuple(f"encoder.layer.{{i}}.attention.self.{name}.{{w}}" for name in ("query", "key", "value"))
# Post-LN (BERT, RoBERTa): each LayerNorm sits after its residual add, in the branch's output module.
POST_LN_LAYER_KEYS: dict[str, str | tuple[str, ...]] = {
    "encoder.layers.{i}.attention.qkv.{w}": _QKV,
    "encoder.layers.{i}.attention.out.{w}": "encoder.layer.{i}.attention.output.dense.{w}",
    "encoder.layers.{i}.attention_norm.{w}": "encoder.layer.{i}.attention.output.LayerNorm.{w}",
    "encoder.layers.{i}.ffn.up.{w}": "encoder.layer.{i}.intermediate.dense.{w}",
    "encoder.layers.{i}.ffn.down.{w}": "encoder.layer.{i}.output.dense.{w}",
    "encoder.layers.{i}.ffn_norm.{w}": "encoder.layer.{i}.output.LayerNorm.{w}",
}
# Pre-LN (RoBERTa-PreLayerNorm): the LayerNorm before attention is `attention.LayerNorm`, the one
# before the FFN `intermediate.LayerNorm`; `attention.output` and `output` are dense + residual only.
PRE_LN_LAYER_KEYS: dict[str, str | tuple[str, ...]] = {
    "encoder.layers.{i}.attention.qkv.{w}": _QKV,
    "encoder.layers.{i}.attention.out.{w}": "encoder.layer.{i}.attention.output.dense.{w}",
    "encoder.layers.{i}.attention_norm.{w}": "encoder.layer.{i}.attention.LayerNorm.{w}",
    "encoder.layers.{i}.ffn.up.{w}": "encoder.layer.{i}.intermediate.dense.{w}",
    "encoder.layers.{i}.ffn.down.{w}": "encoder.layer.{i}.output.dense.{w}",
    "encoder.layers.{i}.ffn_norm.{w}": "encoder.layer.{i}.intermediate.LayerNorm.{w}",
}
# RoBERTa's lm_head, shared by RoBERTa-PreLayerNorm.
ROBERTA_HEAD = {
    "head.dense.weight": "lm_head.dense.weight",
    "head.dense.bias": "lm_head.dense.bias",
    "head.norm.weight": "lm_head.layer_norm.weight",
    "head.norm.bias": "lm_head.layer_norm.bias",
    "head.bias": "lm_head.bias",
}
ROBERTA_DECODER = ("lm_head.decoder.weight", "lm_head.decoder.bias")
# ELECTRA's discriminator head (ElectraDiscriminatorPredictions): dense, hidden_act, one logit per token.
ELECTRA_HEAD = {
    "detector.dense.weight": "discriminator_predictions.dense.weight",
    "detector.dense.bias": "discriminator_predictions.dense.bias",
    "detector.prediction.weight": "discriminator_predictions.dense_prediction.weight",
    "detector.prediction.bias": "discriminator_predictions.dense_prediction.bias",
}


@dataclass(frozen=True)
class Arch:
    """Where one Hugging Face architecture keeps things, and what it computes."""

    prefix: str  # encoder prefix inside the MLM checkpoint
    mlm_class: str  # the `architectures` entry of config.json
    clm_class: str  # the same for a causal LM (is_decoder)
    head: dict[str, str]  # our MLMHead parameters -> HF names
    decoder: tuple[str, str]  # HF's tied decoder weight and bias (not in our files, dropped on import)
    norm: str  # the model.norm it computes: "post" or "pre"
    layers: dict[str, str | tuple[str, ...]]  # our per-layer parameters -> HF's (after the prefix)
    final: dict[str, str] = field(default_factory=dict)  # ours after the last layer -> HF's (after the prefix)
    positions_after_pad: bool = False  # positions numbered from padding_idx + 1 (RoBERTa), else from 0
    gelu_head: bool = False  # the MLM head hard-codes exact GELU (RobertaLMHead)
    default_pad_id: int = 0  # pad_token_id when config.json leaves it out


ARCHS = {
    "bert": Arch(
        prefix="bert.",
        mlm_class="BertForMaskedLM",
        clm_class="BertLMHeadModel",
        head={
            "head.dense.weight": "cls.predictions.transform.dense.weight",
            "head.dense.bias": "cls.predictions.transform.dense.bias",
            "head.norm.weight": "cls.predictions.transform.LayerNorm.weight",
            "head.norm.bias": "cls.predictions.transform.LayerNorm.bias",
            "head.bias": "cls.predictions.bias",
        },
        decoder=("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"),
        norm="post",
        layers=POST_LN_LAYER_KEYS,
    ),
    "roberta": Arch(
        prefix="roberta.",
        mlm_class="RobertaForMaskedLM",
        clm_class="RobertaForCausalLM",
        head=ROBERTA_HEAD,
        decoder=ROBERTA_DECODER,
        norm="post",
        layers=POST_LN_LAYER_KEYS,
        positions_after_pad=True,
        gelu_head=True,
        default_pad_id=1,
    ),
    # ELECTRA's discriminator (train.objective electra): BERT's encoder names under `electra.`, positions
    # from 0, embedding_size = hidden_size (no projection); the generator is a training device and stays home.
    "electra": Arch(
        prefix="electra.",
        mlm_class="ElectraForPreTraining",
        clm_class="ElectraForCausalLM",
        head=ELECTRA_HEAD,
        decoder=(),
        norm="post",
        layers=POST_LN_LAYER_KEYS,
    ),
    "roberta-prelayernorm": Arch(
        prefix="roberta_prelayernorm.",
        mlm_class="RobertaPreLayerNormForMaskedLM",
        clm_class="RobertaPreLayerNormForCausalLM",
        head=ROBERTA_HEAD,
        decoder=ROBERTA_DECODER,
        norm="pre",
        layers=PRE_LN_LAYER_KEYS,
        final={"encoder.final_norm.weight": "LayerNorm.weight", "encoder.final_norm.bias": "LayerNorm.bias"},
        positions_after_pad=True,
        gelu_head=True,
        default_pad_id=1,
    ),
}
PRE_LN_ARCH = "roberta-prelayernorm"

# BertForPreTraining's pooler and NSP head (SOP is the same 2-way head on the same pooler, ALBERT's sop_classifier).
PRETRAINING_KEYS = {
    "sentence.pooler.weight": "bert.pooler.dense.weight",
    "sentence.pooler.bias": "bert.pooler.dense.bias",
    "sentence.classifier.weight": "cls.seq_relationship.weight",
    "sentence.classifier.bias": "cls.seq_relationship.bias",
}
PRETRAINING_CLASS = "BertForPreTraining"

TOKENS, POSITIONS, TOKEN_TYPES = (
    "encoder.embeddings.tokens.weight", "encoder.embeddings.positions.weight", "encoder.embeddings.token_types.weight"
)

# Our activation names -> HF `hidden_act`, and the HF spellings we read back. gelu_pytorch_tanh is
# F.gelu(approximate="tanh"), exactly our gelu_tanh (gelu_new writes out the same formula).
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu", "silu": "silu"}
FROM_HF_ACTIVATIONS = {**{v: k for k, v in HF_ACTIVATIONS.items()}, "gelu_new": "gelu_tanh", "swish": "silu"}

# Tensors a checkpoint may carry that a masked LM has no use for: the pooler and NSP head of
# BertForPreTraining, and buffers older transformers versions saved.
IGNORED_HF_KEYS = re.compile(r"(^|\.)pooler\.|^cls\.seq_relationship\.|embeddings\.(position_ids|token_type_ids)$")

# HF's defaults for keys an older config.json may leave out.
HF_DEFAULTS = {
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "initializer_range": 0.02,
}


# ---------------------------------------------------------------- the key table


def _arch(arch: str) -> Arch:
    if arch not in ARCHS:
        raise ConfigError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[arch]


def hf_name(arch: str, ours: str) -> str:
    """HF name of one of our embedding tensors."""
    return _arch(arch).prefix + EMBEDDING_KEYS[ours]


def hf_position_offset(cfg: ModelConfig, arch: str) -> int:
    """Row of HF's position table the first token reads: padding_idx + 1 (RoBERTa) or 0 (BERT)."""
    return cfg.pad_id + 1 if _arch(arch).positions_after_pad else 0


def key_table(cfg: ModelConfig, arch: str, mlm_head: bool = True) -> dict[str, str | tuple[str, ...]]:
    """Every parameter of our MaskedLM (or only its encoder) -> its HF name(s); `from_hf_state_dict`
    reads it backwards."""
    a = _arch(arch)
    table: dict[str, str | tuple[str, ...]] = {
        ours: a.prefix + theirs for ours, theirs in EMBEDDING_KEYS.items() if ours != TOKEN_TYPES or cfg.type_vocab_size
    }
    for i in range(cfg.num_layers):
        for w in ("weight", "bias"):
            name = lambda pattern: a.prefix + pattern.format(i=i, w=w)  # noqa: E731
            for ours, theirs in a.layers.items():
                table[ours.format(i=i, w=w)] = tuple(map(name, theirs)) if isinstance(theirs, tuple) else name(theirs)
    table.update({ours: a.prefix + theirs for ours, theirs in a.final.items()})
    if not mlm_head:
        return table
    return {**table, **a.head, **(PRETRAINING_KEYS if exports_sentence_head(cfg, arch) else {})}


def exports_sentence_head(cfg: ModelConfig, arch: str) -> bool:
    """A run with a sentence head (mlm+nsp / mlm+sop) exports as BertForPreTraining; transformers has
    no RoBERTa class with an NSP head, so `--arch roberta` exports the masked LM only."""
    return cfg.sentence_head and arch == "bert" and not cfg.causal


def check_exportable(cfg: ModelConfig, arch: str, mlm_head: bool = True) -> None:
    """Refuse what the chosen architecture cannot compute (the MLM head's activation only with the head)."""
    a = _arch(arch)
    if mlm_head and cfg.discriminator != (arch == "electra"):
        raise DataError(
            "this run is an ELECTRA discriminator (train.objective electra), which has no MLM head: export it with "
            "--arch electra (ElectraForPreTraining)" if cfg.discriminator else
            "--arch electra exports an ELECTRA discriminator (a run with train.objective electra); this run is a "
            "masked LM: use --arch bert or --arch roberta"
        )
    if mlm_head and cfg.discriminator and cfg.norm == "pre":
        raise DataError(
            "transformers' ELECTRA is post-LN and this discriminator is pre-LN (model.norm: pre), which it cannot "
            "express: fine-tune it and export the fine-tuned folder, or pretrain with --set model.norm=post"
        )
    if cfg.norm == "pre" and a.norm != "pre":
        raise DataError(
            f"this model is pre-LN (model.norm: pre), which {a.mlm_class} cannot express; "
            f"export it with --arch {PRE_LN_ARCH} ({ARCHS[PRE_LN_ARCH].mlm_class})"
        )
    if cfg.norm != "pre" and a.norm == "pre":
        raise DataError(
            f"this model is post-LN (model.norm: {cfg.norm}), but {a.mlm_class} is pre-LN; "
            "export it with --arch bert or --arch roberta"
        )
    if mlm_head and a.gelu_head and cfg.activation != "gelu":
        way_out = (
            "export with --arch bert" if a.norm == "post"
            else "transformers has no pre-LN masked LM for other activations, so this model cannot be exported"
        )
        raise DataError(f"{a.mlm_class}'s head always uses exact GELU, but this model uses {cfg.activation}; {way_out}")


def _shift_rows(table: torch.Tensor, shift: int) -> torch.Tensor:
    """Move a position table down by `shift` rows (zero rows in front), or up (first rows dropped) if negative."""
    if shift > 0:
        return torch.cat([table.new_zeros(shift, table.shape[1]), table])
    return table[-shift:] if shift < 0 else table


def to_hf_state_dict(
    state: dict[str, torch.Tensor], cfg: ModelConfig, arch: str, mlm_head: bool = True
) -> dict[str, torch.Tensor]:
    """Our MaskedLM state dict -> HF `{Arch}ForMaskedLM` tensors (the tied decoder left out, as HF
    saves it); with `mlm_head=False` only the encoder's, for a fine-tuned model's own head."""
    check_exportable(cfg, arch, mlm_head)
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in key_table(cfg, arch, mlm_head).items():
        if isinstance(theirs, tuple):
            out.update(zip(theirs, state[ours].chunk(len(theirs), dim=0)))
        else:
            out[theirs] = state[ours]
    positions = hf_name(arch, POSITIONS)
    out[positions] = _shift_rows(out[positions], hf_position_offset(cfg, arch) - cfg.position_offset)
    if not cfg.type_vocab_size:  # HF always adds token type 0's row: make it add nothing
        out[hf_name(arch, TOKEN_TYPES)] = state[TOKENS].new_zeros(1, cfg.hidden_size)
    return {k: v.contiguous() for k, v in out.items()}


def from_hf_state_dict(
    state: dict[str, torch.Tensor], cfg: ModelConfig, arch: str, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """HF `{Arch}ForMaskedLM` (or ForPreTraining) tensors -> our MaskedLM state dict: the same table, backwards.

    `source` names the file in messages. Pooler, NSP head and tied decoder copies are dropped (and
    logged); an untied decoder, a missing or unexpected tensor, or a wrong shape is a DataError.
    """
    state = _legacy_names(state)
    kept = {k: state[k] for k in PRETRAINING_KEYS.values() if k in state} if exports_sentence_head(cfg, arch) else {}
    state = {**_drop_extras(state, arch, source), **kept}
    _check_hf_tensors(state, cfg, arch, source)
    if not cfg.type_vocab_size and state[hf_name(arch, TOKEN_TYPES)].count_nonzero():
        raise DataError(f"{source}: {hf_name(arch, TOKEN_TYPES)} is not zero, but the model config has no token types")
    out = {
        ours: torch.cat([state[k] for k in theirs]) if isinstance(theirs, tuple) else state[theirs]
        for ours, theirs in key_table(cfg, arch).items()
    }
    out[POSITIONS] = _shift_rows(out[POSITIONS], cfg.position_offset - hf_position_offset(cfg, arch))
    return out


def _legacy_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LayerNorm `gamma`/`beta` (TF-era checkpoints such as the original BERT) -> `weight`/`bias`."""
    rename = lambda k: re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", k))  # noqa: E731
    return {rename(k): v for k, v in state.items()}


def _drop_extras(state: dict, arch: str, source: str) -> dict:
    """Remove tensors a masked LM does not use; a stored decoder only if it really is tied."""
    a = ARCHS[arch]
    for stored, tied_to in zip(a.decoder, (hf_name(arch, TOKENS), a.head["head.bias"])):
        if stored in state and tied_to in state and not torch.equal(state[stored], state[tied_to]):
            raise DataError(f"{source}: {stored} differs from {tied_to}; bertforge ties the decoder and cannot import it")
    dropped = sorted(k for k in state if IGNORED_HF_KEYS.search(k) or k in a.decoder)
    if dropped:
        log.info("%s: ignored %d tensor(s) a masked LM does not use: %s", source, len(dropped), ", ".join(dropped))
    return {k: v for k, v in state.items() if k not in dropped}


def expected_hf_shapes(cfg: ModelConfig, arch: str) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> shape for `cfg`: our model built on the meta device (no memory, no init), mapped."""
    with torch.device("meta"):
        state = MaskedLM(cfg).state_dict()
    return {k: tuple(v.shape) for k, v in to_hf_state_dict(state, cfg, arch).items()}


def _check_hf_tensors(state: dict, cfg: ModelConfig, arch: str, source: str) -> None:
    a, expected = ARCHS[arch], expected_hf_shapes(cfg, arch)
    head = a.head["head.bias"].split(".")[0]
    if not any(k.startswith(head + ".") for k in state):
        raise DataError(f"{source} has no masked-LM head ({head}.*): a bare encoder, not a {a.mlm_class} checkpoint")
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(
            f"{source} is not a {a.mlm_class} checkpoint matching config.json "
            f"(missing: {_few(missing)}; unexpected: {_few(unexpected)})"
        )
    rows = state[hf_name(arch, TOKENS)].shape[0]
    if rows != cfg.vocab_size:
        raise DataError(f"{source} has a vocabulary of {rows} tokens but config.json says vocab_size {cfg.vocab_size}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise DataError(f"{source}: {key} has shape {tuple(state[key].shape)}, config.json implies {shape}")


def _few(keys: list[str], n: int = 3) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


# ---------------------------------------------------------------- config.json


def hf_config(cfg: ModelConfig, tokenizer: TextTokenizer, arch: str, mlm_head: bool = True) -> dict:
    """The config.json of the exported model (`mlm_head=False`: of a fine-tuned one, without the MLM head)."""
    check_exportable(cfg, arch, mlm_head)
    return {
        "architectures": [model_class(cfg, arch)],
        "model_type": arch,
        **({"is_decoder": True} if cfg.causal else {}),
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": HF_ACTIVATIONS[cfg.activation],
        "hidden_dropout_prob": cfg.hidden_dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_seq_len + hf_position_offset(cfg, arch),
        "type_vocab_size": max(cfg.type_vocab_size, 1),
        "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": cfg.pad_id,
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        **({"embedding_size": cfg.hidden_size} if arch == "electra" else {}),  # ELECTRA's default is 128
        "position_embedding_type": "absolute",  # read by transformers 4.x
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


def model_class(cfg: ModelConfig, arch: str) -> str:
    """The transformers class that computes what our model does: masked or causal LM, or BERT's pretraining model."""
    if exports_sentence_head(cfg, arch):
        return PRETRAINING_CLASS
    return ARCHS[arch].clm_class if cfg.causal else ARCHS[arch].mlm_class


def model_config_from_hf(hf_cfg: dict) -> ModelConfig:
    """Our ModelConfig for a BERT/RoBERTa/RoBERTa-PreLayerNorm config.json (the last a pre-LN model);
    DataError for what our model cannot compute."""
    arch = hf_cfg.get("model_type")
    if arch == "electra":
        raise DataError("config.json: model_type 'electra': bertforge exports ELECTRA discriminators but imports "
                        "BERT/RoBERTa/RoBERTa-PreLayerNorm masked LMs only")
    if arch not in ARCHS:
        raise DataError(
            f"config.json: model_type {arch!r} is not supported; bertforge imports {', '.join(ARCHS)} MLMs"
        )
    a = ARCHS[arch]
    _refuse_unsupported(hf_cfg)
    get = lambda key: hf_cfg[key] if hf_cfg.get(key) is not None else HF_DEFAULTS[key]  # noqa: E731
    pad_id = hf_cfg.get("pad_token_id")
    pad_id = a.default_pad_id if pad_id is None else pad_id
    offset = pad_id + 1 if a.positions_after_pad else 0
    try:
        return ModelConfig(
            vocab_size=hf_cfg["vocab_size"],
            hidden_size=hf_cfg["hidden_size"],
            num_layers=hf_cfg["num_hidden_layers"],
            num_heads=hf_cfg["num_attention_heads"],
            intermediate_size=hf_cfg["intermediate_size"],
            max_seq_len=hf_cfg["max_position_embeddings"] - offset,
            position_offset=offset,
            type_vocab_size=get("type_vocab_size"),
            pad_id=pad_id,
            norm=a.norm,
            activation=FROM_HF_ACTIVATIONS[get("hidden_act")],
            hidden_dropout=get("hidden_dropout_prob"),
            attention_dropout=get("attention_probs_dropout_prob"),
            layer_norm_eps=get("layer_norm_eps"),
            initializer_range=get("initializer_range"),
            causal=bool(hf_cfg.get("is_decoder")),
            sentence_head=arch == "bert" and PRETRAINING_CLASS in (hf_cfg.get("architectures") or []),
        )
    except KeyError as e:
        raise DataError(f"config.json lacks {e.args[0]!r}; it is not a complete {arch} config") from None
    except (ConfigError, TypeError) as e:
        raise DataError(f"config.json describes a model bertforge cannot build: {e}") from None


def _refuse_unsupported(hf_cfg: dict) -> None:
    if hf_cfg.get("add_cross_attention"):
        raise DataError("config.json: add_cross_attention is set; bertforge imports self-attention-only models")
    if (kind := hf_cfg.get("position_embedding_type") or "absolute") != "absolute":
        raise DataError(f"config.json: position_embedding_type {kind!r} is not supported (only absolute)")
    if hf_cfg.get("tie_word_embeddings") is False:
        raise DataError("config.json: tie_word_embeddings is false; bertforge needs the decoder tied to the embeddings")
    if (act := hf_cfg.get("hidden_act") or "gelu") not in FROM_HF_ACTIVATIONS:
        raise DataError(f"config.json: hidden_act {act!r} is not supported (only {', '.join(FROM_HF_ACTIVATIONS)})")


# ---------------------------------------------------------------- tokenizer files


def default_arch(tokenizer: TextTokenizer, cfg: ModelConfig | None = None, with_head: bool = True) -> str:
    """ELECTRA for an ELECTRA discriminator with its head; RoBERTa-PreLayerNorm for a pre-LN model
    (whatever its tokenizer); BERT for a post-LN causal LM, whose positions `generate()` numbers as
    BERT does (module docstring); else RoBERTa for RoBERTa-style specials (byte-level BPE by
    default), BERT for BERT's (WordPiece). Without the head (a fine-tuned model) an ELECTRA
    discriminator's encoder is a BERT/RoBERTa encoder like any other."""
    if cfg is not None and cfg.discriminator and with_head:
        return "electra"
    if cfg is not None and cfg.norm == "pre":
        return PRE_LN_ARCH
    if cfg is not None and cfg.causal:
        return "bert"
    return "roberta" if tokenizer.scheme == "roberta" else "bert"


def causal_position_ids(cfg: ModelConfig, arch: str, length: int) -> torch.Tensor:
    """(1, length) position ids to pass to a `RobertaForCausalLM`'s `generate()`: it extends them by
    one per new token, which gives RoBERTa's numbering (from padding_idx + 1) instead of 0-based."""
    start = hf_position_offset(cfg, arch)
    return torch.arange(start, start + length)[None]


def tokenizer_files(tokenizer: TextTokenizer, cfg: ModelConfig, arch: str) -> dict[str, dict]:
    """tokenizer_config.json and special_tokens_map.json, to sit beside our tokenizer.json."""
    s = SPECIAL_TOKENS[tokenizer.scheme]
    roles = {
        "bos_token": s["bos"], "eos_token": s["eos"], "unk_token": s["unk"], "sep_token": s["eos"],
        "pad_token": s["pad"], "cls_token": s["bos"], "mask_token": s["mask"],
    }
    # BERT always takes token types. The RoBERTa family takes them only where they can differ from
    # type 0: a BERT-scheme tokenizer (its pair template marks the second text 1) feeding a model
    # with segment embeddings, as our fine-tuning feeds them.
    types = arch in ("bert", "electra") or (tokenizer.scheme == "bert" and cfg.type_vocab_size >= 2)
    inputs = ["input_ids", "token_type_ids", "attention_mask"] if types else ["input_ids", "attention_mask"]
    config = {
        **_tokenizer_class(tokenizer),
        **roles,
        "model_max_length": cfg.max_seq_len,
        "clean_up_tokenization_spaces": False,  # decode exactly as `tokenizers` (and bertforge) does
        "model_input_names": inputs,
    }
    # RoBERTa's mask eats the space before it ("human <mask>."), as in our tokenizer.json.
    lstrip = tokenizer.scheme == "roberta"
    mask = {"content": s["mask"], "lstrip": lstrip, "rstrip": False, "normalized": False, "single_word": False}
    return {"tokenizer_config.json": config, "special_tokens_map.json": {**roles, "mask_token": mask}}


def _tokenizer_class(tokenizer: TextTokenizer) -> dict:
    """The idiomatic HF class where it keeps our pipeline exactly, else PreTrainedTokenizerFast.

    BertTokenizerFast and RobertaTokenizerFast rebuild parts of the pipeline from their own
    settings (transformers 5 rebuilds BERT's normalizer from `do_lower_case`), so they are named
    only when those settings describe our tokenizer.json; the generic class reads it as is.
    """
    spec = json.loads(tokenizer.tokenizer.to_str())
    model, norm, pre = (spec.get(k) or {} for k in ("model", "normalizer", "pre_tokenizer"))
    if tokenizer.scheme == "roberta" and model.get("type") == "BPE" and not norm and pre.get("type") == "ByteLevel":
        prefix_space = pre.get("add_prefix_space", False)
        return {"tokenizer_class": "RobertaTokenizerFast", "add_prefix_space": prefix_space, "trim_offsets": True}
    if tokenizer.scheme == "bert" and model.get("type") == "WordPiece" and norm.get("type") == "BertNormalizer":
        return {
            "tokenizer_class": "BertTokenizerFast",
            "do_lower_case": norm.get("lowercase", True),
            "strip_accents": norm.get("strip_accents"),
            "tokenize_chinese_chars": norm.get("handle_chinese_chars", True),
        }
    return {"tokenizer_class": "PreTrainedTokenizerFast"}


# ---------------------------------------------------------------- export a fine-tuned model

# Our fine-tuning heads (finetune/model.py) -> HF's: RoBERTa's (and RoBERTa-PreLayerNorm's)
# classification head is dense + tanh + out_proj; BERT computes the same as pooler (dense + tanh) + classifier.
TASK_HEADS = {
    ("roberta", "classify"): ("RobertaForSequenceClassification", {"head.dense": "classifier.dense", "head.out_proj": "classifier.out_proj"}),
    ("bert", "classify"): ("BertForSequenceClassification", {"head.dense": "bert.pooler.dense", "head.out_proj": "classifier"}),
    ("roberta", "ner"): ("RobertaForTokenClassification", {"head.out_proj": "classifier"}),
    ("bert", "ner"): ("BertForTokenClassification", {"head.out_proj": "classifier"}),
    ("roberta-prelayernorm", "classify"): (
        "RobertaPreLayerNormForSequenceClassification",
        {"head.dense": "classifier.dense", "head.out_proj": "classifier.out_proj"},
    ),
    ("roberta-prelayernorm", "ner"): ("RobertaPreLayerNormForTokenClassification", {"head.out_proj": "classifier"}),
}
