"""Reports of a fine-tuned model: report text, confusion matrix picture, and the baselines."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np

from .config import FinetuneRunConfig
from .data import ClassifyData, Encoded, require_package
from .metrics import scalars, classify_metrics
from .model import Classifier
from .training import Context, predict_encoded

def report_text(ctx: Context, model: Classifier, splits: dict[str, tuple[Encoded, list]]) -> str:
    """The classification report of each evaluated split (scikit-learn or seqeval)."""
    parts = []
    for name, (data, gold) in splits.items():
        probs, _ = predict_encoded(model, ctx, data)
        if ctx.task == "classify":
            metrics = require_package("sklearn.metrics", "scikit-learn")
            pred = [int(p.argmax()) for p in probs]
            body = metrics.classification_report(
                gold, pred, labels=list(range(len(ctx.labels))), target_names=[str(v) for v in ctx.labels],
                digits=4, zero_division=0,
            )
        else:
            seqeval = require_package("seqeval.metrics", "seqeval")
            names = lambda rows: [[ctx.labels[i] for i in row] for row in rows]  # noqa: E731
            pred = [p.argmax(axis=-1) for p in probs]
            body = seqeval.classification_report(names(gold), names(pred), digits=4, zero_division=0)
        parts.append(f"== {name} ({len(data)} examples)\n\n{body}")
    return "\n".join(parts)


def confusion_png(matrix: list[list[int]], labels: list, title: str) -> bytes:
    """A confusion matrix heat map as PNG bytes (matplotlib's Agg canvas, no global backend change)."""
    require_package("matplotlib", "matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.array(matrix)
    size = 2.5 + 0.6 * len(labels)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels([str(v) for v in labels], rotation=45, ha="right")
    ax.set_yticklabels([str(v) for v in labels])
    for (i, j), count in np.ndenumerate(m):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > m.max() / 2 else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


# ---------------------------------------------------------------- baselines


def majority_baseline(train_ids: list[int], golds: dict[str, list[int]], labels: list) -> dict:
    """Always the most frequent training label: the floor any classifier must clear."""
    top = Counter(train_ids).most_common(1)[0][0]
    scores = {name: scalars(classify_metrics(gold, [top] * len(gold), labels)) for name, gold in golds.items()}
    return {"label": labels[top], **scores}


# The small grid the TF-IDF baseline is tuned on: n-gram features x inverse regularisation C.
TFIDF_FEATURES = {
    "word 1-2": {"analyzer": "word", "ngram_range": (1, 2)},
    "char_wb 2-5": {"analyzer": "char_wb", "ngram_range": (2, 5)},
}
TFIDF_C = (0.25, 1.0, 4.0, 16.0)


def _join(data: ClassifyData) -> list[str]:
    return data.texts if data.pairs is None else [f"{a} {b}" for a, b in zip(data.texts, data.pairs)]


def tfidf_baseline(
    train: ClassifyData,
    train_ids: list[int],
    splits: dict[str, tuple[ClassifyData, list[int]]],
    cfg: FinetuneRunConfig,
    labels: list,
) -> dict:
    """TF-IDF + logistic regression, tuned like the model: n-grams and C chosen on the validation split
    (the one the model's best epoch is picked on), never on a reported test split, so the baseline is fair."""
    require_package("sklearn", "scikit-learn")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    metric = cfg.finetune.best_metric if cfg.finetune.best_metric != "loss" else "accuracy"
    valid, valid_gold = splits["validation"]
    weight = "balanced" if cfg.finetune.class_weights == "balanced" else None
    # liblinear (the classic for sparse binary problems) refuses three or more classes in scikit-learn >= 1.8;
    # lbfgs fits them as one multinomial model.
    solver = "liblinear" if len(labels) == 2 else "lbfgs"
    best = None
    for features, options in TFIDF_FEATURES.items():
        vectorizer = TfidfVectorizer(sublinear_tf=True, lowercase=True, **options)
        x = vectorizer.fit_transform(_join(train))
        x_valid = vectorizer.transform(_join(valid))
        for c in TFIDF_C:
            model = LogisticRegression(C=c, max_iter=2000, solver=solver, class_weight=weight,
                                       random_state=cfg.finetune.seed).fit(x, train_ids)
            value = classify_metrics(valid_gold, model.predict(x_valid).tolist(), labels)[metric]
            if best is None or value > best[0]:  # strict: a tie keeps the earlier, simpler setting
                best = (value, features, c, vectorizer, model)
    _, features, c, vectorizer, model = best
    scores = {
        name: scalars(classify_metrics(gold, model.predict(vectorizer.transform(_join(data))).tolist(), labels))
        for name, (data, gold) in splits.items()
    }
    return {"setting": {"features": features, "C": c, "chosen_on": "validation", "metric": metric}, **scores}
