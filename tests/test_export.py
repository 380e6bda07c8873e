"""Hugging Face export/import: equal logits, clean loads, the same fill-mask answers, exact round trips."""

import contextlib
import io
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from bertforge.config import (
    CorpusConfig, DataConfig, ModelConfig, RunConfig, TokenizerConfig, build_config, load_config, save_config,
)
from bertforge.corpus import iter_documents
from bertforge.errors import DataError
from bertforge.hf.exporter import export_run
from bertforge.hf.importer import import_hf, init_run
from bertforge.hf.keys import ARCHS, from_hf_state_dict, hf_config, key_table, to_hf_state_dict
from bertforge.files import load_tensors, read_json, save_tensors, write_json
from bertforge.infer import fill_mask, load_run
from bertforge.model import MaskedLM
from bertforge.shards import prepare
from bertforge.tokenizer import train_tokenizer
from bertforge.train.loop import pretrain
from bertforge.train.metrics import read_metrics
from conftest import datafile

TOLERANCE = 1e-4  # max abs logit difference allowed, fp32, eval mode

# Real sentences of different lengths, so the batch is padded.
SENTENCES = [
    "Human reason, in one sphere of its cognition, is called upon to consider questions which it cannot decline.",
    "Space is not a conception which has been derived from outward experiences.",
    "Time is a necessary representation.",
]


@pytest.fixture(scope="module")
def kant():
    return str(datafile("kant/kant.txt"))


@pytest.fixture(scope="module")
def tokenizers(kant, tmp_path_factory):
    """One tokenizer per special-token scheme, trained on Kant: byte-level BPE (RoBERTa), WordPiece (BERT)."""
    root = tmp_path_factory.mktemp("tok")
    docs = lambda: iter_documents([kant], CorpusConfig())  # noqa: E731
    return {
        kind: train_tokenizer(docs(), TokenizerConfig(kind=kind, vocab_size=700), root / kind, progress=False)
        for kind in ("bytelevel-bpe", "wordpiece")
    }


def tiny_config(tokenizer, **model) -> ModelConfig:
    offset = tokenizer.pad_id + 1 if tokenizer.scheme == "roberta" else 0
    return ModelConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
        max_seq_len=64, position_offset=offset, pad_id=tokenizer.pad_id, **model,
    )


