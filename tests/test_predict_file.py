"""predict_file and `bertdeploy predict`: formats, empty rows, streaming, atomic output, bad input."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from helpers import tiny_texts

from bertdeploy.cli import cli
from bertdeploy.errors import UserError
from bertdeploy.runtime import load, predict_file

TEXTS = [t for t, _ in tiny_texts(40, seed=11)]


@pytest.fixture(scope="module")
def expected(varied_bundle) -> list[str]:
    return [p.label for p in load(varied_bundle, variant="fp32", threads=1).predict(TEXTS)]


def _write_inputs(root):
    """The same 40 texts (plus two empty records at rows 3 and 10) in every input format."""
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    rows.insert(2, {"id": "e1", "text": ""})
    rows.insert(9, {"id": "e2", "text": "   "})
    paths = {}
    with open(root / "in.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["id", "text"])
        w.writeheader()
        w.writerows(rows)
    paths["csv"] = root / "in.csv"
    with open(root / "in.tsv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["text"], delimiter="\t", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    paths["tsv"] = root / "in.tsv"
    (root / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    paths["jsonl"] = root / "in.jsonl"
    (root / "in.txt").write_text("".join(r["text"] + "\n" for r in rows), encoding="utf-8")
    paths["txt"] = root / "in.txt"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), root / "in.parquet")
    paths["parquet"] = root / "in.parquet"
    return paths


def _read_output(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "txt", "parquet"])
def test_every_input_format(varied_bundle, tmp_path, expected, fmt):
    src = _write_inputs(tmp_path)[fmt]
    out = tmp_path / ("out.csv" if fmt in ("csv", "parquet") else "out.jsonl")
    res = predict_file(varied_bundle, str(src), str(out), variant="fp32", threads=1, chunk_size=16)
    assert (res.rows, res.skipped) == (40, 2)
    rows = _read_output(out)
    assert [r["label"] for r in rows] == expected
    key = "id" if fmt in ("csv", "jsonl", "parquet") else "row"
    assert list(rows[0])[:3] == [key, "label", "score"]
    if key == "id":
        assert str(rows[0]["id"]) == "r0" and str(rows[-1]["id"]) == "r39"
    else:
        assert [int(r["row"]) for r in rows[:4]] == [1, 2, 4, 5]  # record 3 is empty
    # line numbers of the empty records: text/jsonl line = record; csv/tsv +1 for the header
    offset = {"csv": 1, "tsv": 1}.get(fmt, 0)
    assert res.skipped_lines == [3 + offset, 10 + offset]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary left


def test_probabilities_chunking_and_tsv_output(varied_bundle, tmp_path):
    src = _write_inputs(tmp_path)["jsonl"]
    a, b = tmp_path / "a.tsv", tmp_path / "b.jsonl"
    predict_file(varied_bundle, str(src), str(a), variant="fp32", threads=1, probabilities=True, chunk_size=3)
    predict_file(varied_bundle, str(src), str(b), variant="fp32", threads=1, probabilities=True, chunk_size=1000)
    ra, rb = _read_output(a), _read_output(b)
    assert list(ra[0]) == ["id", "label", "score", "p_negative", "p_neutral", "p_positive"]
    assert [r["label"] for r in ra] == [r["label"] for r in rb]
    for x, y in zip(ra, rb):
        assert abs(float(x["p_" + y["label"]]) - y["score"]) < 1e-4
        assert abs(sum(y["probabilities"].values()) - 1) < 1e-4


def test_truncation_counted(varied_bundle, tmp_path):
    src = tmp_path / "long.txt"
    src.write_text("good " * 200 + "\nbad\n", encoding="utf-8")
    res = predict_file(varied_bundle, str(src), str(tmp_path / "o.jsonl"), variant="fp32", threads=1)
    assert (res.rows, res.truncated) == (2, 1)


def test_a_csv_field_longer_than_the_csv_module_default(varied_bundle, tmp_path):
    """csv's default field limit (131,072 characters) rejected the whole file; the limit is lifted while reading
    and restored afterwards."""
    limit = csv.field_size_limit()
    src = tmp_path / "long.csv"
    src.write_text("text\n" + "good " * 40_000 + "\nbad\n", encoding="utf-8")
    res = predict_file(varied_bundle, str(src), str(tmp_path / "o.jsonl"), variant="fp32", threads=1)
    assert (res.rows, res.truncated) == (2, 1)
    assert csv.field_size_limit() == limit


def test_null_is_skipped_and_other_values_are_an_error(varied_bundle, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "good"}\n{"text": null}\n{"text": ""}\n{"text": "bad"}\n', encoding="utf-8")
    res = predict_file(varied_bundle, str(src), str(tmp_path / "o.jsonl"), variant="fp32", threads=1)
    assert (res.rows, res.skipped, res.skipped_lines) == (2, 2, [2, 3])
    src.write_text('{"text": "good"}\n{"text": 7.5}\n', encoding="utf-8")
    with pytest.raises(UserError, match="the text at line 2 is a number \\(7.5\\), not a string"):
        predict_file(varied_bundle, str(src), str(tmp_path / "p.jsonl"), variant="fp32", threads=1)
    assert not (tmp_path / "p.jsonl").exists()


def test_bad_inputs(varied_bundle, tmp_path):
    def run(src, out="out.jsonl", **kw):
        return predict_file(varied_bundle, str(src), str(tmp_path / out), variant="fp32", threads=1, **kw)

    good = _write_inputs(tmp_path)["csv"]
    with pytest.raises(UserError, match="input not found"):
        run(tmp_path / "missing.csv")
    with pytest.raises(UserError, match="text column 'body' not found.*columns: id, text"):
        run(good, text_column="body")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        run(latin)
    for name, content in (("empty.csv", ""), ("header.csv", "text\n"), ("empty.txt", ""), ("e.jsonl", "\n")):
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(UserError, match="empty"):
            run(tmp_path / name)
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(UserError, match="no non-empty text"):
        run(tmp_path / "blank.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(UserError, match="bad.jsonl:2: invalid JSON"):
        run(tmp_path / "bad.jsonl")
    with pytest.raises(UserError, match="output format"):
        run(good, out="out.xlsx")
    with pytest.raises(UserError, match="overwrite the input"):
        predict_file(varied_bundle, str(good), str(good))
    with pytest.raises(UserError, match="engine"):
        run(good, engine="spark")
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written by any failure above


def test_failure_midway_leaves_previous_output(varied_bundle, tmp_path):
    """A malformed record after the first chunk aborts the run; the old output file is untouched."""
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n", encoding="utf-8")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS) + "{broken\n", encoding="utf-8")
    with pytest.raises(UserError, match="invalid JSON"):
        predict_file(varied_bundle, str(src), str(out), variant="fp32", threads=1, chunk_size=8)
    assert out.read_text(encoding="utf-8") == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_cli_predict(varied_bundle, tmp_path, expected):
    src = _write_inputs(tmp_path)["csv"]
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(
        cli, ["predict", str(varied_bundle), "-i", str(src), "-o", str(out), "--variant", "fp32", "--threads", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "rows predicted" in res.output and "40" in res.output
    assert "skipped empty text at line(s): 4, 11" in res.output
    assert [r["label"] for r in _read_output(out)] == expected


def test_cli_stdin_to_stdout(varied_bundle, expected):
    data = "".join(t + "\n" for t in TEXTS).encode("utf-8")
    args = ["predict", str(varied_bundle), "-i", "-", "-o", "-", "--variant", "fp32", "-q"]
    res = CliRunner().invoke(cli, args, input=data)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["label"] for r in rows] == expected


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variant", "O3"], "variant 'O3' is not in the bundle"),
        (["--device", "cuda"], "device 'cuda' requested"),
        (["--text-column", "body"], "text column 'body' not found"),
        (["--batch-size", "0"], "batch_size must be >= 1"),
    ],
)
def test_cli_errors_are_one_line(varied_bundle, tmp_path, args, message):
    src = _write_inputs(tmp_path)["csv"]
    res = CliRunner().invoke(
        cli, ["predict", str(varied_bundle), "-i", str(src), "-o", str(tmp_path / "o.jsonl")] + args
    )
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_missing_and_tampered_bundle(varied_bundle, tmp_path):
    import shutil

    src, out = tmp_path / "in.txt", str(tmp_path / "o.jsonl")
    src.write_text("hello\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["predict", str(tmp_path / "nope"), "-i", str(src), "-o", out])
    assert res.exit_code == 2 and res.stderr.startswith("error: bundle not found")
    copy = tmp_path / "bundle"
    shutil.copytree(varied_bundle, copy)
    with open(copy / "onnx" / "model.onnx", "ab") as f:
        f.write(b"\0")
    res = CliRunner().invoke(cli, ["predict", str(copy), "-i", str(src), "-o", out, "--variant", "fp32"])
    assert res.exit_code == 2 and "sha256 mismatch" in res.stderr and len(res.stderr.splitlines()) == 1


def test_a_file_job_runs_a_stream_per_thread_on_the_cpu_unless_told(varied_bundle, tmp_path, monkeypatch, expected):
    """A file is throughput only: left out, ``streams`` is one stream per thread on the CPU (either provider); given,
    or on a GPU, it is left as it is."""
    from bertdeploy.runtime import LoadOptions, loader
    from bertdeploy.runtime.files import file_job_options

    used: list[int | None] = []
    real = loader.load_with
    spy = lambda bundle, options: used.append(options.streams) or real(bundle, options)  # noqa: E731
    monkeypatch.setattr(loader, "load_with", spy)
    src = _write_inputs(tmp_path)["csv"]
    predict_file(varied_bundle, str(src), str(tmp_path / "a.csv"), variant="fp32", threads=2)
    predict_file(varied_bundle, str(src), str(tmp_path / "b.csv"), variant="fp32", threads=2, streams=1)
    assert used == [LoadOptions(threads=2).threads, 1]  # 2, or fewer on a machine with fewer CPUs
    assert [r["label"] for r in _read_output(tmp_path / "a.csv")] == expected == [
        r["label"] for r in _read_output(tmp_path / "b.csv")]  # fmt: skip
    assert file_job_options(LoadOptions(threads=1)).streams == 1
    assert file_job_options(LoadOptions(threads=2, provider="openvino")).streams == 2
    assert file_job_options(LoadOptions(threads=2, streams=1)).streams == 1
    assert file_job_options(LoadOptions(device="cuda")).streams is None
