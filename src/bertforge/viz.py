"""Pictures of a model's word embeddings: a 2D PCA scatter (PNG), an interactive 3D scatter
(plotly HTML with plotly.js inside, so it opens offline) and a cosine-similarity heat map (PNG).

A word's vector is the mean of its pieces' input embeddings, as `bertforge similar` uses; the
byte-level BPE vocabulary spells a word inside a sentence with its space (`Ġreason`), so that
form is looked up.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import DataError
from .files import atomic_write_bytes, atomic_write_text
from .folders import run_data_dir
from .infer import LoadedRun, word_pieces
from .plots import pyplot

log = logging.getLogger(__name__)

MAX_WORDS = 500
HEATMAP_MAX = 60  # more labels than this would not be readable: the heat map shows the first 60
COUNT_TOKENS = 2_000_000  # tokens of the training shards counted to find the frequent words


def word_vectors(run: LoadedRun, words: list[str]) -> np.ndarray:
    """(len(words), hidden): the mean input embedding of each word's pieces."""
    table = run.model.encoder.embeddings.tokens.weight.detach().float().cpu().numpy()
    unk = run.tokenizer.tokenizer.token_to_id(_unk(run))
    rows = []
    for word in words:
        pieces = word_pieces(run, word)
        if not pieces or (unk is not None and unk in pieces):
            raise DataError(f"{word!r} is not spelled by this model's vocabulary; leave it out")
        rows.append(table[pieces].mean(axis=0))
    return np.stack(rows)


def _unk(run: LoadedRun) -> str:
    from .tokenizer import SPECIAL_TOKENS

    return SPECIAL_TOKENS[run.tokenizer.scheme]["unk"]


def is_word_token(text: str) -> bool:
    return len(text) >= 2 and text.isalpha()


