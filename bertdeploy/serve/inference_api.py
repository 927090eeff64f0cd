"""The request shapes of each task: the Hugging Face Inference API on ``POST /`` (what ``huggingface_hub``'s
``InferenceClient("http://host:port")`` posts: exactly the URL it is given, ``{"inputs", "parameters"}``) and
``POST /predict`` (text-embeddings-inference's shape, :mod:`bertdeploy.serve.protocol`; for a token-classification
bundle, which TEI does not serve, the same fields with the entity parameters at the top level).

text classification, ``/``
    ``{"inputs": "text" | ["a", "b"], "parameters": {"top_k": 2, "function_to_apply": "softmax"}}`` -> one list of
    ``{"label", "score"}`` per input, best first (every label unless ``top_k``), a list of lists even for one
    string: what the API answers and ``InferenceClient.text_classification`` reads. ``function_to_apply``:
    ``softmax`` (default) | ``sigmoid`` | ``none`` (the logits), as in the transformers pipeline.
token classification, ``/`` and ``/predict``
    ``{"inputs": ..., "parameters": {"aggregation_strategy": "simple", "ignore_labels": ["O"]}}`` (``/predict``:
    ``{"inputs": ..., "aggregation_strategy": ..., "ignore_labels": ...}``) -> for one string its entities
    ``[{"entity_group", "score", "word", "start", "end"}, ...]``, for a list one such list per text. The pipeline's
    semantics (:mod:`bertdeploy.runtime.entities`): aggregation ``none`` answers ``{"entity", "score", "index",
    "word", "start", "end"}`` per token; ``ignore_labels`` defaults to ``["O"]``, ``[]`` keeps everything; offsets
    are characters of the text (``word == text[start:end]``). ``stride`` is accepted when it is the bundle's (long
    texts are always windowed with it).

question answering and multiple choice, ``/``
    ``{"inputs": {"question", "context"}}`` -> ``{"answer", "score", "start", "end"}``, ``{"inputs": {"question",
    "choices"}}`` -> ``{"label", "score"}``: :mod:`bertdeploy.serve.qa_api`.

The batcher runs ``forward(encode(texts))`` for the texts of every request in a batch; each request then decodes
its own slice with its own parameters (:attr:`Parsed.respond`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertdeploy.errors import UserError
from bertdeploy.runtime.classifier import softmax
from bertdeploy.runtime.entities import check_aggregation, check_ignore
from bertdeploy.serve.protocol import PredictRequest, RequestError, parse_inputs, parse_predict, render
from bertdeploy.serve.qa_api import QUESTION_TASKS, parse_questions, tei_refusal

INFERENCE_FIELDS = ("inputs", "parameters", "options")
"""``options`` (the legacy API's ``wait_for_model`` / ``use_cache``) is accepted and has no effect: the server
answers 503 while it loads, and never caches."""
TEXT_PARAMETERS = ("top_k", "function_to_apply")
TOKEN_PARAMETERS = ("aggregation_strategy", "ignore_labels", "stride")
TOKEN_PREDICT_FIELDS = ("inputs", "aggregation_strategy", "ignore_labels", "truncate")
FUNCTIONS = ("softmax", "sigmoid", "none")


@dataclass(frozen=True)
class Parsed:
    """A checked request: its texts, and how its slice of the batch's outputs becomes its JSON answer."""

    texts: list[str]
    respond: Callable[[Any], Any]
    doc_stride: int | None = None
    """A question-answering request's window stride, where it is not the bundle's."""


def parse_inference(data: Any, max_texts: int, predictor: Any) -> Parsed:
    """``POST /`` for the task of ``predictor`` (a loaded runtime head); :class:`RequestError` naming the first
    problem."""
    data = _object(data)
    _known(data, INFERENCE_FIELDS, "field")
    for name in ("parameters", "options"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise RequestError(422, f"{name!r} must be an object, got {json.dumps(data[name])[:80]}")
    params = data.get("parameters") or {}
    if predictor.task.name in QUESTION_TASKS:
        return Parsed(*parse_questions(data, params, max_texts, predictor))
    texts, single = parse_inputs(data, max_texts)
    if predictor.task.name == "token-classification":
        return _entities(texts, single, _token_params(params, predictor, TOKEN_PARAMETERS), predictor)
    _known(params, TEXT_PARAMETERS, "parameter")
    top_k = params.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise RequestError(422, f"'top_k' must be an integer >= 1, got {json.dumps(top_k)}")
    function = params.get("function_to_apply") or "softmax"
    if not isinstance(function, str) or function.lower() not in FUNCTIONS:
        raise RequestError(
            422, f"'function_to_apply' must be one of {', '.join(FUNCTIONS)}, got {json.dumps(function)}"
        )
    request = PredictRequest(texts, single=False, top_k=top_k, raw_scores=True)  # scores computed below
    labels = predictor.labels
    return Parsed(texts, lambda logits: render(request, scores(logits, function.lower()), labels))


def parse_tei(data: Any, max_texts: int, predictor: Any) -> Parsed:
    """``POST /predict``: TEI's request for text classification; for token classification ``inputs`` with the entity
    parameters at the top level (``truncate`` accepted, as in TEI: long texts are windowed anyway); 422 for
    question answering and multiple choice, which TEI has no shape for."""
    if predictor.task.name in QUESTION_TASKS:
        raise tei_refusal(predictor.task.name)
    if predictor.task.name == "token-classification":
        data = _object(data)
        _known(data, TOKEN_PREDICT_FIELDS, "field")
        texts, single = parse_inputs(data, max_texts)
        if "truncate" in data and not isinstance(data["truncate"], bool):
            raise RequestError(422, f"'truncate' must be true or false, got {json.dumps(data['truncate'])}")
        return _entities(texts, single, _token_params(data, predictor, ()), predictor)
    request = parse_predict(data, max_texts)
    labels = predictor.labels
    return Parsed(request.texts, lambda logits: render(request, logits, labels))


def scores(logits: np.ndarray, function: str) -> np.ndarray:
    """The pipeline's ``function_to_apply`` on logits ``[n, num_labels]``."""
    logits = np.asarray(logits, dtype=np.float32)
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits if function == "none" else softmax(logits.copy())


def _entities(texts: list[str], single: bool, params: dict[str, Any], predictor: Any) -> Parsed:
    def respond(outputs: Any) -> list:
        found = [[e.to_dict() for e in entities] for entities in predictor.decode(outputs, **params)]
        return found[0] if single else found

    return Parsed(texts, respond)


def _token_params(params: dict[str, Any], predictor: Any, known: tuple[str, ...]) -> dict[str, Any]:
    """``aggregation`` / ``ignore_labels`` for :meth:`Tagger.decode` from a request's parameters (``known``: the
    only names allowed in ``params``; empty when the caller checked its fields already)."""
    if known:
        _known(params, known, "parameter")
    stride = params.get("stride")
    if stride is not None and stride != predictor.stride:
        raise RequestError(
            422,
            f"'stride' is fixed by the bundle: texts longer than {predictor.max_length} tokens are windowed with "
            f"{predictor.stride} tokens of overlap; got {json.dumps(stride)}",
        )
    ignore = params.get("ignore_labels")
    if ignore is not None and not isinstance(ignore, list):
        raise RequestError(422, f"'ignore_labels' must be a list of label names, got {json.dumps(ignore)[:80]}")
    try:
        aggregation = check_aggregation(params.get("aggregation_strategy") or "simple")
        ignore_labels = sorted(check_ignore(["O"] if ignore is None else ignore))
    except UserError as e:
        raise RequestError(422, str(e).replace("aggregation must", "'aggregation_strategy' must")) from None
    return {"aggregation": aggregation, "ignore_labels": ignore_labels}


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else json.dumps(data)[:40]
        raise RequestError(422, f"the request body must be a JSON object, got {kind}")
    return data


def _known(data: dict[str, Any], known: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RequestError(422, f"unknown {what}(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(known)}")
