"""A new user's first hour: defaults that work, a silent failure called out, progress visible from Python."""

import json
import re
import subprocess
import sys
import textwrap

import pytest

import bertforge
from bertforge.cli import build_parser, config_from_args
from bertforge.config import build_config
from bertforge.finetune import finetune
from bertforge.finetune.config import AUTO_LR, auto_lr
from bertforge.finetune.metrics import single_class_prediction
from bertforge.train.loop import pretrain
from bertforge.train.progress import stop_limits
from bertforge.train.metrics import read_metrics
from bertforge.train.schedule import time_fraction, train_lr_factor
from conftest import REPO, assert_one_line_error, datafile, run_cli


def tiny_cfg(**train):
    return build_config(preset="tiny", overrides={
        "data": {"seq_len": 32},
        "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
        "train": {"batch_size": 8, "log_every_steps": 1, "eval_every_steps": 10_000, "eval_batches": 1, **train},
    })


# ---------------------------------------------------------------- time budgets


def test_time_decay_starts_at_the_peak_where_warmup_ended():
    assert time_fraction(10.0, 10.0, 110.0) == 0.0  # warmup took 10 s: the decay has not begun
    assert time_fraction(60.0, 10.0, 110.0) == pytest.approx(0.5)
    assert time_fraction(110.0, 10.0, 110.0) == pytest.approx(1.0)
    assert time_fraction(5.0, 0.0, 0.0) == 0.0  # no time budget


def test_lr_right_after_warmup_is_the_peak_in_a_time_budgeted_run(data_dir, tmp_path):
    """Before the fix the time spent warming up counted as decay: the LR fell off a cliff after warmup."""
    warmup = 5
    cfg = tiny_cfg(max_steps=10, max_time_s=600.0, warmup_steps=warmup, lr=1e-3, schedule="linear", min_lr_ratio=0.0)
    pretrain(cfg, data_dir, tmp_path / "run", progress=False)
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "run", "train")}
    assert lrs[warmup] == pytest.approx(1e-3)  # the last warmup step (step index warmup - 1)
    assert lrs[warmup + 1] == 1e-3  # the first decay step starts exactly at the peak, whatever warmup's seconds
    assert lrs[warmup + 2] < 1e-3 and lrs[10] < lrs[warmup + 2]
    assert train_lr_factor(warmup, cfg.train, 0, 0.0) == 1.0


def parse(*argv):
    return config_from_args(build_parser().parse_args(["pretrain", *argv]))


def test_a_stop_flag_given_alone_clears_the_presets_other_limits():
    cfg = parse("--corpus", "x.txt", "--preset", "small", "--out", "r", "--max-time", "30m")
    assert (cfg.train.max_steps, cfg.train.max_tokens, cfg.train.max_time_s) == (0, 0, 1800.0)
    assert stop_limits(cfg.train) == "1800 s of training"
    cfg = parse("--corpus", "x.txt", "--preset", "small", "--out", "r", "--max-tokens", "1000")
    assert (cfg.train.max_steps, cfg.train.max_tokens) == (0, 1000)
    both = parse("--corpus", "x.txt", "--preset", "small", "--out", "r", "--max-time", "30m", "--max-steps", "50")
    assert (both.train.max_steps, both.train.max_time_s) == (50, 1800.0)
    assert stop_limits(both.train) == "50 steps or 1800 s of training, whichever comes first"
    kept = parse("--corpus", "x.txt", "--preset", "small", "--out", "r", "--max-time", "30m", "--set", "train.max_steps=7")
    assert kept.train.max_steps == 7  # --set still wins
    preset = parse("--corpus", "x.txt", "--preset", "small", "--out", "r")
    assert preset.train.max_steps == 2000  # no flag: the preset's limit stays


# ---------------------------------------------------------------- Python API


def test_dir_lists_the_public_api():
    names = dir(bertforge)
    for name in ("pretrain", "prepare", "train_tokenizer", "fill_mask", "load_run", "export_run", "generate"):
        assert name in names
    assert "importlib" not in names and "_API" not in names


