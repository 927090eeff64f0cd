"""Exporting question-answering and multiple-choice models: Optimum's exports, the gate on end-to-end answers
(span agreement, EM / F1) and on choices (agreement, accuracy), and a manifest that says what was measured."""

from __future__ import annotations

import json

import pytest

from bertdeploy.errors import UserError
from bertdeploy.exporter import ExportConfig, export


def test_a_qa_bundle_records_its_task_metric_and_answers(tiny_qa_bundle):
    manifest = json.loads((tiny_qa_bundle / "bertdeploy.json").read_text())
    assert manifest["task"] == "question-answering" and manifest["metric"] == "f1" and manifest["labels"] == []
    assert manifest["graph"]["last_layer"] == "all positions"
    assert {"exact_match", "f1", "n"} <= set(manifest["eval"]["pytorch"])
    fp32 = next(v for v in manifest["variants"] if v["name"] == "fp32")
    assert fp32["parity"]["agreement"] == 1.0 and fp32["parity"]["rows"] == 20
    assert fp32["metrics"] == manifest["eval"]["pytorch"]


def test_a_multiple_choice_bundle_records_accuracy(tiny_mc_bundle):
    manifest = json.loads((tiny_mc_bundle / "bertdeploy.json").read_text())
    assert manifest["task"] == "multiple-choice" and manifest["metric"] == "accuracy"
    fp32 = next(v for v in manifest["variants"] if v["name"] == "fp32")
    assert fp32["parity"]["agreement"] == 1.0 and 0.0 <= fp32["metrics"]["accuracy"] <= 1.0


def test_the_gate_judges_qa_variants_on_the_f1_drop(tmp_path, tiny_reader_dir, tiny_qa_dir):
    config = ExportConfig(run_dir=str(tiny_reader_dir), output=str(tmp_path / "b"), data=str(tiny_qa_dir),
                          variants=["qint8"], max_length=32, max_accuracy_drop=0.0, required=["fp32"])  # fmt: skip
    result = export(config)
    rows = {r["name"]: r for r in result.rows}
    assert rows["fp32"]["accepted"] and rows["fp32"]["agreement"] == 1.0
    drop = round(100 * (result.baseline["f1"] - rows["qint8"]["f1"]), 9)
    assert rows["qint8"]["accepted"] == (drop <= 0)  # no budget: any lost F1 point rejects
    if drop > 0:
        assert rows["qint8"]["reason"] == f"f1 drop {drop:.2f} points > 0"


def test_static_int8_of_a_multiple_choice_model_is_rejected_with_its_reason(tmp_path, tiny_chooser_dir, tiny_mc_dir):
    result = export(
        ExportConfig(
            run_dir=str(tiny_chooser_dir),
            output=str(tmp_path / "b"),
            data=str(tiny_mc_dir),
            variants=["qint8_static"],
            max_length=32,
            required=["fp32"],
        )  # fmt: skip
    )
    static = next(r for r in result.rows if r["name"] == "qint8_static")
    assert not static["accepted"] and "not implemented for multiple-choice" in static["reason"]


def test_qa_export_needs_evaluation_data(tmp_path, tiny_reader_dir):
    with pytest.raises(UserError, match="exporting a question-answering model needs evaluation data: pass --data"):
        export(ExportConfig(run_dir=str(tiny_reader_dir), output=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()


def test_the_cli_shows_em_and_f1(tmp_path, tiny_reader_dir, tiny_qa_dir):
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    args = ["export", str(tiny_reader_dir), "-o", str(tmp_path / "b"), "--data", str(tiny_qa_dir), "--max-length",
            "32"]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "EM" in result.output and "F1" in result.output and "accuracy" not in result.output


def test_exported_bundles_serve_and_predict_and_a_text_file_is_not_questions(tmp_path, tiny_qa_bundle, tiny_mc_bundle):
    from bertdeploy.runtime import predict_file
    from bertdeploy.serve import app

    app(tiny_qa_bundle)  # serve and predict take both tasks (tests/test_serve_qa.py, tests/test_predict_qa.py)
    (tmp_path / "in.txt").write_text("where is the movie?\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"cannot tell the format of .*in.txt"):
        predict_file(tiny_mc_bundle, str(tmp_path / "in.txt"), str(tmp_path / "out.jsonl"))
    assert not (tmp_path / "out.jsonl").exists()
