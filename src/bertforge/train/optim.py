"""The optimizer and its step, shared by pretraining, fine-tuning and the benchmarks' reference side.

One step is always: set the LR, (unscale fp16 gradients,) clip, apply, clear the gradients. Having
it once means a change (a new clip, a guard) reaches every loop that trains a model.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch


def build_optimizer(
    model: torch.nn.Module, cfg, device: torch.device, lr_scales: dict[str, float] | None = None
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: biases and LayerNorm gains are not decayed.

    `cfg` is a TrainConfig or FinetuneConfig (lr, weight_decay, adam_beta1/2, adam_eps). `lr_scales`
    (parameter name -> factor, e.g. layer-wise LR decay) puts each factor in its own groups, which
    `set_lr` then applies to every LR it sets.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    scale_of = lr_scales or {}
    groups = []
    for scale in sorted({scale_of.get(n, 1.0) for n, _ in named}, reverse=True):
        mine = [p for n, p in named if scale_of.get(n, 1.0) == scale]
        groups += [
            {"params": [p for p in mine if p.dim() >= 2], "weight_decay": cfg.weight_decay, "lr_scale": scale},
            {"params": [p for p in mine if p.dim() < 2], "weight_decay": 0.0, "lr_scale": scale},
        ]
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, **fast
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's LR for every group, times the group's `lr_scale` (1 unless build_optimizer set one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    parameters: Iterable[torch.Tensor],
    max_norm: float,
    *,
    scaler: torch.amp.GradScaler | None = None,
    clip: Callable = torch.nn.utils.clip_grad_norm_,
    accept: Callable[[torch.Tensor], bool] | None = None,
) -> tuple[torch.Tensor, bool]:
    """Clip the gradients to `max_norm` (0 = no clipping), apply them, clear them: (grad norm, applied).

    With an fp16 `scaler` the gradients are unscaled first and the scaler updates its scale after.
    `accept(grad_norm)` False skips the update (the divergence guard); the gradients are still
    cleared and the scaler still updated, as when the scaler skips an inf step itself. `clip` is
    `distributed.clip_grad_norm` in the pretraining loop (FSDP's sharded gradients).
    """
    if scaler:
        scaler.unscale_(optimizer)
    grad_norm = clip(parameters, max_norm or float("inf"))
    applied = accept is None or accept(grad_norm)
    if applied:
        if scaler:
            scaler.step(optimizer)
        else:
            optimizer.step()
    if scaler:
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, applied
