"""The encoder: BERT/RoBERTa in plain PyTorch modules, read top to bottom.

Speed ideas, each of which keeps the math of BERT unchanged:
- attention through `F.scaled_dot_product_attention`, which picks flash / memory-efficient
  kernels on GPU; no mask is built at all when a batch has no padding (packed sequences);
- one fused QKV projection instead of three matmuls;
- the MLM decoder (hidden x vocab, the largest matmul of a small model) runs only on the
  ~15% masked positions when labels are given (`sparse_prediction`, as in Cramming).
With `model.causal` the same modules are a decoder (HF's `RobertaForCausalLM`): SDPA's
`is_causal=True` in training, and a key/value cache (`KVCache`) when generating, so each new
token runs one position through each layer.
Parameter shapes match Hugging Face's `BertForMaskedLM` / `RobertaForMaskedLM`, so export is a
renaming plus a QKV split (see hf/keys.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from . import fastops
from .config import ModelConfig
from .errors import ConfigError

IGNORE_INDEX = -100  # label of positions that are not predicted (as in PyTorch's cross_entropy)

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),  # exact erf GELU, as BERT and RoBERTa
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Embeddings(nn.Module):
    """Token + learned position (+ token type) embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.position_offset = cfg.position_offset
        self.document_positions = cfg.document_positions
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_id)
        self.positions = nn.Embedding(cfg.num_positions, cfg.hidden_size)
        self.token_types = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if cfg.type_vocab_size else None
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = fastops.Dropout(cfg.hidden_dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        start: int = 0,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        # RoBERTa numbers positions from pad_id + 1; padding sits at the end of a sequence, so for
        # every real token this equals HF's cumsum-of-non-pad numbering. `start`: tokens already in
        # the KV cache, so a generated token continues the numbering.
        first = self.position_offset + start
        positions = torch.arange(first, first + seq_len, device=input_ids.device)
        if self.document_positions and attention_mask is not None and attention_mask.max() > 1:
            positions = first + document_offsets(attention_mask)  # (B, T): each document as if read alone
        x = self.tokens(input_ids) + self.positions(positions)  # (B, T, H)
        if self.token_types is not None:
            if token_type_ids is None:
                x = x + self.token_types.weight[0]
            else:
                x = x + self.token_types(token_type_ids)
        return self.dropout(self.norm(x))


def document_offsets(documents: torch.Tensor) -> torch.Tensor:
    """(B, T) document numbers of packed rows (data.isolate_documents) -> each token's position as
    if its document were read alone: the row's first document keeps 0, 1, ... from its `<s>`; a
    later one, which has no `<s>` of its own, starts at 1, where a lone text's first word sits.
    So a document is numbered as fine-tuning will number it, wherever the packing put it."""
    index = torch.arange(documents.shape[1], device=documents.device).expand_as(documents)
    starts = torch.ones_like(documents, dtype=torch.bool)
    starts[:, 1:] = documents[:, 1:] != documents[:, :-1]
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values  # start of each token's document
    return index - first + (first > 0).long()


class KVCache:
    """Keys and values of the tokens seen so far, per layer: generation feeds only the new tokens."""

    def __init__(self, num_layers: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers

    @property
    def length(self) -> int:
        """Tokens already in the cache (the position of the next one), before a forward starts."""
        return self.cached(0)

    def cached(self, layer: int) -> int:
        """Tokens in one layer's cache (earlier layers of a running forward already hold the new ones)."""
        return 0 if self.layers[layer] is None else self.layers[layer][0].shape[2]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (B, nh, t, hd) keys and values; returns all of them."""
        past = self.layers[layer]
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        self.layers[layer] = (k, v)
        return k, v


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection and SDPA."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.causal = cfg.causal
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout_p = cfg.attention_dropout

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        B, T, H = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, H // self.num_heads).unbind(dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        is_causal = self.causal
        if cache is not None:
            past = cache.cached(layer)
            k, v = cache.extend(layer, k, v)
            if past and T > 1:  # new tokens see the cache and the new ones before them
                attn_mask, is_causal = causal_mask(T, past, x.device), False
            elif past:  # one new token sees everything: no mask at all
                is_causal = False
        y = fastops.attention(q, k, v, attn_mask, self.dropout_p if self.training else 0.0, is_causal)
        return self.out(y.transpose(1, 2).reshape(B, T, H))


def causal_mask(new: int, past: int, device: torch.device) -> torch.Tensor:
    """(new, past + new) boolean mask: query i (at position past + i) sees keys 0 .. past + i."""
    return torch.ones(new, past + new, dtype=torch.bool, device=device).tril(diagonal=past)


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.down = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    """One encoder layer. Post-LN normalises after each residual add (BERT); pre-LN before each
    branch, which trains stably at higher learning rates (Xiong et al., 2020)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.attention = SelfAttention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = fastops.Dropout(cfg.hidden_dropout)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.attention_norm(x), attn_mask, cache, layer))
            return x + self.dropout(self.ffn(self.ffn_norm(x)))
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask, cache, layer)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class Encoder(nn.Module):
    """Embeddings and the stack of blocks: input ids -> contextual vectors (B, T, H)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.causal = cfg.causal
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """A causal model needs no padding mask when padding sits at the end: no real token sees
        a later position. With `cache`, `input_ids` are the tokens after those already cached."""
        start = cache.length if cache is not None else 0
        x = self.embeddings(input_ids, token_type_ids, start=start, attention_mask=attention_mask)
        attn_mask = None if self.causal else padding_mask(attention_mask)
        for i, layer in enumerate(self.layers):
            x = layer(x, attn_mask, cache, i)
        return self.final_norm(x) if self.final_norm is not None else x


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) mask -> boolean mask for SDPA; None when nothing is padded, so SDPA can use its
    fastest kernels.

    1/0 values (the usual mask): every real token attends to every real token, (B, 1, 1, T).
    Document numbers 1, 2, ... (0 = padding), from packed rows with `data.isolate_documents`:
    a token attends only to the tokens of its own document, (B, 1, T, T); padding attends to
    padding, so no row of the mask is empty."""
    if attention_mask is None:
        return None
    if attention_mask.max() > 1:
        return (attention_mask[:, None, :, None] == attention_mask[:, None, None, :])
    keep = attention_mask.bool()
    if bool(keep.all()):
        return None
    return keep[:, None, None, :]


