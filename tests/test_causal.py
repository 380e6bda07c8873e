"""Causal LM: the mask, the KV cache, next-token labels, templates with response-only loss, exact resume."""

import json
import shutil

import numpy as np
import pytest
import torch

from bertforge.config import CorpusConfig, ModelConfig, build_config
from bertforge.errors import ConfigError, DataError
from bertforge.files import load_tensors
from bertforge.generation import Sampling, generate_ids
from bertforge.infer import load_run
from bertforge.masking import causal_labels
from bertforge.model import MaskedLM
from bertforge.shards import PackedShards, prepare
from bertforge.templates import encode_examples, iter_examples, load_template
from bertforge.tokenizer import load_tokenizer
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from conftest import assert_one_line_error, datafile, make_causal_run, run_cli


def causal_model(**kw) -> MaskedLM:
    cfg = ModelConfig(
        vocab_size=300, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_seq_len=40,
        position_offset=2, pad_id=1, causal=True, hidden_dropout=0.0, attention_dropout=0.0, **kw,
    )
    torch.manual_seed(0)
    return MaskedLM(cfg).eval()


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_a_later_token_never_changes_earlier_logits(norm):
    model = causal_model(norm=norm)
    ids = torch.randint(5, 300, (2, 30))
    for j in (0, 7, 29):
        changed = ids.clone()
        changed[:, j] = (changed[:, j] + 1) % 300
        with torch.no_grad():
            a, b = model(ids).logits, model(changed).logits
        assert torch.equal(a[:, :j], b[:, :j]), j  # exactly: nothing after j is read before j
        assert not torch.allclose(a[:, j:], b[:, j:])  # while j itself and later positions do see it


def test_the_mlm_model_stays_bidirectional():
    cfg = ModelConfig(vocab_size=300, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_seq_len=40)
    torch.manual_seed(0)
    model = MaskedLM(cfg).eval()
    ids = torch.randint(5, 300, (1, 20))
    changed = ids.clone()
    changed[0, -1] += 1
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits[:, 0], model(changed).logits[:, 0])


def test_cached_logits_equal_full_forward_logits():
    model = causal_model()
    ids = torch.randint(5, 300, (1, 25))
    with torch.no_grad():
        full = model(ids).logits[0]  # (T, V)
        cache = model.new_cache()
        steps = [model.next_token_logits(ids[:, :10], cache)[0]]  # a prompt of 10, then one token at a time
        steps += [model.next_token_logits(ids[:, t : t + 1], cache)[0] for t in range(10, 25)]
        assert cache.length == 25
        several = model.new_cache()
        model.next_token_logits(ids[:, :10], several)
        chunk = model.encoder(ids[:, 10:14], cache=several)  # 4 new tokens at once after a cache
    assert torch.allclose(torch.stack(steps), full[9:], atol=1e-5)
    head = model.head(chunk, model.encoder.embeddings.tokens.weight)[0]
    assert torch.allclose(head, full[10:14], atol=1e-5)


def test_greedy_generation_is_the_same_with_and_without_the_cache(data_dir, tmp_path):
    run = load_run(make_causal_run(tmp_path / "run", load_tokenizer(data_dir / "tokenizer")), device="cpu")
    prompt = [run.tokenizer.bos_id, *run.tokenizer.encode("Once upon a time", add_special_tokens=False)]
    greedy = Sampling(max_new_tokens=30, temperature=0)
    cached, reason = generate_ids(run, prompt, greedy, use_cache=True)
    uncached, reason2 = generate_ids(run, prompt, greedy, use_cache=False)
    assert cached == uncached and reason == reason2
    sampled = Sampling(max_new_tokens=30, temperature=1.0, top_k=20, top_p=0.9, seed=5)
    assert generate_ids(run, prompt, sampled, use_cache=True) == generate_ids(run, prompt, sampled, use_cache=False)


def test_causal_labels_are_the_next_tokens_except_padding_and_prompt():
    ids = torch.tensor([[0, 10, 11, 12, 2, 1, 1]])
    labels = causal_labels(ids, pad_id=1)
    assert labels.tolist() == [[10, 11, 12, 2, -100, -100, -100]]
    mask = torch.tensor([[0, 0, 0, 1, 1, 0, 0]])  # 12 and the eos are the response
    assert causal_labels(ids, 1, mask).tolist() == [[-100, -100, 12, 2, -100, -100, -100]]


# ---------------------------------------------------------------- templates


