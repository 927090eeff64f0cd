"""What a token-classification bundle adds to its Triton repository (:mod:`bertdeploy.package.triton`):

* the tokenizer step also returns ``OFFSETS`` / ``WORD_IDS`` per token;
* ``NAME_entities`` (Python backend, :mod:`bertdeploy.package.triton_entities` + ``runtime/entities.py``): raw
  text + per-token logits + offsets -> ``ENTITIES``, one JSON string per text;
* the ensemble runs TEXT -> NAME_tokenizer -> NAME -> NAME_entities and answers ``ENTITIES``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bertdeploy.package import triton_entities
from bertdeploy.package.pbtxt import Enum, render

OFFSETS = "OFFSETS"
WORD_IDS = "WORD_IDS"
ENTITIES = "ENTITIES"


def token_outputs(spec_type: Any) -> list[Any]:
    """The tokenizer step's extra outputs (``spec_type``: :class:`~bertdeploy.package.triton.TensorSpec`)."""
    return [spec_type(OFFSETS, "TYPE_INT64", (-1, 2)), spec_type(WORD_IDS, "TYPE_INT64", (-1,))]


def entities_model(name: str, options: Any, output: Any, text_input: str) -> dict[str, Any]:
    """``NAME_entities``'s ``config.pbtxt`` as a dict."""
    inputs = [
        {"name": text_input, "data_type": Enum("TYPE_STRING"), "dims": [1]},
        output.config(),
        {"name": OFFSETS, "data_type": Enum("TYPE_INT64"), "dims": [-1, 2]},
        {"name": WORD_IDS, "data_type": Enum("TYPE_INT64"), "dims": [-1]},
    ]
    return {
        "name": name,
        "backend": "python",
        "max_batch_size": options.max_batch_size,
        "input": inputs,
        "output": [{"name": ENTITIES, "data_type": Enum("TYPE_STRING"), "dims": [1]}],
        "instance_group": [{"count": options.instances, "kind": Enum("KIND_CPU")}],
    }


def ensemble_steps(models: tuple[str, str, str, str], ids: list[dict], output: Any, text_input: str) -> list[dict]:
    """The ensemble's three steps (``models``: onnx, tokenizer, ensemble, entities names; ``ids``: the token id
    tensors' input/output map)."""
    onnx_name, tokenizer_name, _, entities_name = models
    extra = [{"key": n, "value": n} for n in (OFFSETS, WORD_IDS)]
    text = [{"key": text_input, "value": text_input}]
    logits = [{"key": output.name, "value": output.name}]
    return [
        {"model_name": tokenizer_name, "model_version": -1, "input_map": text, "output_map": ids + extra},
        {"model_name": onnx_name, "model_version": -1, "input_map": ids, "output_map": logits},
        {
            "model_name": entities_name,
            "model_version": -1,
            "input_map": text + logits + extra,
            "output_map": [{"key": ENTITIES, "value": ENTITIES}],
        },
    ]


def write_entities_model(
    folder: Path,
    config: dict[str, Any],
    labels: list[str],
    aggregation: str,
    ignore_labels: tuple[str, ...],
    transitions: dict[str, Any] | None = None,
) -> None:
    """``folder`` = ``REPO/NAME_entities``: config.pbtxt, 1/model.py, 1/entities.py, 1/entities_settings.json (with
    the manifest's ``tag_transitions``, so the step decodes tags as ``Tagger.predict`` does)."""
    from bertdeploy.runtime import entities as _entities

    (folder / "1").mkdir(parents=True)
    shutil.copy2(triton_entities.__file__, folder / "1" / "model.py")
    shutil.copy2(_entities.__file__, folder / "1" / "entities.py")
    settings = {"labels": labels, "aggregation": aggregation, "ignore_labels": list(ignore_labels)}
    if transitions:
        settings["tag_transitions"] = transitions
    text = json.dumps(settings, indent=2, ensure_ascii=False) + "\n"
    (folder / "1" / triton_entities.SETTINGS_FILE).write_text(text, encoding="utf-8")
    (folder / "config.pbtxt").write_text(render(config), encoding="utf-8")
