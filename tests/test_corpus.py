"""Corpus readers: every format gives the documents a naive reader expects; bad input is one clear error."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error, datafile, run_cli

from bertforge import corpus
from bertforge.config import CorpusConfig
from bertforge.corpus import CorpusSource, count_bytes, iter_documents, parse_source, source_fingerprint
from bertforge.errors import DataError


def read(path, **settings) -> list[str]:
    return list(iter_documents([str(path)], CorpusConfig(**settings)))


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def naive_paragraphs(text: str) -> list[str]:
    """Blank-line paragraphs of `text`, each with its lines stripped and joined by one space."""
    blocks = re.split(r"\n\s*\n", text)
    return [" ".join(line.strip() for line in block.split("\n") if line.strip()) for block in blocks if block.strip()]


# ---------------------------------------------------------------- parsing source specs


@pytest.mark.parametrize(
    "spec, location, weight",
    [
        ("data/a.txt", "data/a.txt", None),
        ("data/a.txt:0.5", "data/a.txt", 0.5),
        ("data/a.txt:3", "data/a.txt", 3.0),
        ("hf:wikitext:wikitext-2-raw-v1@validation", "hf:wikitext:wikitext-2-raw-v1@validation", None),
        ("hf:NAME@train:0.3", "hf:NAME@train", 0.3),
        ("hf:user/name:cfg:2", "hf:user/name:cfg", 2.0),
        ("hf:user/name@train[:10%]", "hf:user/name@train[:10%]", None),
        ("C:\\corpus\\a.txt", "C:\\corpus\\a.txt", None),
        ("notes:draft.txt", "notes:draft.txt", None),
    ],
)
def test_parse_source_splits_a_trailing_number_as_weight(spec, location, weight):
    assert parse_source(spec) == CorpusSource(location, weight)


def test_parse_source_keeps_an_existing_path_whole(tmp_path):
    path = write_lines(tmp_path / "part:1", ["x"])
    assert parse_source(str(path)) == CorpusSource(str(path), None)


@pytest.mark.parametrize("spec", ["a.txt:0", "a.txt:-1", "a.txt:nan", "a.txt:inf", "hf:NAME@train:0"])
def test_weight_must_be_positive(spec):
    with pytest.raises(DataError, match=r"weight must be a number > 0"):
        parse_source(spec)


# ---------------------------------------------------------------- plain text


def test_line_documents_are_the_non_blank_lines_of_kant():
    path = datafile("kant/kant.txt")
    expected = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = read(path, doc_per="line")
    assert docs == expected
    assert len(docs) == 5_368


def test_paragraph_documents_join_the_wrapped_lines_of_kant():
    path = datafile("kant/kant.txt")
    expected = naive_paragraphs(path.read_text(encoding="utf-8"))
    docs = read(path, doc_per="paragraph")
    assert docs == expected
    assert 507 == len(docs) < len(read(path, doc_per="line"))


def test_wikitext_single_space_lines_separate_paragraphs():
    path = datafile("pydoc-wiki/wiki.valid.raw")
    text = path.read_text(encoding="utf-8")
    assert "\n \n" in text  # WikiText's blank lines are a single space
    assert read(path, doc_per="paragraph") == naive_paragraphs(text)
    assert read(path, doc_per="line")[:2] == ['= The "assert" statement =', text.split("\n")[3].strip()]


def test_bom_and_crlf_are_normalised(tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\n two \r\n\r\nthree\r\n")
    assert read(path, doc_per="line") == ["one", "two", "three"]
    assert read(path, doc_per="paragraph") == ["one two", "three"]


def test_unknown_extensions_are_read_as_text(tmp_path):
    path = write_lines(tmp_path / "notes.md", ["# title", "", "body line one", "body line two"])
    assert read(path) == ["# title", "body line one body line two"]


# ---------------------------------------------------------------- JSON


def test_jsonl_field_of_every_line():
    path = datafile("instructions/seed_tasks.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = [json.loads(line)["instruction"].strip() for line in lines]
    assert read(path, text_field="instruction") == expected
    assert len(expected) == 40


@pytest.mark.parametrize("chunk_chars", [1 << 20, 7])
def test_json_array_is_streamed_record_by_record(monkeypatch, chunk_chars):
    monkeypatch.setattr(corpus, "CHUNK_CHARS", chunk_chars)  # 7: every record spans many reads
    path = datafile("instructions/instructions.json")
    records = json.loads(path.read_text(encoding="utf-8"))
    assert read(path, text_field="output") == [r["output"].strip() for r in records if r["output"].strip()]
    inputs = [r["input"].strip() for r in records if r["input"].strip()]
    assert read(path, text_field="input") == inputs
    assert 0 < len(inputs) < 300


def test_json_array_of_strings_and_objects(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text('[" a ", "", {"text": "b"}, {"text": null},\n "c"]\n', encoding="utf-8")
    assert read(path) == ["a", "b", "c"]


def test_json_lines_may_hold_strings_and_blank_lines(tmp_path):
    path = tmp_path / "docs.json"
    path.write_text('{"text": "one", "id": 1}\n\n"two"\n  {"text": "three"}', encoding="utf-8")
    assert read(path) == ["one", "two", "three"]


@pytest.mark.parametrize("chunk_chars", [1 << 20, 5])
def test_json_lines_survive_reads_that_cut_a_line(monkeypatch, chunk_chars):
    monkeypatch.setattr(corpus, "CHUNK_CHARS", chunk_chars)
    path = datafile("instructions/seed_tasks.jsonl")
    assert len(read(path, text_field="instruction")) == 40


# ---------------------------------------------------------------- CSV, TSV, Parquet


def test_csv_with_header_reads_the_named_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('label,text\n1,"hello, world"\n0,"two\nlines"\n1,\n', encoding="utf-8")
    assert read(path) == ["hello, world", "two\nlines"]


def test_headerless_csv_by_index_keeps_quoted_multiline_tweets():
    path = datafile("tweets/validation.csv")
    docs = read(path, text_field="3")
    assert len(docs) == 200
    assert sum("\n" in doc for doc in docs) == 37
    assert not any("\r" in doc for doc in docs)
    assert docs[0].startswith("I mentioned on Facebook that I was struggling for motivation")


def test_tsv_reads_every_sst2_dev_sentence():
    path = datafile("reviews/dev.tsv")
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    docs = read(path, text_field="sentence")
    assert len(docs) == 300
    assert docs == [row.split("\t")[0].strip() for row in rows]


def test_parquet_column_in_batches(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = [f" doc {i} " if i % 7 else None for i in range(10_000)]
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"label": list(range(10_000)), "text": texts}), path, row_group_size=1_000)
    assert read(path) == [t.strip() for t in texts if t]
    with pytest.raises(DataError, match=r"data.parquet: no column 'txt' \(columns: label, text\)"):
        read(path, text_field="txt")
    with pytest.raises(DataError, match=r"column 'label' holds int64, not text"):
        read(path, text_field="label")


# ---------------------------------------------------------------- compression and folders


def test_gzip_and_zstd_read_like_the_plain_file(tmp_path):
    zstd = pytest.importorskip("zstandard")
    kant = datafile("kant/kant.txt")
    seeds = datafile("instructions/seed_tasks.jsonl")
    (tmp_path / "kant.txt.gz").write_bytes(gzip.compress(kant.read_bytes()))
    (tmp_path / "kant.txt.zst").write_bytes(zstd.ZstdCompressor().compress(kant.read_bytes()))
    (tmp_path / "seeds.jsonl.gz").write_bytes(gzip.compress(seeds.read_bytes()))
    assert read(tmp_path / "kant.txt.gz") == read(kant)
    assert read(tmp_path / "kant.txt.zst", doc_per="line") == read(kant, doc_per="line")
    assert read(tmp_path / "seeds.jsonl.gz", text_field="instruction") == read(seeds, text_field="instruction")


def test_folder_is_read_recursively_in_path_order_without_hidden_files(tmp_path, caplog):
    write_lines(tmp_path / "b.txt", ["b"])
    write_lines(tmp_path / "a" / "z.txt", ["a/z"])
    (tmp_path / "a" / "y.jsonl").write_text('{"text": "a/y"}\n', encoding="utf-8")
    (tmp_path / "c.csv").write_text("text\nc\n", encoding="utf-8")
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f.txt.gz").write_bytes(gzip.compress(b"d/e/f\n"))
    (tmp_path / "d" / "empty.txt").write_bytes(b"")
    write_lines(tmp_path / ".hidden.txt", ["hidden"])
    write_lines(tmp_path / ".git" / "x.txt", ["hidden too"])
    with caplog.at_level(logging.WARNING, logger="bertforge.corpus"):
        assert read(tmp_path) == ["a/y", "a/z", "b", "c", "d/e/f"]
    assert "skipping empty file" in caplog.text and "empty.txt" in caplog.text


# ---------------------------------------------------------------- weighted interleave


def two_sources(tmp_path, n: int = 20_000) -> tuple[Path, Path]:
    a = write_lines(tmp_path / "a.txt", [f"a{i}" for i in range(n)])
    b = write_lines(tmp_path / "b.txt", [f"b{i}" for i in range(n)])
    return a, b


@pytest.mark.parametrize("weights, share", [((0.8, 0.2), 0.8), ((None, None), 0.5), ((1, 3), 0.25)])
def test_first_exhausted_share_follows_the_weights(tmp_path, weights, share):
    a, b = two_sources(tmp_path)
    sources = [CorpusSource(str(a), weights[0]), CorpusSource(str(b), weights[1])]
    docs = list(iter_documents(sources, CorpusConfig(doc_per="line", until="first_exhausted", seed=3)))
    from_a = [d for d in docs if d.startswith("a")]
    from_b = [d for d in docs if d.startswith("b")]
    assert abs(len(from_a) / len(docs) - share) <= 0.02
    assert 20_000 in (len(from_a), len(from_b))  # stopped when one source ran out
    assert from_a == [f"a{i}" for i in range(len(from_a))]  # each source keeps its order
    assert from_b == [f"b{i}" for i in range(len(from_b))]


@pytest.mark.parametrize("weighted, until", [(True, "all_exhausted_without_replacement"), (False, "auto")])
def test_without_replacement_yields_every_document_once(tmp_path, weighted, until):
    a = write_lines(tmp_path / "a.txt", [f"a{i}" for i in range(3_000)])
    b = write_lines(tmp_path / "b.txt", [f"b{i}" for i in range(500)])
    c = write_lines(tmp_path / "c.txt", [f"c{i}" for i in range(10)])
    specs = [f"{a}:0.1", f"{b}:5", str(c)] if weighted else [str(a), str(b), str(c)]
    docs = list(iter_documents(specs, CorpusConfig(doc_per="line", until=until)))
    assert len(docs) == 3_510
    for prefix, n in (("a", 3_000), ("b", 500), ("c", 10)):
        assert [d for d in docs if d.startswith(prefix)] == [f"{prefix}{i}" for i in range(n)]
    assert docs[:10] != [f"a{i}" for i in range(10)]  # interleaved, not concatenated


def test_weights_are_shares_a_small_source_repeats_until_the_large_one_is_read(tmp_path, caplog):
    task = write_lines(tmp_path / "task.txt", [f"t{i}" for i in range(300)])
    general = write_lines(tmp_path / "general.txt", [f"g{i}" for i in range(20_000)])
    with caplog.at_level(logging.INFO, logger="bertforge.corpus"):
        docs = list(iter_documents([f"{task}:0.5", f"{general}:0.5"], CorpusConfig(doc_per="line", seed=1)))
    from_task = [d for d in docs if d.startswith("t")]
    from_general = [d for d in docs if d.startswith("g")]
    assert from_general == [f"g{i}" for i in range(20_000)]  # read once, to its end, in order
    assert abs(len(from_task) / len(docs) - 0.5) < 0.01  # the share holds: ~67 passes over task.txt
    passes = -(-len(from_task) // 300)
    assert from_task == ([f"t{i}" for i in range(300)] * passes)[: len(from_task)]  # whole passes, in order
    assert f"task.txt {len(from_task):,} (50%, {passes} passes)" in caplog.text
    assert "general.txt 20,000 (50%)" in caplog.text


def test_same_seed_gives_the_same_order(tmp_path):
    a, b = two_sources(tmp_path, n=2_000)
    specs = [f"{a}:0.7", f"{b}:0.3"]
    once = "all_exhausted_without_replacement"
    first = list(iter_documents(specs, CorpusConfig(doc_per="line", until=once, seed=7)))
    again = list(iter_documents(specs, CorpusConfig(doc_per="line", until=once, seed=7)))
    other = list(iter_documents(specs, CorpusConfig(doc_per="line", until=once, seed=8)))
    assert first == again
    assert other != first and sorted(other) == sorted(first)
    shares = list(iter_documents(specs, CorpusConfig(doc_per="line", seed=7)))
    assert shares == list(iter_documents(specs, CorpusConfig(doc_per="line", seed=7)))


# ---------------------------------------------------------------- bad input: one clear error


def test_missing_path_fails_before_any_document(tmp_path):
    good = write_lines(tmp_path / "good.txt", ["fine"])
    with pytest.raises(DataError, match=r"nope\.txt: no such file or folder"):
        iter_documents([str(good), str(tmp_path / "nope.txt")], CorpusConfig())  # no iteration needed


def test_no_sources_is_an_error():
    with pytest.raises(DataError, match=r"no corpus sources given"):
        iter_documents([], CorpusConfig())


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.txt: file is empty"):
        read(tmp_path / "empty.txt")


@pytest.mark.parametrize(
    "name, content, settings",
    [
        ("blank.txt", " \n\t\n \n", {}),
        ("blank.jsonl", '{"text": ""}\n{"text": "  "}\n{"text": null}\n', {}),
        ("blank.csv", "text,label\n,1\n  ,0\n", {}),
    ],
)
def test_source_without_documents_is_an_error(tmp_path, name, content, settings):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"{re.escape(name)}: no documents"):
        iter_documents([str(tmp_path / name)], CorpusConfig(**settings))


def test_folder_without_readable_files_is_an_error(tmp_path):
    (tmp_path / "only_hidden").mkdir()
    write_lines(tmp_path / "only_hidden" / ".secret.txt", ["x"])
    (tmp_path / "only_empty").mkdir()
    (tmp_path / "only_empty" / "a.txt").write_bytes(b"")
    with pytest.raises(DataError, match=r"only_hidden: folder has no files"):
        read(tmp_path / "only_hidden")
    with pytest.raises(DataError, match=r"only_empty: folder has no readable files"):
        read(tmp_path / "only_empty")


def test_binary_file_is_an_error(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"abc\x00\x01\x02" * 100)
    with pytest.raises(DataError, match=r"model\.bin: binary file \(NUL byte at offset 3\)"):
        read(tmp_path / "model.bin")


def test_invalid_utf8_names_the_byte_offset(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt: not UTF-8 text \(invalid byte at offset 3\)"):
        iter_documents([str(tmp_path / "latin1.txt")], CorpusConfig())


def test_invalid_utf8_after_the_checked_head_is_found_while_streaming(tmp_path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"ok\n" * 10_000 + "\u00e9\n".encode("latin-1"))
    docs = iter_documents([str(path)], CorpusConfig(doc_per="line"))  # the first 8 KiB are fine
    with pytest.raises(DataError, match=r"late\.txt: not UTF-8 text \(invalid byte at offset 30000\)"):
        list(docs)


def test_unknown_csv_column_lists_the_columns(tmp_path):
    (tmp_path / "data.csv").write_text("sentence,label\nhi,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.csv: no column 'txt' \(columns: sentence, label\)"):
        read(tmp_path / "data.csv", text_field="txt")


def test_unknown_tsv_column_on_real_data_lists_the_columns():
    with pytest.raises(DataError, match=r"dev\.tsv: no column 'text' \(columns: sentence, label\)"):
        read(datafile("reviews/dev.tsv"))


def test_headerless_column_index_out_of_range_is_an_error():
    with pytest.raises(DataError, match=r"validation\.csv: line 1 has 4 columns, so no column 9"):
        read(datafile("tweets/validation.csv"), text_field="9")


def test_unknown_json_field_lists_the_fields():
    with pytest.raises(DataError, match=r"line 2: no field 'text' \(fields: instruction, input, output\)"):
        iter_documents([str(datafile("instructions/instructions.json"))], CorpusConfig())


def test_invalid_json_line_names_the_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", ['{"text": "a"}', '{"text": "b"}', '{"text": "c"', '{"text": "d"}'])
    docs = iter_documents([str(path)], CorpusConfig())
    assert next(docs) == "a"
    with pytest.raises(DataError, match=r"bad\.jsonl: line 3: invalid JSON"):
        list(docs)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[\n {"text": "a"},\n {"text": "b"}\n {"text": "c"}\n]\n', r"line 4: invalid JSON \(expected ',' or ']'"),
        ('[\n {"text": "a"},\n {"text": oops},\n {"text": "c"}\n]\n', r"line 3: invalid JSON \(Expecting value\)"),
        ('[{"text": "a"}]\n{"text": "b"}\n', r"line 2: unexpected data after the JSON array"),
        ('[{"text": "a"}, [1]]', r"line 1: expected an object or a string, got an array"),
    ],
)
def test_invalid_json_array_names_the_line(tmp_path, monkeypatch, text, message):
    monkeypatch.setattr(corpus, "CHUNK_CHARS", 4)  # errors are found even when reads cut the text
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=rf"bad\.json: {message}"):
        list(iter_documents([str(path)], CorpusConfig()))


def test_json_field_that_is_not_text_is_an_error(tmp_path):
    path = write_lines(tmp_path / "nums.jsonl", ['{"text": 5}'])
    with pytest.raises(DataError, match=r"nums\.jsonl: line 1: field 'text' holds a number, not text"):
        read(path)


def test_damaged_gzip_is_an_error(tmp_path):
    (tmp_path / "fake.txt.gz").write_text("not gzip at all\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"fake\.txt\.gz: cannot read it"):
        read(tmp_path / "fake.txt.gz")


@pytest.mark.parametrize(
    "modules, name, install",
    [(("pyarrow", "pyarrow.parquet"), "t.parquet", "pyarrow"), (("zstandard",), "t.txt.zst", "zstandard")],
)
def test_missing_optional_package_says_what_to_install(tmp_path, monkeypatch, modules, name, install):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    (tmp_path / name).write_bytes(b"PAR1 or zstd bytes")
    with pytest.raises(DataError, match=rf"{re.escape(name)}: reading it needs {install}: pip install {install}"):
        read(tmp_path / name)


# ---------------------------------------------------------------- Hugging Face datasets


@pytest.fixture
def hf_folder(tmp_path, monkeypatch):
    """A local folder that `datasets.load_dataset` reads as a dataset with train and validation splits."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    pytest.importorskip("datasets")
    folder = tmp_path / "hfdata"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "t1"}\n{"text": " t2 "}\n', encoding="utf-8")
    (folder / "validation.jsonl").write_text('{"text": "v1"}\n{"text": ""}\n{"text": "v2"}\n', encoding="utf-8")
    return folder


