"""`pretrain --budget`: a wall-clock budget picks the schedule and a recipe for the machine.

The recipes are data (recipes/budget.yaml): each says which preset and which settings to use up
to some budget on a CPU or a GPU, with a reason for each. This module only picks one and turns
it into config overrides, so --config and --set can still change any choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import PACKED_OBJECTIVES, PAIR_OBJECTIVES, load_yaml
from .errors import ConfigError
from . import runtime

RECIPES_FILE = Path(__file__).parent / "recipes" / "budget.yaml"
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MASKED_LM_OBJECTIVES = ("mlm", *PAIR_OBJECTIVES)  # a masked LM, alone or with a sentence-pair task
# Recipe settings that mean something (or were measured) only for some objectives: packed documents
# for isolation; the masking rate measured with a masked LM (ELECTRA's generator was not measured).
ONLY_FOR = {
    "data.isolate_documents": PACKED_OBJECTIVES,
    "model.document_positions": PACKED_OBJECTIVES,
    "masking.mask_prob": MASKED_LM_OBJECTIVES,
}


def parse_duration(text: str | float) -> float:
    """'90s', '10m', '2h', '1d' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"bad duration {text!r}; use e.g. 90s, 10m, 2h or 1d")
    return float(match.group(1)) * DURATION_UNITS[match.group(2)]


@dataclass(frozen=True)
class Recipe:
    name: str
    machine: str  # "cpu" or "gpu"
    up_to_s: float | None  # largest budget it is meant for (None = any)
    preset: str
    why: str
    settings: dict  # "section.field" -> value
    skipped: dict = field(default_factory=dict)  # "section.field" -> why it does not apply to this run

    def for_objective(self, objective: str) -> Recipe:
        """The recipe without the settings that mean nothing for `objective`; `describe` says which."""
        skipped = {key: f"not for train.objective={objective}" for key, objectives in ONLY_FOR.items()
                   if key in self.settings and objective not in objectives}
        settings = {key: value for key, value in self.settings.items() if key not in skipped}
        return replace(self, settings=settings, skipped={**self.skipped, **skipped})

    def overrides(self, budget_s: float) -> dict:
        """Nested config overrides: the recipe's settings plus the budget's schedule."""
        flat = dict(self.settings)
        flat.update({"train.max_time_s": budget_s, "train.max_steps": 0, "train.max_tokens": 0,
                     "train.recipe": self.name})
        nested: dict = {}
        for key, value in flat.items():
            section, field = key.split(".")
            nested.setdefault(section, {})[field] = value
        return nested

    def describe(self, budget_s: float, used: dict | None = None) -> list[str]:
        """The lines printed at the start of a budget run: every choice, and why.

        `used` ("section.field" -> the run's value) marks the recipe's settings that --set or
        --config replaced, so the printed recipe never claims a value the run does not use.
        """
        used = used or {}
        lines = [f"budget {format_duration(budget_s)} on {self.machine}: recipe {self.name} "
                 f"(preset {self.preset}: {self.why})"]
        lines += [f"  {key} = {value}" if used.get(key, value) == value
                  else f"  {key} = {used[key]} (yours; the recipe's is {value})"
                  for key, value in self.settings.items()]
        lines += [f"  {key}: left out ({why})" for key, why in self.skipped.items()]
        lines.append(f"  train.max_time_s = {budget_s:g} (LR warms up, then decays to 0 exactly at the budget)")
        return lines


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def load_recipes(path: Path = RECIPES_FILE) -> list[Recipe]:
    recipes = []
    for machine, entries in load_yaml(path).items():
        for entry in entries:
            up_to = entry.get("up_to")
            recipes.append(Recipe(
                name=entry["name"], machine=machine, up_to_s=None if up_to is None else parse_duration(up_to),
                preset=entry["preset"], why=entry.get("why", ""), settings=dict(entry.get("set") or {}),
            ))
    return recipes


def pick_recipe(budget_s: float, machine: str, recipes: list[Recipe] | None = None) -> Recipe:
    """The first recipe for `machine` whose `up_to` covers the budget."""
    for recipe in recipes if recipes is not None else load_recipes():
        if recipe.machine == machine and (recipe.up_to_s is None or budget_s <= recipe.up_to_s):
            return with_cpu_bf16(recipe)
    raise ConfigError(f"no budget recipe for a {machine} and {format_duration(budget_s)}")


def with_cpu_bf16(recipe: Recipe) -> Recipe:
    """CPU recipes train in bf16 where the CPU has it natively: at equal minutes it reached a lower validation
    loss than fp32 (issue 17, 3 min on one core: 6.115 vs 6.235, 1.5x the tokens/s)."""
    if recipe.machine != "cpu" or "train.precision" in recipe.settings or not runtime.cpu_bf16_supported():
        return recipe
    return replace(recipe, settings={**recipe.settings, "train.precision": "bf16"},
                   why=f"{recipe.why}; bf16 as this CPU has it natively")


def machine_kind(device: str = "auto") -> str:
    """'gpu' when training will run on CUDA, else 'cpu'."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "gpu"
    return "cpu"
