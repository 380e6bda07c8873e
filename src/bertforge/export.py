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
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__, files
from .config import DataConfig, ModelConfig, RunConfig, TokenizerConfig, TrainConfig, save_config
from .errors import ConfigError, DataError
from .finite import check_finite_model
from .tokenizer import SPECIAL_TOKENS, TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

IMPORT_FILE = "import.json"  # in a run made by `import_hf`: where its weights came from


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
    from .model import MaskedLM

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


def default_arch(tokenizer: TextTokenizer, cfg: ModelConfig | None = None) -> str:
    """RoBERTa-PreLayerNorm for a pre-LN model (whatever its tokenizer); BERT for a post-LN causal LM,
    whose positions `generate()` numbers as BERT does (module docstring); else RoBERTa for
    RoBERTa-style specials (byte-level BPE by default), BERT for BERT's (WordPiece)."""
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
    types = arch == "bert" or (tokenizer.scheme == "bert" and cfg.type_vocab_size >= 2)
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


def finetuned_to_hf(ft, arch: str) -> tuple[dict[str, torch.Tensor], dict]:
    """A fine-tuned model (finetune.load_finetuned) -> HF tensors and config.json with id2label."""
    task, cfg = ft.config.finetune.task, ft.config.model
    if ft.config.finetune.pooling != "cls":
        raise DataError(f"this classifier uses {ft.config.finetune.pooling} pooling, which transformers' "
                        "...ForSequenceClassification cannot express; only cls pooling can be exported")
    hf_class, head = TASK_HEADS[(arch, task)]
    state = ft.model.state_dict()
    tensors = to_hf_state_dict(state, cfg, arch, mlm_head=False)
    for ours, theirs in head.items():
        for w in ("weight", "bias"):
            tensors[f"{theirs}.{w}"] = state[f"{ours}.{w}"].contiguous()
    config = {**hf_config(cfg, ft.tokenizer, arch, mlm_head=False), "architectures": [hf_class]}
    config["id2label"] = {str(i): str(label) for i, label in enumerate(ft.labels)}
    config["label2id"] = {str(label): i for i, label in enumerate(ft.labels)}
    if task == "classify":
        config["problem_type"] = "single_label_classification"
    return tensors, config


# ---------------------------------------------------------------- export a run


def export_run(run_dir: str | Path, out_dir: str | Path, arch: str | None = None) -> Path:
    """Write a run's latest checkpoint (or a fine-tuned model) as a Hugging Face model folder,
    replaced whole, never half-written."""
    from .finetune import LABELS_FILE

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    files.refuse_foreign_dir(out_dir, "config.json", "a Hugging Face model folder")
    if (run_dir / LABELS_FILE).is_file():
        return export_finetuned(run_dir, out_dir, arch)
    from .infer import load_run

    run = load_run(run_dir, device="cpu")
    cfg, tokenizer = run.config.model, run.tokenizer
    arch = arch or default_arch(tokenizer, cfg)
    check_exportable(cfg, arch)
    tmp = files.make_tmp_dir(out_dir)
    try:
        tensors = to_hf_state_dict(run.model.state_dict(), cfg, arch)
        files.save_tensors(tmp / "model.safetensors", tensors, metadata={"format": "pt"})  # HF checks "format"
        files.write_json(tmp / "config.json", hf_config(cfg, tokenizer, arch))
        files.atomic_write_text(tmp / "tokenizer.json", tokenizer.tokenizer.to_str(pretty=True))
        for name, content in tokenizer_files(tokenizer, cfg, arch).items():
            files.write_json(tmp / name, content)
        files.atomic_write_text(tmp / "README.md", model_card(run_dir, run.config, run.checkpoint, arch, out_dir.name))
        files.replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if cfg.sentence_head and not exports_sentence_head(cfg, arch):
        log.warning("%s has no sentence-pair head: the pooler and NSP/SOP head are left out (use --arch bert "
                    "for BertForPreTraining)", model_class(cfg, arch))
    log.info("exported %s (%s) as %s -> %s", run_dir, run.checkpoint.name, model_class(cfg, arch), out_dir)
    return out_dir


