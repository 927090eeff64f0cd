"""predict_file and `bertdeploy predict` on a token-classification bundle: one row of entities per record (the
runtime Tagger's, as the pipeline's dicts), pre-split words, aggregation / ignore_labels, csv / tsv as a JSON string
column, and each option that belongs to the other task refused with one line, nothing written."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from bertdeploy.cli import cli
from bertdeploy.errors import UserError
from bertdeploy.runtime import load, predict_file

TEXTS = [
    "i love the movie at night",
    "The Food Service was good today, thanks!",
    "my app login was so slow at work time",
    "book",
    "北京 movie  at\tnight",
    "so very good for my film and this day and it is the app login at work time " * 3,
]


@pytest.fixture(scope="module")
def tagger(tiny_token_bundle):
    with load(tiny_token_bundle, variant="fp32", threads=1) as t:
        yield t


def _dicts(entities) -> list[dict]:
    return [{**e.to_dict(), "score": round(e.score, 6)} for e in entities]


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _run(bundle, src, out, **kw):
    return predict_file(bundle, str(src), str(out), variant="fp32", threads=1, **kw)


@pytest.mark.parametrize("aggregation", ["none", "simple", "first", "average", "max"])
def test_rows_hold_the_entities_of_each_record(tiny_token_bundle, tagger, tmp_path, aggregation):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    rows.insert(2, {"id": "empty", "text": "  "})
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    res = _run(tiny_token_bundle, src, tmp_path / "out.jsonl", aggregation=aggregation, chunk_size=4)
    assert (res.rows, res.skipped, res.skipped_lines, res.task) == (6, 1, [3], "token-classification")
    got = _jsonl(tmp_path / "out.jsonl")
    expected = tagger.predict(TEXTS, aggregation=aggregation)
    assert [r["id"] for r in got] == [f"r{i}" for i in range(len(TEXTS))]
    assert [r["entities"] for r in got] == [_dicts(e) for e in expected]
    assert sum(len(r["entities"]) for r in got) > 5  # the comparison compared something
    for text, row in zip(TEXTS, got, strict=True):
        assert all(e["word"] == text[e["start"] : e["end"]] for e in row["entities"])
        assert all(("index" in e) == (aggregation == "none") for e in row["entities"])


def test_ignore_labels_pre_split_words_and_csv_output(tiny_token_bundle, tagger, tmp_path):
    words = [["The", "Food", "Service", "was", "good"], ["my", "app", "login"]]
    src = tmp_path / "words.jsonl"
    src.write_text("".join(json.dumps({"text": w}) + "\n" for w in [*words, []]), encoding="utf-8")
    res = _run(tiny_token_bundle, src, tmp_path / "out.csv", aggregation="none", ignore_labels=[])
    assert (res.rows, res.skipped_lines) == (2, [3])  # an empty word list is skipped like an empty text
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["row", "entities"] and [r[0] for r in table[1:]] == ["1", "2"]
    joined = [" ".join(w) for w in words]
    expected = tagger.predict(joined, aggregation="none", ignore_labels=None)
    assert [json.loads(r[1]) for r in table[1:]] == [_dicts(e) for e in expected]
    assert [[e["word"] for e in json.loads(r[1])] for r in table[1:]] == words  # every token kept: nothing ignored
    tags = {e.entity_group for found in expected for e in found}
    assert len(tags) > 1
    dropped = sorted(tags)[0]
    _run(tiny_token_bundle, src, tmp_path / "some.jsonl", aggregation="none", ignore_labels=[dropped])
    kept = [[e["entity"] for e in r["entities"]] for r in _jsonl(tmp_path / "some.jsonl")]
    assert kept == [[e.entity_group for e in found if e.entity_group != dropped] for found in expected]


def test_text_file_and_tsv(tiny_token_bundle, tagger, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(t + "\n" for t in TEXTS[:4]), encoding="utf-8")
    res = _run(tiny_token_bundle, src, tmp_path / "out.tsv")
    assert res.rows == 4
    with open(tmp_path / "out.tsv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f, delimiter="\t"))
    assert [json.loads(r["entities"]) for r in table] == [_dicts(e) for e in tagger.predict(TEXTS[:4])]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": ["ok", 3]}\n', "the words at line 1 must be non-blank strings"),
        ('{"text": "fine"}\n{"text": ["ok", " "]}\n', "the words at line 2 must be non-blank strings"),
        ('{"text": {"a": 1}}\n', "the text at line 1 is a object"),
    ],
)
def test_bad_records_name_their_line_and_write_nothing(tiny_token_bundle, tmp_path, content, message):
    src = tmp_path / "in.jsonl"
    src.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        _run(tiny_token_bundle, src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_options_of_the_other_task_are_refused(tiny_token_bundle, varied_bundle, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("i love the movie\n", encoding="utf-8")
    with pytest.raises(UserError, match="probabilities apply to text-classification bundles"):
        _run(tiny_token_bundle, src, tmp_path / "o.jsonl", probabilities=True)
    with pytest.raises(UserError, match="aggregation must be one of"):
        _run(tiny_token_bundle, src, tmp_path / "o.jsonl", aggregation="longest")
    with pytest.raises(UserError, match="ignore_labels must be a list"):
        _run(tiny_token_bundle, src, tmp_path / "o.jsonl", ignore_labels="O")
    with pytest.raises(UserError, match="decoding must be one of bio, argmax"):
        _run(tiny_token_bundle, src, tmp_path / "o.jsonl", decoding="crf")
    for kw in ({"aggregation": "simple"}, {"ignore_labels": ["O"]}, {"decoding": "argmax"}):
        with pytest.raises(UserError, match=f"{next(iter(kw))} applies to token-classification bundles"):
            _run(varied_bundle, src, tmp_path / "o.jsonl", **kw)
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_writes_entities(tiny_token_bundle, tagger, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["predict", str(tiny_token_bundle), "-i", str(src), "-o", str(out), "--variant", "fp32", "--threads", "1"]
    res = CliRunner().invoke(cli, [*args, "--aggregation", "first", "--ignore-labels", "O,TIME"])
    assert res.exit_code == 0, res.output
    assert "rows predicted" in res.output and "texts windowed" in res.output
    expected = tagger.predict(TEXTS, aggregation="first", ignore_labels=["O", "TIME"])
    assert [r["entities"] for r in _jsonl(out)] == [_dicts(e) for e in expected]
    assert all(e["entity_group"] != "TIME" for r in _jsonl(out) for e in r["entities"])


def test_cli_decoding_argmax_writes_the_per_token_choice(tiny_token_bundle, tagger, tmp_path):
    """The tiny untrained tagger's argmax is mostly no valid BIO sequence: the two decodings give other entities."""
    src = tmp_path / "in.txt"
    src.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    rows = {}
    for decoding in ("argmax", "bio"):
        out = tmp_path / f"{decoding}.jsonl"
        args = ["predict", str(tiny_token_bundle), "-i", str(src), "-o", str(out), "--variant", "fp32"]
        res = CliRunner().invoke(cli, [*args, "--aggregation", "none", "--decoding", decoding])
        assert res.exit_code == 0, res.output
        expected = tagger.predict(TEXTS, aggregation="none", decoding=decoding)
        rows[decoding] = [r["entities"] for r in _jsonl(out)]
        assert rows[decoding] == [_dicts(e) for e in expected]
    assert rows["argmax"] != rows["bio"]


