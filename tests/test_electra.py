"""ELECTRA's replaced-token detection (train.objective electra): the math of the objective, exact
resume, the discriminator as the model you keep (fine-tuning, embeddings), and export to
transformers' ElectraForPreTraining with equal logits."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace

import pytest
import torch

from bertforge import model as model_module
from bertforge.config import build_config
from bertforge.errors import DataError
from bertforge.files import load_tensors
from bertforge.hf.exporter import export_run
from bertforge.infer import embed, fill_mask, load_run
from bertforge.masking import masking_vocab, mask_tokens, sequence_seeds
from bertforge.model import IGNORE_INDEX, Electra, MaskedLM, build_model, generator_config
from bertforge.tokenizer import load_tokenizer
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from conftest import assert_one_line_error, run_cli


def electra_config(**train):
    return build_config(
        preset="tiny",
        overrides={
            "data": {"seq_len": 32},
            "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
            "train": {"objective": "electra", "batch_size": 8, "log_every_steps": 1, "eval_batches": 4,
                      "warmup_steps": 3, **train},
        },
    )


def tiny_electra(vocab: int = 50, pad_id: int = 0) -> Electra:
    cfg = build_config(preset="tiny", overrides={
        "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 16,
                  "vocab_size": vocab, "pad_id": pad_id}, "data": {"seq_len": 16}, "train": {"objective": "electra"}}).model
    return Electra(cfg, rtd_weight=50.0)


def test_the_objective_sets_up_a_discriminator_and_a_quarter_width_generator():
    cfg = electra_config(max_steps=1).model
    assert cfg.discriminator and not cfg.sentence_head
    small = generator_config(cfg)
    assert (small.hidden_size, small.num_heads, small.intermediate_size, small.num_layers) == (8, 1, 16, cfg.num_layers)
    assert isinstance(build_model(cfg), Electra) and isinstance(build_model(build_config(preset="tiny").model), MaskedLM)
    model = build_model(cfg)
    # the generator reads and decodes with the discriminator's embeddings: one token table in the state dict
    assert [k for k in model.state_dict() if k.endswith("tokens.weight")] == ["encoder.embeddings.tokens.weight"]


def test_labels_are_exactly_replaced_or_not(monkeypatch):
    """Masked positions hold generator samples; a sample equal to the original counts as original;
    padding is never a label; the loss is mlm + rtd_weight * detection."""
    torch.manual_seed(0)
    model = tiny_electra().eval()
    original = torch.tensor([[5, 6, 7, 8, 9, 10, 0, 0], [11, 12, 13, 14, 15, 16, 17, 18]])
    attention = (original != 0).long()
    labels = torch.full_like(original, IGNORE_INDEX)
    labels[0, 1], labels[0, 3], labels[1, 0], labels[1, 5] = 6, 8, 11, 16
    inputs = original.clone()
    inputs[labels != IGNORE_INDEX] = 3  # the mask token
    # the generator "samples" 6 (the original) at (0, 1) and other tokens elsewhere
    monkeypatch.setattr(model_module, "sample_tokens", lambda logits: torch.tensor([6, 40, 41, 16]))
    out = model(inputs, attention, labels)
    expected = torch.full_like(original, 0)
    expected[0, 3] = expected[1, 0] = 1  # replaced: 8 -> 40, 11 -> 41; (0, 1) and (1, 5) got their own token back
    expected[0, 6:] = IGNORE_INDEX  # padding
    assert torch.equal(out.rtd_labels, expected)
    assert torch.allclose(out.loss, out.mlm_loss + 50.0 * out.rtd_loss)
    assert out.logits.shape == (4, 50) and torch.equal(out.labels, torch.tensor([6, 8, 11, 16]))


def test_corruption_reads_what_the_discriminator_sees(monkeypatch):
    model = tiny_electra().eval()
    labels = torch.tensor([[IGNORE_INDEX, 6, IGNORE_INDEX, 8]])
    inputs = torch.tensor([[5, 3, 7, 22]])  # one [MASK], one random replacement (80/10/10 masking)
    seen = {}
    real_encoder = model.encoder.forward

    def spy(ids, *args, **kwargs):
        seen["ids"] = ids.clone()
        return real_encoder(ids, *args, **kwargs)

    monkeypatch.setattr(model.encoder, "forward", spy)
    monkeypatch.setattr(model_module, "sample_tokens", lambda logits: torch.tensor([30, 8]))
    model(inputs, None, labels)
    # the original sequence with the masked positions replaced by the samples, not the masked input
    assert seen["ids"].tolist() == [[5, 30, 7, 8]]


def test_evaluation_samples_the_same_way_every_time_and_leaves_training_rng_alone():
    torch.manual_seed(1)
    model = tiny_electra().eval()
    ids = torch.randint(5, 50, (4, 16))
    labels = torch.where(torch.rand(4, 16) < 0.3, ids, torch.full_like(ids, IGNORE_INDEX))
    inputs = torch.where(labels != IGNORE_INDEX, torch.full_like(ids, 3), ids)
    state = torch.get_rng_state()
    first = model(inputs, None, labels).rtd_labels
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(model(inputs, None, labels).rtd_labels, first)


def test_generator_learns_and_the_logged_loss_is_the_sum(data_dir, tmp_path):
    cfg = electra_config(max_steps=60, eval_every_steps=60, eval_batches=10, lr=3e-3, batch_size=16)
    pretrain(cfg, data_dir, tmp_path / "run", progress=False)
    first, last = read_metrics(tmp_path / "run", "validation")
    assert last["loss"] < first["loss"] - 0.5  # the generator's masked LM
    train = read_metrics(tmp_path / "run", "train")[-1]
    assert train["loss"] == pytest.approx(train["mlm_loss"] + 50.0 * train["rtd_loss"], rel=1e-5)


def test_discriminator_learns_to_catch_replacements(data_dir, tmp_path, monkeypatch):
    """With replacements it can learn to see (uniform random tokens) the detector goes past the base
    rate: it catches replaced tokens, not only "13% of tokens are replaced". A misaligned label or
    a discriminator that does not read the corrupted text would stay at recall 0."""
    monkeypatch.setattr(model_module, "sample_tokens", lambda logits: torch.randint(5, logits.shape[-1], logits.shape[:1]))
    cfg = electra_config(max_steps=100, eval_every_steps=100, eval_batches=10, lr=3e-3, batch_size=16)
    pretrain(cfg, data_dir, tmp_path / "run", progress=False)
    last = read_metrics(tmp_path / "run", "validation")[-1]
    assert last["replaced_recall"] > 0.2, last
    base_rate = 0.15 * 0.9  # replaced: masked and not drawn back as the original (a little less in fact)
    entropy = -(base_rate * math.log(base_rate) + (1 - base_rate) * math.log(1 - base_rate))
    assert last["detection_loss"] < entropy - 0.05


def test_resume_equals_uninterrupted_run(data_dir, tmp_path):
    """The generator's sampling draws from the RNG the checkpoint saves: resume is exact."""
    cfg = electra_config(max_steps=12, save_every_steps=6, eval_every_steps=6, keep_last=5)
    run = tmp_path / "run"
    pretrain(cfg, data_dir, run, progress=False)
    losses = [(r["step"], r["loss"]) for r in read_metrics(run, "train")]
    final = load_tensors(run / "checkpoints/step-00000012/model.safetensors")
    shutil.rmtree(run / "checkpoints/step-00000012")
    pretrain(cfg, data_dir, run, resume=True, progress=False)
    assert [(r["step"], r["loss"]) for r in read_metrics(run, "train")] == losses
    resumed = load_tensors(run / "checkpoints/step-00000012/model.safetensors")
    assert final.keys() == resumed.keys() and all(torch.equal(final[k], resumed[k]) for k in final)


