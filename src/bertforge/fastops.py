"""Faster CPU versions of three ops of the training step; the math is the standard one.

On a CPU, a profile of a `small` training step (batch 32 x 128) showed three ops costing far
more than their arithmetic:
- dropout: `bernoulli_` draws one float per element (~15% of the step). `dropout` here draws
  64 random bits per 4 elements and compares 16-bit slices with a threshold, so the keep
  probability is 1 - p rounded to 1/65536, and saves a 1-byte mask for backward;
- attention dropout: SDPA falls back to its slow "math" path on CPU as soon as dropout_p > 0
  (extra mask checks and copies). `attention` then computes softmax(QK^T/sqrt(d)) V itself;
- cross-entropy over the vocabulary: `log_softmax` is several times slower than `softmax` on
  CPU. `cross_entropy` computes the same loss from one shifted `exp` and keeps the softmax for
  a backward pass that is one subtraction.
On a GPU the standard kernels are already fast, and they are used there.
Random numbers come from torch's default generator, so checkpoints restore them (exact resume).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_FULL_INT64 = -(2**63)  # random_(_FULL_INT64, None) draws all 64 bits


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Boolean mask, True with probability 1 - p (to 1/65536), from 16-bit slices of int64 draws."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(_FULL_INT64, None)
    slices = words.view(torch.int16)[:n].view(shape)  # uniform over [-32768, 32767]
    return slices >= round(p * 65536) - 32768


class _MaskedScale(torch.autograd.Function):
    """y = x * keep / (1 - p); keeps only the 1-byte mask for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0.0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0.0).mul_(ctx.scale), None, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout` with cheap random numbers on CPU; the standard kernel elsewhere."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    return _MaskedScale.apply(x, keep_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


class Dropout(torch.nn.Dropout):
    """`nn.Dropout` (same repr, same state dict) computed by `dropout` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    dropout_p: float,
    is_causal: bool = False,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v with dropout on the probabilities; (B, nh, T, hd) in and out.

    SDPA whenever it can use a fast kernel (no dropout, or not on CPU); written out on CPU with
    dropout, where SDPA would take its slow math path."""
    if dropout_p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-1, -2))  # (B, nh, Tq, Tk)
    if is_causal:  # query i attends to keys 0..i (queries and keys start together, as SDPA's is_causal)
        future = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    if attn_mask is not None:  # boolean, True = attend
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    probs = dropout(torch.softmax(scores, dim=-1), dropout_p, training=True)
    return torch.matmul(probs.to(v.dtype), v)


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of (M, V) logits against (M,) targets, computed in fp32."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = logits.float()
        shifted = x - x.amax(dim=-1, keepdim=True)  # a new tensor: safe to work in place below
        picked = shifted.gather(1, targets[:, None]).squeeze(1)
        probs = shifted.exp_()
        total = probs.sum(dim=-1, keepdim=True)
        loss = (total.squeeze(1).log() - picked).mean()
        probs.div_(total)  # softmax, kept for backward
        ctx.save_for_backward(probs, targets)
        ctx.logits_dtype = logits.dtype
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if getattr(ctx, "used", False):  # the saved softmax is overwritten below
            raise RuntimeError("bertforge.fastops.cross_entropy supports one backward pass (no retain_graph)")
        ctx.used = True
        probs, targets = ctx.saved_tensors
        grad_logits = probs
        grad_logits[torch.arange(len(targets), device=targets.device), targets] -= 1.0
        return grad_logits.mul_(grad / len(targets)).to(ctx.logits_dtype), None


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over rows that all have a target (no ignore_index): the sparse MLM loss."""
    if logits.device.type != "cpu" or logits.numel() == 0:
        return F.cross_entropy(logits.float(), targets)
    return _SoftmaxCrossEntropy.apply(logits, targets)
