"""benchmarks/prompt_finetune.py: a class's score is exactly the masked LM's logit of its label word."""

import importlib.util
from pathlib import Path

import pytest
import torch

from bertforge.finetune.model import load_source
from bertforge.model import MaskedLM

from conftest import datafile

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "prompt_finetune.py"


@pytest.fixture(scope="module")
def prompt():
    spec = importlib.util.spec_from_file_location("prompt_finetune", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_class_logits_are_the_mlm_logits_of_the_label_words(prompt, tiny_run):
    source = load_source(tiny_run)
    model = MaskedLM(source.model)
    model.load_state_dict(source.state)
    model.eval()
    tok = source.tokenizer
    rows = prompt.cloze_ids(tok, ["the cat sat", "a dog ran home to the old man"], "{text} it was <mask> .")
    assert all(row.count(tok.mask_id) == 1 for row in rows)
    words = prompt.word_ids(tok, {"0": " the", "1": " a"}, [0, 1])
    ids, mask = prompt.padded(rows, tok.pad_id)
    with torch.no_grad():
        scores = prompt.class_logits(model, ids, mask, tok.mask_id, words)
        full = model(ids, mask).logits  # (B, T, V)
    expected = full[ids == tok.mask_id][:, words]
    torch.testing.assert_close(scores, expected)


def test_a_long_text_keeps_its_mask_and_end(prompt, tiny_run):
    tok = load_source(tiny_run).tokenizer
    row = prompt.cloze_ids(tok, ["the cat sat " * 100], "{text} it was <mask> .", max_len=32)[0]
    assert len(row) == 32 and row.count(tok.mask_id) == 1 and row[-1] == tok.eos_id and row[0] == tok.bos_id


def test_runs_on_labelled_text_and_refuses_a_word_of_several_tokens(prompt, tiny_run, capsys):
    reviews = datafile("reviews")
    args = ["--model", str(tiny_run), "--train", str(reviews / "dev.tsv"), "--validation", str(reviews / "dev.tsv"),
            "--text-column", "sentence", "--words", "0= the,1= a", "--epochs", "1", "--precision", "fp32"]
    best = prompt.main(args)
    assert 0.0 <= best <= 1.0
    assert "best validation accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="is 4 tokens|tokens; pick a one-token word"):
        prompt.main(args[:-6] + ["--words", "0= the,1= xqzjvwkp", "--epochs", "1"])
