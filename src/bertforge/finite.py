"""Non-finite numbers never leave bertforge: a diverged model is refused, JSON output stays JSON.

A model whose weights hold NaN or inf answers garbage (every score NaN) and exports a file that
transformers loads without a word; `float("nan")` in `json.dumps` prints `NaN`, which no strict
JSON parser (RFC 8259) accepts. Both are checked here, once, for every command.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .errors import DataError


def first_non_finite(tensors: torch.nn.Module | dict) -> tuple[str, int] | None:
    """(name, count) of the first tensor (parameter or buffer) holding NaN/inf, or None when all are finite."""
    state = tensors.state_dict() if isinstance(tensors, torch.nn.Module) else tensors
    for name, tensor in state.items():
        if tensor.is_floating_point():
            bad = tensor.numel() - int(torch.isfinite(tensor).sum())
            if bad:
                return name, bad
    return None


def check_finite_model(model: torch.nn.Module | dict, where: str | Path) -> None:
    """Refuse a model (or a state dict) with NaN/inf weights: whatever it answers, exports or
    fine-tunes into would be noise."""
    found = first_non_finite(model)
    if found is not None:
        name, bad = found
        raise DataError(
            f"{where}: the weights are not finite ({bad} NaN/inf values in {name}): the run diverged; "
            "use an earlier checkpoint or train again with a lower train.lr"
        )


def json_safe(obj):
    """`obj` with every NaN/inf float replaced by None (JSON null); containers rebuilt, others kept."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    return obj


def dumps(obj, **kwargs) -> str:
    """Strict JSON (RFC 8259): non-finite numbers become null, never `NaN` or `Infinity`."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)