def export_finetuned(ft_dir: Path, out_dir: Path, arch: str | None) -> Path:
    """A fine-tuning folder as `...ForSequenceClassification` / `...ForTokenClassification`."""
    from .finetune import load_finetuned

    ft = load_finetuned(ft_dir, device="cpu")
    check_finite_model(ft.model, ft_dir)
    arch = arch or default_arch(ft.tokenizer, ft.config.model)
    tensors, config = finetuned_to_hf(ft, arch)
    tmp = files.make_tmp_dir(out_dir)
    try:
        files.save_tensors(tmp / "model.safetensors", tensors, metadata={"format": "pt"})
        files.write_json(tmp / "config.json", config)
        files.atomic_write_text(tmp / "tokenizer.json", ft.tokenizer.tokenizer.to_str(pretty=True))
        for name, content in tokenizer_files(ft.tokenizer, ft.config.model, arch).items():
            files.write_json(tmp / name, content)
        files.replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s as %s -> %s", ft_dir, config["architectures"][0], out_dir)
    return out_dir


# ---------------------------------------------------------------- model card


INTENDED_USE = """\
Filling in masked words (`fill-mask`) and, above all, a starting point for fine-tuning on text like
the training data (sequence or token classification, embeddings). It is a small model trained on a
limited corpus: it knows nothing beyond that corpus, its predictions echo the corpus's style and
biases, and it is not meant for decisions about people.

```python
from transformers import pipeline

fill = pipeline("fill-mask", model="{name}")
fill("The {mask} is the key to everything.")
```
"""


CAUSAL_USE = """\
Continuing or answering a prompt (`text-generation`) in the style of the training data. It is a
small model trained on a limited corpus: it knows nothing beyond that corpus, its text is often
wrong or incoherent, it echoes the corpus's style and biases, and it is not meant for decisions
about people.

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model, tokenizer = AutoModelForCausalLM.from_pretrained("{name}"), AutoTokenizer.from_pretrained("{name}")
ids = tokenizer("{prompt}", add_special_tokens=False, return_tensors="pt").input_ids
ids = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], dim=1)
print(tokenizer.decode(model.generate(ids, max_new_tokens=40, do_sample=False)[0], skip_special_tokens=True))
```
"""


def _intended_use(cfg: RunConfig, name: str) -> str:
    if cfg.model.causal:
        from .templates import load_template

        prompt = load_template(cfg.data.template).prompt("Name three colors.") if cfg.data.template else "Once upon a time"
        return CAUSAL_USE.replace("{name}", name).replace("{prompt}", json.dumps(prompt)[1:-1])
    return INTENDED_USE.format(mask=SPECIAL_TOKENS[cfg.tokenizer.scheme]["mask"], name=name)


def model_card(run_dir: Path, cfg: RunConfig, checkpoint: Path, arch: str, name: str) -> str:
    """README.md of the exported folder: what the model is, what it saw, how well it does, what it is for."""
    m = cfg.model
    pipeline, kind = ("text-generation", "causal-lm") if m.causal else ("fill-mask", "masked-lm")
    sections = [
        f"---\nlibrary_name: transformers\npipeline_tag: {pipeline}\ntags:\n- bertforge\n- {kind}\n- {arch}\n---",
        f"# {name}",
        f"A {model_class(m, arch)} ({m.num_layers} layers, hidden size {m.hidden_size}, {m.num_heads} heads, "
        f"{m.vocab_size:,}-token {cfg.tokenizer.kind} vocabulary, up to {m.max_seq_len} tokens) trained with "
        f"bertforge {__version__}, {_origin(run_dir)}.",
        "## Training data\n\n" + _data_section(run_dir),
        "## Training\n\n" + _training_section(cfg, checkpoint),
        "## Evaluation\n\n" + _evaluation_section(run_dir, checkpoint, cfg.train.objective),
        "## Intended use\n\n" + _intended_use(cfg, name),
    ]
    return "\n".join(section.rstrip("\n") + "\n" for section in sections)


