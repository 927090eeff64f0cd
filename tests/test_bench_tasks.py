"""bench beyond text classification, on tiny bundles (inline isolation, short timing budgets; no assertion on speed):
the task's metric column for every backend, agreement by the task's rule, the peer section of the report, pick on
the task's metric, and bad inputs as one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bertdeploy.benchmark import BenchConfig, bench
from bertdeploy.benchmark.pick import pick
from bertdeploy.benchmark.summary import peer_rows
from bertdeploy.cli import cli
from bertdeploy.errors import UserError


def _cfg(out: Path, bundle: Path, data: Path, **kw) -> BenchConfig:
    base = dict(
        targets=[str(bundle)],
        data=str(data),
        output=str(out),
        backends=["bertdeploy", "torch", "pipeline", "ortmodel"],
        variants=["fp32", "qint8"],
        torch_dtypes=["fp32"],
        padding=["dynamic"],
        batch_sizes=[1, 2],
        min_seconds=0.0,
        min_iterations=2,
        warmup_iterations=1,
        timing_texts=8,
        isolation="inline",
        gemm_seconds=0.0,
    )
    base.update(kw)
    return BenchConfig(**base)


def _by_block(result) -> dict[tuple[str, str], dict]:
    return {(r["backend"], r["variant"]): r for r in result.rows if r["batch_size"] == 1}


def _blocks_scored(result, metric: str, blocks: set[tuple[str, str]]) -> None:
    """Every cell ran, and every backend has the task's metric."""
    assert {r["status"] for r in result.rows} == {"ok"}, [r["error"] for r in result.rows if r["error"]]
    by = _by_block(result)
    assert set(by) == blocks
    for r in by.values():
        assert r[metric] is not None and 0.0 <= r[metric] <= 1.0, r
        assert r["agreement_torch"] is not None and r["e2e_seq_per_s"] > 0


# ---------------------------------------------------------------------------------------- token classification
@pytest.fixture(scope="module")
def token_sweep(tmp_path_factory, tiny_token_bundle, tiny_token_dir):
    out = tmp_path_factory.mktemp("bench_tokens") / "out"
    return bench(_cfg(out, tiny_token_bundle, tiny_token_dir, pick=True, max_accuracy_drop=99.0))


def _gold_spans(data: Path) -> tuple[list[str], list[list[tuple]]]:
    from bertdeploy.metrics import gold_spans

    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines() if line.strip()]
    return [" ".join(r["tokens"]) for r in rows], [gold_spans(r["tokens"], r["tags"]) for r in rows]


def test_token_sweep_scores_entity_f1_from_the_runtimes_character_spans(token_sweep, tiny_token_bundle, tiny_token_dir):
    from bertdeploy.metrics import span_metrics
    from bertdeploy.runtime import load

    blocks = {("bertdeploy", "fp32"), ("bertdeploy", "qint8"), ("torch", "fp32"), ("pipeline", "fp32"),
              ("ortmodel", "fp32")}  # fmt: skip
    _blocks_scored(token_sweep, "f1", blocks)
    # the column is entity F1 of the runtime's entities (aggregation first) on the space-joined test sentences
    texts, gold = _gold_spans(tiny_token_dir)
    found = load(tiny_token_bundle, variant="fp32", threads=1).predict(texts, aggregation="first")
    spans = [[(e.entity_group, e.start, e.end) for e in entities] for entities in found]
    by = _by_block(token_sweep)
    assert by[("bertdeploy", "fp32")]["f1"] == pytest.approx(span_metrics(gold, spans)["f1"])
    assert (
        by[("bertdeploy", "fp32")]["entity_precision"] is not None
        and by[("bertdeploy", "qint8")]["precision"] == "int8"
    )
    # fp32 ONNX and PyTorch inside the same pre / post-processing: the same entities in every text
    assert by[("bertdeploy", "fp32")]["agreement_torch"] == 1.0
    assert by[("bertdeploy", "fp32")]["f1"] == by[("torch", "fp32")]["f1"]
    assert (
        by[("torch", "fp32")]["agreement_source"] == "measured" and by[("torch", "fp32")]["max_abs_diff_torch"] is None
    )
    # the pipeline (its own tokenization, per-token argmax) finds other entities where the tiny untrained tagger's
    # argmax is no valid BIO sequence (I- tags everywhere), which the runtime's sequence decoding rereads
    assert (
        0.3 <= by[("bertdeploy", "fp32")]["agreement_peer"] < 1.0 and by[("pipeline", "fp32")]["agreement_peer"] == 1.0
    )


