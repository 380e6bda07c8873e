"""The CLI as a user types it: the whole pipeline, JSON outputs, and bad input as one-line errors."""

import json

import pytest

from conftest import assert_one_line_error, datafile, run_cli

TINY = ["--preset", "tiny", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64",
        "--set", "train.batch_size=8", "--set", "train.eval_batches=2", "--quiet"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """tokenizer train -> prepare -> pretrain, each stage from the CLI, on real text (Kant)."""
    root = tmp_path_factory.mktemp("cli")
    kant = str(datafile("kant/kant.txt"))
    r = run_cli("tokenizer", "train", "--corpus", kant, "--kind", "bytelevel-bpe", "--vocab-size", "800",
                "--out", str(root / "tok"), "--quiet")
    assert r.returncode == 0, r.stderr
    r = run_cli("prepare", "--corpus", kant, "--tokenizer", str(root / "tok"), "--seq-len", "64",
                "--out", str(root / "data"), "--quiet")
    assert r.returncode == 0, r.stderr
    r = run_cli("pretrain", "--data", str(root / "data"), "--out", str(root / "run"), "--max-steps", "40", *TINY)
    assert r.returncode == 0, r.stderr
    return root


def test_tokenizer_encode_shows_tokens_with_bos_and_eos(pipeline):
    r = run_cli("tokenizer", "encode", str(pipeline / "tok"), "Human thinking involves reason.", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["tokens"][0] == "<s>" and out["tokens"][-1] == "</s>"
    assert len(out["ids"]) == len(out["tokens"])


def test_pretrain_writes_a_complete_run_folder(pipeline):
    run = pipeline / "run"
    for name in ("config.yaml", "metrics.jsonl", "tokenizer/tokenizer.json", "checkpoints/step-00000040/model.safetensors"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").iterdir())


def test_evaluate_json_is_repeatable(pipeline):
    a = run_cli("evaluate", str(pipeline / "run"), "--json", "--batches", "4")
    b = run_cli("evaluate", str(pipeline / "run"), "--json", "--batches", "4")
    assert a.returncode == 0, a.stderr
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert {"loss", "perplexity", "masked_accuracy"} <= set(ra)
    assert ra == rb


def test_evaluate_on_a_held_out_corpus(pipeline, tmp_path):
    held_out = tmp_path / "heldout.txt"
    held_out.write_text(datafile("kant/kant.txt").read_text(encoding="utf-8")[-20000:], encoding="utf-8")
    r = run_cli("evaluate", str(pipeline / "run"), "--corpus", str(held_out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["perplexity"] > 1


@pytest.mark.parametrize("text", ["Human thinking involves human <mask>.", "Human thinking involves human [MASK]."])
def test_fill_mask_json_accepts_both_mask_spellings(pipeline, text):
    r = run_cli("fill-mask", str(pipeline / "run"), text, "--top-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    answers = json.loads(r.stdout)
    assert len(answers) == 1 and len(answers[0]) == 3
    scores = [c["score"] for c in answers[0]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    assert all(isinstance(c["token"], str) for c in answers[0])


def test_fill_mask_gives_one_list_per_mask(pipeline):
    r = run_cli("fill-mask", str(pipeline / "run"), "The <mask> of pure <mask>.", "--json")
    assert r.returncode == 0, r.stderr
    assert [len(x) for x in json.loads(r.stdout)] == [5, 5]


def test_model_summary_counts_kantai_exactly():
    r = run_cli("model", "summary", "--preset", "kantai", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_params"] == 83_504_416


def test_pretrain_from_corpus_in_one_go_then_resume_continues_exactly(tmp_path):
    """`pretrain --corpus` builds tokenizer + shards in the run; a resumed run equals an unbroken one."""
    corpus = str(datafile("pydoc-wiki/wiki.valid.raw"))
    common = [*TINY, "--corpus", corpus, "--set", "tokenizer.vocab_size=500", "--set", "data.seq_len=32",
              "--set", "train.schedule=constant", "--set", "train.log_every_steps=1", "--set", "train.save_every_steps=5"]
    r = run_cli("pretrain", *common, "--out", str(tmp_path / "whole"), "--max-steps", "10")
    assert r.returncode == 0, r.stderr
    r = run_cli("pretrain", *common, "--out", str(tmp_path / "split"), "--max-steps", "5")
    assert r.returncode == 0, r.stderr
    r = run_cli("pretrain", "--out", str(tmp_path / "split"), "--resume", "--max-steps", "10", "--quiet")
    assert r.returncode == 0, r.stderr
    losses = lambda run: [(m["step"], m["loss"]) for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if m["split"] == "train"]  # noqa: E731
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    assert (tmp_path / "whole" / "data" / "manifest.json").exists()


# ---------------------------------------------------------------- bad input


def test_missing_corpus_is_one_line_error(tmp_path):
    r = run_cli("tokenizer", "train", "--corpus", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "tok"))
    assert_one_line_error(r, "nope.txt")
    assert not (tmp_path / "tok").exists()


def test_empty_corpus_is_one_line_error(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    r = run_cli("tokenizer", "train", "--corpus", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "tok"))
    assert_one_line_error(r, "empty")
    assert not (tmp_path / "tok").exists()


def test_binary_corpus_is_one_line_error(tmp_path):
    (tmp_path / "blob.txt").write_bytes(bytes(range(256)) * 40)
    r = run_cli("tokenizer", "train", "--corpus", str(tmp_path / "blob.txt"), "--out", str(tmp_path / "tok"))
    assert_one_line_error(r, "blob.txt")


def test_unknown_column_lists_the_columns(tmp_path):
    r = run_cli("tokenizer", "train", "--corpus", str(datafile("reviews/dev.tsv")), "--text-column", "text",
                "--out", str(tmp_path / "tok"))
    assert_one_line_error(r, "sentence")


def test_vocabulary_too_small_for_special_tokens(tmp_path):
    r = run_cli("tokenizer", "train", "--corpus", str(datafile("kant/kant.txt")), "--kind", "wordpiece",
                "--vocab-size", "4", "--out", str(tmp_path / "tok"))
    assert_one_line_error(r, "vocab_size")


def test_sequence_longer_than_the_position_table(tmp_path):
    r = run_cli("pretrain", "--corpus", str(datafile("kant/kant.txt")), "--preset", "tiny", "--set", "data.seq_len=128",
                "--out", str(tmp_path / "run"))
    assert_one_line_error(r, "max_seq_len")
    assert not (tmp_path / "run").exists()


def test_shards_from_another_tokenizer_are_refused(pipeline, tmp_path):
    kant = str(datafile("kant/kant.txt"))
    assert run_cli("tokenizer", "train", "--corpus", kant, "--vocab-size", "700", "--out", str(tmp_path / "tok2"),
                   "--quiet").returncode == 0
    assert run_cli("prepare", "--corpus", kant, "--tokenizer", str(tmp_path / "tok2"), "--seq-len", "64",
                   "--out", str(tmp_path / "data2"), "--quiet").returncode == 0
    r = run_cli("evaluate", str(pipeline / "run"), "--data", str(tmp_path / "data2"))
    assert_one_line_error(r, "tokenizer")


def test_unknown_preset(tmp_path):
    r = run_cli("model", "summary", "--preset", "gigantic")
    assert_one_line_error(r, "small")


def test_bad_set_key_suggests_a_name():
    r = run_cli("model", "summary", "--set", "model.hiden_size=64")
    assert_one_line_error(r, "hidden_size")


def test_bad_set_value_names_the_key():
    r = run_cli("model", "summary", "--set", "model.num_heads=many")
    assert_one_line_error(r, "model.num_heads")


def test_run_without_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    r = run_cli("fill-mask", str(tmp_path / "run"), "A <mask>.")
    assert_one_line_error(r, "run")


def test_fill_mask_without_a_mask(pipeline):
    r = run_cli("fill-mask", str(pipeline / "run"), "No mask here.")
    assert_one_line_error(r, "mask")


def test_resume_without_a_run(tmp_path):
    r = run_cli("pretrain", "--out", str(tmp_path / "nothing"), "--resume")
    assert_one_line_error(r, "resume")


# ---------------------------------------------------------------- Hugging Face export / import


def test_export_loads_in_transformers_with_the_same_fill_mask_answers(pipeline, tmp_path):
    transformers = pytest.importorskip("transformers")
    r = run_cli("export", str(pipeline / "run"), "--out", str(tmp_path / "hf"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in (tmp_path / "hf").iterdir()}
    text = "The critique of pure <mask>."
    ours = json.loads(run_cli("fill-mask", str(pipeline / "run"), text, "--json").stdout)[0]
    fill = transformers.pipeline("fill-mask", model=str(tmp_path / "hf"), top_k=5)
    theirs = fill(text)
    assert [round(c["score"], 4) for c in ours] == [round(c["score"], 4) for c in theirs]


def test_import_then_continue_pretraining_on_a_new_corpus(pipeline, tmp_path):
    """Domain adaptation: export -> import -> pretrain --init-from on other text, keeping the tokenizer."""
    assert run_cli("export", str(pipeline / "run"), "--out", str(tmp_path / "hf"), "--quiet").returncode == 0
    r = run_cli("pretrain", "--init-from", str(tmp_path / "hf"), "--corpus", str(datafile("pydoc-wiki/wiki.test.raw")),
                "--doc-per", "line", "--out", str(tmp_path / "adapted"), "--max-steps", "5",
                "--set", "train.eval_batches=2", "--quiet")
    assert r.returncode == 0, r.stderr
    tok_a = json.loads((pipeline / "run" / "tokenizer" / "bertforge_tokenizer.json").read_text())
    tok_b = json.loads((tmp_path / "adapted" / "tokenizer" / "bertforge_tokenizer.json").read_text())
    assert tok_a["fingerprint"] == tok_b["fingerprint"]
    assert json.loads((tmp_path / "adapted" / "run.json").read_text())["init_from"]


def test_a_pre_ln_model_exports_as_roberta_prelayernorm_and_imports_back(tmp_path):
    r = run_cli("pretrain", *TINY, "--corpus", str(datafile("kant/kant.txt")), "--set", "tokenizer.vocab_size=400",
                "--set", "model.norm=pre", "--out", str(tmp_path / "run"), "--max-steps", "1")
    assert r.returncode == 0, r.stderr
    r = run_cli("export", str(tmp_path / "run"), "--out", str(tmp_path / "bert"), "--arch", "bert")
    assert_one_line_error(r, "--arch roberta-prelayernorm")  # pre-LN has no BertForMaskedLM form
    assert not (tmp_path / "bert").exists()
    r = run_cli("export", str(tmp_path / "run"), "--out", str(tmp_path / "hf"), "--quiet")
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["RobertaPreLayerNormForMaskedLM"]
    assert config["model_type"] == "roberta-prelayernorm"
    r = run_cli("import", str(tmp_path / "hf"), "--out", str(tmp_path / "imported"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "norm: pre" in (tmp_path / "imported" / "config.yaml").read_text()


def test_import_of_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cli("import", str(tmp_path / "empty"), "--out", str(tmp_path / "run"))
    assert_one_line_error(r, "config.json")
