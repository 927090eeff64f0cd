"""Triton Python-backend model: questions in, a bertdeploy bundle's answers out (the question-answering and
multiple-choice step of ``bertdeploy package triton``).

The step is the runtime's own head, :class:`~bertdeploy.runtime.reader.Reader` or
:class:`~bertdeploy.runtime.chooser.Chooser`, built on the bundle's manifest and tokenizer: contexts cut into
windows, question-match token types when the bundle's reader was trained with them, length-sorted batches, the n-best
span search with the bundle's answer cap, the softmax over choices. Only the model runs elsewhere: each padded batch
goes to the ONNX model of the same repository through Triton's business logic scripting
(``pb_utils.InferenceRequest(...).exec()``), so the answers are those of ``bertdeploy.load(bundle).predict`` on the
same variant. ``REPO/NAME_reader/1/model.py`` (``NAME_chooser`` for multiple choice) imports
:class:`TritonPythonModel` from here: Triton's Python environment needs bertdeploy's runtime (``pip install
bertdeploy``: numpy, tokenizers and onnxruntime, no torch).

* question answering: inputs ``QUESTION``, ``CONTEXT`` (strings, dims ``[1]``) and the optional ``MAX_ANSWER_LEN``,
  ``TOP_K`` and ``DOC_STRIDE`` (int64, ``[1]`` each: the transformers pipeline's ``max_answer_len``, ``top_k`` and
  ``doc_stride`` per question; left out: the bundle's answer cap, 1, the bundle's stride), and the optional
  ``HANDLE_IMPOSSIBLE_ANSWER`` / ``ALIGN_TO_WORDS`` (bool, ``[1]``; left out: false / true); outputs ``ANSWER``
  (string), ``SCORE`` (fp32), ``START`` / ``END`` (int64: ``ANSWER == CONTEXT[START:END]``, in characters), dims
  ``[-1]``: a row's answers best first, as many as the request's largest ``TOP_K``, a row with fewer padded with
  empty answers of score 0 at 0:0;
* multiple choice: inputs ``QUESTION`` (``[1]``) and ``CHOICES`` (``[-1]``); outputs ``LABEL`` (int64, the chosen
  choice's index) and ``SCORE`` (its probability).

A request that cannot be answered (a missing or empty field, text that is not UTF-8) gets an error response that
names the problem, and the other requests of the batch are answered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy import bundle as _bundle
from bertdeploy.errors import UserError
from bertdeploy.package.triton_tokenizer import as_string
from bertdeploy.runtime.batching import BatchPolicy
from bertdeploy.runtime.heads import head_for

SETTINGS_FILE = "step_settings.json"
QUESTION, CONTEXT, CHOICES = "QUESTION", "CONTEXT", "CHOICES"
MAX_ANSWER_LEN, TOP_K, DOC_STRIDE = "MAX_ANSWER_LEN", "TOP_K", "DOC_STRIDE"
HANDLE_IMPOSSIBLE_ANSWER, ALIGN_TO_WORDS = "HANDLE_IMPOSSIBLE_ANSWER", "ALIGN_TO_WORDS"
#: per head: its optional inputs (dims ``[1]``): the ``predict`` argument each one sets per question, its data type
OPTIONAL = {
    "reader": {
        MAX_ANSWER_LEN: ("max_answer_len", "TYPE_INT64"),
        TOP_K: ("top_k", "TYPE_INT64"),
        DOC_STRIDE: ("doc_stride", "TYPE_INT64"),
        HANDLE_IMPOSSIBLE_ANSWER: ("handle_impossible_answer", "TYPE_BOOL"),
        ALIGN_TO_WORDS: ("align_to_words", "TYPE_BOOL"),
    },
    "chooser": {},
}
#: per head: its outputs, in order, with their Triton data types, and their dims
OUTPUTS = {
    "reader": {"ANSWER": "TYPE_STRING", "SCORE": "TYPE_FP32", "START": "TYPE_INT64", "END": "TYPE_INT64"},
    "chooser": {"LABEL": "TYPE_INT64", "SCORE": "TYPE_FP32"},
}
OUTPUT_DIMS = {"reader": (-1,), "chooser": (1,)}
_DTYPES = {"TYPE_STRING": object, "TYPE_FP32": np.float32, "TYPE_INT64": np.int64}


@dataclass(frozen=True)
class _Node:
    name: str
    type: str
    shape: tuple[None, ...]


class BLSSession:
    """What the runtime's heads use of an ONNX Runtime session, served by another model of the Triton server:
    ``inputs`` / ``outputs`` map the graph's names to their ONNX types (``tensor(int64)``) and ranks."""

    def __init__(self, pb: Any, model: str, inputs: dict[str, list], outputs: dict[str, list]) -> None:
        self.pb, self.model = pb, model
        self._inputs = [_Node(name, t, (None,) * rank) for name, (t, rank) in inputs.items()]
        self._outputs = [_Node(name, t, (None,) * rank) for name, (t, rank) in outputs.items()]

    def get_inputs(self) -> list[_Node]:
        return list(self._inputs)

    def get_outputs(self) -> list[_Node]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return ["TritonBLS"]

    def run(self, output_names: list[str], feed: dict[str, np.ndarray], run_options: Any = None) -> list[np.ndarray]:
        pb = self.pb
        tensors = [pb.Tensor(name, np.ascontiguousarray(array)) for name, array in feed.items()]
        where = {}
        if hasattr(pb, "PreferredMemory"):  # the logits in host memory even when NAME runs on a GPU
            where["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
        request = pb.InferenceRequest(
            model_name=self.model, requested_output_names=list(output_names), inputs=tensors, **where
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"model {self.model}: {response.error().message()}")
        return [pb.get_output_tensor_by_name(response, name).as_numpy() for name in output_names]


def open_step(folder: Path, pb: Any) -> Any:
    """The head of the step in ``folder`` (its manifest, tokenizer and :data:`SETTINGS_FILE`), running its model
    through :class:`BLSSession`."""
    settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    manifest = _bundle.read_manifest(folder)
    variant = next((v for v in manifest.variants if v.name == settings["variant"]), None)
    if variant is None:
        raise UserError(f"{folder}: the manifest has no variant {settings['variant']!r} (write the step again)")
    head = head_for(manifest.task)
    encoder = head.make_encoder(folder / manifest.tokenizer_file, manifest.max_length)
    session = BLSSession(pb, settings["model"], settings["inputs"], settings["outputs"])
    policy = BatchPolicy(batch_size=int(settings["max_batch_size"]))
    return head(folder, manifest, variant, session, encoder, policy)


def _strings(pb: Any, request: Any, name: str) -> list[Any]:
    """The request's ``name`` tensor as one list of strings per row."""
    tensor = pb.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"the request has no {name} input")
    raw = tensor.as_numpy()
    rows = raw.reshape(raw.shape[0], -1) if raw.ndim else raw.reshape(1, 1)
    return [[as_string(value, name) for value in row] for row in rows]


