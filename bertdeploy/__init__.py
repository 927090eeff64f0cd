"""bertdeploy: fine-tune, export, validate, benchmark and serve BERT-family text classifiers.

The public API, imported lazily so that ``import bertdeploy`` (and :func:`load`) never pulls in torch,
transformers or optimum::

    import bertdeploy
    clf = bertdeploy.load("models/emotion")          # ONNX Runtime only
    clf.predict(["i feel great today"])

    bertdeploy.train(TrainConfig(...))                # transformers Trainer
    bertdeploy.distill(DistillConfig(...))            # a small student on a teacher's soft labels
    bertdeploy.export(ExportConfig(...))              # Optimum ONNX export + validation gate
    bertdeploy.bench(BenchConfig(...))                # accuracy x latency x throughput sweep
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": ("bertdeploy.runtime", "load"),
    "train": ("bertdeploy.training", "train"),
    "distill": ("bertdeploy.training", "distill"),
    "export": ("bertdeploy.exporter", "export"),
    "bench": ("bertdeploy.benchmark", "bench"),
    "TrainConfig": ("bertdeploy.training", "TrainConfig"),
    "DistillConfig": ("bertdeploy.training", "DistillConfig"),
    "ExportConfig": ("bertdeploy.exporter", "ExportConfig"),
    "BenchConfig": ("bertdeploy.benchmark", "BenchConfig"),
    "LoadOptions": ("bertdeploy.runtime", "LoadOptions"),
    "UserError": ("bertdeploy.errors", "UserError"),
}
#: the install profile each public function needs (checked before importing it: a missing one is named)
_PROFILE = {"load": "cpu", "train": "train", "distill": "train", "export": "train", "bench": "train"}
# The implementing modules are named training / exporter / benchmark (not train / export / bench) so that
# importing them never shadows the functions of the same name re-exported here.

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        from bertdeploy.errors import missing_extra, require_extra

        if name in _PROFILE:
            require_extra(_PROFILE[name], f"bertdeploy.{name}")
        module, attr = _LAZY[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as e:  # the install profile lacks what this function needs: name the extra
            missing = missing_extra(e, f"bertdeploy.{name}")
            if missing is None:
                raise
            raise missing from None
    raise AttributeError(f"module 'bertdeploy' has no attribute {name!r}")