def _read_json_or_none(path: Path):
    try:
        return files.read_json(path)
    except (OSError, ValueError):
        return None


def _origin(run_dir: Path) -> str:
    """Where the starting weights came from: a Hugging Face checkpoint, another run, or nowhere."""
    imported = _read_json_or_none(run_dir / IMPORT_FILE)
    if imported:
        return f"imported from the Hugging Face checkpoint `{Path(imported['source']).name}`"
    init_from = (_read_json_or_none(run_dir / "run.json") or {}).get("init_from")
    if not init_from:
        return "pretrained from scratch"
    init = Path(init_from)
    if (init / "config.json").is_file():
        return f"continuing the pretraining of the Hugging Face checkpoint `{init.name}`"
    if (init / "config.yaml").is_file():
        return f"continuing the pretraining of `{init.name}` ({_origin(init)})"
    return f"continuing the pretraining of `{init.name}`"


def _data_section(run_dir: Path) -> str:
    data_dir = (_read_json_or_none(run_dir / "run.json") or {}).get("data_dir")
    manifest = _read_json_or_none(Path(data_dir) / "manifest.json") if data_dir else None
    if not manifest:
        return "Not recorded here (no data folder for this run).\n"
    sources = [Path(s["location"]).name for s in manifest.get("corpus", {}).get("sources", [])]
    lines = [f"- sources: {', '.join(f'`{s}`' for s in sources) or 'unknown'}"]
    for split, info in manifest.get("splits", {}).items():
        counts = f"{info['documents']:,} documents, {info['tokens']:,} tokens, {info['sequences']:,} sequences"
        lines.append(f"- {split}: {counts}")
    lines.append(f"- sequences of {manifest['seq_len']} tokens, packing `{manifest['packing']}`")
    return "\n".join(lines) + "\n"


def _training_section(cfg: RunConfig, checkpoint: Path) -> str:
    state = _read_json_or_none(checkpoint / "trainer.json") or {}
    t, m = cfg.train, cfg.model
    whole = " (whole words)" if cfg.masking.whole_word else ""
    objective = (
        f"next-token prediction (causal LM) on {'the responses' if t.loss_on == 'response' else 'all tokens'}"
        if t.objective == "clm" else f"masking {cfg.masking.mask_prob:.0%} of tokens{whole}"
    )
    return (
        f"- steps: {state.get('step', 0):,}; training tokens seen: {state.get('tokens', 0):,}; "
        f"time: {state.get('elapsed_s', 0.0) / 60:.1f} min\n"
        f"- batch {t.batch_size} x {t.grad_accum_steps} accumulation, peak LR {t.lr:g}, {t.schedule} schedule, "
        f"{t.warmup_steps} warmup steps, weight decay {t.weight_decay:g}\n"
        f"- {objective}; {m.norm}-LN, {m.activation}, "
        f"dropout {m.hidden_dropout:g}\n"
    )


def _evaluation_section(run_dir: Path, checkpoint: Path, objective: str = "mlm") -> str:
    from .train.metrics import read_metrics

    step = (_read_json_or_none(checkpoint / "trainer.json") or {}).get("step", 0)
    records = [r for r in read_metrics(run_dir, "validation") if r["step"] <= step]
    if not records:
        return "No validation metrics were recorded.\n"
    r = records[-1]
    top5 = r.get("top5_accuracy", float("nan"))
    if objective == "clm":
        return (
            f"On the held-out validation split at step {r['step']:,} (next-token prediction):\n\n"
            "| loss | perplexity | next-token accuracy | top-5 accuracy |\n|---|---|---|---|\n"
            f"| {r['loss']:.4f} | {r['perplexity']:.2f} | {r['next_token_accuracy']:.4f} | {top5:.4f} |\n"
        )
    return (
        f"On the held-out validation split at step {r['step']:,} (15% of tokens masked):\n\n"
        "| loss | perplexity | masked accuracy | top-5 accuracy |\n|---|---|---|---|\n"
        f"| {r['loss']:.4f} | {r['perplexity']:.2f} | {r['masked_accuracy']:.4f} | {top5:.4f} |\n"
    )


