"""Writing the bundle: accepted variant files with their manifest entries, the HF config + tokenizer files, and
``bertdeploy.json`` (the format read by :func:`bertdeploy.bundle.read_manifest`)."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bertdeploy import bundle as bundle_mod
from bertdeploy import variants
from bertdeploy.exporter.builders import place


def add_variant(root: Path, name: str, path: Path, row: dict[str, Any], **record: Any) -> dict[str, Any]:
    """Move ``path`` into the bundle (copy the base variant: the others derive from it); its manifest entry.

    ``record`` holds opset, fused_nodes, parity, metrics, machine and any extra keys (quantization, ...).
    """
    spec = variants.get(name)
    dest = root / spec.file
    if name == variants.BASE:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    elif spec.runs is None:
        place(path, dest)  # an execution variant runs a file already in the bundle
    known = {k: record.pop(k) for k in list(record) if k in bundle_mod.Variant.__dataclass_fields__}
    entry = bundle_mod.Variant(
        name=name,
        file=spec.file,
        sha256=bundle_mod.sha256_file(dest),
        bytes=dest.stat().st_size,
        precision=spec.precision,
        notes=list(row["notes"]),
        **known,
    )
    timing = {"build_seconds": row["seconds"], "eval_seconds": row["eval_seconds"]}
    return {**asdict(entry), **record, "timing": timing}


def write_hf_files(source: Any, root: Path) -> list[str]:
    """config.json (with id2label) and the fast tokenizer files, so that Optimum's ORTModel and transformers.js
    load the bundle folder as it is.

    ``tokenizer_config.json`` gets ``model_max_length`` = the bundle's ``max_length``: transformers.js (and
    ``AutoTokenizer``) truncate to it, so they cut texts where the runtime does and the export gate measured.
    """
    before = {p.name for p in root.iterdir()}
    source.model.config.save_pretrained(root)
    source.tokenizer.save_pretrained(root)
    written = sorted(p.name for p in root.iterdir() if p.is_file() and p.name not in before)
    if not (root / "tokenizer.json").is_file():  # pragma: no cover - fast tokenizers always save it
        raise RuntimeError("the tokenizer did not save tokenizer.json")
    config_path = root / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    tokenizer_config["model_max_length"] = source.max_length
    bundle_mod.write_json(config_path, tokenizer_config)
    if config_path.name not in written:
        written = sorted([*written, config_path.name])
    return [f for f in written if f != "config.json"]


def source_info(run_dir: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"path": str(run_dir)}
    weights = run_dir / "model.safetensors"
    if weights.is_file():
        info["weights_sha256"] = bundle_mod.sha256_file(weights)
    if (run_dir / "train_config.json").is_file():
        info["train_config"] = "train_config.json"
    return info


def rejected_entries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("name", "reason", "max_diff", "agreement", "accuracy", "metric")
    return [{k: r.get(k) for k in keep} for r in rows if not r["accepted"]]


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp format + time and the sha256 of every file besides the variants (tokenizer, config: ``files``), write
    ``bertdeploy.json``, re-read it with the runtime's reader."""
    manifest = {
        "format": bundle_mod.FORMAT,
        "format_version": bundle_mod.FORMAT_VERSION,
        **manifest,
        "files": bundle_mod.file_digests(root, [v["file"] for v in manifest.get("variants", [])]),  # the rest
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    bundle_mod.write_json(root / bundle_mod.MANIFEST_NAME, manifest)
    bundle_mod.read_manifest(root)  # the runtime's own reader must accept what we wrote
    return manifest
