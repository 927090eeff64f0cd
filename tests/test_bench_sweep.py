"""bench end to end on the tiny bundle: the sweep, the results schema, resume, a crashing cell, pick + copy, the
CLI. Inline isolation keeps it fast; one test runs a block in a worker subprocess. No assertion is on speed."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from bertdeploy.benchmark import BenchConfig, bench, compare
from bertdeploy.benchmark.backends import REGISTRY, TorchBackend
from bertdeploy.bundle import read_manifest
from bertdeploy.cli import cli
from bertdeploy.errors import UserError

CELL_KEYS = {"key", "target", "backend", "variant", "padding", "batch_size", "status", "fingerprint", "measured"}
CSV_KEYS = {
    "target",
    "backend",
    "variant",
    "padding",
    "batch_size",
    "status",
    "e2e_p50_ms",
    "e2e_p90_ms",
    "e2e_p99_ms",
    "e2e_seq_per_s",
    "e2e_tokens_per_s",
    "model_p50_ms",
    "peak_share",
    "peak_rss_mb",
    "size_mb",
    "accuracy",
    "f1_macro",
    "agreement_torch",
    "load_1m_start",
    "error",
}


def _cfg(out: Path, bundle: Path, data: Path, **kw) -> BenchConfig:
    base = dict(
        targets=[str(bundle)],
        data=str(data),
        output=str(out),
        backends=["bertdeploy", "torch", "ortmodel"],
        variants=["fp32", "qint8"],
        torch_dtypes=["fp32"],
        padding=["dynamic", "bucketed"],
        batch_sizes=[1, 4],
        min_seconds=0.0,
        min_iterations=2,
        warmup_iterations=1,
        timing_texts=16,
        isolation="inline",
        gemm_seconds=0.02,
    )
    base.update(kw)
    return BenchConfig(**base)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_bundle, tiny_data_dir):
    """One sweep over the tiny bundle, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("bench") / "out"
    picked = out.parent / "picked"
    cfg = _cfg(out, tiny_bundle, tiny_data_dir, pick=True, max_accuracy_drop=99.0, pick_output=str(picked))
    return bench(cfg), cfg


def _resume(swept, tmp_path, **kw) -> tuple[Any, list[dict], Path]:
    """The shared sweep's output copied to a new folder and benched there again with ``kw`` (a resume): the result,
    its progress events and the folder."""
    result, cfg = swept
    out = tmp_path / "again"
    shutil.copytree(result.output, out)
    events: list[dict] = []
    again = bench(_cfg(out, Path(cfg.targets[0]), Path(cfg.data), **kw), progress=events.append)
    return again, events, out


