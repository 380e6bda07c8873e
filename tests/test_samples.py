"""Fill-mask samples during pretraining: fixed validation sentences, top-3 guesses at every
evaluation in metrics.jsonl and TensorBoard, chosen the same way every time."""

from bertforge.config import build_config
from bertforge.shards import PackedShards
from bertforge.tokenizer import load_tokenizer
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from bertforge.train.samples import as_markdown, pick_samples


def test_every_evaluation_logs_the_same_sentences_with_top3_guesses(tiny_run):
    validation = [r["step"] for r in read_metrics(tiny_run, "validation")]
    records = read_metrics(tiny_run, "samples")
    assert [r["step"] for r in records] == validation == [0, 3, 6]
    texts = [[s["text"] for s in r["samples"]] for r in records]
    assert len(texts[0]) == 3 and texts[0] == texts[1] == texts[2]  # fixed sentences
    for record in records:
        for sample in record["samples"]:
            assert sample["text"].count("<mask>") == 1 and sample["answer"].isalpha()
            scores = [p["score"] for p in sample["predictions"]]
            assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
            assert all(isinstance(p["token"], str) for p in sample["predictions"])
    assert {r["split"] for r in read_metrics(tiny_run)} == {"train", "validation"}  # readers of numbers see no samples
    lines = (tiny_run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert sum('"split": "samples"' in line for line in lines) == 3


def test_samples_go_to_tensorboard_as_text(tiny_run):
    events = b"".join(p.read_bytes() for p in (tiny_run / "tensorboard").glob("events.*"))
    assert b"fill_mask" in events and b"<mask>" in events


def test_sentences_are_picked_deterministically_from_the_validation_split(tiny_run, data_dir):
    tokenizer = load_tokenizer(data_dir / "tokenizer")
    shards = PackedShards(data_dir, "validation")
    first = pick_samples(tokenizer, shards, 3, 1234, 32)
    assert first == pick_samples(tokenizer, shards, 3, 1234, 32)
    assert [s["text"] for s in first] == [s["text"] for s in read_metrics(tiny_run, "samples")[0]["samples"]]
    for s in first:  # putting the answer back gives a sentence of the text, the mask was one token
        original = s["text"].replace("<mask>", s["answer"])
        assert len(tokenizer.encode(original)) == len(tokenizer.encode(s["text"]))
    table = as_markdown([{**s, "predictions": [{"token": "a|b", "score": 0.5}]} for s in first])
    assert table.count("\n") == 4 and "a\\|b (0.500)" in table


def test_no_samples_when_turned_off(data_dir, tmp_path):
    cfg = build_config(preset="tiny", overrides={
        "data": {"seq_len": 32},
        "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
        "train": {"batch_size": 8, "max_steps": 2, "eval_every_steps": 1, "eval_batches": 1, "fill_mask_samples": 0},
    })
    pretrain(cfg, data_dir, tmp_path / "run", progress=False)
    assert read_metrics(tmp_path / "run", "validation") and not read_metrics(tmp_path / "run", "samples")


def test_predicting_samples_draws_no_random_numbers_and_keeps_training_mode(tiny_run, data_dir):
    import torch

    from bertforge.infer import load_run
    from bertforge.train.samples import predict_samples

    run = load_run(tiny_run, "cpu")
    samples = read_metrics(tiny_run, "samples")[0]["samples"]
    run.model.train()  # as in the loop, where dropout is on
    before = torch.get_rng_state()
    predicted = predict_samples(run.model, run.tokenizer, run.config, samples, run.device)
    assert torch.equal(torch.get_rng_state(), before) and run.model.training
    assert [p["predictions"] for p in predicted] == [p["predictions"] for p in read_metrics(tiny_run, "samples")[-1]["samples"]]