def perturbed(net: torch.nn.Module) -> torch.nn.Module:
    """Biases and LayerNorms moved off their init too, so a swapped key shows."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def make_run(run_dir: Path, tokenizer, **model) -> Path:
    """A run folder with random weights."""
    cfg = tiny_config(tokenizer, **model)
    torch.manual_seed(0)
    net = perturbed(MaskedLM(cfg))
    tok_cfg = TokenizerConfig(kind=tokenizer.kind, vocab_size=tokenizer.vocab_size)
    save_config(run_dir / "config.yaml", RunConfig(tokenizer=tok_cfg, data=DataConfig(seq_len=64), model=cfg))
    tokenizer.save(run_dir / "tokenizer")
    checkpoint = run_dir / "checkpoints" / "step-00000007"
    save_tensors(checkpoint / "model.safetensors", net.state_dict())
    write_json(checkpoint / "trainer.json", {"step": 7, "batches": 7, "tokens": 700, "elapsed_s": 1.0})
    return run_dir


@contextlib.contextmanager
def hf_log():
    """Everything transformers logs (at its default WARNING level) while loading."""
    from transformers.utils import logging as hf_logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    hf_logging.add_handler(handler)
    try:
        yield stream
    finally:
        hf_logging.remove_handler(handler)


def assert_clean_load(log_text: str) -> None:
    for phrase in ("LOAD REPORT", "MISSING", "UNEXPECTED", "newly initialized", "were not used", "not initialized"):
        assert phrase not in log_text, log_text


def our_outputs(run, enc, token_types: bool):
    with torch.no_grad():
        types = enc["token_type_ids"] if token_types else None
        hidden = run.model.encoder(enc["input_ids"], enc["attention_mask"], types)
        return run.model(enc["input_ids"], enc["attention_mask"], token_type_ids=types).logits, hidden


CASES = {
    # name: (tokenizer kind, --arch, model settings)
    "roberta": ("bytelevel-bpe", None, {"type_vocab_size": 1, "layer_norm_eps": 1e-5}),
    "bert-token-types": ("wordpiece", None, {"type_vocab_size": 2, "activation": "gelu_tanh"}),
    "bert-no-token-types": ("wordpiece", None, {"type_vocab_size": 0, "activation": "relu"}),
    "roberta-tokenizer-as-bert": ("bytelevel-bpe", "bert", {"type_vocab_size": 1, "activation": "silu"}),
    "bert-tokenizer-as-roberta": ("wordpiece", "roberta", {"type_vocab_size": 1}),
    # Pre-LN exports as RobertaPreLayerNormForMaskedLM, with either tokenizer.
    "pre-ln": ("bytelevel-bpe", None, {"norm": "pre", "type_vocab_size": 1, "layer_norm_eps": 1e-5}),
    "pre-ln-wordpiece-token-types": ("wordpiece", None, {"norm": "pre", "type_vocab_size": 2}),
    "pre-ln-wordpiece-no-token-types": ("wordpiece", "roberta-prelayernorm", {"norm": "pre", "type_vocab_size": 0}),
}


def expected_mlm_class(kind: str, arch: str | None, model: dict) -> str:
    """Pre-LN: RoBERTa-PreLayerNorm whatever the tokenizer; post-LN: --arch, else by the tokenizer."""
    if model.get("norm") == "pre":
        return "RobertaPreLayerNormForMaskedLM"
    arch = arch or ("roberta" if kind == "bytelevel-bpe" else "bert")
    return {"bert": "BertForMaskedLM", "roberta": "RobertaForMaskedLM"}[arch]


@pytest.mark.parametrize("case", CASES)
def test_export_logits_match_transformers(case, tokenizers, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    kind, arch, model = CASES[case]
    run = load_run(make_run(tmp_path / "run", tokenizers[kind], **model), device="cpu")
    out = export_run(tmp_path / "run", tmp_path / "hf", arch=arch)
    with hf_log() as log:
        hf_mlm = AutoModelForMaskedLM.from_pretrained(str(out)).eval()
        hf_tok = AutoTokenizer.from_pretrained(str(out))
    assert_clean_load(log.getvalue())
    expected_class = expected_mlm_class(kind, arch, model)
    assert type(hf_mlm).__name__ == expected_class
    assert read_json(out / "config.json")["architectures"] == [expected_class]
    # AutoTokenizer must give our ids.
    assert [hf_tok(s)["input_ids"] for s in SENTENCES] == [run.tokenizer.encode(s) for s in SENTENCES]
    enc = hf_tok(SENTENCES, padding=True, return_tensors="pt", return_token_type_ids=True)
    assert enc["attention_mask"].eq(0).any()
    token_types = model["type_vocab_size"] == 2
    if token_types:  # a second segment: token type 1 on the second half of every sequence
        enc["token_type_ids"][:, enc["input_ids"].shape[1] // 2 :] = 1
    ours, hidden = our_outputs(run, enc, token_types)
    hf_inputs = {k: v for k, v in enc.items() if k != "token_type_ids" or token_types}
    with torch.no_grad():
        theirs = hf_mlm(**hf_inputs).logits
        # The bare encoder, without the pooler the masked LM never had. transformers 5 still reports
        # the MLM head as UNEXPECTED for AutoModel (as for any *ForMaskedLM checkpoint), but no weight
        # may be MISSING, i.e. freshly initialized.
        with hf_log() as base_log:
            hf_base = AutoModel.from_pretrained(str(out), add_pooling_layer=False).eval()
        assert "MISSING" not in base_log.getvalue() and "newly initialized" not in base_log.getvalue()
        hf_hidden = hf_base(**hf_inputs).last_hidden_state
    real = enc["attention_mask"].bool()  # padding positions are numbered differently and never read
    diff = (ours - theirs)[real].abs().max().item()
    print(f"{case}: max abs logit difference {diff:.2e}")
    assert diff < TOLERANCE
    assert (hidden - hf_hidden)[real].abs().max().item() < TOLERANCE


@pytest.mark.parametrize(
    "kind, lowercase, hf_class",
    [
        ("bytelevel-bpe", False, "RobertaTokenizer"),
        ("wordpiece", True, "BertTokenizer"),
        ("unigram", False, "TokenizersBackend"),  # PreTrainedTokenizerFast: tokenizer.json as is
        ("bytelevel-bpe", True, "TokenizersBackend"),
    ],
)
def test_autotokenizer_gives_our_ids_on_real_text(kind, lowercase, hf_class, kant, tmp_path):
    from transformers import AutoTokenizer

    cfg = TokenizerConfig(kind=kind, vocab_size=700, lowercase=lowercase, max_docs=500)
    ours = train_tokenizer(iter_documents([kant], CorpusConfig()), cfg, tmp_path / "tok", progress=False)
    out = export_run(make_run(tmp_path / "run", ours, activation="gelu"), tmp_path / "hf", arch="bert")
    hf_tok = AutoTokenizer.from_pretrained(str(out))
    assert type(hf_tok).__name__ == hf_class
    texts = [doc for _, doc in zip(range(200), iter_documents([kant], CorpusConfig()))][100:]
    texts.append(f"The human {ours.mask_token}, Über naïve  café, 1781!")
    assert [hf_tok(t)["input_ids"] for t in texts] == [ours.encode(t) for t in texts]
    assert (hf_tok.mask_token_id, hf_tok.pad_token_id) == (ours.mask_id, ours.pad_id)


@pytest.mark.parametrize("arch", ["bert", "roberta", "roberta-prelayernorm"])
def test_import_of_a_transformers_saved_model_keeps_its_logits(arch, tokenizers, tmp_path):
    """HF -> bertforge on a model transformers wrote itself (BertForPreTraining: pooler and NSP head included)."""
    import transformers

    tokenizer = tokenizers["wordpiece" if arch == "bert" else "bytelevel-bpe"]
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    if arch == "bert":
        config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=64, **size)
        model = transformers.BertForPreTraining(config)
    elif arch == "roberta":
        config = transformers.RobertaConfig(
            vocab_size=tokenizer.vocab_size, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, **size
        )
        model = transformers.RobertaForMaskedLM(config)
    else:
        config = transformers.RobertaPreLayerNormConfig(
            vocab_size=tokenizer.vocab_size, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, **size
        )
        model = transformers.RobertaPreLayerNormForMaskedLM(config)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "hf")
    tokenizer.tokenizer.save(str(tmp_path / "hf" / "tokenizer.json"))
    run = load_run(import_hf(tmp_path / "hf", tmp_path / "imported"), device="cpu")
    assert run.config.model.norm == ("pre" if arch == "roberta-prelayernorm" else "post")
    ids = [run.tokenizer.encode(s) for s in SENTENCES]
    batch = torch.full((len(ids), max(map(len, ids))), run.tokenizer.pad_id)
    for row, seq in zip(batch, ids):
        row[: len(seq)] = torch.tensor(seq)
    mask = (batch != run.tokenizer.pad_id).long()
    with torch.no_grad():
        theirs = model.eval()(input_ids=batch, attention_mask=mask)
        theirs = theirs.prediction_logits if arch == "bert" else theirs.logits
        ours = run.model(batch, mask).logits
    assert (ours - theirs)[mask.bool()].abs().max().item() < TOLERANCE


@pytest.fixture(scope="module", params=["post", "pre"])
def trained_run(request, kant, tokenizers, tmp_path_factory):
    """A genuine run: 12 steps of pretraining on Kant, with validation metrics; post-LN and pre-LN."""
    root = tmp_path_factory.mktemp(f"trained-{request.param}")
    cfg = build_config(
        preset="tiny",
        overrides={
            "model": {
                "hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 64, "norm": request.param,
            },
            "data": {"seq_len": 32},
            "train": {
                "batch_size": 8, "max_steps": 12, "eval_every_steps": 6, "eval_batches": 4, "lr": 3e-3, "warmup_steps": 2,
            },
        },
    )
    data = prepare([kant], tokenizers["bytelevel-bpe"], cfg.data, cfg.corpus, root / "data", progress=False)
    pretrain(cfg, data, root / "run", progress=False)
    return root / "run"


def test_fill_mask_pipeline_matches_bertforge(trained_run, tmp_path):
    from transformers import pipeline

    out = export_run(trained_run, tmp_path / "hf")
    run = load_run(trained_run, device="cpu")
    with hf_log() as log:
        fill = pipeline("fill-mask", model=str(out), device="cpu")
    assert_clean_load(log.getvalue())
    pre = run.config.model.norm == "pre"
    assert type(fill.model).__name__ == ("RobertaPreLayerNormForMaskedLM" if pre else "RobertaForMaskedLM")
    texts = ("The <mask> of pure reason.", "Space and <mask> are forms of intuition, and the <mask> is a conception.")
    for text in texts:
        ours = fill_mask(run, text, top_k=5)
        theirs = fill(text, top_k=5)
        theirs = [theirs] if len(ours) == 1 else theirs
        for our_top, their_top in zip(ours, theirs, strict=True):
            assert [run.tokenizer.decode_token(r["token"]) for r in their_top] == [r["token"] for r in our_top]
            assert [r["score"] for r in their_top] == pytest.approx([r["score"] for r in our_top], abs=1e-5)


def test_model_card_reports_data_steps_and_validation(trained_run, tmp_path):
    out = export_run(trained_run, tmp_path / "hf")
    card = (out / "README.md").read_text()
    last = read_metrics(trained_run, "validation")[-1]
    assert "pipeline_tag: fill-mask" in card and "## Intended use" in card
    mlm_class = read_json(out / "config.json")["architectures"][0]
    assert f"A {mlm_class} (2 layers" in card and f"{load_config(trained_run / 'config.yaml').model.norm}-LN" in card
    assert "`kant.txt`" in card and "steps: 12;" in card
    assert f"{last['loss']:.4f}" in card and f"{last['masked_accuracy']:.4f}" in card


@pytest.mark.parametrize(
    "kind, model",
    [
        ("wordpiece", {"type_vocab_size": 2}),
        ("bytelevel-bpe", {"norm": "pre", "type_vocab_size": 1}),
        ("wordpiece", {"norm": "pre", "type_vocab_size": 2}),
    ],
)
def test_import_export_round_trip_is_identical(kind, model, tokenizers, tmp_path):
    run = make_run(tmp_path / "run", tokenizers[kind], **model)
    first = export_run(run, tmp_path / "hf1")
    imported = import_hf(first, tmp_path / "imported")
    second = export_run(imported, tmp_path / "hf2")
    a, b = load_tensors(first / "model.safetensors"), load_tensors(second / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (first / name).read_text() == (second / name).read_text(), name
    original = load_tensors(run / "checkpoints/step-00000007/model.safetensors")
    back = load_tensors(imported / "checkpoints/step-00000000/model.safetensors")
    cfg, back_cfg = load_config(run / "config.yaml").model, load_config(imported / "config.yaml").model
    # A WordPiece run numbers positions from 0; as RoBERTa-PreLayerNorm (from padding_idx + 1) it comes
    # back with that offset and zero rows in front: the same function, the same weights.
    shift = back_cfg.position_offset - cfg.position_offset
    assert back_cfg == replace(cfg, position_offset=cfg.position_offset + shift)
    assert shift == (1 if (kind, model.get("norm")) == ("wordpiece", "pre") else 0)
    positions = "encoder.embeddings.positions.weight"
    assert torch.equal(back[positions][shift:], original[positions]) and not back[positions][:shift].any()
    assert original.keys() == back.keys() and all(torch.equal(original[k], back[k]) for k in original if k != positions)


def test_import_drops_pooler_and_nsp_head_of_bert_for_pretraining(tokenizers, tmp_path, caplog):
    """A BertForPreTraining-style folder (pooler, NSP head, stored decoder, old position_ids buffer) imports."""
    hf = export_run(make_run(tmp_path / "run", tokenizers["wordpiece"]), tmp_path / "hf")
    state = load_tensors(hf / "model.safetensors")
    extra = {
        "bert.pooler.dense.weight": torch.randn(32, 32), "bert.pooler.dense.bias": torch.randn(32),
        "cls.seq_relationship.weight": torch.randn(2, 32), "cls.seq_relationship.bias": torch.randn(2),
        "cls.predictions.decoder.weight": state["bert.embeddings.word_embeddings.weight"].clone(),
        "cls.predictions.decoder.bias": state["cls.predictions.bias"].clone(),
        "bert.embeddings.position_ids": torch.arange(64)[None],
    }
    save_tensors(hf / "model.safetensors", {**state, **extra})
    with caplog.at_level(logging.INFO, logger="bertforge.hf"):
        imported = import_hf(hf, tmp_path / "imported")
    assert "ignored 7 tensor(s)" in caplog.text and "cls.seq_relationship.weight" in caplog.text
    again = load_tensors(export_run(imported, tmp_path / "hf2") / "model.safetensors")
    assert again.keys() == state.keys() and all(torch.equal(again[k], state[k]) for k in state)


def test_pretrain_init_from_imported_model_continues_from_its_weights(kant, tokenizers, tmp_path):
    """Domain adaptation: import, tokenize a corpus with the imported tokenizer, continue pretraining."""
    hf = export_run(make_run(tmp_path / "run", tokenizers["bytelevel-bpe"], type_vocab_size=1), tmp_path / "hf")
    imported = init_run(hf, tmp_path / "imported")  # what `pretrain --init-from HF_DIR` does first
    assert imported == tmp_path / "imported" and init_run(imported, tmp_path / "unused") == imported
    base = load_config(imported / "config.yaml")
    train = replace(base.train, max_steps=2, batch_size=4, eval_batches=2)
    cfg = replace(base, data=replace(base.data, seq_len=32), train=train)
    run = load_run(imported, device="cpu")
    data = prepare([kant], run.tokenizer, cfg.data, cfg.corpus, tmp_path / "data", progress=False)
    result = pretrain(cfg, data, tmp_path / "adapted", init_from=imported, progress=False)
    assert result["step"] == 2
    from bertforge.evaluate import evaluate_split
    from bertforge.shards import PackedShards
    from bertforge.masking import masking_vocab

    val = PackedShards(data, "validation")
    before = evaluate_split(run.model, val, masking_vocab(run.tokenizer), 4, 2, cfg.train.eval_seed)
    assert read_metrics(tmp_path / "adapted", "validation")[0]["loss"] == pytest.approx(before["loss"], abs=1e-5)
    # The model card follows the weights back to their source through run.json's init_from.
    write_json(tmp_path / "adapted" / "run.json", {**read_json(tmp_path / "adapted" / "run.json"), "init_from": str(imported)})
    card = (export_run(tmp_path / "adapted", tmp_path / "hf-adapted") / "README.md").read_text()
    assert "continuing the pretraining of `imported` (imported from the Hugging Face checkpoint `hf`)" in card
    assert "steps: 2;" in card


# name: (tokenizer kind, task, model settings); all pre-LN
FINETUNED_CASES = {
    "classify": ("bytelevel-bpe", "classify", {"type_vocab_size": 1}),
    "classify-pairs-wordpiece-token-types": ("wordpiece", "classify", {"type_vocab_size": 2}),
    "ner": ("bytelevel-bpe", "ner", {"type_vocab_size": 1}),
    # No MLM head, so RobertaLMHead's fixed GELU does not matter: the FFN's activation is hidden_act.
    "ner-relu": ("bytelevel-bpe", "ner", {"type_vocab_size": 1, "activation": "relu"}),
}


@pytest.mark.parametrize("case", FINETUNED_CASES)
def test_pre_ln_fine_tuned_model_exports_as_roberta_prelayernorm_with_equal_logits(case, tokenizers, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    from bertforge.finetune.config import FinetuneConfig, FinetuneRunConfig
    from bertforge.finetune.model import Classifier
    from bertforge.finetune.predict import load_finetuned

    kind, task, model = FINETUNED_CASES[case]
    tokenizer, labels = tokenizers[kind], (["neg", "pos"] if task == "classify" else ["O", "B-PER", "I-PER"])
    cfg = tiny_config(tokenizer, norm="pre", **model)
    folder = tmp_path / "ft"
    torch.manual_seed(0)
    save_config(folder / "config.yaml", FinetuneRunConfig(finetune=FinetuneConfig(task=task), model=cfg))
    write_json(folder / "labels.json", {"task": task, "labels": labels})
    tokenizer.save(folder / "tokenizer")
    save_tensors(folder / "model.safetensors", perturbed(Classifier(cfg, len(labels), task)).state_dict())
    ft = load_finetuned(folder, device="cpu")

    out = export_run(folder, tmp_path / "hf")
    auto = AutoModelForSequenceClassification if task == "classify" else AutoModelForTokenClassification
    with hf_log() as log:
        hf_model = auto.from_pretrained(str(out)).eval()
        hf_tok = AutoTokenizer.from_pretrained(str(out))
    assert_clean_load(log.getvalue())
    kind_of_head = "SequenceClassification" if task == "classify" else "TokenClassification"
    assert type(hf_model).__name__ == f"RobertaPreLayerNormFor{kind_of_head}"
    assert hf_model.config.id2label == dict(enumerate(labels))
    pairs = ["A second text.", "And another one, rather longer than the first.", "Third."] if "pairs" in case else None
    enc = hf_tok(SENTENCES, pairs, padding=True, return_tensors="pt")
    assert enc["attention_mask"].eq(0).any()
    for row, (text, pair) in enumerate(zip(SENTENCES, pairs or [None] * len(SENTENCES))):
        ours_ids = ft.tokenizer.tokenizer.encode(text, pair)
        assert enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist() == ours_ids.ids
    if cfg.type_vocab_size == 2:  # segment ids reach the model, as in bertforge's fine-tuning
        assert enc["token_type_ids"].eq(1).any()
    with torch.no_grad():
        ours = ft.model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
        theirs = hf_model(**enc).logits
    real = enc["attention_mask"].bool() if task == "ner" else slice(None)
    diff = (ours - theirs)[real].abs().max().item()
    print(f"fine-tuned {case}: max abs logit difference {diff:.2e}")
    assert diff < TOLERANCE


def test_norm_and_activation_an_arch_cannot_express_are_refused(tokenizers, tmp_path):
    pre = make_run(tmp_path / "pre", tokenizers["wordpiece"], norm="pre")
    for arch in ("bert", "roberta"):  # pre-LN only as RobertaPreLayerNorm
        with pytest.raises(DataError, match="pre-LN .* --arch roberta-prelayernorm"):
            export_run(pre, tmp_path / "hf", arch=arch)
    post = make_run(tmp_path / "post", tokenizers["bytelevel-bpe"])
    with pytest.raises(DataError, match="post-LN .* --arch bert or --arch roberta"):
        export_run(post, tmp_path / "hf", arch="roberta-prelayernorm")
    relu = make_run(tmp_path / "relu", tokenizers["bytelevel-bpe"], activation="relu")
    with pytest.raises(DataError, match="--arch bert"):
        export_run(relu, tmp_path / "hf")
    pre_relu = make_run(tmp_path / "pre-relu", tokenizers["bytelevel-bpe"], norm="pre", activation="relu")
    with pytest.raises(DataError, match="exact GELU.*cannot be exported"):
        export_run(pre_relu, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_export_never_replaces_a_foreign_folder(tokenizers, tmp_path):
    run = make_run(tmp_path / "run", tokenizers["wordpiece"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a Hugging Face model folder"):
        export_run(run, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


class RunsCode:
    """A pickle that would create a file when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# How a folder is broken -> what the one-line error must say.
