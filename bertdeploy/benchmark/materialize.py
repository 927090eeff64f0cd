"""Heavy preparation of targets, run once per target in the sweep's work folder (and reused on resume):
a preset saved as a random-weight HF folder, and a training run / preset exported to a temporary bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertdeploy.benchmark.targets import Target
from bertdeploy.bundle import MANIFEST_NAME


def save_preset(target: Target, out: Path, seed: int = 0) -> Path:
    """Build the preset with random weights and the MiniLM tokenizer, save it (safetensors) to ``out``."""
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    from bertdeploy.bundle import atomic_dir
    from bertdeploy.models import build_preset_model

    model, tok = build_preset_model(target.spec, num_labels=len(target.labels), seed=seed)
    model.config.id2label = dict(enumerate(target.labels))
    model.config.label2id = {name: i for i, name in enumerate(target.labels)}
    tok.model_max_length = max(int(getattr(tok, "model_max_length", 0) or 0), target.max_length)
    with atomic_dir(out, overwrite=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out


def export_bundle(
    target: Target, out: Path, variants: list[str], data: str | None, text_column: str, label_column: str
) -> dict[str, Any]:
    """Export ``target.hf_dir`` into the bundle ``out`` with the bertdeploy exporter; returns its table rows.

    An untrained model (a preset) has no accuracy to protect and near-tied random logits, so the export gate is
    opened (any argmax agreement, any accuracy drop; non-finite logits still reject): its parity with PyTorch is
    recorded in the manifest and the bench reports it, but it is not what decides here.
    """
    if (out / MANIFEST_NAME).is_file():
        return {"reused": True}
    from bertdeploy.exporter import ExportConfig, export

    kwargs: dict[str, Any] = {}
    if not target.trained:
        kwargs = {"max_accuracy_drop": 100.0, "min_agreement": dict.fromkeys(variants, 0.0)}
    result = export(
        ExportConfig(
            run_dir=str(target.hf_dir),
            output=str(out),
            variants=list(variants),
            data=data,
            text_column=text_column if data else None,
            label_column=label_column if data else None,
            max_length=min(target.max_length, 512),
            force=True,
            **kwargs,
        )
    )
    keep = ("name", "accepted", "reason", "size_mb", "max_diff", "agreement", "accuracy", "f1_macro")
    rows = [{k: r.get(k) for k in keep} for r in result.rows]
    return {"reused": False, "gate_open": not target.trained, "rows": rows}
