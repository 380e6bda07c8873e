"""`bertforge serve`: the JSON API through an HTTP test client. Every endpoint answers; every bad
request (malformed JSON, missing or unknown fields, too long a text, too big a body, a path)
gets a 4xx JSON error, never a 500; fine-tuned folders get the classify panel."""

import csv
import socket

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from bertforge.finetune import finetune  # noqa: E402
from bertforge.infer import embed, fill_mask, load_run  # noqa: E402
from bertforge.serve import create_app  # noqa: E402
from conftest import assert_one_line_error, datafile, run_cli, serving  # noqa: E402


@pytest.fixture(scope="module")
def client(tiny_run):
    with TestClient(create_app(tiny_run, "cpu"), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def classifier(tiny_run, tmp_path_factory):
    """A classification folder fine-tuned from the tiny run on 64 SST-2 sentences (1 epoch)."""
    root = tmp_path_factory.mktemp("ft")
    with open(datafile("reviews/train.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    for name, part in (("train", rows[1:65]), ("valid", rows[65:97])):
        with open(root / f"{name}.tsv", "w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\").writerows([rows[0], *part])
    settings = {"finetune": {"text_column": "sentence", "epochs": 1, "lr": 1e-3}}
    finetune(tiny_run, root / "train.tsv", root / "valid.tsv", root / "ft", settings=settings, progress=False)
    return root / "ft"


def test_info_says_which_panels_apply_and_what_the_model_is(client, tiny_run):
    info = client.get("/api/info").json()
    assert info["kind"] == "pretrain" and info["name"] == tiny_run.name
    assert info["panels"] == ["fill-mask", "similarity", "neighbours", "info"]
    assert info["model"]["hidden_size"] == 32 and info["model"]["parameters"] > 0
    assert info["tokenizer"]["mask_token"] == "<mask>" and info["training"]["step"] == 6
    assert info["metrics"]["step"] == 6 and info["curves"] is True
    assert info["limits"] == {"max_chars": 2000, "max_body_bytes": 16384, "max_top_k": 20, "max_new_tokens": 256}


def test_fill_mask_equals_the_library(client, tiny_run):
    r = client.post("/api/fill-mask", json={"text": "The <mask> was happy.", "top_k": 4})
    assert r.status_code == 200
    expected = fill_mask(load_run(tiny_run, "cpu"), "The <mask> was happy.", 4)
    assert [[a["token"] for a in m] for m in r.json()["masks"]] == [[a["token"] for a in m] for m in expected]
    assert r.json()["masks"][0][0]["score"] == pytest.approx(expected[0][0]["score"], abs=1e-6)


def test_similarity_is_the_cosine_of_mean_pooled_embeddings(client, tiny_run):
    a, b = "Lily found a needle.", "The dog ran to the park."
    r = client.post("/api/similarity", json={"a": a, "b": b})
    u, v = embed(load_run(tiny_run, "cpu"), [a, b], "mean")
    assert r.status_code == 200
    assert r.json()["cosine"] == pytest.approx(float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)), abs=1e-5)


def test_neighbours_curves_and_page(client):
    r = client.post("/api/neighbours", json={"word": "girl", "top_k": 3})
    assert r.status_code == 200 and len(r.json()["neighbours"]) == 3
    r = client.get("/api/curves.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text  # nothing from a CDN


BAD = [
    ("/api/fill-mask", b"{not json", 400, "not valid JSON"),
    ("/api/fill-mask", b"\xff\xfe", 400, "not valid JSON"),
    ("/api/fill-mask", b'["The <mask>."]', 400, "JSON object"),
    ("/api/fill-mask", b"{}", 422, "missing field 'text'"),
    ("/api/fill-mask", b'{"text": 3}', 422, "must be a string"),
    ("/api/fill-mask", b'{"text": "The <mask>.", "top_k": true}', 422, "integer"),
    ("/api/fill-mask", b'{"text": "The <mask>.", "top_k": 0}', 422, "between 1 and 20"),
    ("/api/fill-mask", b'{"text": "no mask here"}', 422, "no mask"),
    ("/api/fill-mask", b'{"text": "   "}', 422, "empty"),
    ("/api/fill-mask", ('{"text": "' + "a " * 1001 + '<mask>"}').encode(), 422, "at most 2000"),
    ("/api/fill-mask", ('{"text": "' + "word " * 40 + '<mask>"}').encode(), 422, "at most 32"),  # tokens
    ("/api/fill-mask", b'{"text": "The <mask>.", "model": "/etc/passwd"}', 422, "unknown field"),
    ("/api/neighbours", b'{"word": "x", "path": "../../etc/passwd"}', 422, "unknown field"),
    ("/api/similarity", b'{"a": "one"}', 422, "missing field 'b'"),
    ("/api/similarity", b'{"a": "\\ud800", "b": "x"}', 422, "not valid Unicode"),
    ("/api/neighbours", b'{"word": "girl", "top_k": NaN}', 422, "integer"),
    ("/api/neighbours", b'{"word": "girl", "top_k": 99999999999999999999999}', 422, "between 1 and 20"),
    ("/api/classify", b'{"text": "fine"}', 404, "not available"),
]


@pytest.mark.parametrize("path, body, status, message", BAD)
def test_bad_requests_get_a_4xx_json_error(client, path, body, status, message):
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message.lower() in r.json()["error"].lower()


def test_too_big_bodies_unknown_routes_and_paths_are_4xx_json(client):
    big = b'{"text": "' + b"x" * 17000 + b'"}'
    assert client.post("/api/fill-mask", content=big).status_code == 413
    chunks = iter([b'{"text": "', b"x" * 10000, b"y" * 10000, b'"}'])  # no content-length: counted while read
    r = client.post("/api/fill-mask", content=chunks)
    assert r.status_code == 413 and "16 KB" in r.json()["error"]
    for path in ("/nope", "/static/../../etc/passwd", "/static/%2e%2e/config.yaml", "/config.yaml", "/api/fill-mask/x"):
        r = client.get(path)
        assert r.status_code == 404 and "error" in r.json(), path
    r = client.get("/api/fill-mask")
    assert r.status_code == 405 and "error" in r.json()


def test_a_finetuned_folder_gets_classify_and_no_fill_mask(classifier):
    with TestClient(create_app(classifier, "cpu"), raise_server_exceptions=False) as c:
        info = c.get("/api/info").json()
        assert info["kind"] == "classify" and info["panels"] == ["classify", "similarity", "neighbours", "info"]
        assert sorted(info["labels"]) == ["0", "1"] and info["text_pair"] is False
        r = c.post("/api/classify", json={"text": "a gripping, funny film"})
        assert r.status_code == 200
        assert set(r.json()["probabilities"]) == {"0", "1"} and sum(r.json()["probabilities"].values()) == pytest.approx(1)
        assert c.post("/api/classify", json={"text": "a", "text_pair": "b"}).status_code == 422  # not a pair model
        assert c.post("/api/fill-mask", json={"text": "The <mask>."}).status_code == 404
        assert c.post("/api/similarity", json={"a": "good", "b": "bad"}).status_code == 200
        assert c.get("/api/curves.png").content[:4] == b"\x89PNG"  # per-epoch scores


def test_serve_cli_refuses_a_taken_port_and_a_folder_that_is_no_model(tiny_run, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(run_cli("serve", str(tiny_run), "--port", str(port)), "cannot listen")
    assert_one_line_error(run_cli("serve", str(tmp_path), "--port", "1"), "config.yaml")


def test_serve_cli_answers_on_127_0_0_1_until_stopped(tiny_run):
    import httpx

    with serving(tiny_run) as (port, info, server):
        assert info["kind"] == "pretrain"
        r = httpx.post(f"http://127.0.0.1:{port}/api/fill-mask", json={"text": "She <mask> home."}, timeout=10)
        assert r.status_code == 200 and len(r.json()["masks"][0]) == 5
    assert f"http://127.0.0.1:{port}" in server.stderr_text


def test_a_ner_folder_gets_the_tag_panel(tiny_run, tmp_path):
    lines, breaks = [], 0
    for line in open(datafile("ner/train.txt"), encoding="utf-8"):
        breaks += not line.strip()
        if breaks > 60:
            break
        lines.append(line)
    (tmp_path / "train.txt").write_text("".join(lines), encoding="utf-8")
    settings = {"finetune": {"task": "ner", "epochs": 1, "lr": 1e-3}}
    finetune(tiny_run, tmp_path / "train.txt", tmp_path / "train.txt", tmp_path / "ner", settings=settings, progress=False)
    with TestClient(create_app(tmp_path / "ner", "cpu"), raise_server_exceptions=False) as c:
        info = c.get("/api/info").json()
        assert info["kind"] == "ner" and info["panels"][0] == "tag" and "B-PER" in info["labels"]
        r = c.post("/api/tag", json={"text": "John Smith flew to Paris."})
        assert r.status_code == 200
        assert [t["word"] for t in r.json()["tags"]] == ["John", "Smith", "flew", "to", "Paris", "."]
        assert all(t["tag"] in info["labels"] for t in r.json()["tags"]) and "entities" in r.json()
        assert c.post("/api/tag", json={"text": ""}).status_code == 422
        assert c.post("/api/classify", json={"text": "x"}).status_code == 404


def test_odd_bodies_on_every_endpoint_never_give_a_500(client):
    bodies = [b"", b"null", b"3", b'"text"', b"[" * 8000 + b"]" * 8000, b'{"text": null}', b'{"text": {"a": 1}}',
              b'{"text": ["<mask>"]}', b'{"word": 1.5}', b'{"a": "", "b": ""}', b'{"text": "\\u0000<mask>"}',
              b'{"text": "<mask>", "text": 5}', "{\"text\": \"\u00e9t\u00e9 <mask> \U0001f600\"}".encode()]
    for path in ("/api/fill-mask", "/api/similarity", "/api/neighbours", "/api/classify", "/api/tag", "/api/generate"):
        for body in bodies:
            r = client.post(path, content=body)
            assert r.status_code < 500 and r.headers["content-type"] == "application/json", (path, body[:40], r.text)
            assert r.status_code == 200 or "error" in r.json()


@pytest.fixture(scope="module")
def causal_client(data_dir, tmp_path_factory):
    from bertforge.tokenizer import load_tokenizer
    from conftest import make_causal_run

    run = make_causal_run(tmp_path_factory.mktemp("causal") / "run", load_tokenizer(data_dir / "tokenizer"))
    with TestClient(create_app(run, "cpu"), raise_server_exceptions=False) as c:
        yield c, run


def test_a_causal_run_gets_the_generate_panel_and_its_answers_equal_the_library(causal_client):
    from bertforge import generate

    c, run = causal_client
    info = c.get("/api/info").json()
    assert info["kind"] == "causal" and info["panels"][0] == "generate" and "fill-mask" not in info["panels"]
    body = {"text": "Once upon a time", "max_new_tokens": 12, "temperature": 0, "top_k": 0}
    r = c.post("/api/generate", json=body)
    assert r.status_code == 200, r.text
    expected = generate(load_run(run, device="cpu"), "Once upon a time", max_new_tokens=12, temperature=0)
    assert r.json()["token_ids"] == expected["token_ids"] and r.json()["text"] == expected["text"]
    sampled = [c.post("/api/generate", json={"text": "Once", "temperature": 1.0, "seed": 3, "max_new_tokens": 8}).json()
               for _ in range(2)]
    assert sampled[0]["token_ids"] == sampled[1]["token_ids"]  # a seed repeats a sample
    assert c.post("/api/fill-mask", json={"text": "a <mask>"}).status_code == 404


@pytest.mark.parametrize("body, message", [
    ({"text": "x", "temperature": -1}, "temperature"),
    ({"text": "x", "top_p": 1.5}, "top"),
    ({"text": "x", "top_k": -1}, "top_k"),
    ({"text": "x", "max_new_tokens": 100000}, "max_new_tokens"),
    ({"text": "x", "temperature": "hot"}, "number"),
    ({"text": "   "}, "empty"),
])
def test_bad_generate_requests_are_422(causal_client, body, message):
    c, _ = causal_client
    r = c.post("/api/generate", json=body)
    assert r.status_code == 422 and message in r.json()["error"], r.text


def test_generate_is_404_for_a_masked_lm(client):
    r = client.post("/api/generate", json={"text": "x"})
    assert r.status_code == 404 and "generate" in r.json()["error"]
