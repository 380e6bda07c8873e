"""Fine-tuning: it learns on real splits, keeps the best epoch, saves its label map, predicts, and
refuses bad input with one line."""

import csv
import json
import logging
import re

import pytest
import torch

from bertforge.config import build_config, load_config
from bertforge.corpus import iter_documents
from bertforge.errors import DataError
from bertforge.files import load_tensors
from bertforge.finetune import (
    ClassifyData,
    FinetuneRunConfig,
    encode_classification,
    encode_words,
    finetune,
    first_pieces,
    join_words,
    load_finetuned,
    predict,
    token_labels,
    truncating,
)
from bertforge.model import IGNORE_INDEX
from bertforge.shards import prepare
from bertforge.tokenizer import train_tokenizer
from bertforge.checkpoint import latest_checkpoint
from bertforge.train.loop import pretrain
from conftest import assert_one_line_error, datafile, run_cli

SST2_DEV_MAJORITY = 156 / 300  # share of the most frequent class (positive) in the reviews dev set


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's matrices are too small to gain from threads; on a busy 2-core machine
    OpenMP threads waiting on each other make these runs ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread_in_subprocesses(monkeypatch):
    """The same for the CLI runs (torch reads OMP_NUM_THREADS when it starts)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def sst2_rows(start: int, stop: int) -> list[list[str]]:
    with open(datafile("reviews/train.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1 + start : 1 + stop]


def write_tsv(path, rows, header=("sentence", "label")):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def conll_head(source, path, sentences: int):
    """The first `sentences` sentences of a CoNLL file (a -DOCSTART- line counts as a break)."""
    out, breaks = [], 0
    for line in open(datafile(source), encoding="utf-8"):
        if not line.strip():
            breaks += 1
            if breaks > sentences:
                break
        out.append(line)
    path.write_text("".join(out), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny encoder (2 layers, hidden 64, 2000 tokens) pretrained for 150 steps on 1,960 review
    sentences (tests/data/reviews, SST-2's format) that the fine-tuning subsets below do not use."""
    root = tmp_path_factory.mktemp("pretrained")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(row[0].strip() for row in sst2_rows(1040, 3000)) + "\n", encoding="utf-8")
    cfg = build_config(
        preset="tiny",
        overrides={
            "corpus": {"doc_per": "line"},
            "train": {"max_steps": 150, "batch_size": 16, "lr": 2e-3, "eval_every_steps": 150, "save_every_steps": 150},
        },
    )
    tokenizer = train_tokenizer(iter_documents([str(corpus)], cfg.corpus), cfg.tokenizer, root / "tok", progress=False)
    data = prepare([str(corpus)], tokenizer, cfg.data, cfg.corpus, root / "data", progress=False)
    pretrain(cfg, data, root / "run", progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def sst2(run, tmp_path_factory):
    """Fine-tuned on the first 1,000 training sentences, validated on all of dev."""
    root = tmp_path_factory.mktemp("sst2")
    train = write_tsv(root / "train.tsv", sst2_rows(0, 1000))
    settings = {"finetune": {"text_column": "sentence", "epochs": 3, "lr": 1e-3}}
    metrics = finetune(run, train, datafile("reviews/dev.tsv"), root / "ft", settings=settings, progress=False)
    return root / "ft", metrics


@pytest.fixture(scope="module")
def ner(run, tmp_path_factory):
    root = tmp_path_factory.mktemp("ner")
    train = conll_head("ner/train.txt", root / "train.txt", 400)
    valid = conll_head("ner/valid.txt", root / "valid.txt", 100)
    test = conll_head("ner/test.txt", root / "test.txt", 80)
    settings = {"finetune": {"task": "ner", "epochs": 3, "lr": 2e-3}}
    return root / "ft", finetune(run, train, valid, root / "ft", settings=settings, test=test, progress=False)


# ---------------------------------------------------------------- classification


def test_sst2_finetuning_beats_the_majority_class(sst2):
    _, metrics = sst2
    accuracy = metrics["scores"]["validation"]["accuracy"]
    assert metrics["baselines"]["majority"]["validation"]["accuracy"] == pytest.approx(SST2_DEV_MAJORITY)
    assert accuracy >= 0.60  # the dev majority class is 0.52
    assert metrics["best"]["validation"]["accuracy"] == max(e["validation"]["accuracy"] for e in metrics["epochs"])
    assert accuracy == pytest.approx(metrics["best"]["validation"]["accuracy"], abs=1e-9)  # the best weights were kept
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]


