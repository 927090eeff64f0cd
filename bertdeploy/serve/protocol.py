"""The ``/predict`` protocol of Hugging Face text-embeddings-inference (TEI), so that a TEI client can switch:

request   ``{"inputs": "text"}`` or ``{"inputs": ["a", "b"]}`` (TEI's ``[["a"], ["b"]]`` too), optional ``"top_k"``
          (default: every label), ``"raw_scores"`` (logits instead of probabilities), ``"truncate"`` (accepted;
          texts are always truncated to the bundle's ``max_length``, as by ``predict``)
response  one text: ``[{"label": ..., "score": ...}, ...]`` best first; a list: one such list per text, in order
errors    ``{"error": "<what is wrong>", "error_type": "validation" | ...}`` with a 4xx status

One deliberate difference: TEI reads ``["a", "b"]`` as a *pair* of texts (cross-encoders); our classifiers take
single texts, so it is a batch of two, and a nested pair ``[["a", "b"]]`` is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertdeploy.runtime.classifier import softmax
from bertdeploy.runtime.predictor import invalid_unicode

FIELDS = ("inputs", "top_k", "raw_scores", "truncate")


class RequestError(Exception):
    """A bad request: answered with ``status`` and ``{"error": message, "error_type": error_type}``."""

    def __init__(self, status: int, message: str, error_type: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


@dataclass(frozen=True)
class PredictRequest:
    texts: list[str]
    single: bool
    """``inputs`` was one string: the response is one list of predictions, not a list of lists."""
    top_k: int | None = None
    raw_scores: bool = False


def check_content_type(value: str | None) -> None:
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise RequestError(415, f"Content-Type must be application/json, got {value or 'none'!r}")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise RequestError(400, 'the request body is empty; send a JSON object like {"inputs": "some text"}')
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError(400, f"the request body is not valid JSON: {str(e)[:200]}") from None


def _text(value: Any, where: str) -> str:
    if isinstance(value, list) and len(value) == 1:  # TEI's batch item form ["text"]
        value = value[0]
    elif isinstance(value, list):
        raise RequestError(422, f"{where} is a list of {len(value)}: text pairs are not supported, send one string")
    if not isinstance(value, str):
        raise RequestError(422, f"{where} is {_kind(value)}, not a string")
    if not value.strip():
        raise RequestError(422, f"{where} is an empty string")
    if (wrong := invalid_unicode(value)) is not None:
        raise RequestError(422, f"{where} {wrong}")
    return value


def _kind(value: Any) -> str:
    return (
        "null"
        if value is None
        else {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), type(value).__name__)
    )


def parse_inputs(data: dict[str, Any], max_texts: int) -> tuple[list[str], bool]:
    """The texts of a request's ``inputs`` (a string, or a list of at most ``max_texts``), and whether it was one
    string; :class:`RequestError` naming the first bad one. Shared by ``/predict`` and the Inference API (``/``)."""
    if "inputs" not in data:
        raise RequestError(422, "the field 'inputs' is required (a string or a list of strings)")
    inputs = data["inputs"]
    if isinstance(inputs, str):
        return [_text(inputs, "'inputs'")], True
    if isinstance(inputs, list):
        if not inputs:
            raise RequestError(422, "'inputs' is an empty list")
        if len(inputs) > max_texts:
            raise RequestError(413, f"{len(inputs)} texts in one request; at most {max_texts} are accepted")
        return [_text(v, f"inputs[{i}]") for i, v in enumerate(inputs)], False
    raise RequestError(422, f"'inputs' is {_kind(inputs)}; send a string or a list of strings")


def parse_predict(data: Any, max_texts: int) -> PredictRequest:
    """Validate a decoded ``/predict`` body; raise :class:`RequestError` naming the first problem."""
    if not isinstance(data, dict):
        raise RequestError(422, f"the request body must be a JSON object, got {_kind(data)}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(422, f"unknown field(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(FIELDS)}")
    texts, single = parse_inputs(data, max_texts)
    top_k = data.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise RequestError(422, f"'top_k' must be an integer >= 1, got {json.dumps(top_k)}")
    for name in ("raw_scores", "truncate"):
        if name in data and not isinstance(data[name], bool):
            raise RequestError(422, f"{name!r} must be true or false, got {json.dumps(data[name])}")
    return PredictRequest(texts, single, top_k, bool(data.get("raw_scores", False)))


def render(request: PredictRequest, logits: np.ndarray, labels: list[str]) -> list:
    """TEI's response: per text, ``top_k`` (default all) ``{"label", "score"}`` best first."""
    scores = logits if request.raw_scores else softmax(logits)  # the scores Classifier.predict gives
    k = min(request.top_k or len(labels), len(labels))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = [
        [{"label": labels[j], "score": float(row[j])} for j in idx]
        for idx, row in zip(order.tolist(), scores, strict=True)
    ]
    return out[0] if request.single else out
