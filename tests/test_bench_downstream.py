"""`bertforge bench downstream` end to end on tiny settings: table structure and both models trained."""

import json

from conftest import assert_one_line_error, datafile, run_cli

TINY = ["--minutes", "0.05", "--preset", "tiny", "--train-examples", "120", "--eval-examples", "60",
        "--set", "tokenizer.vocab_size=600", "--set", "tokenizer.max_docs=2000",
        "--finetune-set", "finetune.max_steps=6", "--finetune-set", "finetune.lr=1e-3"]


def test_bench_downstream_trains_both_models_and_prints_one_table(tmp_path):
    r = run_cli("bench", "downstream", *TINY, "--work-dir", str(tmp_path / "w"), "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    m = result["metrics"]
    assert result["examples"] == {"train": 120, "eval": 60} and result["pretrain_steps"] > 0
    assert m["epochs"][-1]["step"] == 6 and m["baselines"]["random_init"]["steps"] == 6
    assert set(m["baselines"]) == {"majority", "random_init", "tfidf_logreg"}
    assert m["baselines"]["tfidf_logreg"]["setting"]["chosen_on"] == "validation"
    # the pretrained and the random encoder are different models: their held-out losses differ
    assert m["scores"]["validation"]["loss"] != m["baselines"]["random_init"]["validation"]["loss"]

    table = run_cli("bench", "downstream", *TINY, "--work-dir", str(tmp_path / "t"), "--quiet",
                    "--finetune-search", "lr=1e-3,3e-3")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("downstream after 0.05 min of pretraining") and "TF-IDF tuned:" in lines[0]
    assert lines[1].split() == ["validation", "accuracy", "validation", "macro_f1", "validation", "mcc"]
    assert [line.split("  ")[0] for line in lines[2:-1]] == [
        "majority class", "same fine-tuning, random init", "TF-IDF + logistic regression",
        "fine-tuned (pretrained init)"]
    searched = json.loads((tmp_path / "t/finetuned/metrics.json").read_text())
    assert [t["settings"] for t in searched["search"]["tried"]] == [{"lr": 1e-3}, {"lr": 3e-3}]
    assert lines[-1].startswith("settings picked on validation accuracy: fine-tuned: lr=")


def test_bench_downstream_wrong_column_is_one_error_line(tmp_path):
    r = run_cli("bench", "downstream", *TINY, "--labelled", str(datafile("reviews/dev.tsv")),
                "--text-column", "review", "--work-dir", str(tmp_path / "w"))
    assert_one_line_error(r, "no column 'review'")


def test_bench_downstream_bad_search_fails_before_pretraining(tmp_path):
    r = run_cli("bench", "downstream", *TINY, "--finetune-search", "seed=1,2", "--work-dir", str(tmp_path / "w"))
    assert_one_line_error(r, "cannot vary 'seed'")
    assert not (tmp_path / "w/pretrained").exists()