def test_token_outputs_title_the_metric_and_report_the_peer(token_sweep):
    out = token_sweep.output
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "token-classification" and res["targets"]["bundle"]["task"] == "token-classification"
    with open(out / "results.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert {"f1", "entity_precision", "entity_recall", "agreement_peer"} <= set(row) and "accuracy" not in row
    report = (out / "report.md").read_text()
    assert "| entity F1 |" in report and "## Against the transformers pipeline (pipeline fp32)" in report
    assert "× peer b2" in report and "entity set" in report and "## Entity F1 vs latency" in report
    rows = peer_rows(token_sweep.report)
    pipe = next(r for r in rows if r["engine"] == "pipeline fp32")
    ours = next(r for r in rows if r["engine"] == "fp32")
    assert pipe["vs_peer"] == {1: 1.0, 2: 1.0}
    assert ours["vs_peer"][2] == pytest.approx(ours["throughput"][2] / pipe["throughput"][2])
    assert ours["delta_points"] == {"f1": 0.0} and ours["delta_reference"] == "bertdeploy fp32"


def test_token_pick_uses_entity_f1(token_sweep):
    p = token_sweep.pick
    assert p["metric"] == "f1" and p["variant"] in ("fp32", "qint8") and "f1_drop" in p
    assert p["reference"]["f1"] >= p["f1"] - 0.99


def test_pick_on_the_task_metric():
    def row(variant, f1, p50):
        return {"target": "m", "backend": "bertdeploy", "variant": variant, "padding": "dynamic", "batch_size": 1,
                "status": "ok", "f1": f1, "e2e_p50_ms": p50, "e2e_seq_per_s": 1e3 / p50}  # fmt: skip

    rows = [row("fp32", 0.96, 10.0), row("qint8", 0.955, 4.0), row("qint8_static", 0.90, 3.0)]
    assert pick(rows, 1.0, metric="f1")["variant"] == "qint8"
    assert pick(rows, 10.0, metric="f1")["f1_drop"] == pytest.approx(6.0)
    with pytest.raises(UserError, match="no timed row has an accuracy"):
        pick(rows, 1.0)  # the rows hold no accuracy: the metric must be named
    with pytest.raises(UserError, match="within 0.1 f1 points of the reference f1 0.9600"):
        pick([{**rows[0], "backend": "torch"}, rows[1]], 0.1, metric="f1")


# ---------------------------------------------------------------------------------------- question answering
@pytest.fixture(scope="module")
def qa_sweep(tmp_path_factory, tiny_qa_bundle, tiny_qa_dir):
    out = tmp_path_factory.mktemp("bench_qa") / "out"
    return bench(_cfg(out, tiny_qa_bundle, tiny_qa_dir, pick=True, max_accuracy_drop=99.0))


def test_qa_sweep_scores_em_f1_per_question_with_windows(qa_sweep, tiny_qa_bundle, tiny_qa_dir):
    from bertdeploy.metrics_qa import qa_metrics
    from bertdeploy.runtime import load

    blocks = {("bertdeploy", "fp32"), ("bertdeploy", "qint8"), ("torch", "fp32"), ("pipeline", "fp32"),
              ("ortmodel", "fp32")}  # fmt: skip
    _blocks_scored(qa_sweep, "f1", blocks)
    by = _by_block(qa_sweep)
    assert all(r["exact_match"] is not None for r in by.values())
    rows = [json.loads(line) for line in (tiny_qa_dir / "test.jsonl").read_text().splitlines()]
    answers = load(tiny_qa_bundle, variant="fp32", threads=1).predict(rows)
    expected = qa_metrics([a.answer for a in answers], [r["answers"]["text"] for r in rows])
    assert by[("bertdeploy", "fp32")]["f1"] == pytest.approx(expected["f1"])
    assert by[("bertdeploy", "fp32")]["exact_match"] == pytest.approx(expected["exact_match"])
    # the same answer search on PyTorch's logits: every answer span equal; the pipeline's own search too (nearly)
    assert by[("bertdeploy", "fp32")]["agreement_torch"] == 1.0 and by[("torch", "fp32")]["f1"] == expected["f1"]
    assert by[("bertdeploy", "fp32")]["agreement_peer"] >= 0.9
    # timed per question on real contexts, windows included: max_length 32 cuts the tiny contexts into windows
    timing = qa_sweep.report.targets["bundle"]["timing"]
    assert timing["mean_sequences"] > 1.0  # some timed question needs two windows


def test_qa_report_and_pick(qa_sweep):
    report = (qa_sweep.output / "report.md").read_text()
    assert "| F1 | EM |" in report and "questions whose answer span" in report and "q/s, largest batch" in report
    assert "## Against the transformers pipeline (pipeline fp32)" in report and "questions/s b1" in report
    assert "| Δ F1 vs bertdeploy fp32 | Δ EM vs bertdeploy fp32 |" in report
    int8 = next(r for r in peer_rows(qa_sweep.report) if r["engine"] == "qint8")
    fp32 = next(r for r in peer_rows(qa_sweep.report) if r["engine"] == "fp32")
    em = int8["metrics"]["exact_match"] - fp32["metrics"]["exact_match"]
    assert int8["delta_points"]["exact_match"] == pytest.approx(100 * em)
    assert qa_sweep.pick["metric"] == "f1" and "f1_drop" in qa_sweep.pick


def test_qa_block_in_a_worker_subprocess(tmp_path, tiny_qa_bundle, tiny_qa_dir):
    """Question / context records and JSON answers cross the worker's process boundary."""
    cfg = _cfg(tmp_path / "o", tiny_qa_bundle, tiny_qa_dir, backends=["bertdeploy"], variants=["fp32"],
               batch_sizes=[2], isolation="process")  # fmt: skip
    (row,) = bench(cfg).rows
    assert row["status"] == "ok", row["error"]
    assert row["f1"] is not None and row["exact_match"] is not None
    assert row["agreement_source"] == "export" and row["agreement_torch"] == 1.0  # the gate's span agreement


def test_compare_on_the_task_metric(token_sweep, qa_sweep):
    from bertdeploy.benchmark import compare

    c = compare(token_sweep.output, token_sweep.output)
    assert c.metric == "f1" and {r["f1_delta"] for r in c.rows} == {0.0}
    r = CliRunner().invoke(cli, ["bench", "compare", str(token_sweep.output), str(token_sweep.output)])
    assert r.exit_code == 0 and "Δf1" in r.output
    with pytest.raises(UserError, match="A holds token-classification results and B question-answering results"):
        compare(token_sweep.output, qa_sweep.output)


# ---------------------------------------------------------------------------------------- multiple choice
def test_multiple_choice_sweep(tmp_path, tiny_mc_bundle, tiny_mc_dir):
    from bertdeploy.runtime import load

    result = bench(_cfg(tmp_path / "o", tiny_mc_bundle, tiny_mc_dir, torch_dtypes=["fp32", "int8"]))
    skipped = {r["error"] for r in result.rows if r["backend"] == "pipeline"}
    assert skipped == {"transformers has no multiple-choice pipeline (PyTorch eager and ORTModel are the peers)"}
    result.rows[:] = [r for r in result.rows if r["backend"] != "pipeline"]
    blocks = {
        ("bertdeploy", "fp32"),
        ("bertdeploy", "qint8"),
        ("torch", "fp32"),
        ("torch", "int8"),
        ("ortmodel", "fp32"),
    }
    _blocks_scored(result, "accuracy", blocks)
    rows = [json.loads(line) for line in (tiny_mc_dir / "test.jsonl").read_text().splitlines()]
    chosen = load(tiny_mc_bundle, variant="fp32", threads=1).predict(rows)
    expected = sum(c.label == r["label"] for c, r in zip(chosen, rows)) / len(rows)
    by = _by_block(result)
    assert by[("bertdeploy", "fp32")]["accuracy"] == pytest.approx(expected)
    assert by[("bertdeploy", "fp32")]["agreement_torch"] == 1.0 and by[("ortmodel", "fp32")]["agreement_torch"] == 1.0
    assert by[("bertdeploy", "fp32")]["max_abs_diff_torch"] < 1e-3
    report = (result.output / "report.md").read_text()
    assert "## Against PyTorch eager (torch fp32)" in report and "× peer b2" in report
    torch_row = next(r for r in peer_rows(result.report) if r["engine"] == "torch fp32")
    assert torch_row["vs_peer"] == {1: 1.0, 2: 1.0}


# ---------------------------------------------------------------------------------------- bad inputs
def test_data_of_another_task_is_one_line(
    tmp_path, tiny_bundle, tiny_token_bundle, tiny_token_dir, tiny_data_dir, tiny_qa_bundle, tiny_mc_dir
):
    with pytest.raises(UserError, match="holds token-classification data, but .* is a text-classification model"):
        bench(_cfg(tmp_path / "a", tiny_bundle, tiny_token_dir, backends=["bertdeploy"], variants=["fp32"]))
    with pytest.raises(UserError, match="holds text-classification data, but .* is a token-classification model"):
        bench(_cfg(tmp_path / "b", tiny_token_bundle, tiny_data_dir, backends=["bertdeploy"], variants=["fp32"]))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing half-written
    with pytest.raises(UserError, match="holds multiple-choice data, but .* is a question-answering model"):
        bench(_cfg(tmp_path / "d", tiny_qa_bundle, tiny_mc_dir, backends=["bertdeploy"], variants=["fp32"]))
    r = CliRunner().invoke(
        cli, ["bench", str(tiny_token_bundle), "--data", str(tiny_data_dir), "-o", str(tmp_path / "c")]
    )
    assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1


def test_one_task_per_sweep(tmp_path, tiny_bundle, tiny_token_bundle, tiny_token_dir):
    cfg = _cfg(tmp_path / "o", tiny_token_bundle, tiny_token_dir, targets=[str(tiny_token_bundle), str(tiny_bundle)])
    with pytest.raises(UserError, match="one bench run times one task.*text-classification and token-classification"):
        bench(cfg)
