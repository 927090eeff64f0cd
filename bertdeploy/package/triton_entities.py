"""Triton Python-backend model: the entities step of a token-classification repository.

``bertdeploy package triton`` copies this file, as it is, to ``REPO/<name>_entities/1/model.py`` beside
``entities.py`` (bertdeploy's ``runtime/entities.py``, numpy only: the same aggregation as ``Tagger.predict``) and
an ``entities_settings.json`` (labels, aggregation, ignore_labels, the bundle's tag transitions). In Triton's Python
environment it needs numpy only (not bertdeploy).

Per request: ``TEXT`` ``[n, 1]`` (the raw strings), the model's ``logits`` ``[n, width, num_labels]`` and the
tokenizer step's ``OFFSETS`` ``[n, width, 2]`` / ``WORD_IDS`` ``[n, width]`` in, ``ENTITIES`` ``[n, 1]`` out: per
text a UTF-8 JSON list of ``{entity_group, score, word, start, end}`` (aggregation ``none``: ``{entity, score,
index, word, start, end}``) with character offsets into the text, as ``bertdeploy serve`` answers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

SETTINGS_FILE = "entities_settings.json"
TEXT, LOGITS, OFFSETS, WORD_IDS, ENTITIES = "TEXT", "logits", "OFFSETS", "WORD_IDS", "ENTITIES"


def _load_entities(here: Path) -> Any:
    """``entities.py`` beside this file, imported by path (Triton's model folder is not a package)."""
    name = "bertdeploy_triton_entities"
    spec = importlib.util.spec_from_file_location(name, here / "entities.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class TritonPythonModel:
    """The interface Triton's Python backend calls: ``initialize`` once, then ``execute`` per batch."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

        self.pb = pb_utils
        here = Path(__file__).resolve().parent
        settings = json.loads((here / SETTINGS_FILE).read_text(encoding="utf-8"))
        self.labels = list(settings["labels"])
        self.aggregation = settings.get("aggregation", "simple")
        self.ignore = frozenset(settings.get("ignore_labels", ["O"]))
        self.entities = _load_entities(here)
        table = settings.get("tag_transitions")
        self.prior = None if table is None else self.entities.TagPrior.from_counts(table, len(self.labels))
        if self.aggregation not in self.entities.AGGREGATIONS:
            raise ValueError(f"{SETTINGS_FILE}: aggregation must be one of {self.entities.AGGREGATIONS}")

    def entities_of(self, text: str, logits: np.ndarray, offsets: np.ndarray, words: np.ndarray) -> list[dict]:
        """One text's entity dicts from its row of the batch (special and padding tokens have word -1)."""
        real = words >= 0
        z = logits[real].astype(np.float32)
        if len(z):
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
        found = self.entities.aggregate(text, z, offsets[real], words[real], self.labels, self.aggregation, self.ignore,
                                        prior=self.prior)  # fmt: skip
        return [entity.to_dict() for entity in found]

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; a request whose tensors cannot be read gets an error response."""
        responses = []
        for request in requests:
            try:
                tensor = {n: self.pb.get_input_tensor_by_name(request, n).as_numpy() for n in (TEXT, LOGITS,
                          OFFSETS, WORD_IDS)}  # fmt: skip
                texts = [_text(value) for value in tensor[TEXT].reshape(-1)]
                rows = zip(texts, tensor[LOGITS], tensor[OFFSETS], tensor[WORD_IDS], strict=True)
                found = [json.dumps(self.entities_of(*row), ensure_ascii=False).encode("utf-8") for row in rows]
            except (ValueError, TypeError) as e:
                responses.append(self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(str(e))))
                continue
            out = np.array(found, dtype=np.object_).reshape(-1, 1)
            responses.append(self.pb.InferenceResponse(output_tensors=[self.pb.Tensor(ENTITIES, out)]))
        return responses

    def finalize(self) -> None:
        self.entities = None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("TEXT must be UTF-8 encoded") from None
    if not isinstance(value, str):
        raise TypeError(f"TEXT must be strings (BYTES), got {type(value).__name__}")
    return value
