"""Issue 14, item 6: inputs that used to give a traceback or a silent wrong answer now give one
`error:` line (exit 2) or the right answer. The CLI runs as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import shutil
import socket
import time

import numpy as np
import pytest

from bertforge.config import CorpusConfig
from bertforge.corpus import iter_documents
from bertforge.errors import DataError
from conftest import assert_one_line_error, run_cli, serving


@pytest.mark.parametrize("args, flag", [
    (("evaluate", "{run}", "--batch-size", "0"), "--batch-size"),
    (("evaluate", "{run}", "--batches", "-1"), "--batches"),
    (("fill-mask", "{run}", "a <mask> b", "--top-k", "0"), "--top-k"),
    (("fill-mask", "{run}", "a <mask> b", "--top-k", "-3"), "--top-k"),
    (("similar", "{run}", "the", "--top-k", "0"), "--top-k"),
    (("similar", "{run}", "the", "--top-k", "-1"), "--top-k"),
    (("embed", "{run}", "--input", "{text}", "--out", "{out}", "--batch-size", "0"), "--batch-size"),
])
def test_zero_and_negative_counts_are_one_line_errors(tiny_run, tmp_path, args, flag):
    text = tmp_path / "lines.txt"
    text.write_text("one sentence\n", encoding="utf-8")
    out = tmp_path / "vectors.npy"
    argv = [a.format(run=tiny_run, text=text, out=out) for a in args]
    result = run_cli(*argv)
    assert_one_line_error(result, flag, "at least")
    assert not out.exists()


def test_evaluate_batches_zero_means_all_and_one_means_one(tiny_run):
    """The positive side of the check: 0 is still "every batch" (more masked tokens than one batch)."""
    one = run_cli("evaluate", str(tiny_run), "--batches", "1", "--batch-size", "4", "--json")
    every = run_cli("evaluate", str(tiny_run), "--batch-size", "4", "--json")
    assert one.returncode == 0 and every.returncode == 0, one.stderr + every.stderr
    one, every = json.loads(one.stdout), json.loads(every.stdout)
    assert 0 < one["masked_tokens"] < every["masked_tokens"], (one, every)
    assert one["loss"] > 0 and every["loss"] > 0


@pytest.mark.parametrize("content, fragment", [
    (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", "binary file (NUL byte at offset 7)"),
    ("caf\u00e9 au lait\n".encode("latin-1"), "not UTF-8 text (bad byte at offset 3)"),
])
def test_embed_input_that_is_not_text_is_one_line_error(tiny_run, tmp_path, content, fragment):
    source = tmp_path / "input.bin"
    source.write_bytes(content)
    out = tmp_path / "vectors.npy"
    assert_one_line_error(run_cli("embed", str(tiny_run), "--input", str(source), "--out", str(out)), fragment)
    assert not out.exists()


# ---------------------------------------------------------------- CSV text holding the delimiter


def read(path, field="text"):
    return list(iter_documents([str(path)], CorpusConfig(text_field=field)))


def test_unquoted_commas_in_the_last_column_are_read_back_whole(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('label,text\n1,"quoted, kept"\n0,Loved it, truly, madly\n1,plain\n', encoding="utf-8")
    assert read(path) == ["quoted, kept", "Loved it, truly, madly", "plain"]


def test_unquoted_tabs_in_the_last_column_of_a_headerless_tsv_are_read_back_whole(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("1\tfirst row\n0\tsecond\twith a tab\n", encoding="utf-8")
    assert read(path, "1") == ["first row", "second\twith a tab"]


def test_unquoted_commas_before_the_last_column_are_an_error_naming_the_line(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\nfine,1\nLoved it, truly,0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"reviews\.csv: line 3 has 3 fields where 2 are expected: a comma"):
        read(path)


def test_cli_refuses_the_ambiguous_csv_in_one_line_and_writes_nothing(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "fine words here,1\n" * 50 + "Loved it, truly,0\n", encoding="utf-8")
    out = tmp_path / "tok"
    result = run_cli("tokenizer", "train", "--corpus", str(path), "--out", str(out), "--vocab-size", "300")
    assert_one_line_error(result, "line 52 has 3 fields where 2 are expected", "quote the text column")
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------- damaged shards


@pytest.fixture
def damaged_data(data_dir, tmp_path):
    """A copy of the shard folder whose first validation and train shards have one id overwritten
    with 65535 (the largest uint16, far above the 600-token vocabulary)."""
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for split in ("train", "validation"):
        shard = copy / manifest["splits"][split]["shards"][0]["file"]
        ids = np.memmap(shard, dtype="<u2", mode="r+")
        ids[37] = 65535
        ids.flush()
        del ids
    return copy


def test_pretrain_on_a_damaged_shard_is_one_line_and_leaves_no_run_folder(damaged_data, tmp_path):
    out = tmp_path / "run"
    result = run_cli("pretrain", "--data", str(damaged_data), "--out", str(out), "--preset", "tiny",
                     "--max-steps", "2", "--device", "cpu")
    assert_one_line_error(result, "token id 65535 in sequence 1 is outside the vocabulary (600 ids)", "damaged")
    assert not out.exists()


def test_evaluate_on_a_damaged_shard_is_one_line(tiny_run, damaged_data):
    # the run was trained on data_dir: damaged_data has the same tokenizer, so only the ids are wrong
    result = run_cli("evaluate", str(tiny_run), "--data", str(damaged_data))
    assert_one_line_error(result, "token id 65535", "validation-00000")


def test_intact_shards_pass_the_id_check(data_dir):
    from bertforge.shards import PackedShards

    shards = PackedShards(data_dir, "train")
    assert int(shards[:].max()) < shards.manifest["vocab_size"]


# ---------------------------------------------------------------- serve: a client leaving mid-body


def test_server_logs_no_traceback_when_a_client_disconnects_mid_body(tiny_run):
    import httpx

    with serving(tiny_run) as (port, _, server):
        for _ in range(3):  # the body promises 1000 bytes, 20 arrive, then the client is gone
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(b"POST /api/fill-mask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{\"text\": \"She <mask")
                time.sleep(0.2)
        time.sleep(0.5)
        r = httpx.post(f"http://127.0.0.1:{port}/api/fill-mask", json={"text": "She <mask> home."}, timeout=10)
        assert r.status_code == 200  # still serving
    err = server.stderr_text
    assert "Traceback" not in err and "Exception" not in err, err
