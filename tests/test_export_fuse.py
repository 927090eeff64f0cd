"""The shared-input MatMul fusion (Q/K/V as one MatMul): exact on the exported graph, and the qint8_qkv variant
built from it passes through the exporter like any other variant."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
from helpers import bert_feed

from bertdeploy.exporter.fuse import fuse_file
from bertdeploy.runtime import load
from bertdeploy.variants import VARIANTS


def _ops(path):
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_fusion_is_exact_and_merges_each_layers_projections(tiny_bundle, tmp_path):
    src = tiny_bundle / "onnx" / "model.onnx"
    dest = tmp_path / "fused.onnx"
    groups = fuse_file(src, dest)
    # 2 layers: Q/K/V of layer 0; K/V of the [CLS]-only last layer (its query reads the [CLS] row)
    assert groups == 2
    before, after = _ops(src), _ops(dest)
    assert after["Split"] == before.get("Split", 0) + 2
    assert after["MatMul"] == before["MatMul"] - 3
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (src, dest))
    names = {i.name for i in a.get_inputs()}
    feed = {k: v for k, v in bert_feed().items() if k in names}
    np.testing.assert_allclose(a.run(None, feed)[0], b.run(None, feed)[0], rtol=0, atol=1e-6)
    assert fuse_file(dest, tmp_path / "again.onnx") == 0  # nothing left to fuse


def test_qint8_qkv_variant_is_built_gated_and_loadable(tiny_model_dir, tiny_data_dir, tmp_path):
    from bertdeploy.exporter import ExportConfig, export

    result = export(
        ExportConfig(
            run_dir=str(tiny_model_dir),
            output=str(tmp_path / "b"),
            data=str(tiny_data_dir),
            variants=["qint8", "qint8_qkv"],
            max_accuracy_drop=100.0,
            min_agreement={"fp32": 0.0},
        )
    )
    assert result.accepted == ["fp32", "qint8", "qint8_qkv"]
    entry = next(v for v in result.manifest["variants"] if v["name"] == "qint8_qkv")
    assert entry["graph_edits"]["fused_shared_input_matmuls"] == 2
    plain = _ops(result.bundle / VARIANTS["qint8"].file)
    fused = _ops(result.bundle / entry["file"])
    assert fused["MatMulInteger"] == plain["MatMulInteger"] - 3 and fused["Split"] == plain.get("Split", 0) + 2
    texts = ["i feel fine today", "this is a longer sentence about nothing much at all", "ok"]
    a = load(result.bundle, variant="qint8", threads=1).logits(texts)
    b = load(result.bundle, variant="qint8_qkv", threads=1).logits(texts)
    np.testing.assert_allclose(a, b, atol=1e-4)  # per-column weight scales and the shared input's scale are unchanged