def test_finetuned_folder_holds_label_map_report_and_best_weights(sst2):
    ft, metrics = sst2
    assert json.loads((ft / "labels.json").read_text()) == {"task": "classify", "labels": [0, 1]}
    assert json.loads((ft / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    cfg = load_config(ft / "config.yaml", FinetuneRunConfig)
    assert (cfg.finetune.text_column, cfg.model.hidden_size) == ("sentence", 64)
    report = (ft / "report.txt").read_text()
    assert "macro avg" in report and "300" in report
    assert (ft / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sum(map(sum, metrics["scores"]["validation"]["confusion_matrix"])) == 300
    keys = set(load_tensors(ft / "model.safetensors"))
    assert {"head.dense.weight", "head.out_proj.weight", "encoder.embeddings.tokens.weight"} <= keys


def test_predict_reproduces_the_validation_accuracy(sst2):
    ft, metrics = sst2
    with open(datafile("reviews/dev.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    results = predict(load_finetuned(ft), [text for text, _ in rows])
    accuracy = sum(r["label"] == int(label) for r, (_, label) in zip(results, rows)) / len(rows)
    assert accuracy == pytest.approx(metrics["scores"]["validation"]["accuracy"], abs=1e-9)


def test_predict_cli_scores_a_labelled_file_and_writes_csv(sst2, tmp_path):
    ft, _ = sst2
    data = write_tsv(tmp_path / "gold.tsv", sst2_rows(1000, 1040))
    out = tmp_path / "preds.csv"
    r = run_cli("predict", str(ft), "--input", str(data), "--label-column", "label", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert re.search(r"accuracy \d\.\d{4} on 40 labelled rows", r.stderr)
    with open(out, encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 40 and list(table[0]) == ["text", "label", "score", "p_0", "p_1"]
    assert all(float(row["score"]) == max(float(row["p_0"]), float(row["p_1"])) for row in table)


def test_predict_cli_prints_labels_with_probabilities(sst2):
    ft, _ = sst2
    r = run_cli("predict", str(ft), "a gripping , funny and moving film", "--json")
    assert r.returncode == 0, r.stderr
    [result] = json.loads(r.stdout)
    assert result["text"] == "a gripping , funny and moving film"
    assert result["label"] in (0, 1) and set(result["probabilities"]) == {"0", "1"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["score"] == max(result["probabilities"].values())


def test_string_labels_and_text_pairs_from_a_headerless_csv(run, tmp_path):
    """Twitter entity sentiment's format: 4 string classes, entity + tweet as a pair, columns by number."""
    with open(datafile("tweets/training.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[::6]  # every 6th row: all 12 entities, not only the first ones
    train = tmp_path / "train.csv"
    with open(train, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    columns = {"text_column": "1", "text_pair_column": "3", "label_column": "2"}
    settings = {"finetune": {**columns, "epochs": 2, "lr": 1e-3, "max_seq_len": 48}}
    valid = datafile("tweets/validation.csv")
    metrics = finetune(run, train, valid, tmp_path / "ft", settings=settings, test=valid, progress=False)
    labels = ["Irrelevant", "Negative", "Neutral", "Positive"]
    assert metrics["scores"]["test"] == metrics["scores"]["validation"]  # the same file, scored by the best epoch
    assert json.loads((tmp_path / "ft/labels.json").read_text())["labels"] == labels
    assert metrics["examples"]["validation"] == 200 and metrics["truncated"]["validation"] > 0
    assert len(metrics["scores"]["validation"]["confusion_matrix"]) == 4
    assert metrics["epochs"][-1]["train_loss"] < metrics["epochs"][0]["train_loss"]
    [result] = predict(load_finetuned(tmp_path / "ft"), ["Borderlands"], ["I love this game"])
    assert result["label"] in labels and list(result["probabilities"]) == labels


def test_same_seed_same_weights_and_early_stopping(run, tmp_path):
    """Two runs with one seed write identical weights; with no learning, patience 1 stops after epoch 2."""
    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 96))
    valid = write_tsv(tmp_path / "valid.tsv", sst2_rows(96, 160))
    settings = {"finetune": {"text_column": "sentence", "epochs": 5, "lr": 1e-12, "patience": 1, "batch_size": 16}}
    first = finetune(run, train, valid, tmp_path / "a", settings=settings, progress=False)
    finetune(run, train, valid, tmp_path / "b", settings=settings, progress=False)
    assert [e["epoch"] for e in first["epochs"]] == [1, 2]
    a, b = load_tensors(tmp_path / "a/model.safetensors"), load_tensors(tmp_path / "b/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_layers_keep_their_pretrained_weights(run, tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 96))
    valid = write_tsv(tmp_path / "valid.tsv", sst2_rows(96, 160))
    options = {"freeze_layers": 2, "pooling": "mean", "class_weights": "balanced", "max_steps": 4, "lr": 1e-2}
    settings = {"finetune": {"text_column": "sentence", **options}}
    finetune(run, train, valid, tmp_path / "ft", settings=settings, progress=False)
    tuned = load_tensors(tmp_path / "ft/model.safetensors")
    pretrained = load_tensors(latest_checkpoint(run) / "model.safetensors")
    encoder = [k for k in tuned if k.startswith("encoder.")]
    assert encoder and all(torch.equal(tuned[k], pretrained[k]) for k in encoder)
    assert load_config(tmp_path / "ft/config.yaml", FinetuneRunConfig).finetune.pooling == "mean"


def test_layer_lr_decay_moves_each_layer_by_its_share_of_the_lr(run, tmp_path):
    """Adam's first step moves a weight by about the LR whatever its gradient's size, so after one
    step with decay 0.5 each block moved half as far as the block above, the embeddings least."""
    from bertforge.errors import ConfigError
    from bertforge.finetune.config import FinetuneConfig

    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 96))
    valid = write_tsv(tmp_path / "valid.tsv", sst2_rows(96, 160))
    options = {"max_steps": 1, "lr": 1e-3, "layer_lr_decay": 0.5, "weight_decay": 0.0, "warmup_fraction": 0.0}
    finetune(run, train, valid, tmp_path / "ft", settings={"finetune": {"text_column": "sentence", **options}},
             progress=False)
    tuned = load_tensors(tmp_path / "ft/model.safetensors")
    pretrained = load_tensors(latest_checkpoint(run) / "model.safetensors")

    def moved(prefix):
        return max((tuned[k] - pretrained[k]).abs().max().item() for k in tuned if k.startswith(prefix))

    layers = sorted({int(k.split(".")[2]) for k in tuned if k.startswith("encoder.layers.")})
    top = moved(f"encoder.layers.{layers[-1]}.")
    for i in layers:
        assert moved(f"encoder.layers.{i}.") / top == pytest.approx(0.5 ** (layers[-1] - i), rel=0.02)
    assert moved("encoder.embeddings.") / top == pytest.approx(0.5 ** len(layers), rel=0.02)
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="layer_lr_decay"):
            FinetuneConfig(layer_lr_decay=bad)


def test_long_texts_are_truncated_with_a_warning_count(run, caplog):
    from bertforge.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(run / "tokenizer")
    texts = ["a film " * 40, "short", "a long film " * 20]
    with caplog.at_level(logging.WARNING):
        encoded = encode_classification(truncating(tokenizer, 16), ClassifyData(texts, None, None), None, 16, "dev.tsv")
    assert "dev.tsv: 2 of 3 inputs are longer than 16 tokens and were truncated" in caplog.text
    assert [len(ids) for ids in encoded.ids] == [16, len(tokenizer.encode("short")), 16]
    assert encoded.ids[0][0] == tokenizer.bos_id and encoded.ids[0][-1] == tokenizer.eos_id


# ---------------------------------------------------------------- NER


def test_labels_go_on_the_first_piece_of_each_word(run):
    from bertforge.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(run / "tokenizer")
    words = ["EU", "rejects", "Xylophonists", "call", "."]
    tags = [1, 0, 2, 0, 0]
    text, spans = join_words(words)
    encoding = tokenizer.tokenizer.encode(text)
    encoded = encode_words(truncating(tokenizer, 64), [text], [spans], [tags])
    labels, first = encoded.labels[0], encoded.first_pieces[0]
    assert len(tokenizer.tokens(text)) > len(words) + 2  # some words are split into several pieces
    assert [labels[p] for p in first] == tags  # each word's label sits on its first piece
    assert sum(label != IGNORE_INDEX for label in labels) == len(words)  # and nowhere else
    assert labels[0] == labels[-1] == IGNORE_INDEX  # <s> and </s>
    for word, (start, end) in enumerate(spans):
        pieces = [i for i, (s, e) in enumerate(encoding.offsets) if s < e and start <= e - 1 < end]
        assert first[word] == pieces[0]


def test_first_pieces_with_sentencepiece_and_wordpiece_offsets():
    """`▁rej` starts at the space before 'rejects', a lone `▁` holds only a space, `##s` continues."""
    spans = [(0, 2), (3, 10)]  # "EU rejects"
    sentencepiece = [(0, 0), (0, 2), (2, 3), (3, 6), (6, 10), (0, 0)]  # <s> ▁EU ▁ rej ects </s>
    assert first_pieces(sentencepiece, [1, 0, 0, 0, 0, 1], spans) == [1, 3]
    wordpiece = [(0, 0), (0, 1), (1, 2), (3, 9), (9, 10), (0, 0)]  # [CLS] E ##U reject ##s [SEP]
    assert first_pieces(wordpiece, [1, 0, 0, 0, 0, 1], spans) == [1, 3]
    assert token_labels([1, 3], [5, 6], 6) == [IGNORE_INDEX, 5, IGNORE_INDEX, 6, IGNORE_INDEX, IGNORE_INDEX]
    assert first_pieces(wordpiece[:3] + [(0, 0)], [1, 0, 0, 1], spans) == [1, -1]  # truncated away


def test_ner_finetuning_reports_entity_level_scores(ner):
    ft, metrics = ner
    scores = metrics["scores"]["validation"]
    assert set(scores) == {"precision", "recall", "f1", "accuracy", "loss"}
    assert scores["f1"] > 0.08  # entities of the right type and span, not only O
    assert metrics["epochs"][-1]["train_loss"] < metrics["epochs"][0]["train_loss"]
    labels = json.loads((ft / "labels.json").read_text())["labels"]
    assert labels[0] == "O" and {"B-PER", "I-PER", "B-LOC", "B-ORG", "B-MISC"} <= set(labels)
    report = (ft / "report.txt").read_text()
    assert "== validation" in report and "== test" in report and "PER" in report
    assert 0.0 <= metrics["scores"]["test"]["f1"] <= 1.0


def test_predict_cli_ner_gives_tags_and_entity_spans(ner):
    ft, _ = ner
    text = "Peter Blackburn said the European Commission in Brussels rejects the ban ."
    r = run_cli("predict", str(ft), text, "--json")
    assert r.returncode == 0, r.stderr
    [result] = json.loads(r.stdout)
    assert [t["word"] for t in result["tags"]] == text.split()
    for tag in result["tags"]:
        assert text[tag["start"] : tag["end"]] == tag["word"] and 0 <= tag["score"] <= 1
    for entity in result["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert entity["type"] in {"PER", "ORG", "LOC", "MISC"}
    assert result["entities"], "expected at least one entity in a sentence full of names"


# ---------------------------------------------------------------- Hugging Face interop


def padded_batch(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [tokenizer.encode(text) for text in texts]
    batch = torch.full((len(ids), max(map(len, ids))), tokenizer.pad_id)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.tensor(seq)
    return batch, (batch != tokenizer.pad_id).long()


@pytest.mark.parametrize("arch", ["roberta", "bert"])
@pytest.mark.parametrize("task", ["classify", "ner"])
def test_exported_fine_tuned_model_loads_in_transformers_with_equal_logits(sst2, ner, task, arch, tmp_path):
    """`bertforge export FT` writes ...ForSequenceClassification / ...ForTokenClassification with id2label."""
    transformers = pytest.importorskip("transformers")
    from bertforge.hf.exporter import export_run

    folder = (sst2 if task == "classify" else ner)[0]
    ft = load_finetuned(folder, device="cpu")
    out = export_run(folder, tmp_path / "hf", arch=arch)
    auto = transformers.AutoModelForSequenceClassification if task == "classify" else transformers.AutoModelForTokenClassification
    hf_model = auto.from_pretrained(out).eval()
    assert hf_model.config.id2label == {i: str(label) for i, label in enumerate(ft.labels)}
    batch, mask = padded_batch(ft.tokenizer, ["EU rejects German call", "a film"])
    with torch.no_grad():
        ours, theirs = ft.model(batch, mask), hf_model(input_ids=batch, attention_mask=mask).logits
    real = mask.bool() if task == "ner" else slice(None)  # padded positions are not compared
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-4)


def test_a_hugging_face_folder_can_be_fine_tuned(run, tmp_path):
    from bertforge.hf.exporter import export_run

    hf_dir = export_run(run, tmp_path / "hf")
    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 64))
    settings = {"finetune": {"text_column": "sentence", "max_steps": 2}}
    metrics = finetune(hf_dir, train, train, tmp_path / "ft", settings=settings, progress=False)
    assert metrics["model"] == str(hf_dir) and len(metrics["epochs"]) == 1


# ---------------------------------------------------------------- bad input


def finetune_cli(run, train, valid, out, *extra):
    return run_cli("finetune", "classify", "--model", str(run), "--train", str(train), "--validation", str(valid),
                   "--out", str(out), "--max-steps", "1", "--quiet", *extra)


def test_missing_column_is_one_line_error_listing_the_columns(run, tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 20))
    r = finetune_cli(run, train, train, tmp_path / "ft", "--text-column", "txt")
    assert_one_line_error(r, "no column 'txt'", "columns: sentence, label")


def test_one_class_only_is_one_line_error(run, tmp_path):
    train = write_tsv(tmp_path / "train.tsv", [[text, "1"] for text, _ in sst2_rows(0, 20)])
    r = finetune_cli(run, train, train, tmp_path / "ft", "--text-column", "sentence")
    assert_one_line_error(r, "one class only")


def test_validation_label_unseen_in_training_is_refused(run, tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 20))
    valid = write_tsv(tmp_path / "valid.tsv", [["a film", "7"]])
    with pytest.raises(DataError, match=r"'7' were not seen in training .*known labels: 0, 1"):
        finetune(run, train, valid, tmp_path / "ft", settings={"finetune": {"text_column": "sentence"}})
    assert not (tmp_path / "ft").exists()


def test_empty_text_at_predict_is_one_line_error(sst2):
    assert_one_line_error(run_cli("predict", str(sst2[0]), "  "), "empty text")


def test_unseen_label_at_predict_is_one_line_error(sst2, tmp_path):
    data = write_tsv(tmp_path / "gold.tsv", [["a fine film", "1"], ["a dull film", "negative"]])
    r = run_cli("predict", str(sst2[0]), "--input", str(data), "--label-column", "label")
    assert_one_line_error(r, "'negative' were not seen in training")


def test_finetune_cli_runs_the_baselines_and_prints_them_beside_the_model(run, tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 200))
    valid = write_tsv(tmp_path / "valid.tsv", sst2_rows(200, 300))
    r = run_cli("finetune", "classify", "--model", str(run), "--train", str(train), "--validation", str(valid),
                "--text-column", "sentence", "--out", str(tmp_path / "ft"), "--max-steps", "6", "--lr", "1e-3",
                "--baselines", "--quiet")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "ft/metrics.json").read_text())
    baselines = metrics["baselines"]
    assert set(baselines) == {"majority", "random_init", "tfidf_logreg"}
    for name in ("random_init", "tfidf_logreg"):
        assert 0.0 < baselines[name]["validation"]["accuracy"] <= 1.0
    table = r.stdout.splitlines()
    assert table[0].split() == ["validation", "accuracy", "validation", "macro_f1", "validation", "mcc"]
    assert [line.split("  ")[0] for line in table[1:]] == [
        "majority class", "same fine-tuning, random init", "TF-IDF + logistic regression",
        "fine-tuned (pretrained init)",
    ]
    for line, scores in zip(table[1:], [*baselines.values(), metrics["scores"]]):
        assert line.split()[-3:] == [f"{scores['validation'][k]:.4f}" for k in ("accuracy", "macro_f1", "mcc")]


def test_matthews_correlation_is_exact_and_zero_for_a_constant_guess():
    from bertforge.finetune.metrics import classify_metrics

    scores = classify_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["no", "yes"])
    assert scores["mcc"] == pytest.approx(2 / 12**0.5)  # (TP*TN - FP*FN) / sqrt(3 * 2 * 2 * 1)
    assert classify_metrics([0, 1, 1, 0], [1, 1, 1, 1], ["no", "yes"])["mcc"] == 0.0