def test_alpaca_template_drops_an_empty_input_block():
    t = load_template("alpaca")
    with_input = t.render({"instruction": "Add.", "input": "1 and 2", "output": "3"})
    assert with_input.text == "### Instruction:\nAdd.\n\n### Input:\n1 and 2\n\n### Response:\n3"
    assert with_input.text[with_input.response_start :] == "3"
    without = t.render({"instruction": "Say hi.", "input": "", "output": "Hi!"})
    assert without.text == "### Instruction:\nSay hi.\n\n### Response:\nHi!"
    assert t.prompt("Say hi.") == "### Instruction:\nSay hi.\n\n### Response:\n"


def test_a_custom_template_with_its_response_marker():
    t = load_template("User: {prompt}\\nAgent: {response}")
    example = t.render({"prompt": "Where is my order?", "response": "On its way."})
    assert example.text == "User: Where is my order?\nAgent: On its way."
    assert example.text[example.response_start :] == "On its way."
    assert t.prompt("Hello") == "User: Hello\nAgent:"  # the space belongs to the answer's first token


def test_template_errors_name_the_fields():
    with pytest.raises(ConfigError, match="no \\{field\\}"):
        load_template("just text")
    with pytest.raises(DataError, match="the record's fields: instruction, input, output"):
        load_template("Q: {question}\nA: {answer}").render({"instruction": "a", "input": "", "output": "b"})


@pytest.fixture(scope="module")
def alpaca_data(data_dir, tmp_path_factory):
    """Alpaca records (the first 335), templated and padded one per sequence, with the data_dir tokenizer."""
    overrides = {"data": {"seq_len": 128, "packing": "pad", "template": "alpaca"}, "model": {"max_seq_len": 128}}
    cfg = build_config(preset="tiny", overrides=overrides)
    out = tmp_path_factory.mktemp("alpaca") / "data"
    source = str(datafile("instructions/instructions.json"))
    return prepare([source], load_tokenizer(data_dir / "tokenizer"), cfg.data, cfg.corpus, out, progress=False)


def test_templated_shards_mark_exactly_the_responses(alpaca_data):
    shards = PackedShards(alpaca_data, "train")
    assert shards.has_loss_mask
    tok = load_tokenizer(alpaca_data / "tokenizer")
    records = json.loads(datafile("instructions/instructions.json").read_text())
    masks = shards.loss_mask(np.arange(len(shards)))
    assert set(np.unique(masks)) == {0, 1} and not masks[:, 0].any()  # <s> is never trained on
    rows = shards[np.arange(len(shards))]
    starts = tok.encode("### Instruction:", add_special_tokens=False)
    whole = [  # records that fit in one padded sequence
        i for i in range(len(shards))
        if masks[i].any() and (rows[i] == tok.pad_id).any() and rows[i][1 : 1 + len(starts)].tolist() == starts
    ]
    assert len(whole) > 50
    outputs = [r["output"] for r in records]
    for i in whole[:20]:
        ids, mask = shards[i], masks[i]
        first = int(mask.argmax())
        assert mask[first:].sum() == (ids[first:] != tok.pad_id).sum()  # the response and its eos, then padding
        assert ids[first - 1 + int(mask[first:].sum())] == tok.eos_id  # the document's own eos is learned
        prompt, answer = tok.decode(ids[:first].tolist()), tok.decode(ids[first:].tolist())
        assert prompt.startswith("### Instruction:") and prompt.endswith("### Response:\n")
        assert answer.strip() in outputs, answer


def test_encode_examples_counts_a_straddling_token_as_response(data_dir):
    tok = load_tokenizer(data_dir / "tokenizer")
    t = load_template("User: {prompt}\\nAgent: {response}")
    example = t.render({"prompt": "hi", "response": "Hello there"})
    (ids,), (mask,) = encode_examples(tok, [example])
    answer = tok.decode([i for i, m in zip(ids, mask) if m])
    assert answer.strip() == "Hello there"
    assert tok.decode([i for i, m in zip(ids, mask) if not m]).strip() == "User: hi\nAgent:"


def test_iter_examples_reads_csv_prompt_and_response_columns(tmp_path):
    path = tmp_path / "support.csv"
    path.write_text('prompt,response\n"Where is my parcel?","It ships today."\nRefund?,"Yes, within 30 days."\n')
    examples = list(iter_examples([str(path)], CorpusConfig(), load_template("User: {prompt}\nAgent: {response}")))
    assert [e.text for e in examples] == [
        "User: Where is my parcel?\nAgent: It ships today.", "User: Refund?\nAgent: Yes, within 30 days."
    ]


