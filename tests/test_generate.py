"""Text generation: a trained model writes text closer to its corpus, the CLI, bad input, transformers parity."""

import json
import math
from collections import Counter
from dataclasses import replace

import pytest
import torch

from bertforge import generate
from bertforge.config import CorpusConfig, TokenizerConfig, build_config, load_config, save_config
from bertforge.corpus import iter_documents
from bertforge.errors import ConfigError, DataError
from bertforge.hf.exporter import export_run
from bertforge.hf.importer import import_hf
from bertforge.hf.keys import causal_position_ids
from bertforge.infer import LoadedRun, load_run
from bertforge.model import MaskedLM
from bertforge.shards import PackedShards
from bertforge.tokenizer import load_tokenizer, train_tokenizer
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from conftest import assert_one_line_error, datafile, make_causal_run, run_cli


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A 2-layer causal LM (hidden 32) trained for 200 steps on TinyStories (validation head, 32-token sequences)."""
    cfg = build_config(
        preset="tiny",
        overrides={
            "data": {"seq_len": 32},
            "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 64,
                      "hidden_dropout": 0.0, "attention_dropout": 0.0},
            "train": {"objective": "clm", "batch_size": 16, "max_steps": 200, "lr": 5e-3, "warmup_steps": 20,
                      "eval_every_steps": 200, "eval_batches": 8, "log_every_steps": 50},
        },
    )
    run_dir = tmp_path_factory.mktemp("clm") / "run"
    pretrain(cfg, data_dir, run_dir, progress=False)
    return run_dir


def untrained(run: LoadedRun) -> LoadedRun:
    """The same run at step 0: pretraining seeds with train.seed and builds the model, so this is its init."""
    torch.manual_seed(run.config.train.seed)
    return replace(run, model=MaskedLM(run.config.model).eval())


def corpus_bigram_perplexity(tokens: list[int], train_ids, vocab_size: int) -> float:
    """Perplexity of `tokens` under an add-one bigram model of the training shards: how corpus-like a text is,
    judged by a model that is neither of the two being compared."""
    pairs, firsts = Counter(), Counter()
    for row in train_ids:
        row = row.tolist()
        firsts.update(row[:-1])
        pairs.update(zip(row[:-1], row[1:]))
    nll = [-math.log((pairs[(a, b)] + 1) / (firsts[a] + vocab_size)) for a, b in zip(tokens[:-1], tokens[1:])]
    return math.exp(sum(nll) / len(nll))


def test_trained_model_has_lower_perplexity_and_writes_more_corpus_like_text(trained, data_dir):
    evals = read_metrics(trained, "validation")
    assert [e["step"] for e in evals] == [0, 200]
    assert evals[-1]["perplexity"] < evals[0]["perplexity"] / 5  # measured: 604 (about uniform) -> 62
    assert evals[-1]["next_token_accuracy"] > evals[0]["next_token_accuracy"] + 0.1

    run = load_run(trained, device="cpu")
    train_ids = PackedShards(data_dir, "train")[:]
    texts = {}
    for name, model_run in (("trained", run), ("untrained", untrained(run))):
        ids = []
        for seed in range(4):
            out = generate(model_run, "Once upon a time", max_new_tokens=40, temperature=1.0, top_p=1.0, seed=seed)
            ids += out["prompt_token_ids"][1:] + [t for t in out["token_ids"] if t != run.tokenizer.eos_id]
        texts[name] = corpus_bigram_perplexity(ids, train_ids, run.tokenizer.vocab_size)
    assert texts["trained"] < texts["untrained"] / 3, texts


def test_sampling_is_reproducible_with_a_seed_and_greedy_ignores_it(trained):
    run = load_run(trained, device="cpu")
    a = generate(run, "The little dog", max_new_tokens=20, temperature=0.9, top_k=40, seed=11)
    b = generate(run, "The little dog", max_new_tokens=20, temperature=0.9, top_k=40, seed=11)
    assert a == b
    g1 = generate(run, "The little dog", max_new_tokens=20, temperature=0, seed=1)
    g2 = generate(run, "The little dog", max_new_tokens=20, temperature=0, seed=2)
    assert g1["token_ids"] == g2["token_ids"]
    assert g1["stop_reason"] in ("eos", "max_new_tokens") and g1["stopped_at_eos"] == (g1["stop_reason"] == "eos")


def test_generation_stops_at_eos_and_at_the_end_of_the_context(data_dir, tmp_path):
    run = load_run(make_causal_run(tmp_path / "run", load_tokenizer(data_dir / "tokenizer")), device="cpu")
    with torch.no_grad():  # make </s> the only possible next token
        run.model.head.bias[run.tokenizer.eos_id] = 1e4
    out = generate(run, "Once", max_new_tokens=10, temperature=0)
    assert out["token_ids"] == [run.tokenizer.eos_id] and out["stopped_at_eos"] and out["text"] == ""
    with torch.no_grad():
        run.model.head.bias[run.tokenizer.eos_id] = -1e4
    out = generate(run, "Once upon a time", max_new_tokens=500, temperature=0)
    assert out["stop_reason"] == "context"
    assert len(out["prompt_token_ids"]) + len(out["token_ids"]) == run.config.model.max_seq_len


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"prompt": "   "}, DataError, "empty prompt"),
        ({"prompt": "once upon a time " * 40}, DataError, "context is 48 tokens"),
        ({"temperature": -0.5}, ConfigError, "--temperature must be >= 0"),
        ({"top_p": 0.0}, ConfigError, "--top-p must be in (0, 1]"),
        ({"top_p": 1.5}, ConfigError, "--top-p must be in (0, 1]"),
        ({"top_k": -1}, ConfigError, "--top-k must be >= 0"),
        ({"max_new_tokens": 0}, ConfigError, "--max-new-tokens must be >= 1"),
    ],
)
def test_bad_arguments_raise_clear_errors_from_python(kwargs, error, fragment, data_dir, tmp_path):
    run = load_run(make_causal_run(tmp_path / "run", load_tokenizer(data_dir / "tokenizer")), device="cpu")
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        generate(run, **{"prompt": "Once upon a time", **kwargs})


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def causal_cli_run(data_dir, tmp_path_factory):
    return make_causal_run(tmp_path_factory.mktemp("cli") / "run", load_tokenizer(data_dir / "tokenizer"))


def test_cli_generate_json_equals_python_greedy(causal_cli_run):
    result = run_cli("generate", str(causal_cli_run), "Once upon a time", "--temperature", "0",
                     "--max-new-tokens", "12", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)  # stdout is the JSON value and nothing else
    expected = generate(load_run(causal_cli_run, device="cpu"), "Once upon a time", max_new_tokens=12, temperature=0)
    assert out["token_ids"] == expected["token_ids"] and out["text"] == expected["text"]
    again = run_cli("generate", str(causal_cli_run), "Once upon a time", "--seed", "3", "--json")
    assert json.loads(again.stdout)["token_ids"] == generate(
        load_run(causal_cli_run, device="cpu"), "Once upon a time", seed=3
    )["token_ids"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["", "--temperature", "0"], "empty prompt"),
        (["once upon a time " * 40], "context is 48 tokens"),
        (["Hi", "--temperature", "-1"], "--temperature must be >= 0"),
        (["Hi", "--top-p", "0"], "--top-p must be in (0, 1]"),
        (["Hi", "--top-p", "1.01"], "--top-p must be in (0, 1]"),
        (["Hi", "--top-k", "-3"], "--top-k must be >= 0"),
    ],
)
def test_cli_bad_input_is_one_line_error(causal_cli_run, args, fragment):
    assert_one_line_error(run_cli("generate", str(causal_cli_run), *args), fragment)


def test_generate_on_a_masked_lm_run_is_refused(causal_cli_run, tmp_path):
    import shutil

    mlm = tmp_path / "mlm"
    shutil.copytree(causal_cli_run, mlm)
    cfg = load_config(mlm / "config.yaml")
    save_config(mlm / "config.yaml", replace(cfg, model=replace(cfg.model, causal=False), train=replace(cfg.train, objective="mlm")))
    assert_one_line_error(run_cli("generate", str(mlm), "Hello"), "masked LM", "--objective clm")
    assert_one_line_error(run_cli("fill-mask", str(causal_cli_run), "A <mask>."), "causal LM", "generate")


# ---------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    docs = iter_documents([str(datafile("tinystories/tinystories_valid_head.txt"))], CorpusConfig())
    cfg = TokenizerConfig(kind="wordpiece", vocab_size=600, max_docs=2000)
    return train_tokenizer(docs, cfg, tmp_path_factory.mktemp("wp"), progress=False)


@pytest.mark.parametrize(
    "tokenizer_kind, arch, hf_class",
    [
        ("bytelevel-bpe", None, "BertLMHeadModel"),  # the default for causal runs, whatever the tokenizer
        ("wordpiece", None, "BertLMHeadModel"),
        ("bytelevel-bpe", "roberta", "RobertaForCausalLM"),  # generate() needs RoBERTa's position ids passed
    ],
)
def test_export_greedy_generate_equals_ours(tokenizer_kind, arch, hf_class, data_dir, wordpiece, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer = load_tokenizer(data_dir / "tokenizer") if tokenizer_kind == "bytelevel-bpe" else wordpiece
    run_dir = make_causal_run(tmp_path / "run", tokenizer, max_seq_len=64)
    out = export_run(run_dir, tmp_path / "hf", arch)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [hf_class] and config["is_decoder"] is True
    assert "pipeline_tag: text-generation" in (out / "README.md").read_text()
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(model).__name__ == hf_class
    run = load_run(run_dir, device="cpu")

    ids = [run.tokenizer.bos_id, *run.tokenizer.encode("Once upon a time there was a cat", add_special_tokens=False)]
    with torch.no_grad():
        ours = run.model(torch.tensor([ids])).logits
        theirs = model(torch.tensor([ids])).logits
    assert (ours - theirs).abs().max() <= 1e-4

    for prompt in ("Once upon a time", "The dog ran to the park and"):
        mine = generate(run, prompt, max_new_tokens=25, temperature=0)
        prompt_ids = torch.tensor([mine["prompt_token_ids"]])
        extra = {"position_ids": causal_position_ids(run.config.model, "roberta", prompt_ids.shape[1])} if arch else {}
        with torch.no_grad():
            hf = model.generate(
                prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=25, do_sample=False,
                use_cache=True, eos_token_id=run.tokenizer.eos_id, pad_token_id=run.tokenizer.pad_id, **extra,
            )
        assert hf[0, prompt_ids.shape[1] :].tolist() == mine["token_ids"]


def test_a_causal_export_imports_back_as_a_causal_run(data_dir, tmp_path):
    pytest.importorskip("transformers")
    run_dir = make_causal_run(tmp_path / "run", load_tokenizer(data_dir / "tokenizer"))
    back = load_run(import_hf(export_run(run_dir, tmp_path / "hf"), tmp_path / "back"), device="cpu")
    assert back.config.model.causal and back.config.train.objective == "clm"
    run = load_run(run_dir, device="cpu")
    a = generate(run, "Once upon a time", max_new_tokens=15, temperature=0)["token_ids"]
    assert generate(back, "Once upon a time", max_new_tokens=15, temperature=0)["token_ids"] == a