class TritonPythonModel:
    """The interface Triton's Python backend calls: ``initialize`` once, then ``execute`` per batch of requests."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

        self.pb = pb_utils
        folder = Path(args["model_repository"]) / str(args["model_version"])
        self.head = open_step(folder, pb_utils)
        self.outputs = OUTPUTS[self.head.head]

    def records(self, request: Any) -> list[dict[str, Any]]:
        """The request's records, checked as the runtime checks them (a bad one: :class:`UserError` naming it)."""
        questions = [row[0] if len(row) == 1 else "" for row in _strings(self.pb, request, QUESTION)]
        if self.head.head == "reader":
            from bertdeploy.runtime.reader import as_pairs

            contexts = [row[0] if len(row) == 1 else "" for row in _strings(self.pb, request, CONTEXT)]
            if len(contexts) != len(questions):
                raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
            records = [{"question": q, "context": c} for q, c in zip(questions, contexts)]
            as_pairs(records)
            return records
        from bertdeploy.runtime.chooser import as_choice_records

        choices = _strings(self.pb, request, CHOICES)
        if len(choices) != len(questions):
            raise ValueError(f"{len(questions)} questions but {len(choices)} rows of choices")
        records = [{"question": q, "choices": c} for q, c in zip(questions, choices)]
        as_choice_records(records)
        return records

    def options(self, request: Any, rows: int) -> list[tuple[tuple[str, int], ...]]:
        """Per row of the request, the ``predict`` arguments its optional inputs set (:data:`OPTIONAL`; none where
        they are left out), checked as ``predict`` checks them."""
        from bertdeploy.runtime.reader import check_params

        given: dict[str, list[Any]] = {}
        for name, (argument, data_type) in OPTIONAL[self.head.head].items():
            tensor = self.pb.get_input_tensor_by_name(request, name)
            if tensor is None:
                continue
            values = tensor.as_numpy().reshape(-1)
            flag = data_type == "TYPE_BOOL"
            if values.size != rows or values.dtype.kind not in ("b" if flag else "iu"):
                raise ValueError(f"{name} must be one {'boolean' if flag else 'integer'} per question ({rows}), "
                                 f"got {values.size} {values.dtype}")  # fmt: skip
            given[argument] = [bool(v) if flag else int(v) for v in values]
        out = []
        for row in range(rows):
            kwargs = {argument: values[row] for argument, values in given.items()}
            check_params(kwargs.get("top_k", 1), kwargs.get("max_answer_len", 1))
            if "doc_stride" in kwargs:
                self.head.encoder_for(kwargs["doc_stride"])
            out.append(tuple(sorted(kwargs.items())))
        return out

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; the good requests' records answered together, one call of the head per
        number of choices (multiple choice) or per setting of the optional inputs (question answering)."""
        read: dict[int, list[dict[str, Any]]] = {}
        failed: dict[int, str] = {}
        groups: dict[tuple[int, tuple], list[tuple[int, int]]] = {}
        for i, request in enumerate(requests):
            try:
                records = self.records(request)
                options = self.options(request, len(records))
            except (UserError, ValueError, TypeError) as e:
                failed[i] = str(e)
                continue
            read[i] = records
            for j, (record, kwargs) in enumerate(zip(records, options)):
                groups.setdefault((len(record.get("choices", ())), kwargs), []).append((i, j))
        answers: dict[int, list[Any]] = {i: [None] * len(records) for i, records in read.items()}
        for (_, kwargs), members in groups.items():
            self._answer(members, dict(kwargs), read, answers, failed)
        return [self._response(answers.get(i), failed.get(i)) for i in range(len(requests))]

    def _answer(self, members: list[tuple[int, int]], kwargs: dict[str, int], read: dict[int, list[Any]],
                answers: dict[int, list[Any]], failed: dict[int, str]) -> None:  # fmt: skip
        """Answer the records ``members`` (request, row) in one call of the head; when their input is refused (e.g.
        a question too long for its DOC_STRIDE), request by request, so that only the requests at fault fail."""
        try:
            found = self.head.predict([read[i][j] for i, j in members], **kwargs)
        except UserError as e:
            requests = sorted({i for i, _ in members})
            if len(requests) == 1:
                failed[requests[0]] = str(e)
                return
            for request in requests:
                self._answer([m for m in members if m[0] == request], kwargs, read, answers, failed)
            return
        except RuntimeError as e:  # the model failed: every request of the call
            failed.update({i: str(e) for i, _ in members})
            return
        for (i, j), answer in zip(members, found):
            answers[i][j] = answer if isinstance(answer, list) else [answer]

    def _response(self, found: list[Any] | None, error: str | None) -> Any:
        """The request's output tensors: ``[rows, K]``, K its longest list of answers (1 for a chooser)."""
        pb = self.pb
        if error is not None or found is None:
            return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(error or "not answered"))
        width = max(len(row) for row in found)
        empty = {"answer": "", "score": 0.0, "start": 0, "end": 0}
        rows = [[a.to_dict() for a in row] + [empty] * (width - len(row)) for row in found]
        tensors = []
        for name, data_type in self.outputs.items():
            values = [[item[name.lower()] for item in row] for row in rows]
            if data_type == "TYPE_STRING":
                values = [[v.encode("utf-8") for v in row] for row in values]
            tensors.append(pb.Tensor(name, np.array(values, dtype=_DTYPES[data_type]).reshape(len(rows), width)))
        return pb.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        self.head.close()