def test_tfidf_baseline_handles_three_classes_and_is_tuned_on_validation():
    """scikit-learn >= 1.8's liblinear refuses three classes; the baseline must still fit and score them."""
    from bertforge.finetune.config import FinetuneRunConfig
    from bertforge.finetune.data import ClassifyData
    from bertforge.finetune.report import tfidf_baseline

    words = {0: "goal match striker", 1: "stock market shares", 2: "chip software laptop"}
    texts = [f"{words[i % 3]} note {i}" for i in range(30)]
    train = ClassifyData(texts, None, [i % 3 for i in range(30)])
    valid = ClassifyData([words[i] + " today" for i in range(3)], None, [0, 1, 2])
    result = tfidf_baseline(train, train.labels, {"validation": (valid, [0, 1, 2])}, FinetuneRunConfig(),
                            ["sport", "business", "tech"])
    assert result["validation"]["accuracy"] == 1.0
    assert result["setting"]["chosen_on"] == "validation"


# ---------------------------------------------------------------- search: settings picked alike for every side


def test_search_tries_every_setting_for_the_model_and_its_random_baseline_alike(run, tmp_path):
    """Each point is an ordinary fine-tuning (the same weights as a run with that setting alone); each side
    keeps its own best on validation, and the folder holds the model's best with its config."""
    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 200))
    valid = write_tsv(tmp_path / "valid.tsv", sst2_rows(200, 300))
    settings = {"finetune": {"text_column": "sentence", "epochs": 2, "batch_size": 16}}
    search = {"lr": [1e-12, 2e-3], "pooling": ["cls", "mean"]}
    metrics = finetune(run, train, valid, tmp_path / "ft", settings=settings, search=search, baselines=True,
                       progress=False)
    points = [{"lr": 1e-12, "pooling": "cls"}, {"lr": 1e-12, "pooling": "mean"},
              {"lr": 2e-3, "pooling": "cls"}, {"lr": 2e-3, "pooling": "mean"}]
    for side in (metrics["search"], metrics["baselines"]["random_init"]["search"]):
        assert [t["settings"] for t in side["tried"]] == points
        values = [t["accuracy"] for t in side["tried"]]
        assert side["chosen"] == points[values.index(max(values))]  # the first of equals on a tie
    picked = metrics["search"]["chosen"]
    assert metrics["best"]["validation"]["accuracy"] == max(t["accuracy"] for t in metrics["search"]["tried"])
    assert metrics["scores"]["validation"]["accuracy"] == pytest.approx(metrics["best"]["validation"]["accuracy"])
    saved = load_config(tmp_path / "ft/config.yaml", FinetuneRunConfig).finetune
    assert (saved.lr, saved.pooling) == (picked["lr"], picked["pooling"])
    random_best = max(t["accuracy"] for t in metrics["baselines"]["random_init"]["search"]["tried"])
    assert metrics["baselines"]["random_init"]["validation"]["accuracy"] == pytest.approx(random_best)

    alone = finetune(run, train, valid, tmp_path / "alone", progress=False,
                     settings={"finetune": {**settings["finetune"], **points[3]}})
    assert metrics["search"]["tried"][3]["accuracy"] == alone["best"]["validation"]["accuracy"]
    if picked == points[3]:
        a, b = load_tensors(tmp_path / "ft/model.safetensors"), load_tensors(tmp_path / "alone/model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_search_scores_the_test_split_once_for_the_kept_setting(run, tmp_path, monkeypatch):
    """The test split decides nothing: it is scored for each side's kept setting only, with the
    figure a plain run of that setting gets."""
    import bertforge.finetune.loop as loop

    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 120))
    valid = write_tsv(tmp_path / "valid.tsv", sst2_rows(120, 180))
    test = write_tsv(tmp_path / "test.tsv", sst2_rows(180, 217))  # 37 rows: told apart by their number
    sizes, score = [], loop.evaluate
    monkeypatch.setattr(loop, "evaluate", lambda model, ctx, data, gold: sizes.append(len(gold)) or score(
        model, ctx, data, gold))
    settings = {"finetune": {"text_column": "sentence", "epochs": 2, "batch_size": 16}}
    metrics = finetune(run, train, valid, tmp_path / "ft", settings=settings, test=test, baselines=True,
                       search={"lr": [1e-3, 3e-3]}, progress=False)
    assert sizes.count(37) == 2 and sizes.count(60) == 4  # test: model + random init; validation: every point
    assert list(metrics["scores"]) == ["validation", "test"]
    assert "test" in metrics["baselines"]["random_init"]
    alone = finetune(run, train, valid, tmp_path / "alone", test=test, progress=False,
                     settings={"finetune": {**settings["finetune"], **metrics["search"]["chosen"]}})
    assert metrics["scores"]["test"]["accuracy"] == alone["scores"]["test"]["accuracy"]


