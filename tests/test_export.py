"""End to end on the tiny model: every variant built, validated and bundled; forced rejections; atomicity."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bertdeploy import bundle, variants
from bertdeploy.errors import UserError
from bertdeploy.exporter import ExportConfig, export

ALL = [v for v in variants.NAMES if not variants.get(v).runs]  # execution variants: test_execution_variants.py
#: max |logit diff| vs PyTorch expected per variant on the tiny model
TOLERANCE = {"fp32": 1e-4, "O1": 1e-4, "O2": 1e-4, "O3": 1e-3, "fp16": 1e-2}
TOLERANCE.update(dict.fromkeys(("qint8", "qint8_qkv", "qint8_static"), 0.05))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir, tiny_data_dir) -> Path:
    """The tiny model as a `bertdeploy train` run: train_config.json points at the tiny data."""
    d = tmp_path_factory.mktemp("run") / "run"
    shutil.copytree(tiny_model_dir, d)
    cfg = {"data": str(tiny_data_dir), "text_column": "text", "label_column": "label", "max_length": 64}
    (d / "train_config.json").write_text(json.dumps({**cfg, "model": "tiny"}), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def full(tmp_path_factory, run_dir):
    """Every variant, default gate, the run's own data; run from an empty CWD to catch stray files."""
    cwd = tmp_path_factory.mktemp("cwd")
    out = tmp_path_factory.mktemp("out") / "bundle"
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = export(ExportConfig(run_dir=str(run_dir), output=str(out), variants=ALL, calibration_size=40))
    finally:
        os.chdir(old)
    return result, cwd


def test_every_variant_passes_and_is_bundled(full, tiny_data_dir):
    result, cwd = full
    assert [r["name"] for r in result.rows] == ALL
    assert result.accepted == ALL, [(r["name"], r["reason"]) for r in result.rows]
    assert not result.failed_required
    for r in result.rows:
        assert r["max_diff"] < TOLERANCE[r["name"]], r
        assert r["agreement"] == 1.0
    assert list(cwd.iterdir()) == []  # no augmented_model.onnx or anything else in the working directory
    assert [p.name for p in result.bundle.parent.iterdir()] == ["bundle"]  # no temporary siblings left
    ev = result.manifest["eval"]
    assert ev["data"] == str(tiny_data_dir) and ev["split"] == "test" and ev["rows"] == 30 and ev["labelled"]


def test_manifest_schema(full):
    result, _ = full
    m = bundle.read_manifest(result.bundle)
    raw = m.raw
    assert raw["format"] == "bertdeploy-bundle" and raw["format_version"] == 1
    assert m.labels == ["negative", "neutral", "positive"]
    assert m.max_length == 64  # from train_config.json
    assert m.model_inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert raw["tokenizer"]["file"] == "tokenizer.json"
    assert "tokenizer.json" in raw["tokenizer"]["files"]
    for f in raw["tokenizer"]["files"]:
        assert (result.bundle / f).is_file()
    assert m.rejected == []
    assert {"onnxruntime", "optimum", "torch", "transformers"} <= set(raw["versions"])
    assert raw["machine"]["isa"] in ("avx2", "avx512", "avx512_vnni", "arm64")
    assert raw["created"] and raw["source"]["weights_sha256"]
    precision = {v.name: v.precision for v in variants.VARIANT_TABLE}
    for v in m.variants:
        assert v.file == variants.VARIANTS[v.name].file
        path = bundle.verify_variant(result.bundle, v)
        assert v.bytes == path.stat().st_size
        assert v.precision == precision.get(v.name, "fp32")
        assert isinstance(v.opset, int) and v.opset >= 13
        assert {"max_abs_diff", "agreement", "rows", "finite"} <= set(v.parity) and v.parity["rows"] == 30
        assert 0 <= v.metrics["accuracy"] <= 1 and "f1_macro" in v.metrics
        assert v.machine["provider"] == "CPUExecutionProvider"
    assert m.variant("O2").fused_nodes["Attention"] == 1  # layer 0; the [CLS]-only last layer is not the pattern
    assert raw["graph"] == {"last_layer": "cls only"}
    assert m.variant("O3").fused_nodes["FastGelu"] == 2
    assert m.variant("qint8").fused_nodes["MatMulInteger"] > 0
    assert raw["variants"][[v.name for v in m.variants].index("qint8")]["quantization"]["weights"] == "int8"
    assert raw["variants"][-1]["quantization"]["calibration"]["rows"] == 40
    assert (result.bundle / "config.json").is_file()


def test_fp32_has_dynamic_batch_and_sequence_axes(full):
    import onnx

    result, _ = full
    model = onnx.load(str(result.bundle / "onnx/model.onnx"))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[1].dim_param, inp.name


def test_static_int8_keeps_layernorm_in_float(full):
    import onnx

    result, _ = full
    graph = onnx.load(str(result.bundle / "onnx/model_qint8_static.onnx")).graph
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    assert "QuantizeLinear" in produced_by.values()
    layernorms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    assert layernorms
    for node in layernorms:
        assert produced_by.get(node.input[0]) != "DequantizeLinear", node.name


