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
# The implementing modules are named training / exporter / benchmark (not train / export / bench) so that
# importing them never shadows the functions of the same name re-exported here.

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'bertdeploy' has no attribute {name!r}")