def frequent_words(run: LoadedRun, run_dir: Path, n: int) -> list[str]:
    """The `n` most frequent single-token words of the run's training shards (the first 2M
    tokens); without shards, the first word tokens of the vocabulary (BPE learns frequent merges first)."""
    from .shards import PackedShards

    starts = run.tokenizer.word_start_table()
    counts: Counter = Counter()
    try:
        shards = PackedShards(run_data_dir(run_dir), "train")
        rows = shards[: max(1, min(len(shards), COUNT_TOKENS // max(shards.seq_len, 1)))]
        ids, freq = np.unique(rows, return_counts=True)
        counts.update(dict(zip(ids.tolist(), freq.tolist())))
    except (OSError, KeyError, DataError, json.JSONDecodeError):
        log.info("the run's shards are not at hand: taking word tokens in vocabulary order")
        counts.update({i: run.tokenizer.vocab_size - i for i in range(run.tokenizer.vocab_size)})
    words: list[str] = []
    for token_id, _ in counts.most_common():
        text = run.tokenizer.decode_token(token_id)
        if token_id < len(starts) and starts[token_id] and is_word_token(text) and text not in words:
            words.append(text)
            if len(words) == n:
                break
    return words


def pca(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) coordinates on the first k principal components, and each one's share of the variance."""
    centered = vectors - vectors.mean(axis=0)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    variance = s**2 / max((s**2).sum(), 1e-12)
    coords = u[:, :k] * s[:k]
    if coords.shape[1] < k:  # fewer words than components
        coords = np.pad(coords, ((0, 0), (0, k - coords.shape[1])))
        variance = np.pad(variance, (0, k))
    return coords, variance[:k]


def pca_png(words: list[str], vectors: np.ndarray, title: str = "") -> bytes:
    """A labelled 2D scatter of the words on their first two principal components, 800 x 700 px."""
    coords, share = pca(vectors, 2)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 7), constrained_layout=True)
    ax.scatter(coords[:, 0], coords[:, 1], s=18, color="#3b6ea5")
    size = 10 if len(words) <= 50 else 8 if len(words) <= 150 else 6
    for word, (x, y) in zip(words, coords):
        ax.annotate(word, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=size)
    ax.set_xlabel(f"PC1 ({share[0]:.1%} of the variance)")
    ax.set_ylabel(f"PC2 ({share[1]:.1%} of the variance)")
    ax.set_title(title or f"input embeddings of {len(words)} words, PCA")
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def heatmap_png(words: list[str], vectors: np.ndarray) -> bytes:
    """Cosine similarity of every pair of words (the first 60), each row and column labelled."""
    words, vectors = words[:HEATMAP_MAX], vectors[:HEATMAP_MAX]
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    plt = pyplot()
    side = max(6.0, 0.22 * len(words) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), constrained_layout=True)
    image = ax.imshow(sims, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(words)), words, rotation=90, fontsize=9)
    ax.set_yticks(range(len(words)), words, fontsize=9)
    ax.set_title("cosine similarity of input embeddings")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _png(plt, fig)


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def pca3d_html(words: list[str], vectors: np.ndarray, title: str = "") -> str:
    """An interactive 3D scatter (rotate, zoom, hover) as one HTML file with plotly.js inside."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise DataError("the 3D plot needs plotly: pip install plotly (or bertforge[viz])") from None
    coords, share = pca(vectors, 3)
    points = [[round(float(v), 5) for v in coords[:, i]] for i in range(3)]  # plain lists: readable numbers in the HTML
    fig = go.Figure(go.Scatter3d(
        x=points[0], y=points[1], z=points[2], text=list(words), mode="markers+text",
        marker={"size": 3, "color": "#3b6ea5"}, textfont={"size": 11}, hovertemplate="%{text}<extra></extra>",
    ))
    def axis(i: int) -> dict:
        """Axis i, its range padded by a fifth of the span: labels of the outermost words were clipped."""
        low, high = min(points[i]), max(points[i])
        pad = 0.2 * (high - low or 1.0)
        return {"title": {"text": f"PC{i + 1} ({share[i]:.1%})"}, "range": [low - pad, high + pad]}

    fig.update_layout(
        title=title or f"input embeddings of {len(words)} words, PCA (3D)",
        scene={"xaxis": axis(0), "yaxis": axis(1), "zaxis": axis(2)}, margin={"l": 0, "r": 0, "b": 0, "t": 40},
    )
    return fig.to_html(include_plotlyjs=True, full_html=True)


def choose_words(run: LoadedRun, run_dir: Path, words: list[str] | None, top: int | None) -> list[str]:
    """The words given (deduplicated), or the `top` most frequent; 3 to 500 of them."""
    if (words is None) == (top is None):
        raise DataError("give either --words w1,w2,... or --top N")
    if top is not None and not 3 <= top <= MAX_WORDS:
        raise DataError(f"the plots need 3 to {MAX_WORDS} words, got --top {top}")
    chosen = list(dict.fromkeys(w.strip() for w in words if w.strip())) if words is not None else frequent_words(run, run_dir, top)
    if not 3 <= len(chosen) <= MAX_WORDS:
        raise DataError(f"the plots need 3 to {MAX_WORDS} words, got {len(chosen)}")
    return chosen


def viz_embeddings(
    run: LoadedRun, run_dir: str | Path, out_dir: str | Path, words: list[str] | None = None, top: int | None = None
) -> dict[str, Path]:
    """pca.png, pca3d.html and similarity.png of the chosen words in `out_dir`."""
    chosen = choose_words(run, Path(run_dir), words, top)
    vectors = word_vectors(run, chosen)
    html = pca3d_html(chosen, vectors)  # first: fails early without plotly
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"pca": out / "pca.png", "pca3d": out / "pca3d.html", "similarity": out / "similarity.png"}
    atomic_write_bytes(paths["pca"], pca_png(chosen, vectors))
    atomic_write_text(paths["pca3d"], html)
    atomic_write_bytes(paths["similarity"], heatmap_png(chosen, vectors))
    if len(chosen) > HEATMAP_MAX:
        log.info("the heat map shows the first %d of the %d words", HEATMAP_MAX, len(chosen))
    return paths
