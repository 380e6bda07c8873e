"""`bench quality`: sides take turns by their own clocks; both are evaluated on the same masks."""

import pytest
import torch
from PIL import Image

from bertforge.bench import quality as bq
from conftest import assert_one_line_error, datafile, run_cli


def test_sides_take_turns_by_their_own_clocks(monkeypatch):
    """A slow and a fast side: the one behind always steps next, each stops at the budget."""
    costs = {"fast": 1, "slow": 3}
    state = {"t": 0.0}
    monkeypatch.setattr(bq.time, "perf_counter", lambda: state["t"])  # a step costs exactly its cost
    order = []

    def make(name):
        def step(clock):
            order.append((name, clock, {s.name: s.clock for s in sides}))
            state["t"] += costs[name]
            return 10
        return bq.Side(name, step, torch.nn.Linear(1, 1))

    sides = [make("fast"), make("slow")]
    bq.race(sides, budget_s=30, evaluations=3, evaluate=lambda side: {"loss": 1.0, "masked_accuracy": 0.0})
    fast, slow = sides
    assert (fast.steps, slow.steps) == (30, 10)
    assert fast.clock == 30 and slow.clock == 30
    for name, clock, clocks in order:  # whoever stepped was not ahead of a side still running
        assert clock < 30 and all(clock <= c for c in clocks.values() if c < 30)
    assert [p["minutes"] * 60 for p in fast.curve] == [0, 10, 20, 30]
    assert [p["step"] for p in slow.curve] == [0, 4, 7, 10]


def test_both_sides_train_and_are_evaluated_on_the_same_split(tmp_path):
    pytest.importorskip("transformers")
    lines = datafile("kant/kant.txt").read_text(encoding="utf-8").splitlines()[:3000]
    corpus = tmp_path / "kant-head.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    result = bq.bench_quality(minutes=0.1, corpus=corpus, work_dir=tmp_path / "work", evaluations=2)
    ours, ref = result["bertforge"], result["reference"]
    for side in (ours, ref):
        assert side["train_seconds"] >= 6.0 and side["steps"] >= 1 and side["tokens"] > 0
        assert [round(p["minutes"] * 60 >= mark) for p, mark in zip(side["curve"], (0, 3, 6))] == [1, 1, 1]
        assert side["curve"][0]["loss"] > side["loss"]  # training lowered the validation loss
    assert result["settings"]["recipe"] == "cpu-minutes"
    held_out = (tmp_path / "work/split/val.txt").read_text().splitlines()
    non_empty = [line for line in lines if line.strip()]
    assert held_out == non_empty[-len(held_out):] and len(held_out) == -(-len(non_empty) * 5 // 100)
    table = bq.format_quality(result)
    assert "bertforge" in table and "reference" in table and "validation loss" in table
    png = bq.plot_quality(result, tmp_path / "q.png")
    assert Image.open(png).size == (840, 504)


def test_missing_corpus_is_one_error_line(tmp_path):
    result = run_cli("bench", "quality", "--minutes", "1", "--corpus", str(tmp_path / "nope.txt"), "--no-reference")
    assert_one_line_error(result, "nope.txt")
