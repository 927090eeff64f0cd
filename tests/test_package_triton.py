"""`bertdeploy package triton`: the configs parse into Triton's own ModelConfig message, match the ONNX graph, and
the Python-backend tokenizer (run with fake ``pb_utils`` objects) gives the runtime's token ids and logits.
No Triton server runs here: what a server would add (loading, batching, the classification extension) is not
covered."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
from google.protobuf import text_format

from bertdeploy import load
from bertdeploy.bundle import read_manifest
from bertdeploy.errors import UserError
from bertdeploy.package import triton_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

TEXTS = ["good day", "the movie was terrible and slow", "", "love it " * 20, "app", "thanks for the fast help"]
_ONNX_TYPES = {1: "TYPE_FP32", 7: "TYPE_INT64", 6: "TYPE_INT32", 10: "TYPE_FP16"}


def _parse(path):
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def _dtype(value: int) -> str:
    return model_config_pb2.DataType.Name(value)


@pytest.fixture(scope="module")
def repo(varied_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton") / "repo"
    result = triton_repository(varied_bundle, out, name="emo", variant="fp32", kind="cpu", max_batch_size=16)
    return result


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class FakeResponse:
    def __init__(self, output_tensors, error=None) -> None:
        self.output_tensors, self.error = output_tensors, error


class FakeRequest:
    def __init__(self, *tensors: FakeTensor) -> None:
        self.tensors = tensors


def _fake_pb_utils():
    def get_input_tensor_by_name(request, name):
        return next((t for t in request.tensors if t.name() == name), None)

    return types.SimpleNamespace(
        Tensor=FakeTensor,
        InferenceResponse=FakeResponse,
        TritonError=lambda msg: RuntimeError(msg),
        get_input_tensor_by_name=get_input_tensor_by_name,
    )


def _tokenizer_model(model_dir, monkeypatch):
    """The generated model.py, imported from the repository and initialized as Triton would."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    path = model_dir / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"triton_model_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": "{}", "model_repository": str(model_dir), "model_version": "1"})
    return model


def _request(texts: list[str]) -> FakeRequest:
    raw = np.array([t.encode("utf-8") for t in texts], dtype=object).reshape(-1, 1)
    return FakeRequest(FakeTensor("TEXT", raw))


def test_layout_and_every_config_parses_into_triton_model_config(repo, varied_bundle):
    root = repo.repository
    assert sorted(p.name for p in root.iterdir()) == ["emo", "emo_ensemble", "emo_tokenizer"]
    assert (root / "emo/1/model.onnx").is_file() and (root / "emo_tokenizer/1/model.py").is_file()
    assert (root / "emo_ensemble/1").is_dir()
    configs = {p.parent.name: _parse(p) for p in root.glob("*/config.pbtxt")}
    assert set(configs) == {"emo", "emo_tokenizer", "emo_ensemble"}
    onnx, tok, ens = configs["emo"], configs["emo_tokenizer"], configs["emo_ensemble"]
    assert (onnx.backend, tok.backend, ens.platform) == ("onnxruntime", "python", "ensemble")
    assert {c.max_batch_size for c in configs.values()} == {16}
    assert onnx.dynamic_batching.max_queue_delay_microseconds > 0
    assert onnx.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    labels = (root / "emo" / onnx.output[0].label_filename).read_text(encoding="utf-8").splitlines()
    assert labels == read_manifest(varied_bundle).labels
    assert (root / "emo_ensemble/labels.txt").read_text(encoding="utf-8").splitlines() == labels


def test_onnx_config_matches_the_graph(repo):
    import onnx

    graph = onnx.load(str(repo.repository / "emo/1/model.onnx")).graph
    config = _parse(repo.repository / "emo/config.pbtxt")
    graph_inputs = [
        (i.name, _ONNX_TYPES[i.type.tensor_type.elem_type], len(i.type.tensor_type.shape.dim)) for i in graph.input
    ]
    config_inputs = [(i.name, _dtype(i.data_type), len(i.dims) + 1) for i in config.input]  # + the batch dimension
    assert config_inputs == graph_inputs
    assert all(list(i.dims) == [-1] for i in config.input)
    (out,) = config.output
    logits = next(o for o in graph.output if o.name == out.name)
    dims = [d.dim_value for d in logits.type.tensor_type.shape.dim]
    assert (out.name, _dtype(out.data_type)) == ("logits", _ONNX_TYPES[logits.type.tensor_type.elem_type])
    assert list(out.dims) == dims[1:] == [3]


def test_ensemble_wires_tokenizer_outputs_to_model_inputs(repo):
    root = repo.repository
    onnx, tok, ens = (_parse(root / n / "config.pbtxt") for n in ("emo", "emo_tokenizer", "emo_ensemble"))
    first, second = ens.ensemble_scheduling.step
    assert (first.model_name, second.model_name) == ("emo_tokenizer", "emo")
    assert [i.name for i in ens.input] == [i.name for i in tok.input] == list(first.input_map)
    assert set(first.output_map) == {o.name for o in tok.output}
    assert {first.output_map[k] for k in first.output_map} == set(second.input_map.values())
    assert set(second.input_map) == {i.name for i in onnx.input}
    assert [(o.name, o.data_type, list(o.dims)) for o in tok.output] == [
        (i.name, i.data_type, list(i.dims)) for i in onnx.input
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in ens.output] == [
        (o.name, o.data_type, list(o.dims)) for o in onnx.output
    ]
    assert _dtype(ens.input[0].data_type) == "TYPE_STRING"


