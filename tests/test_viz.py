"""`bertforge viz embeddings`: the pictures are files of the expected size, the HTML holds the
points and works offline, bad requests are one-line errors."""

import json
import re

import pytest

from bertforge.plots import plot_runs
from conftest import assert_one_line_error, run_cli

WORDS = ["girl", "boy", "dog", "cat", "sun", "happy", "sad", "park"]


def points_of(html: str) -> dict:
    """The scatter's data (plotly's JSON in the page): x, y, z and the labels."""
    data = {}
    for key in ("x", "y", "z", "text"):
        data[key] = json.loads(re.search(rf'"{key}":(\[[^\]]*\])', html).group(1))
    return data


def test_words_give_a_pca_png_a_3d_html_and_a_heatmap(tiny_run, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    r = run_cli("viz", "embeddings", str(tiny_run), "--words", ",".join(WORDS), "--out", str(tmp_path / "viz"))
    assert r.returncode == 0, r.stderr
    pca = image.imread(tmp_path / "viz/pca.png")
    assert pca.shape[:2] == (700, 800) and pca[..., :3].std() > 0.05  # 8 x 7 inches at 100 dpi, something drawn
    heat = image.imread(tmp_path / "viz/similarity.png")
    assert heat.shape[:2] == (600, 720)  # 8 words: the 6-inch minimum, plus the colour bar
    html = (tmp_path / "viz/pca3d.html").read_text(encoding="utf-8")
    points = points_of(html)
    assert points["text"] == WORDS
    assert all(len(points[k]) == len(WORDS) for k in "xyz")
    assert all(isinstance(v, float) for v in points["x"])
    assert not re.search(r'<script[^>]+src=', html)  # plotly.js is inside the page: it opens offline
    assert "Plotly.newPlot" in html


def test_top_n_takes_the_most_frequent_words_of_the_training_data(tiny_run, tmp_path):
    r = run_cli("viz", "embeddings", str(tiny_run), "--top", "12", "--out", str(tmp_path / "viz"))
    assert r.returncode == 0, r.stderr
    words = points_of((tmp_path / "viz/pca3d.html").read_text(encoding="utf-8"))["text"]
    assert len(words) == 12 and len(set(words)) == 12 and all(w.isalpha() for w in words)
    assert {"the", "and"} <= set(words)  # TinyStories' most frequent words


def test_bad_requests_are_one_line_errors(tiny_run, tmp_path):
    out = str(tmp_path / "viz")
    assert_one_line_error(run_cli("viz", "embeddings", str(tiny_run), "--words", "girl,boy", "--out", out), "3 to 500")
    assert_one_line_error(run_cli("viz", "embeddings", str(tiny_run), "--top", "9999", "--out", out), "3 to 500")
    assert_one_line_error(run_cli("viz", "embeddings", str(tiny_run), "--out", out), "--words")
    assert_one_line_error(run_cli("viz", "embeddings", str(tmp_path), "--top", "5", "--out", out), "config.yaml")
    assert not (tmp_path / "viz").exists()


def test_plot_ignores_the_samples_records(tiny_run, tmp_path):
    assert plot_runs([tiny_run], tmp_path / "curves.png").stat().st_size > 10_000