BREAKAGES = {
    "empty": "no config.json",
    "gpt2": "model_type 'gpt2'",
    "vocab-mismatch": "vocabulary of 700 tokens but config.json says vocab_size 650",
    "encoder-only": "no masked-LM head",
    "pickle-with-code": "refused",
    "no-weights": "no model.safetensors",
}


def break_folder(folder: Path, how: str) -> None:
    config, weights = folder / "config.json", folder / "model.safetensors"
    if how == "empty":
        for f in folder.iterdir():
            f.unlink()
    elif how in ("gpt2", "vocab-mismatch"):
        change = {"model_type": "gpt2"} if how == "gpt2" else {"vocab_size": 650}
        write_json(config, {**read_json(config), **change})
    elif how == "encoder-only":  # a BertModel checkpoint: no MLM head
        save_tensors(weights, {k: v for k, v in load_tensors(weights).items() if k.startswith("bert.")})
    elif how == "pickle-with-code":
        weights.unlink()
        torch.save({"w": RunsCode(folder / "pwned")}, folder / "pytorch_model.bin")
    elif how == "no-weights":
        weights.unlink()


@pytest.fixture(scope="module")
def bert_export(tokenizers, tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    return export_run(make_run(root / "run", tokenizers["wordpiece"]), root / "hf")


@pytest.mark.parametrize("how", BREAKAGES)
def test_bad_hf_folders_are_one_line_data_errors(how, bert_export, tmp_path):
    folder = Path(shutil.copytree(bert_export, tmp_path / "hf"))
    break_folder(folder, how)
    with pytest.raises(DataError, match=BREAKAGES[how]) as err:
        import_hf(folder, tmp_path / "imported")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "imported").exists()
    assert not (folder / "pwned").exists()  # the pickle's code never ran