@pytest.mark.parametrize(
    "bundle, args, message",
    [
        ("tokens", ["--probabilities"], "probabilities apply to text-classification bundles"),
        ("tokens", ["--aggregation", "longest"], "Invalid value for '--aggregation'"),
        ("text", ["--aggregation", "max"], "aggregation applies to token-classification bundles"),
        ("text", ["--ignore-labels", "O"], "ignore_labels applies to token-classification bundles"),
        ("text", ["--decoding", "argmax"], "decoding applies to token-classification bundles"),
    ],
)
def test_cli_bad_options_are_one_line(tiny_token_bundle, varied_bundle, tmp_path, bundle, args, message):
    src = tmp_path / "in.txt"
    src.write_text("i love the movie\n", encoding="utf-8")
    path = tiny_token_bundle if bundle == "tokens" else varied_bundle
    res = CliRunner().invoke(cli, ["predict", str(path), "-i", str(src), "-o", str(tmp_path / "o.jsonl"), *args])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_pre_split_words_in_parquet(tiny_token_bundle, tagger, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    words = [["The", "Food", "Service"], [], ["my", "app", "login", "was", "slow"]]
    pq.write_table(pa.Table.from_pylist([{"id": i, "text": w} for i, w in enumerate(words)]), tmp_path / "in.parquet")
    res = _run(tiny_token_bundle, tmp_path / "in.parquet", tmp_path / "out.jsonl", aggregation="average")
    assert (res.rows, res.skipped_lines) == (2, [2])
    got = _jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in got] == [0, 2]
    expected = tagger.predict([words[0], words[2]], aggregation="average")
    assert [r["entities"] for r in got] == [_dicts(e) for e in expected]