# ---------------------------------------------------------------- import a Hugging Face folder


def import_hf(hf_dir: str | Path, out_run: str | Path) -> Path:
    """Turn a BERT/RoBERTa/RoBERTa-PreLayerNorm masked-LM folder into a bertforge run: config.yaml,
    tokenizer/, a step-0 checkpoint.

    `load_run`, `fill-mask`, `evaluate`, `export` and `pretrain --init-from` then work on it.
    """
    hf_dir, out_run = Path(hf_dir), Path(out_run)
    files.refuse_foreign_dir(out_run, IMPORT_FILE, "an imported run (it would be replaced)")
    hf_cfg = read_hf_config(hf_dir)
    cfg, arch = model_config_from_hf(hf_cfg), hf_cfg["model_type"]
    weights, weights_file = read_hf_weights(hf_dir)
    state = from_hf_state_dict(weights, cfg, arch, source=str(weights_file))
    state = {k: v.float() for k, v in state.items()}  # fp32 master weights, as training keeps them
    check_finite_model(state, weights_file)
    tokenizer = import_tokenizer(hf_dir)
    _check_tokenizer_fits(tokenizer, cfg, hf_dir)
    run_cfg = RunConfig(
        tokenizer=TokenizerConfig(tokenizer.kind, tokenizer.vocab_size, special_tokens=tokenizer.scheme),
        data=DataConfig(seq_len=min(DataConfig.seq_len, cfg.max_seq_len)),
        model=cfg,
        # continued pretraining keeps the objective (a BertForPreTraining checkpoint: MLM + NSP)
        train=TrainConfig(objective="clm" if cfg.causal else "mlm+nsp" if cfg.sentence_head else "mlm"),
    )
    _write_imported_run(out_run, run_cfg, tokenizer, state, {"source": str(hf_dir.resolve()), "model_type": arch})
    count = sum(v.numel() for v in state.values())
    log.info("imported %s (%s, %s parameters) -> %s", hf_dir, model_class(cfg, arch), f"{count:,}", out_run)
    return out_run


def init_run(path: str | Path, scratch: str | Path) -> Path:
    """A run folder for `pretrain --init-from PATH`: PATH if it is a run, else PATH imported into `scratch`."""
    from .checkpoint import latest_intact_checkpoint

    path = Path(path)
    if (path / "config.yaml").is_file():
        checkpoint = latest_intact_checkpoint(path)
        check_finite_model(files.load_tensors(checkpoint / "model.safetensors"), checkpoint)  # never train from NaN
        return path
    if (path / "config.json").is_file():
        return import_hf(path, scratch)
    raise DataError(f"--init-from {path}: neither a bertforge run (config.yaml) nor a Hugging Face folder (config.json)")


def read_hf_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    if not hf_dir.is_dir():
        raise DataError(f"{hf_dir} is not a folder; give a Hugging Face model folder (config.json, model.safetensors)")
    if not path.is_file():
        raise DataError(f"{hf_dir} is not a Hugging Face model folder (no config.json)")
    hf_cfg = files.read_json_file(path, "is it a Hugging Face config.json?")
    if not isinstance(hf_cfg, dict):
        raise DataError(f"{path}: expected a JSON object")
    return hf_cfg


def read_hf_weights(hf_dir: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The checkpoint's tensors: model.safetensors (or its shards), else pytorch_model.bin read without running code."""
    single, index = hf_dir / "model.safetensors", hf_dir / "model.safetensors.index.json"
    if single.is_file():
        return _load_safetensors(single), single
    if index.is_file():
        shards = sorted(set(_read_index(index).values()))
        return {k: v for shard in shards for k, v in _load_safetensors(hf_dir / shard).items()}, index
    pickled = hf_dir / "pytorch_model.bin"
    if pickled.is_file():
        return _load_pickled_weights(pickled), pickled
    raise DataError(f"{hf_dir}: no model.safetensors (or pytorch_model.bin); it holds no model weights")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path}: missing (listed in the safetensors index)")
    try:
        return files.load_tensors(path)
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise DataError(f"{path}: not a valid safetensors file ({_first_line(e)})") from None


