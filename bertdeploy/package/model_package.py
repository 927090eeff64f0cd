"""A bertdeploy bundle packaged as a Python distribution (``bertdeploy package wheel`` writes this file as the
package's ``__init__.py``; inside bertdeploy it is only a template)::

    import emotion_classifier
    clf = emotion_classifier.load()          # bertdeploy.load() on the packaged bundle (sha256-checked)
    clf.predict(["i feel great today"])      # [Prediction(label='joy', score=0.97)]
    emotion_classifier.labels                # label names, in logit order
    emotion_classifier.variants              # the packaged variants
    emotion_classifier.manifest              # the bundle's bertdeploy.json as a dict

The head is the bundle task's: for a token-classification bundle ``load()`` is a ``Tagger`` and
``predict(texts, aggregation="simple")`` returns the entities of each text; for question answering a ``Reader``
(``predict([{"question": ..., "context": ...}])`` -> answers with offsets into the context), for multiple choice a
``Chooser`` (``predict([{"question": ..., "choices": [...]}])`` -> the chosen index and its probability).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

DISTRIBUTION = "__DISTRIBUTION__"
__version__ = "__VERSION__"
#: the bundle folder inside the installed package
BUNDLE = Path(__file__).resolve().parent / "bundle"


@functools.cache
def _manifest() -> dict[str, Any]:
    return json.loads((BUNDLE / "bertdeploy.json").read_text(encoding="utf-8"))


def __getattr__(name: str) -> Any:
    if name == "manifest":
        return _manifest()
    if name == "labels":
        return list(_manifest()["labels"])
    if name == "variants":
        return [v["name"] for v in _manifest().get("variants", [])]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(variant: str = "auto", device: str = "auto", **options: Any) -> Any:
    """The packaged bundle in bertdeploy's runtime: ``bertdeploy.load(BUNDLE, variant, device, **options)`` (the
    head of the bundle's task: a ``Classifier``, a ``Tagger``)."""
    from bertdeploy.runtime import load as _load

    return _load(BUNDLE, variant=variant, device=device, **options)
