"""The export stage: a trained classifier → ONNX variants, each judged against PyTorch → a bundle.

    from bertdeploy.exporter import ExportConfig, export
    result = export(ExportConfig(run_dir="runs/emotion", output="models/emotion", variants=["fp32", "qint8"]))

Modules: config (ExportConfig), pipeline (export: build and judge each variant, write the manifest), source (the
run folder and the evaluation rows), builders (one builder per ``build`` kind of the variant table), gate
(logits, parity, the accept / reject rule), prune (the [CLS]-only last layer), write (the bundle files).
Heavy libraries (torch, transformers, optimum) are imported when a function runs, not on import.
"""

from __future__ import annotations

from bertdeploy.exporter.config import ExportConfig
from bertdeploy.exporter.pipeline import ExportResult, export

__all__ = ["ExportConfig", "ExportResult", "export"]