def test_sweep_writes_every_output_with_the_schema(swept):
    result, cfg = swept
    out = result.output
    for name in ("results.json", "results.csv", "report.md", "config.json", "plots/throughput.png", "plots/pareto.png"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    assert res["schema"] == "bertdeploy-bench/1" and res["complete"] is True
    assert res["machine"]["cpu"] and res["machine"]["threads"] >= 1 and "isa" in res["machine"]
    assert res["versions"]["onnxruntime"] and res["versions"]["torch"]
    assert res["gemm"]["peak_gflops"] > 0 and len(res["load"]["start"]) == 3
    assert json.loads((out / "config.json").read_text())["batch_sizes"] == [1, 4]
    assert len(res["cells"]) == 4 * 2 * 2  # (bertdeploy fp32, qint8, torch fp32, ortmodel fp32) x padding x batch
    for c in res["cells"]:
        assert CELL_KEYS <= set(c) and c["status"] == "ok", c.get("error")
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 and CSV_KEYS <= set(rows[0])
    assert "fp32 GEMM peak" in (out / "report.md").read_text()


def test_rows_are_consistent(swept):
    result, _ = swept
    for r in result.rows:
        assert 0 < r["e2e_p50_ms"] <= r["e2e_p90_ms"] <= r["e2e_p99_ms"]
        assert r["e2e_seq_per_s"] > 0 and r["e2e_tokens_per_s"] > r["e2e_seq_per_s"]  # >= 2 tokens per text
        assert r["model_p50_ms"] > 0 and 0 < r["peak_share"] < 1
        assert r["e2e_iterations"] >= 2 and 0 <= r["accuracy"] <= 1
    by = {(r["backend"], r["variant"]): r for r in result.rows if r["padding"] == "dynamic" and r["batch_size"] == 1}
    # the fp32 ONNX graph and PyTorch compute the same function: same predictions, tiny logit differences
    assert by[("bertdeploy", "fp32")]["agreement_torch"] == 1.0
    assert by[("bertdeploy", "fp32")]["max_abs_diff_torch"] < 1e-3
    assert by[("bertdeploy", "fp32")]["accuracy"] == by[("torch", "fp32")]["accuracy"]
    assert by[("ortmodel", "fp32")]["agreement_torch"] == 1.0
    assert by[("torch", "fp32")]["agreement_source"] == "measured"
    assert by[("bertdeploy", "qint8")]["size_mb"] < by[("bertdeploy", "fp32")]["size_mb"]


def test_pick_names_and_copies_a_single_variant_bundle(swept):
    result, cfg = swept
    p = result.pick
    assert p["variant"] in ("fp32", "qint8") and p["accuracy_drop"] <= 99.0
    m = read_manifest(p["bundle"])
    assert [v.name for v in m.variants] == [p["variant"]]
    files = {f.relative_to(p["bundle"]).as_posix() for f in Path(p["bundle"]).rglob("*.onnx")}
    assert files == {m.variants[0].file}
    assert "## Pick" in (result.output / "report.md").read_text()


def test_resume_skips_finished_cells(swept, tmp_path):
    result, cfg = swept
    again, events, out = _resume(swept, tmp_path)
    assert not [e for e in events if e["type"] == "cell_start"]
    assert [c["measured"] for c in again.results["cells"]] == [c["measured"] for c in result.results["cells"]]
    # forget one cell: only that one is measured again
    res = json.loads((out / "results.json").read_text())
    dropped = res["cells"].pop(5)["key"]
    (out / "results.json").write_text(json.dumps(res))
    events.clear()
    bench(_cfg(out, Path(cfg.targets[0]), Path(cfg.data)), progress=events.append)
    assert [e["key"] for e in events if e["type"] == "cell_start"] == [dropped]


def test_the_token_budget_reaches_every_self_batching_engine_and_keys_the_cells(swept, tmp_path, monkeypatch):
    """By default a cell runs the runtime's own budget (what one predict() call does with the batch) and PyTorch in
    the runtime's head gets the same; max_tokens=N reaches both, and cells timed under another budget are re-timed."""
    from bertdeploy.benchmark import worker
    from bertdeploy.benchmark.contract import RUNTIME_DEFAULT
    from bertdeploy.benchmark.head_backends import TorchHeadBackend
    from bertdeploy.runtime.options import CPU_MAX_TOKENS

    result, cfg = swept
    assert "the runtime's default token budget" in (result.output / "report.md").read_text()
    assert {c["fingerprint"]["max_tokens"] for c in result.results["cells"]} == {None}
    made: dict[str, Any] = {}
    real = worker.make_backend

    def spy(name, ctx):
        made[name] = real(name, ctx)
        return made[name]

    monkeypatch.setattr(worker, "make_backend", spy)
    again, events, _ = _resume(swept, tmp_path, max_tokens=48)
    started = {e["key"] for e in events if e["type"] == "cell_start"}
    assert started == {c["key"] for c in result.results["cells"]}, started
    assert {name: b.ctx.max_tokens for name, b in made.items()} == {"bertdeploy": 48, "torch": 48, "ortmodel": 48}
    assert "at most 48 tokens" in (again.output / "report.md").read_text()
    # PyTorch inside the runtime's head (the torch peer of the other tasks) plans its calls with the same budget
    in_head = TorchHeadBackend(made["torch"].ctx)
    in_head.load()
    assert in_head.head("dynamic").policy.max_tokens == 48
    in_head.ctx.max_tokens, in_head.heads = RUNTIME_DEFAULT, {}
    assert in_head.head("dynamic").policy.max_tokens == CPU_MAX_TOKENS


def test_a_crashing_cell_is_recorded_and_the_sweep_goes_on(monkeypatch, tmp_path, tiny_bundle, tiny_data_dir):
    class Flaky(TorchBackend):
        def predict(self, texts, padding):
            if len(texts) == 4 and padding == "bucketed":
                raise RuntimeError("boom at batch 4")
            return super().predict(texts, padding)

    monkeypatch.setitem(REGISTRY, "torch", Flaky)
    cfg = _cfg(tmp_path / "o", tiny_bundle, tiny_data_dir, backends=["torch", "bertdeploy"], variants=["fp32"])
    result = bench(cfg)
    status = {(r["backend"], r["padding"], r["batch_size"]): r["status"] for r in result.rows}
    assert status.pop(("torch", "bucketed", 4)) == "failed"
    assert set(status.values()) == {"ok"} and len(status) == 7  # the other torch cells and the next block ran
    assert "boom at batch 4" in result.failed[0]["error"] and not result.complete


def test_block_in_a_worker_subprocess(tmp_path, tiny_bundle, tiny_data_dir):
    cfg = _cfg(
        tmp_path / "o",
        tiny_bundle,
        tiny_data_dir,
        backends=["bertdeploy"],
        variants=["qint8"],
        padding=["static"],
        batch_sizes=[2],
        isolation="process",
    )
    result = bench(cfg)
    (row,) = result.rows
    assert row["status"] == "ok", row["error"]
    assert row["peak_rss_mb"] > 10 and row["agreement_torch"] is not None  # from the export's parity
    assert row["agreement_source"] == "export"
    assert not (result.output / ".work").exists()  # cleaned after a complete sweep


def test_auto_times_what_load_picks_and_names_it(tmp_path, tiny_bundle, tiny_data_dir):
    """``--variants auto``: the cell runs ``load(bundle)``'s own choice on this machine and the row says which."""
    from bertdeploy import load

    picked = load(tiny_bundle).variant.name
    cfg = _cfg(tmp_path / "o", tiny_bundle, tiny_data_dir, backends=["bertdeploy"], variants=["auto", "fp32"],
               padding=["dynamic"], batch_sizes=[2])  # fmt: skip
    rows = {r["variant"]: r for r in bench(cfg).rows}
    assert set(rows) == {"auto", "fp32"} and all(r["status"] == "ok" for r in rows.values())
    assert rows["auto"]["runs"] == picked and rows["fp32"]["runs"] == "fp32"
    with pytest.raises(UserError, match="unknown variant"):
        _cfg(tmp_path / "o2", tiny_bundle, tiny_data_dir, variants=["best"])


def test_preset_rows_are_untrained(tmp_path):
    cfg = BenchConfig(
        targets=["bert-tiny"],
        output=str(tmp_path / "o"),
        backends=["torch"],
        torch_dtypes=["fp32"],
        padding=["static"],
        batch_sizes=[2],
        max_length=16,
        min_seconds=0,
        min_iterations=1,
        warmup_iterations=0,
        timing_texts=4,
        isolation="inline",
    )
    result = bench(cfg)
    (row,) = result.rows
    assert row["status"] == "ok" and row["trained"] is False and row["accuracy"] is None
    assert row["tokens_per_batch"] == 2 * 16  # synthetic texts fill max_length
    assert "untrained" in (result.output / "report.md").read_text()


def test_cli_errors_are_one_line_exit_2(tmp_path, tiny_bundle):
    runner = CliRunner()
    r = runner.invoke(cli, ["bench", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "is not a bundle, a training run or a model preset" in r.output
    r = runner.invoke(cli, ["bench", str(tiny_bundle), "-o", str(tmp_path / "o"), "--backends", "torch,onnx"])
    assert r.exit_code == 2 and "unknown backend 'onnx'" in r.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "test.csv").write_text("text,label\nhello,joy\n", encoding="utf-8")
    r = runner.invoke(cli, ["bench", str(tiny_bundle), "--data", str(bad), "-o", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "joy" in r.output
    assert not (tmp_path / "o2" / "results.csv").exists()


def test_output_folder_rules(tmp_path, tiny_bundle, tiny_data_dir):
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.csv").write_text("not ours to resume\n", encoding="utf-8")
    for overwrite in (False, True):  # bench writes only its own files, and --overwrite does not change that
        with pytest.raises(UserError, match="refusing to write into .* results.csv but no bench results.json"):
            bench(_cfg(out, tiny_bundle, tiny_data_dir, overwrite=overwrite))
    assert (out / "results.csv").read_text() == "not ours to resume\n"  # nothing touched
    with pytest.raises(UserError, match="lies inside the input"):
        bench(_cfg(Path(tiny_bundle) / "bench", tiny_bundle, tiny_data_dir))
    assert not (Path(tiny_bundle) / "bench").exists()


def test_cli_compare(swept, tmp_path):
    result, _ = swept
    r = CliRunner().invoke(cli, ["bench", "compare", str(result.output), str(result.output / "results.json")])
    assert r.exit_code == 0, r.output
    assert "16 common cells" in r.output
    c = compare(result.output, result.output / "results.json")
    assert len(c.rows) == 16 and not c.only_a and not c.only_b
    assert {row["p50_ratio"] for row in c.rows} == {1.0} and {row["accuracy_delta"] for row in c.rows} == {0.0}
    r = CliRunner().invoke(cli, ["bench", "compare", str(result.output), str(tmp_path)])
    assert r.exit_code == 2 and "no bertdeploy bench results" in r.output


def test_logits_and_eval_counts(swept):
    result, _ = swept
    groups = result.results["groups"]
    assert {g["status"] for g in groups.values()} == {"ok"}
    assert all(
        g["n"] == result.results["targets"][next(iter(result.results["targets"]))]["eval"]["n"] for g in groups.values()
    )
    assert np.isfinite([g["metrics"]["f1_macro"] for g in groups.values()]).all()


def test_distilbert_with_a_bert_tokenizer(tmp_path, tiny_data_dir):
    """DistilBERT takes no token_type_ids although the (BERT) tokenizer produces them: torch and pipeline run."""
    from helpers import TINY_LABELS, VOCAB
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertForSequenceClassification

    folder = tmp_path / "distil"
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True, model_max_length=64)
    config = DistilBertConfig(
        vocab_size=tok.vocab_size,
        dim=32,
        n_layers=1,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=64,
        num_labels=3,
        id2label=dict(enumerate(TINY_LABELS)),
        label2id={name: i for i, name in enumerate(TINY_LABELS)},
    )
    DistilBertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    cfg = _cfg(
        tmp_path / "o",
        folder,
        tiny_data_dir,
        backends=["torch", "pipeline"],
        padding=["dynamic"],
        batch_sizes=[2],
        max_length=32,
    )
    result = bench(cfg)
    assert [(r["backend"], r["status"]) for r in result.rows] == [("torch", "ok"), ("pipeline", "ok")]
    assert result.rows[1]["agreement_torch"] == 1.0


def test_a_dying_worker_fails_its_cells_and_returns(tmp_path, tiny_bundle):
    """A worker that exits abnormally (here: its texts file is missing, so it dies after loading) fails the cells
    it had not finished, with the exit code and the log tail, instead of hanging or raising."""
    from bertdeploy.benchmark.isolation import run_block_subprocess

    job = {
        "group": "t|bertdeploy|fp32",
        "backend": "bertdeploy",
        "variant": "fp32",
        "ctx": {
            "hf_dir": None,
            "bundle": str(tiny_bundle),
            "labels": ["a", "b", "c"],
            "max_length": 32,
            "variant": "fp32",
            "threads": 1,
            "device": "cpu",
            "max_batch_size": 2,
        },
        "cells": [{"key": f"t|bertdeploy|fp32|dynamic|{b}", "padding": "dynamic", "batch_size": b} for b in (1, 2)],
        "texts_file": str(tmp_path / "missing.json"),
        "dims": {"layers": 1, "hidden": 4, "intermediate": 8, "labels": 3},
        "settings": {"eval": False, "model_only": False, "logits_out": str(tmp_path / "l.npy")},
    }
    events: list[dict] = []
    run_block_subprocess(job, tmp_path, events.append, max_seconds=5)
    cells = [e for e in events if e["type"] == "cell"]
    assert [c["status"] for c in cells] == ["failed", "failed"]
    assert "worker crashed (exit code 1)" in cells[0]["error"] and "missing.json" in cells[0]["error"]


def test_rounds_interleave_the_blocks_and_keep_each_cells_median(tmp_path, tiny_bundle, tiny_data_dir):
    """--repeats N: every block is timed once a round, in the same order (A B A B, not A A B B), and a cell shows
    its median round while recording all of them."""
    events: list[dict] = []
    cfg = _cfg(tmp_path / "o", tiny_bundle, tiny_data_dir, backends=["bertdeploy", "torch"], variants=["fp32"],
               padding=["dynamic"], batch_sizes=[2], repeats=3, gemm_seconds=0)  # fmt: skip
    result = bench(cfg, progress=events.append)
    stages = [e["message"] for e in events if e["type"] == "stage" and "round" in e["message"]]
    assert [s.split(": ")[1] for s in stages] == [
        f"{backend} fp32 (round {r}/3)" for r in (1, 2, 3) for backend in ("bertdeploy", "torch")
    ]
    assert sum(e.get("weight", 1) for e in events if e["type"] == "cell") == 2 * 3
    plan = next(e for e in events if e["type"] == "plan")
    assert plan["total"] == 6 and plan["done"] == 0
    cells = result.results["cells"]
    assert len(cells) == 2
    for c in cells:
        rates = [r["e2e"]["seq_per_s"] for r in c["rounds"]]
        assert len(rates) == 3
        assert c["e2e"]["seq_per_s"] == sorted(rates)[1]  # the median round
        assert c["e2e"] in [r["e2e"] for r in c["rounds"]]
    rows = {r["backend"]: r for r in result.rows}
    assert rows["torch"]["rounds"] == 3 and len(rows["torch"]["e2e_seq_per_s_rounds"].split("/")) == 3
    assert "3 interleaved rounds" in (result.output / "report.md").read_text()


def test_a_resume_with_more_rounds_adds_the_missing_ones(swept, tmp_path):
    result, cfg = swept
    again, events, out = _resume(swept, tmp_path, repeats=2)
    plan = next(e for e in events if e["type"] == "plan")
    assert plan["total"] == 32 and plan["done"] == 16  # one round of every cell was already there
    assert again.results["load"].get("resumed") and again.results["load"].get("end")  # new rounds: the load recorded
    assert len([e for e in events if e["type"] == "cell_start"]) == 16  # each cell timed once more
    first = {c["key"]: c["e2e"] for c in result.results["cells"]}
    for c in again.results["cells"]:
        assert len(c["rounds"]) == 2 and c["rounds"][0]["e2e"] == first[c["key"]]
        assert c["e2e"] == min((r["e2e"] for r in c["rounds"]), key=lambda e: e["seq_per_s"])  # lower of two
    events.clear()
    bench(_cfg(out, Path(cfg.targets[0]), Path(cfg.data), repeats=2), progress=events.append)
    assert not [e for e in events if e["type"] == "cell_start"]  # complete: nothing to add


def test_a_failing_later_round_keeps_the_earlier_ones(monkeypatch, tmp_path, tiny_bundle, tiny_data_dir):
    loads = []

    class SecondLoadFails(TorchBackend):
        def predict(self, texts, padding):
            if len(loads) == 2:
                raise RuntimeError("boom in round 2")
            return super().predict(texts, padding)

        def load(self):
            loads.append(1)
            return super().load()

    monkeypatch.setitem(REGISTRY, "torch", SecondLoadFails)
    cfg = _cfg(tmp_path / "o", tiny_bundle, tiny_data_dir, backends=["torch"], padding=["dynamic"], batch_sizes=[2],
               repeats=3, gemm_seconds=0)  # fmt: skip
    (cell,) = bench(cfg).results["cells"]
    assert cell["status"] == "ok" and len(cell["rounds"]) == 2  # rounds 1 and 3
    assert "a later round" in cell["error"] and "boom in round 2" in cell["error"]


def test_repeats_must_be_positive(tmp_path, tiny_bundle, tiny_data_dir):
    with pytest.raises(UserError, match="repeats"):
        _cfg(tmp_path / "o", tiny_bundle, tiny_data_dir, repeats=0)