def test_plain_onnxruntime_runs_each_variant(full, run_dir):
    """Without bertdeploy: tokenizers + onnxruntime, variable batch and length, logits close to PyTorch."""
    import onnxruntime as ort
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification

    result, _ = full
    tok = Tokenizer.from_file(str(result.bundle / "tokenizer.json"))
    tok.enable_padding(pad_id=0)
    texts = ["good", "the movie was late and the food was bad but thanks", "love"]
    enc = tok.encode_batch(texts)
    feed = {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
    }
    model = AutoModelForSequenceClassification.from_pretrained(run_dir).eval()
    with torch.inference_mode():
        ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
    for v in bundle.read_manifest(result.bundle).variants:
        session = ort.InferenceSession(str(result.bundle / v.file), providers=["CPUExecutionProvider"])
        logits = session.run(None, feed)[0]
        assert logits.shape == (3, 3) and logits.dtype == np.float32
        np.testing.assert_allclose(logits, ref, atol=TOLERANCE[v.name], err_msg=v.name)


def test_optimum_ortmodel_loads_the_bundle(full):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    result, _ = full
    tok = AutoTokenizer.from_pretrained(result.bundle)
    model = ORTModelForSequenceClassification.from_pretrained(
        result.bundle, subfolder="onnx", file_name="model_quantized.onnx"
    )
    out = model(**tok(["good day", "bad"], padding=True, return_tensors="np"))
    assert out.logits.shape == (2, 3)
    assert model.config.id2label[2] == "positive"


def test_forced_rejection_without_eval_data(tiny_model_dir, tmp_path):
    """A plain HF folder, no --data: parity on built-in sentences; O2 forced to fail is left out and listed."""
    out = tmp_path / "b"
    result = export(
        ExportConfig(
            run_dir=str(tiny_model_dir), output=str(out), variants=["fp32", "O2", "qint8"], min_agreement={"O2": 1.01}
        )
    )
    assert result.accepted == ["fp32", "qint8"]
    assert [r["name"] for r in result.failed_required] == ["O2"]
    assert "agreement 100.00% < 101.00%" in result.failed_required[0]["reason"]
    assert not (out / "onnx/model_O2.onnx").exists()
    m = bundle.read_manifest(out)
    assert [r["name"] for r in m.rejected] == ["O2"]
    with pytest.raises(UserError, match="rejected at export"):
        m.variant("O2")
    assert not m.raw["eval"]["labelled"] and m.raw["eval"]["split"] == "samples"
    assert any("no evaluation data" in n for n in result.notes)
    assert result.rows[0]["accuracy"] is None


def test_nothing_accepted_writes_nothing(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "b"
    cfg = ExportConfig(
        run_dir=str(tiny_model_dir), output=str(out), data=str(tiny_data_dir), min_agreement={"fp32": 1.01}
    )
    with pytest.raises(UserError, match="no variant passed the gate"):
        export(cfg)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_old_bundle_untouched(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch):
    import bertdeploy.exporter.write as export_bundle

    out = tmp_path / "b"
    out.mkdir()
    (out / "marker").write_text("old", encoding="utf-8")
    cfg = dict(run_dir=str(tiny_model_dir), output=str(out), data=str(tiny_data_dir))
    with pytest.raises(UserError, match="not empty"):  # no --force: refused before any work
        export(ExportConfig(**cfg))
    with pytest.raises(UserError, match="refusing to replace .* not a bertdeploy bundle .*marker"):
        export(ExportConfig(**cfg, force=True))  # --force replaces only a bundle
    (out / "bertdeploy.json").write_text('{"format": "bertdeploy-bundle"}', encoding="utf-8")

    def boom(*args, **kwargs):
        raise RuntimeError("killed midway")

    monkeypatch.setattr(export_bundle, "write_hf_files", boom)  # after the fp32 file was placed in the new bundle
    with pytest.raises(RuntimeError, match="killed midway"):
        export(ExportConfig(**cfg, force=True))
    assert sorted(p.name for p in out.iterdir()) == ["bertdeploy.json", "marker"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # temporary sibling removed
    new = tmp_path / "new"
    with pytest.raises(RuntimeError):
        export(ExportConfig(**{**cfg, "output": str(new)}))
    assert not new.exists()


def test_custom_columns_of_eval_data(tiny_model_dir, tmp_path):
    from helpers import tiny_texts, write_csv

    data = tmp_path / "data"
    write_csv(data / "test.csv", tiny_texts(12, seed=5), header=("sentence", "target"))
    out = tmp_path / "b"
    cfg = ExportConfig(
        run_dir=str(tiny_model_dir), output=str(out), data=str(data), text_column="sentence", label_column="target"
    )
    result = export(cfg)
    assert result.manifest["eval"]["rows"] == 12 and result.rows[0]["accuracy"] is not None
    with pytest.raises(UserError, match="text"):  # default column names do not exist in this file
        export(ExportConfig(run_dir=str(tiny_model_dir), output=str(tmp_path / "c"), data=str(data)))
    assert not (tmp_path / "c").exists()


def test_dynamic_int8_quantizes_weights_only_as_signed_int8(full):
    """Every weight MatMul becomes an integer MatMul with an int8 weight; the attention score / context MatMuls
    (two activations) stay in float."""
    import onnx

    result, _ = full
    graph = onnx.load(str(result.bundle / "onnx/model_quantized.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    integer = [n for n in graph.node if n.op_type == "MatMulInteger"]
    names = [n.name for n in integer]
    assert len(names) == 2 * 6 + 2, names  # Q, K, V, output, intermediate, FFN output per layer; pooler; head
    assert sum("pooler" in n or "classifier" in n for n in names) == 2, names
    for node in integer:
        assert inits[node.input[1]].data_type == onnx.TensorProto.INT8, node.name
    floats = [n for n in graph.node if n.op_type in ("MatMul", "FusedMatMul")]
    assert len(floats) == 2 * 2  # scores (FusedMatMul reading the keys transposed) and context, per layer
    assert sum(n.op_type == "FusedMatMul" for n in floats) == 2
    assert all(not set(n.input) & set(inits) for n in floats)