def test_hf_source_streams_the_chosen_split(hf_folder):
    assert read(f"hf:{hf_folder}") == ["t1", "t2"]
    assert read(f"hf:{hf_folder}@validation") == ["v1", "v2"]


def test_hf_missing_field_and_bad_split_are_one_line_errors(hf_folder):
    with pytest.raises(DataError, match=r"no field 'txt' \(fields: text\)"):
        iter_documents([f"hf:{hf_folder}"], CorpusConfig(text_field="txt"))
    with pytest.raises(DataError, match=r"@nosuch: cannot load the dataset \(.*\)") as info:
        iter_documents([f"hf:{hf_folder}@nosuch"], CorpusConfig())
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- fingerprint and size


def test_fingerprint_is_stable_and_sees_file_changes(tmp_path):
    a = write_lines(tmp_path / "a.txt", ["one"])
    write_lines(tmp_path / "folder" / "x.txt", ["x"])
    specs = [f"{a}:2", str(tmp_path / "folder"), "hf:wikitext:wikitext-2-raw-v1@validation"]
    cfg = CorpusConfig(doc_per="line")
    first = source_fingerprint(specs, cfg)
    assert json.loads(json.dumps(first)) == first == source_fingerprint(specs, cfg)
    assert first["sources"][0] == {
        "location": str(a),
        "weight": 2.0,
        "files": [{"path": str(a), "size": 4, "mtime_ns": a.stat().st_mtime_ns}],
    }
    assert first["sources"][1]["files"][0]["path"] == str(tmp_path / "folder" / "x.txt")
    assert first["sources"][2] == {"location": "hf:wikitext:wikitext-2-raw-v1@validation", "weight": 1.0}
    assert first["corpus"] == {"text_field": "text", "doc_per": "line", "until": "auto", "seed": 0}
    assert source_fingerprint(specs, CorpusConfig(doc_per="paragraph")) != first
    write_lines(a, ["one", "two"])
    assert source_fingerprint(specs, cfg) != first


