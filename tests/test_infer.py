"""Using a run: sentence embeddings and nearest tokens, from Python and the CLI."""

import json

import numpy as np
import pytest
import torch

from bertforge.config import build_config
from bertforge.errors import DataError
from bertforge.infer import embed, load_run, similar
from bertforge.train.loop import pretrain
from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
    cfg = build_config(preset="tiny", overrides={
        "data": {"seq_len": 32},
        "model": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "max_seq_len": 32},
        "train": {"batch_size": 8, "max_steps": 3, "eval_every_steps": 100, "eval_batches": 1},
    })
    out = tmp_path_factory.mktemp("run") / "run"
    pretrain(cfg, data_dir, out, progress=False)
    return out


def test_mean_and_cls_embeddings_match_the_encoder(run):
    loaded = load_run(run, device="cpu")
    texts = ["Lily found a needle.", "The dog ran to the park and barked at the ball."]
    mean, cls = embed(loaded, texts, "mean"), embed(loaded, texts, "cls")
    assert mean.shape == cls.shape == (2, 32)
    ids = torch.tensor([loaded.tokenizer.encode(texts[1])])
    with torch.no_grad():
        h = loaded.model.encoder(ids)[0]
    np.testing.assert_allclose(mean[1], h.mean(dim=0).numpy(), atol=1e-5)  # padding of the batch ignored
    np.testing.assert_allclose(cls[1], h[0].numpy(), atol=1e-5)


def test_similar_finds_a_token_with_the_same_embedding(run):
    loaded = load_run(run, device="cpu")
    tok = loaded.tokenizer
    (a,) = tok.encode(" the", add_special_tokens=False)  # one piece
    b = 300 if a != 300 else 301
    with torch.no_grad():
        loaded.model.encoder.embeddings.tokens.weight[b] = 3 * loaded.model.encoder.embeddings.tokens.weight[a]
    top = similar(loaded, " the", top_k=5)
    assert top[0]["token_id"] == b and top[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert a not in [n["token_id"] for n in top]  # the word itself is left out
    assert [n["score"] for n in top] == sorted((n["score"] for n in top), reverse=True)
    with pytest.raises(DataError):
        similar(loaded, "   ")


def test_embed_and_similar_from_the_cli(run, tmp_path):
    (tmp_path / "s.txt").write_text("One day, a girl played.\n\nThe sun was warm.\n", encoding="utf-8")
    r = run_cli("embed", str(run), "--input", str(tmp_path / "s.txt"), "--out", str(tmp_path / "e.npy"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "e.npy").shape == (2, 32)
    r = run_cli("similar", str(run), "girl", "--top-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 3
    assert_one_line_error(run_cli("embed", str(run), "--input", str(tmp_path / "nope.txt"), "--out", "x.npy"), "nope.txt")
