"""Benchmarks: both sides get the same work, ratios are bertforge / reference, the fast path keeps the math.

No timing is asserted here (the machine may be busy); only what each side processed and how
the figures are reported.
"""

import json
from pathlib import Path

import pytest

from bertforge import bench
from bertforge.bench import LABELS, bench_fill_mask, bench_prepare, bench_text, bench_train, format_table
from bertforge.config import CorpusConfig, build_config
from bertforge.corpus import iter_documents
from bertforge.errors import DataError
from bertforge.shards import prepare
from bertforge.tokenizer import train_tokenizer
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from conftest import REPO, TEST_DATA, assert_one_line_error, datafile, run_cli

pytest.importorskip("transformers")
pytest.importorskip("datasets")

RESULT_KEYS = {"bench", "settings", "bertforge", "reference", "ratio", "machine"}


@pytest.fixture(scope="module", autouse=True)
def data_env():
    """The benchmarks read the repository's tests/data, however bertforge was installed."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BERTFORGE_DATA", str(TEST_DATA))
        yield


@pytest.fixture(scope="module")
def train_result():
    kant = str(datafile("kant/kant.txt"))
    return bench_train(preset="tiny", steps=2, warmup_steps=1, batch_size=8, seq_len=64, corpus=kant)


@pytest.fixture(scope="module")
def fill_result():
    return bench_fill_mask(preset="tiny", sentences=20, corpus=str(datafile("kant/kant.txt")))


def assert_ratios(result, *keys):
    ours, ref = result["bertforge"], result["reference"]
    assert set(result["ratio"]) == set(keys)
    for key in keys:
        assert result["ratio"][key] == pytest.approx(ours[key] / ref[key], rel=1e-12)


def test_train_bench_feeds_both_sides_the_same_tokens(train_result):
    assert set(train_result) == RESULT_KEYS and train_result["bench"] == "train"
    ours, ref = train_result["bertforge"], train_result["reference"]
    assert ours["tokens"] == ref["tokens"]  # same sequences, same order, pads not counted
    assert 0.95 * 2 * 8 * 64 <= ours["tokens"] <= 2 * 8 * 64
    for side in (ours, ref):
        assert side["tokens_per_s"] == pytest.approx(side["tokens"] / side["seconds"], rel=1e-12)
        assert side["peak_memory_mb"] > 0
    assert_ratios(train_result, "tokens_per_s", "peak_memory_mb")  # no GPU here, so no MFU


def test_train_bench_sides_start_from_equal_untrained_weights(train_result):
    """Equal initial weights on a 2,000-token vocabulary: both losses start near ln(2000) = 7.6."""
    ours, ref = train_result["bertforge"]["loss"], train_result["reference"]["loss"]
    assert ours == pytest.approx(7.6, abs=0.3) and ref == pytest.approx(7.6, abs=0.3)


def test_train_table_shows_both_figures_and_their_ratio(train_result):
    table = format_table(train_result)
    ours, ref, ratio = train_result["bertforge"], train_result["reference"], train_result["ratio"]
    assert table.splitlines()[1].split() == ["metric", "bertforge", "reference", "ratio"]
    for key in ("tokens_per_s", "peak_memory_mb"):
        row = next(line for line in table.splitlines() if line.startswith(LABELS[key][0]))
        assert f"{ours[key]:,.0f}" in row and f"{ref[key]:,.0f}" in row and f"{ratio[key]:.2f}x" in row


def test_fill_mask_bench_gives_equal_answers_for_equal_weights(fill_result):
    assert set(fill_result) >= RESULT_KEYS and fill_result["bench"] == "fill-mask"
    assert fill_result["bertforge"]["sentences"] == fill_result["reference"]["sentences"] == 20
    assert fill_result["top1_agreement"] == 1.0  # the same model: the same top answer for every sentence
    assert_ratios(fill_result, "sentences_per_s")
    table = format_table(fill_result)
    assert f"{fill_result['bertforge']['sentences_per_s']:,.1f}" in table
    assert f"{fill_result['reference']['sentences_per_s']:,.1f}" in table


def test_prepare_bench_reads_the_same_corpus_on_both_sides(tmp_path):
    result = bench_prepare(corpus_mb=1, processes=2, work_dir=tmp_path, preset="tiny")
    ours, ref = result["bertforge"], result["reference"]
    assert set(result) == RESULT_KEYS and result["bench"] == "prepare"
    assert ours["bytes"] == ref["bytes"] and 1_000_000 <= ours["bytes"] < 1_001_000
    assert ours["blocks"] > 0 and ref["blocks"] > 0
    assert_ratios(result, "mb_per_s")
    assert f"{ours['mb_per_s']:.2f}" in format_table(result) and f"{ref['mb_per_s']:.2f}" in format_table(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus-1mb.txt"]  # the corpus is kept for the next run


def test_table_without_reference_shows_dashes(train_result):
    alone = {**train_result, "reference": {}, "ratio": {}}
    row = next(line for line in format_table(alone).splitlines() if line.startswith(LABELS["tokens_per_s"][0]))
    assert row.split()[-2:] == ["-", "-"]


def test_missing_data_folder_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTFORGE_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="BERTFORGE_DATA"):
        bench_train(preset="tiny", reference=False)
    with pytest.raises(DataError, match=r"--data-dir \(.*elsewhere\) is not a folder"):
        bench_train(preset="tiny", reference=False, data_dir=tmp_path / "elsewhere")
    (tmp_path / "kant").mkdir()
    (tmp_path / "kant" / "kant.txt").write_text("Kant.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"lacks the benchmark text: expected kant/kant.txt, pydoc-wiki/wiki.valid.raw"):
        bench_prepare(corpus_mb=1, reference=False, data_dir=tmp_path)


def test_default_data_is_the_repository_test_data(monkeypatch):
    """Without --data-dir or BERTFORGE_DATA: tests/data beside the code in a clone (editable
    install); from an installed wheel, one error line saying what to pass."""
    monkeypatch.delenv("BERTFORGE_DATA")
    if Path(bench.__file__).resolve().is_relative_to(REPO):
        train, held_out = bench_text()
        assert [Path(p).relative_to(TEST_DATA).as_posix() for p in train] == [
            "kant/kant.txt", "pydoc-wiki/wiki.valid.raw", "pydoc-wiki/wiki.test.raw"]
        assert Path(held_out) == TEST_DATA / "tinystories/tinystories_valid_head.txt"
    else:
        with pytest.raises(DataError, match="pass --data-dir DIR"):
            bench_text()


def test_fill_mask_cli_with_a_corpus_needs_no_data_folder(tmp_path, monkeypatch):
    """The masked sentences come from --corpus itself: no data folder is read, not even a missing one."""
    monkeypatch.setenv("BERTFORGE_DATA", str(tmp_path / "nope"))
    r = run_cli("bench", "fill-mask", "--preset", "tiny", "--corpus", str(datafile("kant/kant.txt")),
                "--sentences", "8", "--no-reference", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["settings"]["source"] == ["kant.txt"] and result["bertforge"]["sentences"] == 8
    r = run_cli("bench", "fill-mask", "--preset", "tiny", "--sentences", "8", "--no-reference")
    assert_one_line_error(r, "BERTFORGE_DATA", "is not a folder")


def test_sparse_and_dense_prediction_train_the_same_curve(tmp_path):
    """The fast path (decoder on masked positions only) and the plain one: same losses, step by step."""
    source = str(datafile("kant/kant.txt"))
    base = build_config(preset="tiny", overrides={"tokenizer": {"vocab_size": 600}, "data": {"seq_len": 32}})
    docs = iter_documents([source], CorpusConfig())
    tokenizer = train_tokenizer(docs, base.tokenizer, tmp_path / "tok", progress=False)
    data_dir = prepare([source], tokenizer, base.data, base.corpus, tmp_path / "data", progress=False)
    curves = {}
    for sparse in (True, False):
        cfg = build_config(preset="tiny", overrides={
            "data": {"seq_len": 32},
            "model": {"max_seq_len": 32, "hidden_dropout": 0.0, "attention_dropout": 0.0, "sparse_prediction": sparse},
            "train": {"batch_size": 8, "max_steps": 20, "warmup_steps": 2, "lr": 3e-3, "log_every_steps": 1,
                      "eval_every_steps": 100, "save_every_steps": 100, "eval_batches": 1},
        })
        pretrain(cfg, data_dir, tmp_path / f"run-{sparse}", progress=False)
        curves[sparse] = [r["loss"] for r in read_metrics(tmp_path / f"run-{sparse}", "train")]
    assert len(curves[True]) == 20
    assert curves[True] == pytest.approx(curves[False], abs=1e-4)  # fp32; only summation order differs
    assert sum(curves[True][-5:]) / 5 < curves[True][0] - 0.3  # and it learned, so the steps mattered
