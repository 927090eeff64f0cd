"""The answers step of a question-answering / multiple-choice Triton repository (``NAME_reader`` / ``NAME_chooser``):
its configs parse into Triton's ModelConfig, and the generated model.py, run as Triton would (fake ``pb_utils``
whose BLS requests run the repository's ONNX model as its config declares it), answers like
``load(bundle).predict``; a bad request gets its own error and the others of the batch are answered."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import tiny_mc_records, tiny_qa_records
from test_package_triton import FakeRequest, FakeResponse, FakeTensor, _parse, model_config_pb2

from bertdeploy.cli import cli
from bertdeploy.errors import UserError
from bertdeploy.package import triton_repository
from bertdeploy.runtime import load

QA = tiny_qa_records(12, seed=61)
MC = tiny_mc_records(6, seed=62)


class BLSResponse:
    """A BLS response (``InferenceRequest.exec()``'s): tensors, or an error with a message."""

    def __init__(self, tensors: list[FakeTensor], message: str | None = None) -> None:
        self.output_tensors, self._message = tensors, message

    def has_error(self) -> bool:
        return self._message is not None

    def error(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(message=lambda: self._message)


class FakeBLS:
    """``pb_utils`` with BLS: an ``InferenceRequest`` to a model of ``repo`` runs its ``1/model.onnx`` with ONNX
    Runtime after checking the request against the model's config (input names, ranks, the batch size limit)."""

    def __init__(self, repo) -> None:
        self.repo, self.sessions, self.calls, self.memory = repo, {}, [], []

    def _run(self, model: str, outputs: list[str], inputs: list[FakeTensor]) -> BLSResponse:
        import onnxruntime as ort

        config = _parse(self.repo / model / "config.pbtxt")
        feed = {t.name(): t.as_numpy() for t in inputs}
        assert sorted(feed) == sorted(i.name for i in config.input)
        for declared in config.input:
            array = feed[declared.name]
            assert array.ndim == len(declared.dims) + 1 and array.shape[0] <= config.max_batch_size
            assert array.dtype == np.dtype(model_config_pb2.DataType.Name(declared.data_type)[5:].lower())
        self.calls.append(feed)
        if model not in self.sessions:
            path = str(self.repo / model / "1" / "model.onnx")
            self.sessions[model] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        found = self.sessions[model].run(outputs, feed)
        return BLSResponse([FakeTensor(n, a) for n, a in zip(outputs, found)])

    def module(self) -> types.SimpleNamespace:
        bls = self

        class InferenceRequest:
            def __init__(self, model_name, requested_output_names, inputs, preferred_memory=None) -> None:
                self.args = (model_name, list(requested_output_names), list(inputs))
                bls.memory.append(preferred_memory)

            def exec(self):
                return bls._run(*self.args)

        def get_tensor(holder, name):
            tensors = holder.tensors if isinstance(holder, FakeRequest) else holder.output_tensors
            return next((t for t in tensors if t.name() == name), None)

        return types.SimpleNamespace(
            Tensor=FakeTensor,
            InferenceResponse=FakeResponse,
            InferenceRequest=InferenceRequest,
            TritonError=lambda msg: RuntimeError(msg),
            PreferredMemory=lambda kind, device=0: (kind, device),
            TRITONSERVER_MEMORY_CPU="host",
            get_input_tensor_by_name=get_tensor,
            get_output_tensor_by_name=get_tensor,
        )


def open_step(repo, step: str, monkeypatch) -> tuple[object, FakeBLS]:
    """The generated ``STEP/1/model.py``, imported from the repository and initialized as Triton would."""
    bls = FakeBLS(repo)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", bls.module())
    path = repo / step / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"triton_step_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": "{}", "model_repository": str(repo / step), "model_version": "1"})
    return model, bls


def strings(name: str, rows: list) -> FakeTensor:
    encode = lambda v: v.encode("utf-8") if isinstance(v, str) else v  # noqa: E731
    return FakeTensor(name, np.array([[encode(v) for v in row] for row in rows], dtype=object))


def qa_request(records: list[dict], *extra: FakeTensor) -> FakeRequest:
    return FakeRequest(strings("QUESTION", [[r["question"]] for r in records]),
                       strings("CONTEXT", [[r["context"]] for r in records]), *extra)  # fmt: skip


def fields(response, names: tuple[str, ...]) -> list[dict]:
    assert response.error is None, response.error
    columns = {t.name(): t.as_numpy().reshape(-1).tolist() for t in response.output_tensors}
    assert set(columns) == set(names)
    rows = [dict(zip(names, values)) for values in zip(*(columns[n] for n in names))]
    return [{k.lower(): v.decode("utf-8") if isinstance(v, bytes) else v for k, v in row.items()} for row in rows]