def _read_index(path: Path) -> dict[str, str]:
    try:
        return dict(files.read_json(path)["weight_map"])
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path}: not a valid safetensors index (no weight_map)") from None


def _load_pickled_weights(path: Path) -> dict[str, torch.Tensor]:
    """A legacy pytorch_model.bin, read with `weights_only=True`: tensors and plain containers only,
    so a file that would run code when unpickled is refused, never executed."""
    log.info("%s: reading a legacy pickle checkpoint with torch.load(weights_only=True)", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for a forbidden global, RuntimeError/EOFError for junk
        # torch's message suggests weights_only=False; keep only the reason ("Unsupported global: ...").
        found = re.search(r"WeightsUnpickler error: ([^\n.]*)", str(e))
        reason = found.group(1) if found else _first_line(e)
        raise DataError(f"{path}: refused, not a plain tensor checkpoint ({reason}); convert it to model.safetensors") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: not a state dict of tensors; convert it to model.safetensors")
    return state


def import_tokenizer(hf_dir: Path) -> TextTokenizer:
    """The folder's tokenizer.json, or one converted by transformers from vocab.txt / vocab.json + merges.txt."""
    if (hf_dir / "tokenizer.json").is_file():
        return load_tokenizer(hf_dir / "tokenizer.json")
    if not any((hf_dir / name).is_file() for name in ("vocab.txt", "vocab.json")):
        raise DataError(f"{hf_dir}: no tokenizer (tokenizer.json, vocab.txt or vocab.json); the model needs one")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        need = "converting its vocab files needs transformers: pip install 'bertforge[hf]'"
        raise DataError(f"{hf_dir} has no tokenizer.json; {need}") from None
    try:
        backend = AutoTokenizer.from_pretrained(str(hf_dir)).backend_tokenizer
    except (OSError, ValueError) as e:
        raise DataError(f"{hf_dir}: its tokenizer files cannot be read ({_first_line(e)})") from None
    with tempfile.TemporaryDirectory() as tmp:  # load_tokenizer infers kind and scheme from a file
        path = Path(tmp) / "tokenizer.json"
        path.write_text(backend.to_str(), encoding="utf-8")
        return load_tokenizer(path)


def _check_tokenizer_fits(tokenizer: TextTokenizer, cfg: ModelConfig, hf_dir: Path) -> None:
    if tokenizer.vocab_size != cfg.vocab_size:
        raise DataError(
            f"{hf_dir}: the tokenizer has {tokenizer.vocab_size} tokens but config.json says vocab_size "
            f"{cfg.vocab_size}; bertforge needs them equal"
        )
    if tokenizer.pad_id != cfg.pad_id:
        raise DataError(f"{hf_dir}: the tokenizer's pad id is {tokenizer.pad_id}, config.json's pad_token_id {cfg.pad_id}")


def _write_imported_run(out_run: Path, cfg: RunConfig, tokenizer: TextTokenizer, state: dict, source: dict) -> None:
    """The run folder, built beside `out_run` and moved into place."""
    tmp = files.make_tmp_dir(out_run)
    try:
        save_config(tmp / "config.yaml", cfg)
        tokenizer.save(tmp / "tokenizer")
        checkpoint = tmp / "checkpoints" / "step-00000000"
        files.save_tensors(checkpoint / "model.safetensors", state)
        files.write_json(checkpoint / "trainer.json", {"step": 0, "batches": 0, "tokens": 0, "elapsed_s": 0.0})
        files.write_json(tmp / IMPORT_FILE, source)
        files.replace_dir(tmp, out_run)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
