"""Scores of a split: accuracy, macro F1 and Matthews correlation (classify), seqeval F1 (ner)."""

from __future__ import annotations

from .data import require_package

# ---------------------------------------------------------------- metrics and reports


def classify_metrics(gold: list[int], pred: list[int], labels: list) -> dict:
    """Accuracy, macro F1 (every class counts the same, whatever its size), Matthews correlation
    (GLUE's CoLA metric: 0 for a constant or random guess, 1 for perfect) and the confusion matrix."""
    metrics = require_package("sklearn.metrics", "scikit-learn")
    ids = list(range(len(labels)))
    return {
        "accuracy": float(metrics.accuracy_score(gold, pred)),
        "macro_f1": float(metrics.f1_score(gold, pred, labels=ids, average="macro", zero_division=0)),
        "mcc": float(metrics.matthews_corrcoef(gold, pred)),
        "confusion_matrix": metrics.confusion_matrix(gold, pred, labels=ids).tolist(),
    }


def single_class_prediction(confusion: list[list[int]]) -> int | None:
    """The class a classifier predicted for every example, or None when it predicted two or more.

    A model that learned nothing often ends there (the majority class): its accuracy looks like a
    score, so it must be called out.
    """
    predicted = [column for column in range(len(confusion)) if any(row[column] for row in confusion)]
    return predicted[0] if len(predicted) == 1 and len(confusion) > 1 else None


def ner_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Entity-level precision / recall / F1 (seqeval, exact spans and types) and token accuracy."""
    seqeval = require_package("seqeval.metrics", "seqeval")
    return {
        "precision": float(seqeval.precision_score(gold, pred, zero_division=0)),
        "recall": float(seqeval.recall_score(gold, pred, zero_division=0)),
        "f1": float(seqeval.f1_score(gold, pred, zero_division=0)),
        "accuracy": float(seqeval.accuracy_score(gold, pred)),
    }


def scalars(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if isinstance(v, float)}


def brief(scores: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in scalars(scores).items())
