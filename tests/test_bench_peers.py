"""The bench's peer engines added for issue 12: PyTorch dynamic int8 and OpenVINO (on the bundle's ONNX file, and
NNCF int8). OpenVINO / NNCF tests skip cleanly where the optional extra is not installed; the skip itself (one
line naming the extra) is tested without it. Plus the ORT fusion the runtime turns off, and the QKV graph edit."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import tiny_texts
from onnx import TensorProto, helper, numpy_helper

from bertdeploy.benchmark import BenchConfig
from bertdeploy.benchmark.backends import BackendContext, Skip, TorchBackend, make_backend
from bertdeploy.benchmark.plan import NO_BUNDLE, plan
from bertdeploy.benchmark.targets import resolve_target
from bertdeploy.errors import UserError
from bertdeploy.runtime import SessionConfig, load
from bertdeploy.runtime import session as rs

TEXTS = [t for t, _ in tiny_texts(12, seed=5)]


def _ctx(variant, bundle=None, hf=None, calibration=()):
    return BackendContext(hf, bundle, ["a", "b", "c"], 32, variant, 1, "cpu", 8, list(calibration))


def test_torch_int8_quantizes_every_linear_layer_and_stays_close_to_fp32(tiny_model_dir):
    import torch

    fp32, int8 = TorchBackend(_ctx("fp32", hf=tiny_model_dir)), TorchBackend(_ctx("int8", hf=tiny_model_dir))
    info32, info8 = fp32.load(), int8.load()
    assert info8["precision"] == "int8"
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    assert any("DynamicQuantized" in repr(m) for m in int8.model.modules())
    a, b = fp32.predict(TEXTS, "dynamic"), int8.predict(TEXTS, "dynamic")
    assert b.shape == a.shape == (len(TEXTS), 3)
    assert not np.array_equal(a, b)  # really quantized
    assert np.abs(a - b).max() < 0.05 * max(np.abs(a).max(), 1e-3) + 1e-3
    assert 0 < info8["bytes"] < info32["bytes"]


def test_torch_int8_is_cpu_only(tiny_model_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ctx = _ctx("int8", hf=tiny_model_dir)
    ctx.device = "cuda"
    with pytest.raises(Skip, match="CPU only"):
        TorchBackend(ctx).load()


def test_openvino_without_the_extra_is_a_one_line_skip(tiny_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(Skip, match=r"bertdeploy\[openvino\]"):
        make_backend("openvino", _ctx("fp32", bundle=tiny_bundle)).load()


def test_openvino_reads_the_same_onnx_file_as_the_runtime(tiny_bundle):
    pytest.importorskip("openvino")
    backend = make_backend("openvino", _ctx("fp32", bundle=tiny_bundle))
    info = backend.load()
    assert info["precision"] == "fp32" and info["file"].endswith("onnx/model.onnx")
    assert info["providers"][0].startswith("openvino")
    ref = load(tiny_bundle, variant="fp32", threads=1).logits(TEXTS)
    for padding in ("bucketed", "static"):
        got = backend.predict(TEXTS, padding)
        np.testing.assert_allclose(got, ref, atol=2e-3)
    np.testing.assert_allclose(backend.run(backend.prepare(TEXTS, "dynamic")), ref, atol=2e-3)
    with pytest.raises(Skip, match="O3"):
        make_backend("openvino", _ctx("O3", bundle=tiny_bundle)).load()


def test_openvino_bf16_runs_the_fp32_file_where_the_cpu_has_native_bf16(tiny_bundle, monkeypatch):
    pytest.importorskip("openvino")
    from bertdeploy import machine

    monkeypatch.setattr(machine, "cpu", lambda: machine.Cpu("x", frozenset({"avx2"})))
    with pytest.raises(Skip, match="native bf16"):
        make_backend("openvino", _ctx("bf16", bundle=tiny_bundle)).load()
    monkeypatch.setattr(machine, "cpu", lambda: machine.Cpu("x", frozenset({"avx512_bf16"})))
    backend = make_backend("openvino", _ctx("bf16", bundle=tiny_bundle))
    try:
        info = backend.load()
    except Skip as e:  # the real CPU has no bf16: OpenVINO says so, and the block says why
        assert "compiled the bf16 hint as f32" in str(e)
        return
    assert info["hint"] == "bf16" and info["precision"] == "bf16" and info["file"].endswith("onnx/model.onnx")
    ref = load(tiny_bundle, variant="fp32", threads=1).logits(TEXTS)
    got = backend.predict(TEXTS, "bucketed")
    np.testing.assert_allclose(got, ref, atol=0.05 * np.abs(ref).max() + 1e-2)
    assert not np.array_equal(got, ref)  # really bf16


def test_openvino_nncf_int8(tiny_bundle):
    pytest.importorskip("nncf")
    with pytest.raises(Skip, match="calibration"):
        make_backend("openvino", _ctx("nncf", bundle=tiny_bundle)).load()
    backend = make_backend("openvino", _ctx("nncf", bundle=tiny_bundle, calibration=TEXTS))
    info = backend.load()
    assert info["precision"] == "int8" and info["source_variant"] == "fp32"
    got = backend.predict(TEXTS, "bucketed")
    assert got.shape == (len(TEXTS), 3) and np.isfinite(got).all()


def test_openvino_blocks_in_the_plan(tiny_model_dir, tiny_bundle, tmp_path):
    run = BenchConfig(targets=[str(tiny_model_dir)], output=str(tmp_path / "o"), backends=["openvino"])
    blocks = plan(run, resolve_target(str(tiny_model_dir)))
    assert [b.variant for b in blocks] == ["fp32", "bf16", "nncf"] and all(b.skip == NO_BUNDLE for b in blocks)
    cfg = BenchConfig(targets=[str(tiny_bundle)], output=str(tmp_path / "p"), backends=["openvino", "torch"])
    blocks = plan(cfg, resolve_target(str(tiny_bundle)))
    assert {(b.backend, b.variant) for b in blocks} >= {("openvino", "fp32"), ("openvino", "bf16"), ("torch", "int8")}
    with pytest.raises(UserError, match="unknown openvino variant 'int4'"):
        BenchConfig(targets=["x"], output="o", openvino_variants="fp32,int4")


# ---------------------------------------------------------------------------- the runtime's ORT fusion choice
def _add_add_layernorm(path):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.random(8).astype(np.float32), n) for n in ("bias", "gamma", "beta")]
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["t0"]),
        helper.make_node("Add", ["t0", "r"], ["t1"]),
        helper.make_node("LayerNormalization", ["t1", "gamma", "beta"], ["y"], axis=-1),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "l", 8]) for n in ("x", "r", "y")]
    model = helper.make_model(
        helper.make_graph(nodes, "g", io[:2], io[2:], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _optimized_ops(path, out, disabled):
    so = rs.session_options(SessionConfig())
    so.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))
    return {n.op_type for n in onnx.load(str(out)).graph.node}


def test_skip_layer_norm_fusion_is_off_by_default(tmp_path, monkeypatch):
    path = _add_add_layernorm(tmp_path / "m.onnx")
    assert "SkipLayerNormalization" in _optimized_ops(path, tmp_path / "on.onnx", ())  # ORT would fuse it
    assert "SkipLayerNormFusion" in SessionConfig().disabled_optimizers
    assert "SkipLayerNormalization" not in _optimized_ops(
        path, tmp_path / "off.onnx", SessionConfig().disabled_optimizers
    )
    seen = {}
    real = rs.ort.InferenceSession

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(rs.ort, "InferenceSession", spy)
    rs.create_session(path, "cpu", 0, SessionConfig(threads=1), False)
    assert seen["disabled_optimizers"] == list(rs.DISABLED_OPTIMIZERS)
    rs.create_session(path, "cpu", 0, SessionConfig(threads=1, disabled_optimizers=()), False)
    assert seen["disabled_optimizers"] == []


def test_torch_fp16_is_a_cuda_row(tiny_bundle, tmp_path):
    from bertdeploy.benchmark.plan import NO_FP16

    cfg = BenchConfig(targets=[str(tiny_bundle)], output=str(tmp_path / "o"), backends=["torch"], torch_dtypes="fp16")
    (block,) = plan(cfg, resolve_target(str(tiny_bundle)))
    assert block.variant == "fp16" and block.skip == NO_FP16
