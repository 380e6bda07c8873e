"""LR schedule: warmup then decay, reaching the floor exactly at the last step."""

import math

import pytest

from bertforge.config import TrainConfig
from bertforge.train.schedule import lr_factor, planned_steps, train_lr_factor


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_warmup_then_decay_to_the_floor_at_the_last_step(schedule):
    cfg = TrainConfig(max_steps=100, warmup_steps=10, schedule=schedule, min_lr_ratio=0.1)
    factors = [train_lr_factor(s, cfg, 100) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:10]))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert train_lr_factor(100, cfg, 100) == pytest.approx(0.1)


def test_cosine_is_halfway_at_the_middle():
    cfg = TrainConfig(max_steps=110, warmup_steps=10, schedule="cosine")
    assert train_lr_factor(60, cfg, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_token_limit_sets_the_number_of_steps():
    assert planned_steps(TrainConfig(max_steps=0, max_tokens=10_000), tokens_per_step=1000) == 10
    assert planned_steps(TrainConfig(max_steps=5, max_tokens=10_000), tokens_per_step=1000) == 5
    assert planned_steps(TrainConfig(max_steps=0, max_time_s=60), tokens_per_step=1000) == 0


def test_time_only_budget_decays_with_the_time_spent():
    cfg = TrainConfig(max_steps=0, max_time_s=100, warmup_steps=0)
    assert train_lr_factor(50, cfg, 0, time_fraction=0.25) == pytest.approx(0.75)
    assert train_lr_factor(50, cfg, 0, time_fraction=1.0) == pytest.approx(0.0)


def test_decay_ends_at_whichever_limit_comes_first():
    cfg = TrainConfig(max_steps=1000, max_time_s=100, warmup_steps=0)
    assert train_lr_factor(100, cfg, 1000, time_fraction=0.5) == pytest.approx(0.5)  # time ahead of steps
    assert train_lr_factor(900, cfg, 1000, time_fraction=0.5) == pytest.approx(0.1)  # steps ahead of time


def test_lr_factor_takes_plain_numbers():
    """Fine-tuning and the benchmarks call the schedule with numbers, no TrainConfig needed."""
    assert lr_factor(0, 10, warmup_steps=2) == pytest.approx(0.5)
    assert lr_factor(6, 10, warmup_steps=2) == pytest.approx(0.5)  # linear: (6 - 2) / (10 - 2) of the way down
    assert lr_factor(6, 10, 2, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(10, 10, 2, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(50, 0, 0, schedule="constant") == 1.0
