"""Provider choice and the silent-CPU-fallback check, with a fake InferenceSession (no GPU here)."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest

from bertdeploy.errors import UserError
from bertdeploy.runtime import SessionConfig, load
from bertdeploy.runtime import session as rs

REAL_SESSION = ort.InferenceSession


class FallbackSession:
    """What onnxruntime-gpu does without a usable GPU: accepts the CUDA request, attaches only the CPU."""

    requested: list[list[str]] = []

    def __init__(self, path, sess_options=None, providers=None, provider_options=None, **kwargs):
        FallbackSession.requested.append(list(providers))
        self._real = REAL_SESSION(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    def get_providers(self):
        return ["CPUExecutionProvider"]

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def fake_gpu_build(monkeypatch):
    """onnxruntime-gpu installed on a machine whose GPU cannot be used."""
    FallbackSession.requested = []
    monkeypatch.setattr(rs.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(rs.ort, "InferenceSession", FallbackSession)
    return FallbackSession


def test_cuda_requested_but_cpu_attached_is_an_error(tiny_bundle, fake_gpu_build):
    with pytest.raises(UserError, match="attached \\['CPUExecutionProvider'\\]"):
        load(tiny_bundle, device="cuda")
    assert fake_gpu_build.requested[-1] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_allow_fallback_warns_and_runs(tiny_bundle, fake_gpu_build):
    with pytest.warns(RuntimeWarning, match="running on the CPU"):
        clf = load(tiny_bundle, device="cuda:0", allow_fallback=True, threads=1)
    assert clf.variant.name == "fp16"  # the variant was chosen for CUDA
    assert clf.providers == ["CPUExecutionProvider"]
    assert len(clf.predict(["good"])) == 1


def test_auto_device_falls_back_to_cpu_variant(tiny_bundle, fake_gpu_build):
    with pytest.warns(RuntimeWarning, match="did not attach"):
        clf = load(tiny_bundle, device="auto", threads=1)
    assert clf.variant.name == "qint8"  # rebuilt with the CPU's preferred variant
    assert fake_gpu_build.requested[0][0] == "CUDAExecutionProvider"
    assert fake_gpu_build.requested[-1] == ["CPUExecutionProvider"]


def test_cuda_not_in_build_is_an_error(tiny_bundle):
    if rs.gpu_available():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(UserError, match="no CUDAExecutionProvider"):
        load(tiny_bundle, device="cuda")
    with pytest.raises(UserError, match="no TensorrtExecutionProvider"):
        load(tiny_bundle, device="tensorrt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = load(tiny_bundle, device="auto", threads=1)  # CPU-only build: auto is quiet
    assert clf.providers == ["CPUExecutionProvider"]


def test_check_providers_accepts_what_attached():
    rs.check_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], allow_fallback=False)
    rs.check_providers("tensorrt", ["TensorrtExecutionProvider", "CUDAExecutionProvider"], False)
    rs.check_providers("cpu", ["CPUExecutionProvider"], False)
    with pytest.raises(UserError):
        rs.check_providers("tensorrt", ["CUDAExecutionProvider", "CPUExecutionProvider"], False)


def test_provider_chain_options():
    chain = rs.provider_chain("tensorrt", 1, "fp16", (32, 128), ("input_ids", "attention_mask"))
    assert [p for p, _ in chain] == [rs.TENSORRT, rs.CUDA, rs.CPU]
    trt, cuda = chain[0][1], chain[1][1]
    assert trt["trt_fp16_enable"] is True and trt["device_id"] == 1
    assert trt["trt_profile_max_shapes"] == "input_ids:32x128,attention_mask:32x128"
    assert cuda["arena_extend_strategy"] == "kSameAsRequested"
    assert rs.parse_device("cuda:3") == ("cuda", 3)
    with pytest.raises(UserError):
        rs.parse_device("cuda:x")


def test_session_options():
    so = rs.session_options(SessionConfig(threads=2))
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.enable_mem_pattern is False
    assert so.get_session_config_entry("session.force_spinning_stop") == "1"
    fast = rs.session_options(SessionConfig(gelu_approximation=True, extra={"session.disable_prepacking": "0"}))
    assert fast.get_session_config_entry("optimization.enable_gelu_approximation") == "1"
    assert fast.get_session_config_entry("session.disable_prepacking") == "0"
    off = rs.session_options(SessionConfig(spinning="off", cpu_arena=False))
    assert off.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert off.enable_cpu_mem_arena is False
    with pytest.raises(UserError):
        rs.session_options(SessionConfig(threads=0))
    with pytest.raises(UserError):
        rs.session_options(SessionConfig(graph_optimization="max"))


def test_session_config_variants_predict_the_same(tiny_bundle):
    texts = ["good great love", "bad terrible", "the movie was long and the day was late"]
    base = load(tiny_bundle, variant="fp32", threads=1).logits(texts)
    for config in (
        SessionConfig(spinning="off", cpu_arena=False),
        SessionConfig(graph_optimization="basic", spinning="on"),
    ):
        out = load(tiny_bundle, variant="fp32", threads=1, session_config=config).logits(texts)
        np.testing.assert_allclose(out, base, atol=1e-5)


@pytest.mark.gpu
def test_real_cuda_matches_cpu(tiny_bundle):
    if not rs.gpu_available():
        pytest.skip("no CUDA in this onnxruntime build")
    texts = ["good great love", "bad terrible", "the movie"]
    gpu = load(tiny_bundle, variant="fp32", device="cuda")
    assert gpu.providers[0] == "CUDAExecutionProvider"  # IO binding path
    cpu = load(tiny_bundle, variant="fp32", device="cpu")
    np.testing.assert_allclose(gpu.logits(texts), cpu.logits(texts), atol=1e-3)
