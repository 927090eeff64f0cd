"""The gate rules and the pieces around them, on synthetic numbers (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from bertdeploy.errors import UserError
from bertdeploy.exporter import ExportConfig
from bertdeploy.exporter.gate import judge, parity
from bertdeploy.exporter.pipeline import variant_notes
from bertdeploy.machine import detect_isa, machine_info, versions
from bertdeploy.variants import VARIANTS


def _par(agreement: float, finite: bool = True) -> dict:
    return {"agreement": agreement, "finite": finite, "max_abs_diff": 0.0}


def test_parity_measures_diff_and_agreement_on_first_rows():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [5.0, 0.0]], dtype=np.float32)
    got = np.array([[0.9, 0.0], [0.6, 0.5], [1.0, 0.0], [0.0, 5.0]], dtype=np.float32)
    p = parity(ref, got, rows=3)
    assert p["rows"] == 3
    assert p["max_abs_diff"] == pytest.approx(0.6)
    assert p["agreement"] == pytest.approx(2 / 3)
    assert p["finite"]


def test_parity_flags_non_finite_logits():
    ref = np.zeros((2, 3), dtype=np.float32)
    got = np.array([[0, np.nan, 0], [0, 0, 0]], dtype=np.float32)
    p = parity(ref, got, rows=2)
    assert not p["finite"] and p["max_abs_diff"] == float("inf")
    assert not judge("fp32", p, {}, {}, 1.0).accepted


@pytest.mark.parametrize(
    ("name", "agreement", "ok"),
    [("fp32", 1.0, True), ("fp32", 0.998, False), ("O2", 0.999, True), ("fp16", 0.99, True), ("fp16", 0.985, False)],
)
def test_agreement_thresholds(name, agreement, ok):
    verdict = judge(name, _par(agreement), {"accuracy": 0.9}, {"accuracy": 0.9}, 1.0)
    assert verdict.accepted is ok
    if not ok:
        assert "agreement" in verdict.reason


def test_int8_is_gated_on_accuracy_drop_not_agreement():
    base = {"accuracy": 0.90}
    # 0.8 points lower with only 95 % agreement: accepted (drop <= 1.0)
    assert judge("qint8", _par(0.95), {"accuracy": 0.892}, base, 1.0).accepted
    rejected = judge("qint8_static", _par(0.999), {"accuracy": 0.885}, base, 1.0)
    assert not rejected.accepted
    assert "accuracy drop 1.50 points > 1" in rejected.reason
    assert rejected.checks["accuracy_drop_points"] == pytest.approx(1.5)
    # exactly at the limit passes (100 * (0.925 - 0.915) is 1.0000000000000009 in floating point)
    assert judge("qint8", _par(0.97), {"accuracy": 0.915}, {"accuracy": 0.925}, 1.0).accepted
    # an int8 variant that is *better* than PyTorch passes
    assert judge("qint8", _par(0.97), {"accuracy": 0.95}, base, 0.0).accepted


def test_int8_without_labels_uses_agreement_bound():
    assert judge("qint8", _par(0.99), {}, {}, 1.0).accepted
    verdict = judge("qint8", _par(0.98), {}, {}, 1.0)
    assert not verdict.accepted and "no labelled data" in verdict.reason


def test_min_agreement_override_forces_failure():
    assert not judge("O2", _par(1.0), {}, {}, 1.0, {"O2": 1.01}).accepted


def test_config_validation():
    with pytest.raises(UserError, match="unknown variant"):
        ExportConfig(run_dir="r", output="o", variants=["int4"])
    with pytest.raises(UserError, match="opset"):
        ExportConfig(run_dir="r", output="o", opset=5)
    with pytest.raises(UserError, match="calibration"):
        ExportConfig(run_dir="r", output="o", calibration_size=0)
    with pytest.raises(UserError, match="isa"):
        ExportConfig(run_dir="r", output="o", isa="sse2")
    cfg = ExportConfig(run_dir="r", output="o", variants=["qint8", "O2"])
    assert cfg.variants == ["fp32", "O2", "qint8"]  # fp32 always, canonical order
    assert cfg.required == ["fp32", "O2", "qint8"]


def test_isa_detection():
    assert detect_isa({"avx2", "avx512f", "avx512bw", "avx512_vnni"}, "x86_64") == "avx512_vnni"
    assert detect_isa({"avx2", "avx512f", "avx512bw"}, "x86_64") == "avx512"
    assert detect_isa({"avx", "avx2", "fma"}, "x86_64") == "avx2"
    assert detect_isa(set(), "aarch64") == "arm64"
    info = machine_info()
    assert info["isa"] in ("avx512_vnni", "avx512", "avx2", "arm64")
    assert "CPUExecutionProvider" in info["providers"]
    assert {"onnxruntime", "onnx", "optimum"} <= set(versions())


def test_warning_when_attention_did_not_fuse():
    fused = {"SkipLayerNormalization": 4}
    assert any("Attention did not fuse" in n for n in variant_notes(VARIANTS["O2"], fused))
    assert not any("did not fuse" in n for n in variant_notes(VARIANTS["O2"], {"Attention": 2}))
    assert not any("did not fuse" in n for n in variant_notes(VARIANTS["O1"], fused))  # O1 does not fuse attention
