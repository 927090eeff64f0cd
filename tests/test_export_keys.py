"""The keys-transpose edit: the attention scores read the keys through FusedMatMul's transB, exactly, on the
exported graph and in the dynamic-int8 files the exporter writes; graphs that do not match the pattern are left
alone."""

from __future__ import annotations

import collections
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from helpers import bert_feed
from onnx import TensorProto, helper

from bertdeploy.bundle import MANIFEST_NAME
from bertdeploy.exporter.keys import HEADS_PERM, KEYS_PERM, transpose_keys, transpose_keys_file
from bertdeploy.variants import VARIANTS


def _perms(model):
    return collections.Counter(
        tuple(a.ints) for n in model.graph.node if n.op_type == "Transpose" for a in n.attribute if a.name == "perm"
    )


def _scores(model):
    return [n for n in model.graph.node if n.op_type == "FusedMatMul"]


def _run(path, feed):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feed.items() if k in names})[0]


def test_edit_is_exact_on_the_exported_graph_and_idempotent(tiny_bundle, tmp_path):
    src = tiny_bundle / "onnx" / "model.onnx"
    dest = tmp_path / "model.onnx"
    shutil.copy(src, dest)
    before = onnx.load(str(src))
    assert _perms(before)[tuple(KEYS_PERM)] == 2  # the tiny BERT's two layers
    assert transpose_keys_file(dest) == 2
    after = onnx.load(str(dest))
    assert _perms(after)[tuple(KEYS_PERM)] == 0
    assert _perms(after)[tuple(HEADS_PERM)] == _perms(before)[tuple(HEADS_PERM)] + 2
    scores = _scores(after)
    assert len(scores) == 2 and all(n.domain == "com.microsoft" for n in scores)
    assert all(helper.get_attribute_value(next(a for a in n.attribute if a.name == "transB")) == 1 for n in scores)
    np.testing.assert_allclose(_run(src, bert_feed()), _run(dest, bert_feed()), rtol=0, atol=1e-6)
    assert transpose_keys_file(dest) == 0  # nothing left to edit; the file is left as it is


def _attention(scale_shape, op="Mul", scale_first=False):
    """``q @ op(k.transpose(0, 2, 3, 1), s)`` with ``s`` of ``scale_shape`` (a scalar or a full tensor)."""
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 3, 5, 4])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, [2, 5, 3, 4])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, scale_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 5, 5])
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=KEYS_PERM),
        helper.make_node(op, ["s", "kt"] if scale_first else ["kt", "s"], ["ks"]),
        helper.make_node("MatMul", ["q", "ks"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "attention", [q, k, s], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_scalar_scale_on_the_way_is_kept_and_a_full_tensor_blocks_the_edit(tmp_path):
    rng = np.random.default_rng(1)
    feed = {"q": rng.standard_normal((2, 3, 5, 4), np.float32), "k": rng.standard_normal((2, 5, 3, 4), np.float32)}
    model = _attention([])
    want = _run_model(model, {**feed, "s": np.array(0.5, np.float32)})
    assert transpose_keys(model) == 1
    np.testing.assert_allclose(_run_model(model, {**feed, "s": np.array(0.5, np.float32)}), want, rtol=1e-6)
    full = _attention([2, 3, 4, 5])  # a tensor in the transposed layout: moving the transpose would misalign it
    assert transpose_keys(full) == 0
    assert _perms(full)[tuple(KEYS_PERM)] == 1 and not _scores(full)


def test_keys_divided_by_a_scalar_are_edited_and_a_scalar_divided_by_them_is_not():
    rng = np.random.default_rng(2)
    feed = {"q": rng.standard_normal((2, 3, 5, 4), np.float32), "k": rng.standard_normal((2, 5, 3, 4), np.float32)}
    feed["s"] = np.array(2.0, np.float32)
    model = _attention([], op="Div")
    want = _run_model(model, feed)
    assert transpose_keys(model) == 1
    np.testing.assert_allclose(_run_model(model, feed), want, rtol=1e-6)
    assert transpose_keys(_attention([], op="Div", scale_first=True)) == 0  # s / k: not a scaling of the keys
    assert transpose_keys(_attention([], op="Mul", scale_first=True)) == 1  # s * k commutes


def test_a_transposed_key_read_elsewhere_too_is_left_alone():
    model = _attention([])
    model.graph.output.append(helper.make_tensor_value_info("kt", TensorProto.FLOAT, [2, 3, 4, 5]))
    model.graph.node.append(helper.make_node("Identity", ["kt"], ["kt_copy"]))
    assert transpose_keys(model) == 0


def _run_model(model, feed):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_dynamic_int8_files_are_written_edited_and_the_manifest_says_so(tiny_bundle):
    qint8 = onnx.load(str(tiny_bundle / VARIANTS["qint8"].file))
    assert _perms(qint8)[tuple(KEYS_PERM)] == 0 and len(_scores(qint8)) == 2
    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text())
    entry = next(v for v in manifest["variants"] if v["name"] == "qint8")
    assert entry["graph_edits"]["keys_read_transposed"] == 2
    fp32 = onnx.load(str(tiny_bundle / VARIANTS["fp32"].file))
    assert _perms(fp32)[tuple(KEYS_PERM)] == 2 and not _scores(fp32)  # the plain export stays as Optimum wrote it
