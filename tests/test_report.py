"""`bertforge report`: one self-contained HTML page with everything about a run."""

import base64
import html
import io
import re

import pytest

from bertforge.model import count_parameters
from bertforge.infer import load_run
from bertforge.train.metrics import read_metrics
from conftest import assert_one_line_error, run_cli


def test_report_holds_config_parameters_data_curves_metrics_samples_and_embeddings(tiny_run, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    out = tmp_path / "report.html"
    r = run_cli("report", str(tiny_run), "--out", str(out), "--text", "The <mask> was happy.", "--top", "10")
    assert r.returncode == 0, r.stderr
    page = out.read_text(encoding="utf-8")
    for heading in ("Final metrics", "Curves", "Fill-mask samples", "Embeddings", "Data", "Parameters", "Config"):
        assert f"<h2>{heading}</h2>" in page
    assert "hidden_size: 32" in page  # the config
    assert f"{count_parameters(load_run(tiny_run, 'cpu').model):,}" in page  # the parameter total
    last = read_metrics(tiny_run, "validation")[-1]
    assert f"{last['loss']:,.4f}" in page and "validation masked_accuracy" in page
    for sample in read_metrics(tiny_run, "samples")[-1]["samples"]:
        assert html.escape(sample["text"], quote=True) in page  # escaped, as text (<mask>, quotes)
    assert "The &lt;mask&gt; was happy." in page  # the user's sentence, answered
    assert "train" in page and "validation" in page and "sequences" in page  # data statistics
    pictures = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pictures) == 2  # curves and embeddings, inside the page
    sizes = [image.imread(io.BytesIO(base64.b64decode(p))).shape[:2] for p in pictures]
    assert sizes == [(660, 1260), (700, 800)]
    assert not re.search(r"https?://|<script|<link|<iframe", page)  # nothing from outside the file


def test_report_of_a_folder_that_is_no_run_is_one_line_error(tmp_path):
    assert_one_line_error(run_cli("report", str(tmp_path), "--out", str(tmp_path / "r.html")), "config.yaml")
    assert not (tmp_path / "r.html").exists()
