"""`bertforge plot`: a PNG of the curves of several runs; bad folders are one-line errors."""

import pytest

from bertforge.config import build_config
from bertforge.train.loop import pretrain
from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def two_runs(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, lr in (("a", 1e-3), ("b", 3e-3)):
        cfg = build_config(preset="tiny", overrides={
            "data": {"seq_len": 32},
            "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
            "train": {"batch_size": 8, "max_steps": 6, "log_every_steps": 1, "eval_every_steps": 3, "eval_batches": 2, "lr": lr},
        })
        pretrain(cfg, data_dir, root / name, progress=False)
    return root / "a", root / "b"


def test_plot_of_two_runs_is_a_png_of_the_expected_size(two_runs, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    r = run_cli("plot", *map(str, two_runs), "--out", str(tmp_path / "curves.png"), "--x", "tokens")
    assert r.returncode == 0, r.stderr
    pixels = image.imread(tmp_path / "curves.png")
    assert pixels.shape[:2] == (660, 1260)  # 5 panels, 3 a row (2 rows), each 4.2 x 3.3 inches at 100 dpi
    assert pixels[..., :3].std() > 0.05  # something was drawn


def test_plot_of_a_folder_without_metrics_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cli("plot", str(tmp_path / "empty"), "--out", str(tmp_path / "c.png"))
    assert_one_line_error(r, "metrics.jsonl")
    assert not (tmp_path / "c.png").exists()
