"""Triton Python-backend model: raw strings in, the token ids of a bertdeploy bundle out.

``bertdeploy package triton`` copies this file, as it is, to ``REPO/<name>_tokenizer/1/model.py`` beside the
bundle's ``tokenizer.json`` and a ``tokenizer_settings.json`` (max_length, pad id, the graph's inputs, padding
multiple). In Triton's Python environment it needs numpy and ``tokenizers`` only (not bertdeploy).

It encodes like the bertdeploy runtime: special tokens added, truncation to ``max_length``, right padding with
the pad id, ``attention_mask`` 1 on real tokens, ``token_type_ids`` 0. Each request is padded to its longest
row rounded up to ``pad_to_multiple`` (at most ``max_length``): Triton's dynamic batcher only merges requests
whose shapes are equal, so a few length buckets let it batch single-text requests.

For a token-classification bundle (``"offsets": true`` in the settings) it also returns, per token, ``OFFSETS``
(its ``[start, end)`` characters in the text; ``(0, 0)`` for special and padding tokens) and ``WORD_IDS`` (its
word's index, -1 for special and padding tokens): what the entities step needs to map tags back to the text.
A text longer than ``max_length`` is truncated here (the bertdeploy runtime windows it instead).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SETTINGS_FILE = "tokenizer_settings.json"
OFFSETS, WORD_IDS = "OFFSETS", "WORD_IDS"


class TritonPythonModel:
    """The interface Triton's Python backend calls: ``initialize`` once, then ``execute`` per batch."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend
        from tokenizers import Tokenizer

        self.pb = pb_utils
        here = Path(__file__).resolve().parent
        settings = json.loads((here / SETTINGS_FILE).read_text(encoding="utf-8"))
        self.text_input = settings["text_input"]
        self.inputs = dict(settings["inputs"])
        self.max_length = int(settings["max_length"])
        self.pad_id = int(settings["pad_id"])
        self.multiple = max(1, int(settings.get("pad_to_multiple", 1)))
        self.offsets = bool(settings.get("offsets", False))
        tokenizer = Tokenizer.from_file(str(here / settings["tokenizer_file"]))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length)
        self.tokenizer = tokenizer

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The graph's inputs for ``texts``: ``{name: int array [len(texts), padded length]}``."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        longest = max((len(e.ids) for e in encodings), default=1)
        width = min(-(-longest // self.multiple) * self.multiple, self.max_length)  # >= longest (truncated)
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        columns = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros_like(ids),
            "position_ids": np.broadcast_to(np.arange(width, dtype=np.int64), ids.shape),
        }
        feed = {name: np.ascontiguousarray(columns[name], dtype=dtype) for name, dtype in self.inputs.items()}
        if self.offsets:
            feed.update(_offsets(encodings, width))
        return feed

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; a request whose text cannot be read gets an error response."""
        responses = []
        for request in requests:
            try:
                raw = self.pb.get_input_tensor_by_name(request, self.text_input).as_numpy()
                texts = [_as_text(value) for value in raw.reshape(-1)]
                feed = self.encode(texts)
            except (ValueError, TypeError) as e:
                responses.append(self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(str(e))))
                continue
            tensors = [self.pb.Tensor(name, array) for name, array in feed.items()]
            responses.append(self.pb.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.tokenizer = None


def _offsets(encodings: list[Any], width: int) -> dict[str, np.ndarray]:
    """``OFFSETS`` ``[n, width, 2]`` and ``WORD_IDS`` ``[n, width]`` of the encodings (special tokens and padding:
    offsets ``(0, 0)``, word -1)."""
    offsets = np.zeros((len(encodings), width, 2), dtype=np.int64)
    words = np.full((len(encodings), width), -1, dtype=np.int64)
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        offsets[row, :n] = np.asarray(encoding.offsets, dtype=np.int64).reshape(n, 2)
        ids = [-1 if w is None or special else w for w, special in zip(encoding.word_ids, encoding.special_tokens_mask)]
        words[row, :n] = ids
    offsets[words < 0] = 0
    return {OFFSETS: offsets, WORD_IDS: words}


def as_string(value: Any, name: str = "TEXT") -> str:
    """One string element of a request's ``name`` tensor, decoded: UTF-8 bytes (or already a str)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{name} must be UTF-8 encoded") from None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be strings (BYTES), got {type(value).__name__}")
    return value


def _as_text(value: Any) -> str:
    """One text of the request: UTF-8, and not empty or blank (bertdeploy's one rule for texts: an empty text is
    never classified, here as in ``Classifier.predict`` and ``bertdeploy serve``)."""
    value = as_string(value)
    if not value.strip():
        raise ValueError("TEXT must not be empty or blank: bertdeploy does not classify empty texts")
    return value