@pytest.fixture
def qa_repo(tiny_qa_bundle, tmp_path):
    """fp32: qint8's dynamic quantization scales each batch by its own range, so its answers depend on how the
    windows are batched (here 4 a batch, the runtime's 64)."""
    out = tmp_path / "repo"
    return triton_repository(tiny_qa_bundle, out, name="qa", variant="fp32", kind="cpu", max_batch_size=4)


def test_the_reader_step_config_parses_and_names_its_model(qa_repo):
    root = qa_repo.repository
    assert sorted(p.name for p in root.iterdir()) == ["qa", "qa_reader"] and qa_repo.answers == "qa_reader"
    config = _parse(root / "qa_reader/config.pbtxt")
    assert config.backend == "python" and config.max_batch_size == 4
    assert [(i.name, model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        ("QUESTION", "TYPE_STRING", [1]), ("CONTEXT", "TYPE_STRING", [1]), ("MAX_ANSWER_LEN", "TYPE_INT64", [1]),
        ("TOP_K", "TYPE_INT64", [1]), ("DOC_STRIDE", "TYPE_INT64", [1]), ("HANDLE_IMPOSSIBLE_ANSWER", "TYPE_BOOL", [1]),
        ("ALIGN_TO_WORDS", "TYPE_BOOL", [1])]  # fmt: skip
    assert [i.optional for i in config.input] == [False, False, True, True, True, True, True]
    assert [(o.name, list(o.dims)) for o in config.output] == [("ANSWER", [-1]), ("SCORE", [-1]), ("START", [-1]),
                                                               ("END", [-1])]  # fmt: skip
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert {p.name for p in (root / "qa_reader/1").iterdir()} == {
        "model.py", "tokenizer.json", "bertdeploy.json", "step_settings.json"}  # fmt: skip


def test_the_reader_step_answers_like_the_runtime(qa_repo, tiny_qa_bundle, monkeypatch):
    step, bls = open_step(qa_repo.repository, "qa_reader", monkeypatch)
    requests = [qa_request(QA[:1]), qa_request(QA[1:7]), qa_request(QA[7:])]
    responses = step.execute(requests)
    found = [row for r in responses for row in fields(r, ("ANSWER", "SCORE", "START", "END"))]
    with load(tiny_qa_bundle, variant="fp32", threads=1) as reader:
        expected = [a.to_dict() for a in reader.predict(QA)]
        assert reader.encode(QA).truncated > 0  # windows: several rows of one question go to the model
    assert [(f["answer"], f["start"], f["end"]) for f in found] == [
        (e["answer"], e["start"], e["end"]) for e in expected
    ]
    assert np.allclose([f["score"] for f in found], [e["score"] for e in expected], atol=1e-5)
    assert all(r["context"][f["start"] : f["end"]] == f["answer"] for r, f in zip(QA, found))
    assert len(bls.calls) >= 2 and max(len(c["input_ids"]) for c in bls.calls) <= 4  # batches within the config's 4
    assert bls.memory == [("host", 0)] * len(bls.calls)  # the logits asked for in host memory (NAME may be on a GPU)


def test_max_answer_len_per_request_answers_like_the_runtime_with_that_cap(qa_repo, tiny_qa_bundle, monkeypatch):
    step, _ = open_step(qa_repo.repository, "qa_reader", monkeypatch)
    cap = lambda values, dtype=np.int64: FakeTensor("MAX_ANSWER_LEN", np.array(values, dtype=dtype))  # noqa: E731
    capped = qa_request(QA[:6], cap([[1]] * 3 + [[40]] * 3))
    zero = qa_request(QA[:1], cap([[0]]))
    floats = qa_request(QA[:1], cap([[2.0]], np.float32))
    responses = step.execute([capped, qa_request(QA[6:]), zero, floats])
    names = ("ANSWER", "SCORE", "START", "END")
    with load(tiny_qa_bundle, variant="fp32", threads=1) as reader:
        one = [a.to_dict() for a in reader.predict(QA[:3], max_answer_len=1)]
        forty = [a.to_dict() for a in reader.predict(QA[3:6], max_answer_len=40)]
        default = [a.to_dict() for a in reader.predict(QA[6:])]
        uncapped = [a.to_dict() for a in reader.predict(QA[:6], max_answer_len=40)]
    spans = lambda rows: [(r["answer"], r["start"], r["end"]) for r in rows]  # noqa: E731
    assert spans(fields(responses[0], names)) == spans(one + forty)
    assert spans(fields(responses[1], names)) == spans(default)
    assert spans(one) != spans(uncapped[:3])  # the cap reached the search
    assert "max_answer_len" in str(responses[2].error) and "MAX_ANSWER_LEN" in str(responses[3].error)


def test_top_k_and_doc_stride_per_question_answer_like_the_runtime(qa_repo, tiny_qa_bundle, monkeypatch):
    """TOP_K: a row's answers best first, as many as the request's largest TOP_K (fewer: empty ones of score 0);
    DOC_STRIDE: the windows' overlap; both checked as predict checks them, a bad one that request's error."""
    step, _ = open_step(qa_repo.repository, "qa_reader", monkeypatch)
    ints = lambda name, values: FakeTensor(name, np.array([[v] for v in values], dtype=np.int64))  # noqa: E731
    ranked = qa_request(QA[:4], ints("TOP_K", [3, 3, 1, 3]))
    strided = qa_request(QA[4:8], ints("DOC_STRIDE", [2] * 4))
    responses = step.execute([ranked, strided, qa_request(QA[:1], ints("TOP_K", [0])),
                              qa_request(QA[:1], ints("DOC_STRIDE", [10_000]))])  # fmt: skip
    with load(tiny_qa_bundle, variant="fp32", threads=1) as reader:
        three = reader.predict(QA[:4], top_k=3)
        one = reader.predict(QA[2:3])
        stride2 = reader.predict(QA[4:8], doc_stride=2)
        default = reader.predict(QA[4:8])
    names = ("ANSWER", "SCORE", "START", "END")
    columns = {t.name(): t.as_numpy() for t in responses[0].output_tensors}
    assert responses[0].error is None and {c.shape for c in columns.values()} == {(4, 3)}
    empty = ("", 0, 0)
    for row, expected in enumerate([three[0], three[1], one, three[3]]):
        got = [(columns["ANSWER"][row, k].decode(), int(columns["START"][row, k]), int(columns["END"][row, k]))
               for k in range(3)]  # fmt: skip
        want = [(a.answer, a.start, a.end) for a in expected]
        assert got == want + [empty] * (3 - len(want)) and float(columns["SCORE"][row, 1 if row == 2 else 0]) >= 0
    assert len(three[0]) > 1  # the tiny reader finds several spans: top_k reached the search
    spans = lambda rows: [(r["answer"], r["start"], r["end"]) for r in rows]  # noqa: E731
    assert spans(fields(responses[1], names)) == spans([a.to_dict() for a in stride2])
    assert spans([a.to_dict() for a in stride2]) != spans([a.to_dict() for a in default])  # the stride reached it
    assert "top_k" in str(responses[2].error) and "doc_stride" in str(responses[3].error)


def test_the_boolean_pipeline_parameters_per_question(qa_repo, tiny_qa_bundle, monkeypatch):
    """HANDLE_IMPOSSIBLE_ANSWER / ALIGN_TO_WORDS (bool): the answers of predict(..., handle_impossible_answer=True /
    align_to_words=False) (the empty answer competing: found among a question's TOP_K); an integer tensor for them
    is that request's error."""
    step, _ = open_step(qa_repo.repository, "qa_reader", monkeypatch)
    tensor = lambda name, values, dtype: FakeTensor(name, np.array([[v] for v in values], dtype=dtype))  # noqa: E731
    n = len(QA)
    null, top = tensor("HANDLE_IMPOSSIBLE_ANSWER", [True] * n, bool), tensor("TOP_K", [50] * n, np.int64)
    impossible = qa_request(QA, null, top)
    unaligned = qa_request(QA, tensor("ALIGN_TO_WORDS", [False] * n, bool))
    wrong = qa_request(QA[:1], tensor("ALIGN_TO_WORDS", [0], np.int64))
    responses = step.execute([impossible, unaligned, wrong])
    with load(tiny_qa_bundle, variant="fp32", threads=1) as reader:
        ranked = reader.predict(QA, top_k=50, handle_impossible_answer=True)
        unaligned_expected = reader.predict(QA, align_to_words=False)
    columns = {t.name(): t.as_numpy() for t in responses[0].output_tensors}
    for row, answers in enumerate(ranked):
        got = [(columns["ANSWER"][row, k].decode(), int(columns["START"][row, k])) for k in range(len(answers))]
        assert got == [(a.answer, a.start) for a in answers]
    assert any(a.answer == "" and a.score > 0 for answers in ranked for a in answers)  # the null answer competes
    spans = [(r["answer"], r["start"], r["end"]) for r in fields(responses[1], ("ANSWER", "SCORE", "START", "END"))]
    assert spans == [(a.answer, a.start, a.end) for a in unaligned_expected]
    assert "ALIGN_TO_WORDS must be one boolean per question" in str(responses[2].error)


def test_a_question_too_long_for_its_doc_stride_fails_alone(qa_repo, tiny_qa_bundle, monkeypatch):
    """DOC_STRIDE 20 fits a window of 32 tokens beside a short question, not beside a long one: the request with the
    long question gets the runtime's error, the other request with the same setting (one call of the head) is
    answered."""
    step, _ = open_step(qa_repo.repository, "qa_reader", monkeypatch)
    stride = FakeTensor("DOC_STRIDE", np.array([[20]], dtype=np.int64))
    long = {**QA[0], "question": " ".join([QA[0]["question"]] * 6)}
    responses = step.execute([qa_request([long], stride), qa_request(QA[1:2], stride)])
    with load(tiny_qa_bundle, variant="fp32", threads=1) as reader:
        expected = [a.to_dict() for a in reader.predict(QA[1:2], doc_stride=20)]
        with pytest.raises(UserError, match="record #0: the question"):
            reader.predict([long], doc_stride=20)
    assert "record #0: the question" in str(responses[0].error)
    names = ("ANSWER", "SCORE", "START", "END")
    assert [(r["answer"], r["start"]) for r in fields(responses[1], names)] == [
        (e["answer"], e["start"]) for e in expected]  # fmt: skip


def test_a_bad_request_gets_its_own_error_and_the_batch_is_answered(qa_repo, monkeypatch):
    step, _ = open_step(qa_repo.repository, "qa_reader", monkeypatch)
    empty = qa_request([{"question": "where", "context": "  "}])
    missing = FakeRequest(strings("QUESTION", [["where is it"]]))
    not_utf8 = FakeRequest(strings("QUESTION", [[b"\xff\xfe"]]), strings("CONTEXT", [["a context"]]))
    good = qa_request(QA[:2])
    responses = step.execute([empty, good, missing, not_utf8])
    assert "context" in str(responses[0].error) and "CONTEXT" in str(responses[2].error)
    assert "UTF-8" in str(responses[3].error)
    assert len(fields(responses[1], ("ANSWER", "SCORE", "START", "END"))) == 2


def test_a_model_failure_is_each_requests_error(qa_repo, monkeypatch):
    step, bls = open_step(qa_repo.repository, "qa_reader", monkeypatch)
    monkeypatch.setattr(bls, "_run", lambda *a: BLSResponse([], "boom"))
    responses = step.execute([qa_request(QA[:1]), qa_request(QA[1:2])])
    assert all("model qa: boom" in str(r.error) for r in responses)


def test_the_chooser_step_picks_like_the_runtime_across_choice_counts(tiny_mc_bundle, tmp_path, monkeypatch):
    repo = triton_repository(tiny_mc_bundle, tmp_path / "repo", name="mc", variant="fp32", kind="cpu")
    config = _parse(repo.repository / "mc_chooser/config.pbtxt")
    assert [(i.name, list(i.dims)) for i in config.input] == [("QUESTION", [1]), ("CHOICES", [-1])]
    assert [o.name for o in config.output] == ["LABEL", "SCORE"] and repo.answers == "mc_chooser"
    step, bls = open_step(repo.repository, "mc_chooser", monkeypatch)
    two = [{"question": r["question"], "choices": r["choices"][:2]} for r in MC[:2]]
    parts = (MC[:4], two, MC[4:])
    requests = [FakeRequest(strings("QUESTION", [[r["question"]] for r in part]),
                            strings("CHOICES", [r["choices"] for r in part])) for part in parts]  # fmt: skip
    found = [fields(r, ("LABEL", "SCORE")) for r in step.execute(requests)]
    with load(tiny_mc_bundle, variant="fp32", threads=1) as chooser:
        for rows, part in zip(found, parts):
            expected = [c.to_dict() for c in chooser.predict(part)]
            assert [r["label"] for r in rows] == [e["label"] for e in expected]
            assert np.allclose([r["score"] for r in rows], [e["score"] for e in expected], atol=1e-5)
    assert {c["input_ids"].shape[1] for c in bls.calls} == {2, 3}  # one model call per choice count


def test_the_cli_names_the_answers_step(tiny_qa_bundle, tmp_path):
    result = CliRunner().invoke(cli, ["package", "triton", str(tiny_qa_bundle), "-o", str(tmp_path / "r"),
                                      "--name", "qa", "--kind", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "qa_reader: QUESTION, CONTEXT -> ANSWER, SCORE, START, END" in result.output
    assert "pip install bertdeploy" in result.output