class MLMHead(nn.Module):
    """Dense, activation, LayerNorm, then the decoder whose weight is the token embedding.

    `in_size` is the width it reads when that differs from the embedding's (ELECTRA's generator)."""

    def __init__(self, cfg: ModelConfig, in_size: int | None = None):
        super().__init__()
        self.dense = nn.Linear(in_size or cfg.hidden_size, cfg.hidden_size)
        self.act = activation(cfg.activation)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        # The decoder weight is passed in, not stored, so the tied matrix appears once in the
        # state dict (safetensors refuses shared tensors) and once in the parameter count.
        h = self.norm(self.act(self.dense(h)))
        return F.linear(h, decoder_weight, self.bias)  # (..., V)


class SentenceHead(nn.Module):
    """BERT's pooler (dense + tanh on the first token) and the 2-way sentence-pair classifier
    (NSP: 0 = B follows A, 1 = B is from another document; SOP: 0 = in order, 1 = swapped)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.classifier = nn.Linear(cfg.hidden_size, 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.tanh(self.pooler(h[:, 0])))  # (B, 2)


@dataclass
class MLMOutput:
    logits: torch.Tensor  # (B, T, V), or (M, V) for the M labelled positions when predicted sparsely
    loss: torch.Tensor | None = None  # mean cross-entropy over labelled positions (+ the sentence loss)
    labels: torch.Tensor | None = None  # labels aligned with logits' leading dims
    sentence_logits: torch.Tensor | None = None  # (B, 2) with model.sentence_head
    sentence_loss: torch.Tensor | None = None  # mean cross-entropy of the sentence task, when labels are given
    mlm_loss: torch.Tensor | None = None  # the masked-LM part of `loss`
    rtd_logits: torch.Tensor | None = None  # ELECTRA: (B, T) "this token was replaced" logits of the discriminator
    rtd_labels: torch.Tensor | None = None  # ELECTRA: (B, T) 1 replaced, 0 original, IGNORE_INDEX on padding
    rtd_loss: torch.Tensor | None = None  # ELECTRA: mean binary cross-entropy of the detection


class MaskedLM(nn.Module):
    """Encoder + MLM head: the model that `bertforge pretrain` trains.

    With `model.causal` it is a causal LM: labels are then the next tokens (masking.causal_labels)
    and the same head predicts them at every position, as `RobertaForCausalLM`'s `lm_head` does."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.head = MLMHead(cfg)
        self.sentence = SentenceHead(cfg) if cfg.sentence_head else None
        init_model(self, cfg)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        sentence_labels: torch.Tensor | None = None,
    ) -> MLMOutput:
        if token_type_ids is not None and self.config.type_vocab_size < 2:
            token_type_ids = None  # RoBERTa-style models have one segment type: pairs are told apart by </s></s>
        h = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        out = self._mlm(h, labels)
        if self.sentence is not None:
            out.sentence_logits = self.sentence(h)
            if sentence_labels is not None and out.loss is not None:
                out.sentence_loss = F.cross_entropy(out.sentence_logits.float(), sentence_labels)
                out.mlm_loss, out.loss = out.loss, out.loss + out.sentence_loss  # BERT: the sum of both losses
        return out

    def _mlm(self, h: torch.Tensor, labels: torch.Tensor | None) -> MLMOutput:
        decoder = self.encoder.embeddings.tokens.weight  # tied to the input embedding
        if labels is None:
            return MLMOutput(logits=self.head(h, decoder))
        if self.config.sparse_prediction:
            # Gather only the positions with a label: same loss, ~1/7 of the decoder's work.
            selected = labels.reshape(-1) != IGNORE_INDEX
            logits = self.head(h.reshape(-1, h.shape[-1])[selected], decoder)  # (M, V)
            targets = labels.reshape(-1)[selected]
            loss = fastops.cross_entropy(logits, targets)  # every row has a target
            return MLMOutput(logits=logits, loss=loss, labels=targets)
        logits, targets = self.head(h, decoder), labels
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        return MLMOutput(logits=logits, loss=loss, labels=targets)

    def masked_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, where: torch.Tensor) -> torch.Tensor:
        """(N, V) logits at the N positions where `where` (B, T) is true: fill-mask's question."""
        h = self.encoder(input_ids, attention_mask)  # (B, T, H)
        return self.head(h[where], self.encoder.embeddings.tokens.weight)

    def new_cache(self) -> KVCache:
        return KVCache(self.config.num_layers)

    def next_token_logits(self, input_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """(B, V) logits of the token after `input_ids`, which continue the cached ones (causal models)."""
        h = self.encoder(input_ids, cache=cache)  # (B, t, H)
        return self.head(h[:, -1], self.encoder.embeddings.tokens.weight)


def generator_config(cfg: ModelConfig) -> ModelConfig:
    """ELECTRA's generator: the discriminator's depth at `generator_fraction` of its width. Clark et
    al. (2020) found a quarter to a half best: a stronger generator makes the task too hard."""
    heads = max(1, round(cfg.num_heads * cfg.generator_fraction))
    return replace(
        cfg, hidden_size=heads * cfg.head_dim, num_heads=heads, discriminator=False, sentence_head=False,
        intermediate_size=max(1, round(cfg.intermediate_size * cfg.generator_fraction)),
    )


class Generator(nn.Module):
    """ELECTRA's generator: a small masked LM that shares the discriminator's embeddings (as in the
    paper): their output is projected down to its width, and its MLM head projects back up and
    decodes with the shared token embedding (HF's `embeddings_project` / `generator_predictions`)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        small = generator_config(cfg)
        self.project = nn.Linear(cfg.hidden_size, small.hidden_size)
        self.layers = nn.ModuleList(Block(small) for _ in range(small.num_layers))
        self.final_norm = nn.LayerNorm(small.hidden_size, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else None
        self.head = MLMHead(cfg, in_size=small.hidden_size)

    def forward(self, embedded: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, T, H) embeddings -> (B, T, h) contextual vectors of the generator."""
        x = self.project(embedded)
        for i, layer in enumerate(self.layers):
            x = layer(x, attn_mask, None, i)
        return self.final_norm(x) if self.final_norm is not None else x


class DetectionHead(nn.Module):
    """Dense, activation, then one logit per token: "replaced" (HF's `discriminator_predictions`)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = activation(cfg.activation)
        self.prediction = nn.Linear(cfg.hidden_size, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.prediction(self.act(self.dense(h))).squeeze(-1)  # (B, T)


class Electra(nn.Module):
    """ELECTRA's replaced-token detection (Clark et al., 2020): a sample-efficient pretraining.

    The generator fills the masked positions with tokens sampled from its own predictions; the
    discriminator (`encoder`, the model you keep) reads the result and says for every token
    whether it was replaced. It learns from all tokens, not only the ~15% masked, which is why
    small models gain most. A sampled token equal to the original counts as original. The loss
    is the generator's MLM loss + `rtd_weight` x the detection loss (lambda = 50 in the paper);
    no gradient flows through the sampling. Without labels the model answers as a masked LM
    through its generator (fill-mask works); embeddings come from the discriminator.
    """

    def __init__(self, cfg: ModelConfig, rtd_weight: float = 50.0):
        super().__init__()
        self.config = cfg
        self.rtd_weight = rtd_weight
        self.encoder = Encoder(cfg)
        self.detector = DetectionHead(cfg)
        self.generator = Generator(cfg)
        init_model(self, cfg)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> MLMOutput:
        if token_type_ids is not None and self.config.type_vocab_size < 2:
            token_type_ids = None
        embeddings, decoder = self.encoder.embeddings, self.encoder.embeddings.tokens.weight
        embedded = embeddings(input_ids, token_type_ids, attention_mask=attention_mask)
        g = self.generator(embedded, padding_mask(attention_mask))  # (B, T, h)
        if labels is None:
            return MLMOutput(logits=self.generator.head(g, decoder))
        selected = labels != IGNORE_INDEX  # (B, T)
        logits = self.generator.head(g[selected], decoder)  # (M, V): the masked positions only
        targets = labels[selected]
        mlm_loss = fastops.cross_entropy(logits, targets)
        corrupted, replaced = self.corrupt(input_ids, labels, selected, logits.detach())
        h = self.encoder(corrupted, attention_mask, token_type_ids)
        rtd_logits = self.detector(h)  # (B, T)
        real = attention_mask.bool() if attention_mask is not None else torch.ones_like(selected)
        rtd_loss = F.binary_cross_entropy_with_logits(rtd_logits[real].float(), replaced[real].float())
        rtd_labels = torch.where(real, replaced.long(), IGNORE_INDEX)
        return MLMOutput(
            logits=logits, loss=mlm_loss + self.rtd_weight * rtd_loss, labels=targets, mlm_loss=mlm_loss,
            rtd_logits=rtd_logits, rtd_labels=rtd_labels, rtd_loss=rtd_loss,
        )

    def masked_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, where: torch.Tensor) -> torch.Tensor:
        """(N, V) logits at the N positions where `where` is true, from the generator (the masked LM of the pair)."""
        embedded = self.encoder.embeddings(input_ids, attention_mask=attention_mask)
        g = self.generator(embedded, padding_mask(attention_mask))
        return self.generator.head(g[where], self.encoder.embeddings.tokens.weight)

    def corrupt(
        self, input_ids: torch.Tensor, labels: torch.Tensor, selected: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the original tokens with the masked ones replaced by generator samples, (B, T) bool "replaced").

        Training samples with the global RNG (saved in checkpoints: resume is exact); evaluation
        with a fixed seed on a forked RNG, so it neither varies nor disturbs training's stream."""
        original = torch.where(selected, labels, input_ids)
        if self.training:
            sampled = sample_tokens(logits)
        else:
            devices = [logits.device] if logits.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(0)
                sampled = sample_tokens(logits)
        corrupted = original.clone()
        corrupted[selected] = sampled
        return corrupted, corrupted != original


def sample_tokens(logits: torch.Tensor) -> torch.Tensor:
    """One token per row of (M, V) logits, drawn from their softmax (temperature 1)."""
    return torch.multinomial(torch.softmax(logits.float(), dim=-1), 1).squeeze(-1)


def build_model(cfg: ModelConfig, rtd_weight: float = 50.0) -> nn.Module:
    """The model a run trains: ELECTRA's pair for a discriminator (train.objective electra), else MaskedLM."""
    return Electra(cfg, rtd_weight) if cfg.discriminator else MaskedLM(cfg)


def init_model(model: nn.Module, cfg: ModelConfig) -> None:
    """BERT's init for every module, then the position rows `model.position_init` asks for."""
    model.apply(lambda m: init_weights(m, cfg.initializer_range))
    if cfg.position_init == "sinusoidal":
        for module in model.modules():
            if isinstance(module, Embeddings):
                with torch.no_grad():
                    module.positions.weight.copy_(sinusoids(*module.positions.weight.shape, cfg.initializer_range))


def sinusoids(rows: int, width: int, std: float) -> torch.Tensor:
    """The Transformer's sine/cosine position table scaled to root-mean-square `std` (that of the
    token rows): dot products of two rows depend on their offset, so attention can find "the
    neighbour" before it has learned any position. The rows stay trainable weights, so a model
    exports to `transformers` unchanged."""
    positions = torch.arange(rows, dtype=torch.float64)[:, None]
    rates = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float64) / width)
    table = torch.zeros(rows, width, dtype=torch.float64)
    table[:, 0::2] = torch.sin(positions * rates)
    table[:, 1::2] = torch.cos(positions * rates[: width // 2])
    return (table * std * math.sqrt(2.0)).float()


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's init: normal(0, std) weights, zero biases, unit LayerNorms, zero padding row."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def parameter_table(model: nn.Module) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, shape, count) of every parameter; tied weights appear once, as in HF's count."""
    return [(name, tuple(p.shape), p.numel()) for name, p in model.named_parameters()]


def count_parameters(model: nn.Module) -> int:
    return sum(count for _, _, count in parameter_table(model))


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (non-embedding) params plus the attention term (PaLM, App. B)."""
    per_layer = 4 * cfg.hidden_size**2 + 2 * cfg.hidden_size * cfg.intermediate_size
    dense = cfg.num_layers * per_layer + cfg.hidden_size**2 + cfg.hidden_size * cfg.vocab_size
    return 6 * dense + 12 * cfg.num_layers * cfg.hidden_size * seq_len