def test_weighted_template_sources_repeat_the_smaller_one_to_its_share(tmp_path):
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small.write_text("prompt,response\n" + "".join(f"s{i},r{i}\n" for i in range(5)))
    large.write_text("prompt,response\n" + "".join(f"l{i},r{i}\n" for i in range(400)))
    template = load_template("{prompt} {response}")
    examples = list(iter_examples([f"{small}:1", f"{large}:1"], CorpusConfig(seed=2), template))
    from_small = [e.text for e in examples if e.text.startswith("s")]
    assert [e.text for e in examples if e.text.startswith("l")] == [f"l{i} r{i}" for i in range(400)]
    assert 0.4 < len(from_small) / len(examples) < 0.6  # equal shares: five records read ~80 times
    assert from_small[:10] == [f"s{i} r{i}" for i in range(5)] * 2


def test_unknown_template_field_is_one_line_error_listing_the_fields(data_dir, tmp_path):
    source = datafile("instructions/instructions.json")
    result = run_cli(
        "prepare", "--corpus", str(source), "--tokenizer", str(data_dir / "tokenizer"), "--out", str(tmp_path / "d"),
        "--template", "Customer: {question}\\nAgent: {answer}",
    )
    assert_one_line_error(result, "no field 'question'", "instruction, input, output")
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------- training


def clm_config(**train):
    return build_config(
        preset="tiny",
        overrides={
            "data": {"seq_len": 32},
            "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
            "train": {
                "objective": "clm", "batch_size": 8, "log_every_steps": 1, "eval_batches": 4, "warmup_steps": 3, **train
            },
        },
    )


def test_clm_resume_equals_uninterrupted_run(data_dir, tmp_path):
    cfg = clm_config(max_steps=8, save_every_steps=4, eval_every_steps=4, keep_last=5)
    run = tmp_path / "run"
    pretrain(cfg, data_dir, run, progress=False)
    records = [(r["step"], r["loss"]) for r in read_metrics(run, "train")]
    evals = read_metrics(run, "validation")
    assert "next_token_accuracy" in evals[-1] and "masked_accuracy" not in evals[-1]
    final = load_tensors(run / "checkpoints/step-00000008/model.safetensors")
    shutil.rmtree(run / "checkpoints/step-00000008")
    pretrain(cfg, data_dir, run, resume=True, progress=False)
    assert [(r["step"], r["loss"]) for r in read_metrics(run, "train")] == records
    resumed = load_tensors(run / "checkpoints/step-00000008/model.safetensors")
    assert all(torch.equal(final[k], resumed[k]) for k in final)
    assert load_run(run).config.model.causal


def test_response_only_loss_needs_templated_shards(data_dir, tmp_path):
    with pytest.raises(DataError, match="--template"):
        pretrain(clm_config(max_steps=1, loss_on="response"), data_dir, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="objective=clm"):
        build_config(overrides={"train": {"loss_on": "response"}})


def test_response_only_training_runs_on_templated_shards(alpaca_data, tmp_path):
    cfg = clm_config(max_steps=2, loss_on="response", eval_every_steps=100)
    cfg = build_config(
        preset="tiny",
        overrides={
            "data": {"seq_len": 128},
            "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 128},
            "train": {**cfg.train.__dict__},
        },
    )
    result = pretrain(cfg, alpaca_data, tmp_path / "run", progress=False)
    assert result["validation"]["predicted_tokens"] > 0
    run = load_run(tmp_path / "run")
    assert run.config.data.template == "alpaca"  # generate wraps prompts in it


def test_a_micro_batch_without_responses_adds_nothing_and_no_nan(alpaca_data, tmp_path, monkeypatch):
    """loss_on=response: a micro-batch of prompt-only pieces must not turn the step's loss into NaN."""
    import bertforge.train.loop as loop

    real = loop.objective_inputs
    calls = []

    def prompt_only_first(cfg, shards, ids, indices):
        inputs, labels = real(cfg, shards, ids, indices)
        calls.append(1)
        if len(calls) % 2:  # every first micro-batch of a step: no labels at all
            labels = torch.full_like(labels, -100)
        return inputs, labels

    monkeypatch.setattr(loop, "objective_inputs", prompt_only_first)
    cfg = build_config(
        preset="tiny",
        overrides={
            "data": {"seq_len": 128},
            "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 128},
            "train": {"objective": "clm", "loss_on": "response", "batch_size": 4, "grad_accum_steps": 2,
                      "max_steps": 3, "eval_every_steps": 100, "log_every_steps": 1},
        },
    )
    pretrain(cfg, alpaca_data, tmp_path / "run", progress=False)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run", "train")]
    assert len(losses) == 3 and all(np.isfinite(losses))