def test_tokenizer_execute_gives_the_runtime_ids(repo, varied_bundle, tmp_path, monkeypatch):
    """pad_to_multiple=1: exactly the feed the runtime builds for the same texts in one dynamic batch."""
    exact = triton_repository(varied_bundle, tmp_path / "r", name="emo", variant="fp32", pad_to_multiple=1)
    model = _tokenizer_model(exact.repository / "emo_tokenizer", monkeypatch)
    (response,) = model.execute([_request(TEXTS)])
    assert response.error is None
    got = {t.name(): t.as_numpy() for t in response.output_tensors}
    clf = load(varied_bundle, variant="fp32", padding="dynamic", batch_size=64, max_tokens=10**6)
    (batch,) = clf.plan_batches(clf.encode(TEXTS))
    assert list(got) == list(batch.feed)
    for name, expected in batch.feed.items():
        assert got[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(got[name], expected, err_msg=name)
    assert got["input_ids"].shape[1] == clf.max_length  # the long text was truncated like the runtime does


def test_tokenizer_then_model_gives_the_runtime_logits(repo, varied_bundle, monkeypatch):
    """Default padding (a multiple of 8): the real tokens are the runtime's; the logits through the repository's
    model.onnx equal the runtime's; several requests get one response each, in order."""
    import onnxruntime as ort

    model = _tokenizer_model(repo.repository / "emo_tokenizer", monkeypatch)
    responses = model.execute([_request(TEXTS[:2]), _request(TEXTS[2:])])
    assert len(responses) == 2
    session = ort.InferenceSession(str(repo.repository / "emo/1/model.onnx"), providers=["CPUExecutionProvider"])
    clf = load(varied_bundle, variant="fp32")
    encoded = clf.encode(TEXTS)
    logits, row = [], 0
    for response in responses:
        feed = {t.name(): t.as_numpy() for t in response.output_tensors}
        width = feed["input_ids"].shape[1]
        assert width % 8 == 0 or width == clf.max_length
        for ids, mask in zip(feed["input_ids"], feed["attention_mask"]):
            n = int(mask.sum())
            np.testing.assert_array_equal(ids[:n], encoded.row(row))
            assert (ids[n:] == 0).all() and n == encoded.lengths[row]
            row += 1
        logits.append(session.run(["logits"], feed)[0])
    np.testing.assert_allclose(np.concatenate(logits), clf.logits(TEXTS), atol=1e-4)


def test_tokenizer_answers_bad_text_with_an_error_response(repo, monkeypatch):
    model = _tokenizer_model(repo.repository / "emo_tokenizer", monkeypatch)
    bad = FakeRequest(FakeTensor("TEXT", np.array([[b"\xff\xfe"]], dtype=object)))
    good, failed = model.execute([_request(["fine"]), bad])
    assert good.error is None and "UTF-8" in str(failed.error)


def test_gpu_tensorrt_block_and_default_variant(varied_bundle, tmp_path):
    result = triton_repository(varied_bundle, tmp_path / "r", name="emo", tensorrt_fp16=True, instances=2)
    assert result.variant == "fp32" and result.kind == "gpu"  # TensorRT builds its fp16 engine from fp32
    config = _parse(result.repository / "emo/config.pbtxt")
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert config.instance_group[0].count == 2
    (acc,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP16"
    cpu = triton_repository(varied_bundle, tmp_path / "c", name="emo", kind="cpu")
    assert cpu.variant == load(varied_bundle).variant.name  # the runtime's auto choice on a CPU
    assert not _parse(cpu.repository / "emo/config.pbtxt").HasField("optimization")


def test_refuses_to_overwrite_and_replaces_only_our_models(varied_bundle, tmp_path):
    root = tmp_path / "repo"
    (root / "someone_else/1").mkdir(parents=True)
    triton_repository(varied_bundle, root, name="emo", variant="fp32")
    before = (root / "emo/config.pbtxt").read_text()
    with pytest.raises(UserError, match="already holds emo"):
        triton_repository(varied_bundle, root, name="emo", variant="qint8")
    assert (root / "emo/config.pbtxt").read_text() == before
    result = triton_repository(varied_bundle, root, name="emo", variant="qint8", kind="cpu", overwrite=True)
    assert result.replaced == ["emo", "emo_tokenizer", "emo_ensemble"]
    assert (root / "someone_else/1").is_dir()
    assert sorted(p.name for p in root.iterdir()) == ["emo", "emo_ensemble", "emo_tokenizer", "someone_else"]
    assert not list(tmp_path.glob(".repo.*"))  # no staging folder left behind


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "bad/name"}, "model name"),
        ({"kind": "tpu"}, "kind must be"),
        ({"kind": "cpu", "tensorrt_fp16": True}, "needs --kind gpu"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"variant": "O3"}, "not in the bundle"),
        ({"variant": "nope"}, "unknown variant"),
    ],
)
def test_bad_options_write_nothing(varied_bundle, tmp_path, kwargs, match):
    with pytest.raises(UserError, match=match):
        triton_repository(varied_bundle, tmp_path / "repo", **kwargs)
    assert not (tmp_path / "repo").exists()


def test_cli_writes_the_repository_and_refuses_a_second_time(varied_bundle, tmp_path):
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    args = ["package", "triton", str(varied_bundle), "-o", str(tmp_path / "repo"), "--name", "emo", "--kind", "cpu"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "emo_ensemble: TEXT -> emo_tokenizer -> emo -> logits" in first.stdout
    (group,) = _parse(tmp_path / "repo/emo/config.pbtxt").instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and again.stderr.startswith("error: ") and len(again.stderr.splitlines()) == 1
