"""A small grid of fine-tuning settings (`--search lr=1e-4,3e-4 --search pooling=cls,mean`).

Why: a comparison is only fair when each side gets its settings picked the same way. The TF-IDF
baseline picks its C and n-grams on the validation split; with a search the fine-tuned model and
its random-init baseline each try every point of the same grid and keep their own best, judged by
the same validation metric that picks the best epoch.
"""

from __future__ import annotations

import itertools

import yaml

from ..errors import ConfigError

# Settings that change how a classifier is trained, not what the task is (columns, task, metric,
# init and seed stay fixed: picking a seed on validation would flatter whoever gets more tries).
SEARCHABLE = (
    "lr", "epochs", "max_steps", "batch_size", "pooling", "warmup_fraction", "weight_decay",
    "classifier_dropout", "layer_lr_decay", "freeze_layers", "class_weights",
)
MAX_POINTS = 64


def parse_search(items: list[str] | dict | None) -> dict[str, list]:
    """["lr=1e-4,3e-4", "finetune.pooling=cls,mean"] (or {"lr": [...]}) -> {"lr": [1e-4, 3e-4], ...}."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else [split_item(item) for item in items]
    search: dict[str, list] = {}
    for key, values in pairs:
        name = key.strip().removeprefix("finetune.")
        if name not in SEARCHABLE:
            raise ConfigError(f"--search cannot vary {key!r}; searchable: {', '.join(SEARCHABLE)}")
        if name in search:
            raise ConfigError(f"--search names {name!r} twice; give all its values at once: {name}=A,B")
        values = list(values)
        if not values or len(set(map(repr, values))) != len(values):
            raise ConfigError(f"--search {name}: give distinct values, e.g. {name}=A,B")
        search[name] = values
    points = len(list(itertools.product(*search.values())))
    if points > MAX_POINTS:
        raise ConfigError(f"--search makes {points} settings to try (at most {MAX_POINTS}): narrow the grid")
    return search


def split_item(item: str) -> tuple[str, list]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise ConfigError(f"--search expects key=value1,value2,..., got {item!r}")
    try:
        return key, [yaml.safe_load(value) for value in raw.split(",") if value.strip()]
    except yaml.YAMLError:
        raise ConfigError(f"--search: cannot read the values of {item!r}") from None


def grid(search: dict[str, list]) -> list[dict]:
    """Every combination, in the order given (the first key varies slowest); [{}] without a search."""
    keys = list(search)
    return [dict(zip(keys, values)) for values in itertools.product(*search.values())]


def describe(point: dict) -> str:
    return " ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in point.items()) or "the given settings"