def test_search_from_the_cli_prints_what_each_side_picked(run, tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 120))
    valid = write_tsv(tmp_path / "valid.tsv", sst2_rows(120, 180))
    r = finetune_cli(run, train, valid, tmp_path / "ft", "--text-column", "sentence", "--baselines",
                     "--search", "lr=1e-3,3e-3")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "ft/metrics.json").read_text())
    chosen = metrics["search"]["chosen"]["lr"], metrics["baselines"]["random_init"]["search"]["chosen"]["lr"]
    assert r.stdout.splitlines()[-1] == (f"settings picked on validation accuracy: fine-tuned: lr={chosen[0]:g}; "
                                         f"random init: lr={chosen[1]:g}")


@pytest.mark.parametrize("spec, fragment", [
    ("seed=0,1", "cannot vary 'seed'; searchable: lr, epochs"),
    ("lr", "expects key=value1,value2"),
    ("lr=1e-4,1e-4", "give distinct values"),
    ("pooling=cls,max", "finetune.pooling must be one of"),
])
def test_a_bad_search_is_one_line_error(run, tmp_path, spec, fragment):
    train = write_tsv(tmp_path / "train.tsv", sst2_rows(0, 20))
    r = finetune_cli(run, train, train, tmp_path / "ft", "--text-column", "sentence", "--search", spec)
    assert_one_line_error(r, fragment)
    assert not (tmp_path / "ft").exists()
