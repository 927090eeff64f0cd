"""The Hugging Face Inference API shapes of question answering and multiple choice on ``POST /``.

question answering (what ``InferenceClient.question_answering`` posts)
    ``{"inputs": {"question": ..., "context": ...}, "parameters": {"top_k": 1, "max_answer_len": N,
    "handle_impossible_answer": false, "align_to_words": true}}`` -> ``{"answer", "score", "start", "end"}``
    (character offsets into the context; ``max_answer_len`` defaults to the bundle's cap, else 15); with
    ``top_k > 1`` a best-first list of them. ``inputs`` may be a list of such objects: one answer (or list) per
    question. ``doc_stride`` sets the request's window overlap (requests with different strides run as separate
    model batches); ``max_seq_len`` is accepted when it is the bundle's (its window length, fixed at export),
    ``max_question_len`` is refused (the question is never cut).
multiple choice (the same style)
    ``{"inputs": {"question": ..., "choices": ["...", "..."]}}`` -> ``{"label": index, "score": probability}``; a
    list of inputs -> one per question. Questions batched together must have as many choices each; a request
    whose count differs from its batch-mates' is run in a batch of its own.

Every question of every request in a batch is windowed and run in the runtime's token-budget batches together;
each request decodes its slice with its own parameters. TEI's ``/predict`` has no question shape: it answers 422.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bertdeploy.errors import UserError
from bertdeploy.runtime.predictor import invalid_unicode
from bertdeploy.serve.protocol import RequestError

QA, MC = "question-answering", "multiple-choice"
QUESTION_TASKS = (QA, MC)
QA_PARAMETERS = ("top_k", "max_answer_len", "handle_impossible_answer", "align_to_words", "doc_stride",
                 "max_seq_len", "max_question_len")  # fmt: skip


def warmup_inputs(predictor: Any) -> list[Any]:
    """One input of the predictor's task, for the server's warm-up call."""
    name = getattr(getattr(predictor, "task", None), "name", "")
    if name == QA:
        return [("warm up", "warm up")]
    if name == MC:
        return [("warm up", ["warm up", "warm up"])]
    return ["warm up"]


def tei_refusal(task: str) -> RequestError:
    """``POST /predict`` for a question bundle: TEI has no such request shape."""
    shape = '{"question", "context"}' if task == QA else '{"question", "choices"}'
    return RequestError(
        422, f'POST /predict speaks TEI\'s shapes, which have no {task}; POST / with {{"inputs": {shape}}}'
    )


def parse_questions(
    data: dict[str, Any], params: dict[str, Any], max_texts: int, predictor: Any
) -> tuple[list[Any], Callable[[Any], Any], int | None]:
    """``POST /`` of a QA / MC bundle -> its records (what the batcher encodes), how its slice of the batch's
    outputs becomes its answer, and its window stride where it is not the bundle's."""
    task = predictor.task.name
    single, items = _items(data, max_texts)
    second = "context" if task == QA else "choices"
    records = [_record(item, where, second) for item, where in items]
    if task == MC:
        if params:
            raise RequestError(422, f"multiple choice takes no parameters, got {', '.join(map(repr, sorted(params)))}")
        widths = {len(r[1]) for r in records}
        if len(widths) > 1:
            raise RequestError(422, f"every question of one request must have as many choices, got {sorted(widths)}")

        def choose(outputs: Any) -> Any:
            found = [c.to_dict() for c in predictor.decode(outputs)]
            return found[0] if single else found

        return records, choose, None
    options = _qa_params(params, predictor)
    stride = _doc_stride(params.get("doc_stride"), predictor)

    def answer(outputs: Any) -> Any:
        found = predictor.decode(outputs, **options)
        shaped = [[a.to_dict() for a in f] if isinstance(f, list) else f.to_dict() for f in found]
        return shaped[0] if single else shaped

    return records, answer, stride


def _doc_stride(value: Any, predictor: Any) -> int | None:
    """The request's ``doc_stride``, checked as ``predict`` checks it; None where it is the bundle's."""
    if value is None or value == predictor.doc_stride:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(422, f"'doc_stride' must be an integer >= 0, got {json.dumps(value)}")
    try:
        predictor.encoder_for(value)
    except UserError as e:
        raise RequestError(422, str(e)) from None
    return value


def _items(data: dict[str, Any], max_texts: int) -> tuple[bool, list[tuple[Any, str]]]:
    if "inputs" not in data:
        raise RequestError(422, "the field 'inputs' is required (an object {\"question\", ...} or a list of them)")
    inputs = data["inputs"]
    if isinstance(inputs, dict):
        return True, [(inputs, "'inputs'")]
    if isinstance(inputs, list) and inputs:
        if len(inputs) > max_texts:
            raise RequestError(413, f"{len(inputs)} questions in one request; at most {max_texts} are accepted")
        return False, [(item, f"inputs[{i}]") for i, item in enumerate(inputs)]
    raise RequestError(422, f"'inputs' must be an object with a question, or a non-empty list of them; got "
                            f"{json.dumps(inputs)[:60]}")  # fmt: skip


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError(422, f"{where} is {'missing' if value is None else type(value).__name__}, not a string")
    if not value.strip():
        raise RequestError(422, f"{where} is an empty string")
    if (wrong := invalid_unicode(value)) is not None:
        raise RequestError(422, f"{where} {wrong}")
    return value


def _record(item: Any, where: str, second: str) -> tuple[str, Any]:
    if not isinstance(item, dict):
        raise RequestError(422, f'{where} must be an object {{"question", "{second}"}}')
    unknown = sorted(set(item) - {"question", second})
    if unknown:
        raise RequestError(422, f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; send question, {second}")
    question = _text(item.get("question"), f"{where}.question")
    if second == "context":
        return question, _text(item.get("context"), f"{where}.context")
    choices = item.get("choices")
    if not isinstance(choices, list) or len(choices) < 2:
        raise RequestError(422, f"{where}.choices must be a list of at least 2 strings")
    return question, [_text(c, f"{where}.choices[{i}]") for i, c in enumerate(choices)]


def _qa_params(params: dict[str, Any], predictor: Any) -> dict[str, Any]:
    unknown = sorted(set(params) - set(QA_PARAMETERS))
    if unknown:
        raise RequestError(422, f"unknown parameter(s) {', '.join(map(repr, unknown))}; accepted: "
                                f"{', '.join(QA_PARAMETERS)}")  # fmt: skip
    fixed = {"max_seq_len": predictor.max_length}
    for name, value in fixed.items():
        if params.get(name) is not None and params[name] != value:
            raise RequestError(422, f"{name!r} is fixed by the bundle at {value} (its windows), got "
                                    f"{json.dumps(params[name])}")  # fmt: skip
    if params.get("max_question_len") is not None:
        raise RequestError(422, "'max_question_len' is not supported: the question is never truncated")
    out: dict[str, Any] = {}
    for name, default in (("top_k", 1), ("max_answer_len", predictor.max_answer_len)):
        value = params.get(name, default) if params.get(name) is not None else default
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RequestError(422, f"{name!r} must be an integer >= 1, got {json.dumps(value)}")
        out[name] = value
    for name, default in (("handle_impossible_answer", False), ("align_to_words", True)):
        value = params.get(name)
        if value is not None and not isinstance(value, bool):
            raise RequestError(422, f"{name!r} must be true or false, got {json.dumps(value)}")
        out[name] = default if value is None else value
    return out