def test_legacy_pytorch_model_bin_is_read_without_unpickling_code(tokenizers, tmp_path):
    hf = export_run(make_run(tmp_path / "run", tokenizers["wordpiece"]), tmp_path / "hf")
    state = load_tensors(hf / "model.safetensors")
    torch.save(state, hf / "pytorch_model.bin")
    (hf / "model.safetensors").unlink()
    imported = import_hf(hf, tmp_path / "imported")
    again = load_tensors(export_run(imported, tmp_path / "hf2") / "model.safetensors")
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_key_table_is_one_table_read_both_ways(tokenizers):
    """to_hf then from_hf is the identity on every tensor, for both arches and without token types."""
    cases = [("bert", 0, "post"), ("bert", 2, "post"), ("roberta", 1, "post"), ("roberta-prelayernorm", 1, "pre"),
             ("roberta-prelayernorm", 0, "pre")]
    for arch, types, norm in cases:
        cfg = ModelConfig(
            vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_seq_len=16,
            position_offset=2 if arch != "bert" else 0, type_vocab_size=types, pad_id=1, norm=norm,
        )
        state = {k: torch.randn_like(v) for k, v in MaskedLM(cfg).state_dict().items()}
        hf = to_hf_state_dict(state, cfg, arch)
        back = from_hf_state_dict(hf, cfg, arch)
        assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
        # Every tensor of ours has exactly one HF home, no two share one.
        names = [n for v in key_table(cfg, arch).values() for n in (v if isinstance(v, tuple) else (v,))]
        assert len(names) == len(set(names)) and set(names) <= set(hf)
    assert key_table(cfg, arch)["encoder.final_norm.weight"] == "roberta_prelayernorm.LayerNorm.weight"
    assert key_table(cfg, arch)["encoder.layers.1.ffn_norm.bias"] == "roberta_prelayernorm.encoder.layer.1.intermediate.LayerNorm.bias"
    assert ARCHS[arch].head == ARCHS["roberta"].head
    config = hf_config(cfg, tokenizers["bytelevel-bpe"], arch)
    assert config["max_position_embeddings"] == 18 and json.dumps(config)
    assert config["model_type"] == "roberta-prelayernorm" and config["architectures"] == ["RobertaPreLayerNormForMaskedLM"]