@pytest.fixture(scope="module")
def electra_run(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("electra") / "run"
    pretrain(electra_config(max_steps=20, eval_every_steps=20, lr=3e-3), data_dir, run, progress=False)
    return run


def test_export_matches_transformers_electra_for_pretraining(electra_run, data_dir, tmp_path):
    from transformers import ElectraForPreTraining, ElectraModel

    hf_dir = export_run(electra_run, tmp_path / "hf")
    run = load_run(electra_run, device="cpu")
    tokenizer = load_tokenizer(data_dir / "tokenizer")
    row = tokenizer.encode("Tom saw a big red ball in the park.")
    ids = torch.tensor([row, row[:1] + row[1:-1][::-1] + row[-1:]])
    theirs = ElectraForPreTraining.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        ours = run.model.detector(run.model.encoder(ids))
        assert torch.allclose(ours, theirs(input_ids=ids).logits, atol=1e-5)
        bare = ElectraModel.from_pretrained(hf_dir).eval()(input_ids=ids).last_hidden_state
        assert torch.allclose(run.model.encoder(ids), bare, atol=1e-5)
    assert not any("generator" in k for k in load_tensors(hf_dir / "model.safetensors"))


def test_the_discriminator_is_the_model_you_keep(electra_run, tmp_path):
    run = load_run(electra_run, device="cpu")
    assert embed(run, ["a cat"], "mean").shape == (1, 32)  # the discriminator's width
    assert len(fill_mask(run, "Tom saw a <mask>.", top_k=3)[0]) == 3  # the generator answers fill-mask
    with pytest.raises(DataError, match="ELECTRA discriminator"):
        export_run(electra_run, tmp_path / "bert", arch="bert")


def test_a_pre_ln_discriminator_is_refused_by_electra_export_with_the_way_out(data_dir, tmp_path):
    cfg = electra_config(max_steps=1, eval_every_steps=100)
    pretrain(replace(cfg, model=replace(cfg.model, norm="pre")), data_dir, tmp_path / "pre", progress=False)
    with pytest.raises(DataError, match="this discriminator is pre-LN.*fine-tune it"):
        export_run(tmp_path / "pre", tmp_path / "pre-hf")


def test_fine_tuning_starts_from_the_discriminator(electra_run, tmp_path):
    from bertforge.finetune.model import load_source

    source = load_source(electra_run)
    state = load_tensors(sorted((electra_run / "checkpoints").iterdir())[-1] / "model.safetensors")
    assert torch.equal(source.state["encoder.layers.0.ffn.up.weight"], state["encoder.layers.0.ffn.up.weight"])


def test_cli_electra_run_and_bad_settings(tmp_path):
    r = run_cli("pretrain", "--corpus", "x.txt", "--out", str(tmp_path / "r"), "--objective", "electra",
                "--set", "model.generator_fraction=0")
    assert_one_line_error(r, "model.generator_fraction must be in (0, 1]")
    r = run_cli("pretrain", "--corpus", "x.txt", "--out", str(tmp_path / "r"), "--objective", "electra",
                "--set", "train.rtd_weight=-1")
    assert_one_line_error(r, "train.rtd_weight must be a positive number")


def test_mlm_run_can_start_an_electra_run(data_dir, tmp_path):
    """--init-from across objectives: the encoder carries over, the generator and detector start fresh."""
    from bertforge.config import build_config as bc

    mlm = bc(preset="tiny", overrides={"data": {"seq_len": 32}, "model": {
        "hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
        "train": {"batch_size": 8, "max_steps": 2, "eval_every_steps": 100}})
    pretrain(mlm, data_dir, tmp_path / "mlm", progress=False)
    import bertforge

    bertforge.pretrain(data=data_dir, out=tmp_path / "electra", init_from=tmp_path / "mlm", max_steps=1,
                       settings={"train.objective": "electra", "train.eval_every_steps": 100}, progress=False)
    start = load_tensors(tmp_path / "mlm/checkpoints/step-00000002/model.safetensors")
    model = load_run(tmp_path / "electra", device="cpu").model
    assert isinstance(model, Electra)
    assert not torch.equal(model.encoder.layers[0].ffn.up.weight, start["encoder.layers.0.ffn.up.weight"])  # one step on
    assert torch.allclose(model.encoder.layers[0].ffn.up.weight, start["encoder.layers.0.ffn.up.weight"], atol=0.02)


def test_masking_vocab_round_trip_for_electra_batches(data_dir):
    """Electra trains on the same masked batches as MLM (the masking is the objective-independent part)."""
    tokenizer = load_tokenizer(data_dir / "tokenizer")
    ids = torch.tensor([tokenizer.encode("Tom saw a big red ball in the park and ran to it.")])
    inputs, labels = mask_tokens(ids, masking_vocab(tokenizer), build_config().masking, sequence_seeds(0, 0, [0]))
    assert ((labels != IGNORE_INDEX) <= (ids == labels)).all()