def test_count_bytes_sums_file_sizes_and_is_unknown_for_hf(tmp_path):
    a = write_lines(tmp_path / "a.txt", ["one"])
    kant = datafile("kant/kant.txt")
    assert count_bytes([str(a), str(kant)]) == 4 + 354_798
    assert count_bytes([str(a), "hf:wikitext"]) is None


def test_csv_field_limit_allows_long_documents(tmp_path):
    long_text = "word " * 100_000  # 500 KB, above csv's default 128 KiB field limit
    with open(tmp_path / "long.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["text"], [long_text]])
    assert read(tmp_path / "long.csv") == [long_text.strip()]


def test_a_single_source_may_be_passed_without_a_list():
    kant = datafile("kant/kant.txt")
    expected = read(kant)
    assert list(iter_documents(str(kant), CorpusConfig())) == expected
    assert list(iter_documents(kant, CorpusConfig())) == expected
    assert list(iter_documents(CorpusSource(str(kant)), CorpusConfig())) == expected


def test_prepare_cli_prints_the_mix_and_refuses_an_unknown_until(data_dir, tmp_path):
    task = write_lines(tmp_path / "task.txt", [f"Task sentence number {i} is about the weather." for i in range(20)])
    stories = str(datafile("tinystories/tinystories_valid_head.txt"))
    common = ["prepare", "--corpus", f"{task}:0.5", "--corpus", f"{stories}:0.5", "--doc-per", "line",
              "--tokenizer", str(data_dir / "tokenizer")]
    result = run_cli(*common, "--out", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    mix = re.search(r"corpus mix, documents per source: task.txt ([\d,]+) \((\d+)%, (\d+) passes\); "
                    r"tinystories_valid_head.txt ([\d,]+) \((\d+)%\)", result.stderr)
    assert mix, result.stderr
    assert 45 <= int(mix[2]) <= 55 and int(mix[3]) > 10  # twenty lines read over and over to half the mix
    bad = run_cli(*common, "--out", str(tmp_path / "e"), "--set", "corpus.until=sometimes")
    assert_one_line_error(bad, "corpus.until must be one of auto, all_exhausted, first_exhausted")