def test_python_api_shows_progress_and_summary_without_logging_setup(tmp_path):
    """A script (or notebook) that calls the API with no logging configured still sees what happens."""
    script = textwrap.dedent(f"""
        from bertforge import build_config, iter_documents, train_tokenizer
        from bertforge.shards import prepare
        from bertforge.train import pretrain
        cfg = build_config(preset="tiny", overrides={{
            "tokenizer": {{"vocab_size": 400}}, "data": {{"seq_len": 32}},
            "model": {{"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32}},
            "train": {{"batch_size": 8, "max_steps": 4, "log_every_steps": 2, "eval_every_steps": 4, "eval_batches": 1}}}})
        source = [{str(datafile("kant/kant.txt"))!r}]
        tok = train_tokenizer(iter_documents(source, cfg.corpus), cfg.tokenizer, {str(tmp_path / "tok")!r})
        data = prepare(source, tok, cfg.data, cfg.corpus, {str(tmp_path / "data")!r})
        pretrain(cfg, data, {str(tmp_path / "run")!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "stops at: 4 steps" in result.stderr
    assert "step 2  loss" in result.stderr and "step 4  loss" in result.stderr  # progress lines (no terminal)
    assert "done: step 4" in result.stderr  # the end-of-run summary


# ---------------------------------------------------------------- fine-tuning defaults


def test_default_finetune_lr_follows_the_encoders_width():
    assert auto_lr(768) == 5e-5 and auto_lr(1024) == 5e-5  # BERT's own range for base and large
    assert auto_lr(256) == 2e-4 and auto_lr(64) == 2e-4  # the small encoders bertforge pretrains
    assert [lr for _, lr in AUTO_LR] == sorted(lr for _, lr in AUTO_LR)


def test_single_class_prediction():
    assert single_class_prediction([[5, 0], [3, 0]]) == 0
    assert single_class_prediction([[0, 5], [0, 3]]) == 1
    assert single_class_prediction([[4, 1], [3, 0]]) is None
    assert single_class_prediction([[5]]) is None  # one class in all: nothing to call out


def test_a_classifier_that_predicts_one_class_is_called_out(tiny_run, tmp_path, caplog):
    """Identical texts with two labels: whatever it learns, the model answers one class for all."""
    rows = ["sentence\tlabel"] + [f"the same words\t{i % 2}" for i in range(24)]
    train = tmp_path / "train.tsv"
    train.write_text("\n".join(rows) + "\n", encoding="utf-8")
    settings = {"finetune": {"text_column": "sentence", "epochs": 1, "batch_size": 8}}
    with caplog.at_level("INFO", logger="bertforge"):
        metrics = finetune(tiny_run, train, train, tmp_path / "ft", settings=settings, progress=False, baselines=True)
    assert len(metrics["warnings"]) == 2  # the model and its random-init baseline
    assert metrics["warnings"][0].startswith("the classifier predicts")
    assert "for every validation example" in metrics["warnings"][0]
    assert metrics["warnings"][1].startswith("the random-init baseline predicts")
    assert metrics["baselines"]["random_init"]["warnings"] == metrics["warnings"][1:]
    assert any(r.message.startswith("warning: the classifier predicts") for r in caplog.records)
    assert (tmp_path / "ft" / "report.txt").read_text(encoding="utf-8").startswith("WARNING: the classifier predicts")
    saved = json.loads((tmp_path / "ft" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["warnings"] == metrics["warnings"]
    assert "finetune.lr 0.0002, the default for an encoder of hidden size 32" in caplog.text
    assert "lr: 0.0002" in (tmp_path / "ft" / "config.yaml").read_text(encoding="utf-8")


# ---------------------------------------------------------------- pictures


def test_token_count_ticks_are_short(tiny_run, tmp_path):
    """Full token counts ("100000200000...") collided on the x axis: they read 100k, 200k."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.ticker import EngFormatter

    formatter = EngFormatter(sep="")
    assert formatter(200000) == "200k" and formatter(1500000) == "1.5M"
    from bertforge.plots import PANELS, PANELS_PER_ROW, plot_runs

    assert PANELS_PER_ROW == 3 and len(PANELS) == 5
    assert plot_runs([tiny_run], tmp_path / "c.png", x="tokens").stat().st_size > 0


def test_report_folds_the_parameter_table(tiny_run, tmp_path):
    from bertforge.report import write_report

    page = write_report(tiny_run, tmp_path / "r.html").read_text(encoding="utf-8")
    section = page[page.index("<h2>Parameters</h2>"):]
    assert section.startswith("<h2>Parameters</h2><details><summary>") and "</table></details>" in section


def test_pca3d_pads_its_axes_so_labels_stay_inside():
    import numpy as np

    from bertforge.viz import pca3d_html

    vectors = np.random.default_rng(0).normal(size=(12, 8))
    html = pca3d_html([f"w{i}" for i in range(12)], vectors)
    ranges = re.findall(r'"range":\[([-0-9.e]+),([-0-9.e]+)\]', html)
    assert len(ranges) == 3
    from bertforge.viz import pca

    coords, _ = pca(vectors, 3)
    for (low, high), axis in zip(ranges, coords.T):
        span = axis.max() - axis.min()
        assert float(low) < axis.min() - 0.15 * span and float(high) > axis.max() + 0.15 * span


# ---------------------------------------------------------------- the demo


def test_demo_sentences_come_from_the_demo_text():
    """The demo asks about its own text, so a user can check each answer there."""
    from pydoc_data.topics import topics

    from bertforge.demo import DEMO_SENTENCES

    text = " ".join(" ".join(topic.split()) for topic in topics.values())
    for sentence, word in DEMO_SENTENCES:
        assert sentence.replace("<mask>", word).rstrip(".:") in text, sentence


def test_demo_prints_guesses_before_and_after_training(tmp_path, capsys):
    from bertforge.demo import DEMO_SENTENCES, run_demo

    answers = run_demo(tmp_path / "demo", max_steps=3, progress=False)
    out = capsys.readouterr().out
    assert len(answers) == len(DEMO_SENTENCES) and all(len(top) == 5 for top in answers)
    assert out.count("before training:") == len(DEMO_SENTENCES) == out.count("after training:")
    assert re.search(r"right word in the top 5 for \d of 4 sentences", out)


def test_one_sentence_per_line_text_without_blank_lines_names_doc_per_line(tmp_path):
    """A .txt without blank lines is one paragraph, so one document: the error says how to split it."""
    corpus = tmp_path / "sentences.txt"
    lines = datafile("kant/kant.txt").read_text(encoding="utf-8").split()
    corpus.write_text("\n".join(" ".join(lines[i:i + 12]) for i in range(0, 3000, 12)) + "\n", encoding="utf-8")
    r = run_cli("pretrain", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--preset", "tiny",
                "--max-steps", "1", "--set", "tokenizer.vocab_size=400")
    assert_one_line_error(r, "0 documents for training", "--doc-per line")
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "data").exists()
