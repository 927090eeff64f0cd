"""The ``serve`` and ``whole-file`` scenarios of ``bertdeploy bench`` on the tiny bundle (short runs; no timing
assertions: what is checked is that every cell is measured, with the one percentile definition, and written)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertdeploy.benchmark.scenarios.common import read_texts, write_results
from bertdeploy.benchmark.scenarios.serve_load import ServeLoadConfig, run_serve_load, summarize
from bertdeploy.benchmark.timing import percentiles
from bertdeploy.errors import UserError


def test_read_texts_of_a_folder_is_its_test_split(tiny_data_dir):
    texts = read_texts(str(tiny_data_dir), limit=7)
    assert len(texts) == 7 and texts == read_texts(str(tiny_data_dir / "test.csv"))[:7]


def test_write_results_rewrites_only_the_readme_block(tmp_path):
    (tmp_path / "README.md").write_text("intro\n<!-- results -->\nold\n<!-- /results -->\nafter\n")
    files = write_results({"a": 1}, tmp_path, "| new |")
    assert json.loads(files["results"].read_text()) == {"a": 1}
    assert (tmp_path / "README.md").read_text() == "intro\n<!-- results -->\n| new |\n<!-- /results -->\nafter\n"


def test_summarize_keeps_the_best_round_and_the_median():
    cells = {"on:8": [{"texts_per_s": 10.0, "x": 1}, {"texts_per_s": 30.0, "x": 2}, {"texts_per_s": 20.0, "x": 3}]}
    s = summarize(cells)["on:8"]
    assert (s["x"], s["median_texts_per_s"], s["rounds"]) == (2, 20.0, 3)


def test_serve_config_refuses_bad_modes(tmp_path):
    with pytest.raises(UserError, match="batching modes"):
        ServeLoadConfig(bundle="b", data="d", output=str(tmp_path), modes=["maybe"])


def test_serve_scenario_end_to_end(tiny_bundle, tiny_data_dir, tmp_path):
    cfg = ServeLoadConfig(
        bundle=str(tiny_bundle),
        data=str(tiny_data_dir),
        output=str(tmp_path),
        variant="fp32",
        threads=1,
        clients=[1, 4],
        modes=["on"],
        repeats=1,
        texts=12,
    )
    res = run_serve_load(cfg)
    s = res["summary"]
    assert set(s) == {"offline", "offline_streams", "on:1", "on:4"}
    for key in ("on:1", "on:4"):
        cell = res["rounds"][key][0]
        assert cell["server_cpu_ms_per_text"] >= 0 and cell["texts_per_s"] > 0  # below a clock tick: 0
        assert cell["p50_ms"] <= cell["p90_ms"] <= cell["p99_ms"]
    assert s["on:1"]["mean_batch"] == pytest.approx(1.0)
    assert s["offline"]["cpu_ms_per_text"] >= 0
    report = (tmp_path / "report.md").read_text()
    assert "| serve, batching on | 4 |" in report and json.loads((tmp_path / "results.json").read_text())


def test_percentiles_is_numpys_linear_definition():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentiles(values)["p90"] == pytest.approx(float(np.percentile(values, 90)))


def test_bench_cli_serve_scenario(tiny_bundle, tiny_data_dir, tmp_path):
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    (tmp_path / "README.md").write_text("# serve\n<!-- results -->\n<!-- /results -->\n")
    args = ["bench", "--scenario", "serve", str(tiny_bundle), "--data", str(tiny_data_dir / "test.csv")]
    args += ["-o", str(tmp_path), "--variants", "fp32", "--threads", "1", "--clients", "2", "--repeats", "1"]
    r = CliRunner().invoke(cli, [*args, "--texts", "6"])
    assert r.exit_code == 0, r.output
    readme = (tmp_path / "README.md").read_text()
    assert "| serve, batching off | 2 |" in readme and "bertdeploy bench --scenario serve" in readme
    assert json.loads((tmp_path / "results.json").read_text())["config"]["n_texts"] == 6


def test_bench_cli_scenario_needs_one_bundle(tmp_path):
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    r = CliRunner().invoke(cli, ["bench", "--scenario", "serve", "a", "b", "--data", "x", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "needs one bundle" in r.output


def test_whole_file_scenario_end_to_end(tiny_bundle, tiny_data_dir, tmp_path):
    from bertdeploy.benchmark.scenarios.whole_file import WholeFileConfig, run_whole_file

    (tmp_path / "README.md").write_text("<!-- results -->\n<!-- /results -->\n")
    engines = ["bertdeploy:fp32", "bertdeploy:fp32:static", "bertdeploy:auto", "bertdeploy:fp32:bucketed:streams=2"]
    absent = "bertdeploy:fp32_ov_bf16"  # not in the tiny bundle: skipped with its reason, the others measured
    cfg = WholeFileConfig(
        bundle=str(tiny_bundle), data=str(tiny_data_dir), output=str(tmp_path), engines=[*engines, absent],
        threads=1, repeats=2, latency=4, texts=12, min_seconds=0.05,
    )  # fmt: skip
    res = run_whole_file(cfg)
    runs = {r["engine"]: r for r in res["runs"]}
    assert list(runs) == engines and len(res["loads"]) == 3
    assert [s["engine"] for s in res["skipped"]] == [absent] and "not in the bundle" in res["skipped"][0]["reason"]
    assert f"`{absent}` skipped: variant fp32_ov_bf16 is not in the bundle" in (tmp_path / "README.md").read_text()
    for r in runs.values():
        assert len(r["rounds"]) == 2 and r["texts"] == 12 and 0 <= r["accuracy"] <= 1
        assert all(x["seconds"] >= 0.05 and x["passes"] >= 1 for x in r["rounds"])
        assert r["texts_per_s"] >= r["texts_per_s_median"] > 0
        assert r["batch1"]["n"] == 4 and r["batch1"]["p50_ms"] <= r["batch1"]["p90_ms"]
    assert runs["bertdeploy:fp32"]["labels"] == runs["bertdeploy:fp32:static"]["labels"]  # fp32: padding-invariant
    two = runs["bertdeploy:fp32:bucketed:streams=2"]
    assert two["info"]["streams"] == 2 and runs["bertdeploy:fp32"]["info"]["streams"] == 1
    assert two["labels"] == runs["bertdeploy:fp32"]["labels"]
    assert "| `bertdeploy:fp32:static` |" in (tmp_path / "README.md").read_text()
    # auto is what `load(bundle)` gives on this machine, named in the row (the tiny bundle: qint8 without the plugin)
    chosen = runs["bertdeploy:auto"]["info"]["variant"]
    assert (
        chosen in ("qint8", "fp32_ov_bf16")
        and f"| `bertdeploy:auto` ({chosen}) |" in (tmp_path / "README.md").read_text()
    )


def test_whole_file_rounds_pass_over_the_file_until_their_minimum_time():
    import time

    from bertdeploy.benchmark.scenarios.whole_file_worker import timed_passes

    calls = []

    def predict(texts):
        calls.append(len(texts))
        time.sleep(0.01)
        return [t.upper() for t in texts]

    labels, seconds, passes = timed_passes(predict, ["a", "b"], 0.045)
    assert labels == ["A", "B"] and seconds >= 0.045 and passes == len(calls) >= 4 and set(calls) == {2}
    calls.clear()
    assert timed_passes(predict, ["a"], 0.0)[2] == 1 == len(calls)


def test_whole_file_rates_count_every_pass_of_a_round():
    from bertdeploy.benchmark.scenarios.whole_file import _result

    class W:
        engine, info = "bertdeploy:qint8", {}

    rounds = [{"seconds": 2.0, "passes": 4, "load_1m": 0.1}, {"seconds": 1.0, "passes": 1, "load_1m": 0.9}]
    rounds.append({"seconds": 1.5, "passes": 1, "load_1m": 0.5})
    res = _result(W(), rounds, {"texts": 100, "labels": [], "accuracy": None}, None)
    assert res["texts_per_s"] == pytest.approx(200.0) and res["load_at_best"] == 0.1
    assert res["texts_per_s_median"] == pytest.approx(100.0)


def test_whole_file_engine_specs():
    from bertdeploy.benchmark.scenarios.whole_file_worker import parse_engine

    assert parse_engine("bertdeploy:fp32") == ("bertdeploy", "fp32", "bucketed", None)
    assert parse_engine("ortmodel:fp32") == ("ortmodel", "fp32", "dynamic", None)
    assert parse_engine("bertdeploy:fp32:static") == ("bertdeploy", "fp32", "static", None)
    assert parse_engine("bertdeploy:auto:bucketed:streams=2") == ("bertdeploy", "auto", "bucketed", 2)
    for bad in ("bertdeploy:fp32:bucketed:streams=0", "ortmodel:fp32:dynamic:streams=2", "bertdeploy:fp32::x=2"):
        with pytest.raises(UserError, match="streams=N"):
            parse_engine(bad)


def test_synthetic_texts_have_the_asked_lengths(tiny_bundle):
    from tokenizers import Tokenizer

    from bertdeploy.benchmark.scenarios.whole_file import synthetic_texts

    texts = synthetic_texts(str(tiny_bundle), ["some words here", "and a few more words"], 24, n=5)
    tok = Tokenizer.from_file(str(tiny_bundle / "tokenizer.json"))
    tok.no_truncation()
    assert len(texts) == 5 and all(12 <= len(tok.encode(t).ids) <= 24 for t in texts)


def test_headline_regenerates_the_committed_readme_block(tmp_path):
    from pathlib import Path

    from bertdeploy.benchmark.scenarios.headline import END, START, update_readme

    root = Path(__file__).resolve().parents[1]
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{START}\nstale\n{END}\nbottom\n")
    # the folder `make bench-runtime` writes (and rewrites the README block from)
    makefile = (root / "Makefile").read_text().splitlines()
    runs = root / next(line.split("?=", 1)[1].strip() for line in makefile if line.startswith("RUNTIME_OUT ?="))
    update_readme(readme, [runs / "minilm", runs / "bert-tiny"])
    committed = (root / "README.md").read_text()
    block = committed.split(START, 1)[1].split(END, 1)[0]
    assert readme.read_text() == f"top\n{START}{block}{END}\nbottom\n"
    # the default's row names what `auto` chose, and stands against the fastest peer
    assert "**`load(bundle)` default** (fp32_ov_bf16)" in block and "best peer" in block


def test_headline_refuses_what_is_not_a_whole_file_run(tmp_path):
    from bertdeploy.benchmark.scenarios.headline import headline_table
    from bertdeploy.errors import UserError

    with pytest.raises(UserError, match="no results.json"):
        headline_table([tmp_path])
    (tmp_path / "results.json").write_text('{"scenario": "serve", "runs": [1]}')
    with pytest.raises(UserError, match="not the results of a whole-file run"):
        headline_table([tmp_path])


def test_ortmodel_reads_the_file_of_the_named_bundle_variant(tiny_bundle):
    from bertdeploy.benchmark.contract import BackendContext
    from bertdeploy.benchmark.engines import _bundle_file
    from bertdeploy.bundle import read_manifest

    variants = read_manifest(tiny_bundle).variants
    other = next(v for v in variants if v.file != "onnx/model.onnx")
    ctx = BackendContext(None, tiny_bundle, ["a"], 32, other.name, 1, "cpu", 8)
    assert _bundle_file(ctx) == (other.file, other.precision)
    ctx.variant = "int8"  # a torch dtype, not a bundle variant: the plain fp32 export
    assert _bundle_file(ctx) == ("onnx/model.onnx", "fp32")


def test_whole_file_worker_that_cannot_start_is_one_error_with_its_log(tiny_bundle, tiny_data_dir, tmp_path):
    from bertdeploy.benchmark.scenarios.whole_file import WholeFileConfig, run_whole_file

    cfg = WholeFileConfig(
        bundle=str(tiny_bundle), data=str(tiny_data_dir), output=str(tmp_path), engines=["nosuch:fp32"]
    )
    with pytest.raises(UserError, match="nosuch:fp32: the worker failed to start(.|\n)*unknown backend 'nosuch'"):
        run_whole_file(cfg)
    assert not (tmp_path / "results.json").exists()
