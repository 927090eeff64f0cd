"""Heavy preparation of targets, run once per target in the sweep's work folder (and reused on resume):
a preset saved as a random-weight HF folder, a training run / preset exported to a temporary bundle, and the
texts (with their true token lengths) every block of the target is scored and timed on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bertdeploy import variants as variant_table
from bertdeploy.benchmark.evaldata import sequence_lengths
from bertdeploy.benchmark.targets import EvalSet, Target, load_eval_set
from bertdeploy.bundle import MANIFEST_NAME, read_manifest
from bertdeploy.tasks import DEFAULT


def prepare_target(sweep: Any, target: Target, tdir: Path) -> tuple[Path, dict[str, int]]:
    """Evaluation texts, the saved preset / temporary bundle, true token lengths and the encoder's dims; the
    target's entry in the report is filled in. ``sweep`` is the running :class:`~.sweep.Sweep`."""
    from bertdeploy.benchmark.gemm import encoder_dims

    cfg = sweep.cfg
    ev = load_eval_set(target, cfg.data, cfg.text_column, cfg.label_column, cfg.timing_texts, cfg.eval_limit, cfg.seed)
    if target.kind == "preset":
        sweep.progress({"type": "stage", "message": f"{target.name}: building random-weight model"})
        target.hf_dir = save_preset(target, tdir / "hf", seed=cfg.seed)
    exportable = target.kind == "preset" or (target.kind == "run" and cfg.export)
    if "bertdeploy" in cfg.backends and exportable and target.bundle is None:
        sweep.progress({"type": "stage", "message": f"{target.name}: exporting a temporary bundle"})
        from bertdeploy.benchmark.plan import bertdeploy_variants

        wanted, _ = bertdeploy_variants(cfg, target)
        if variant_table.AUTO in wanted:  # auto picks among what is exported: the default export set
            wanted = list(dict.fromkeys([*(v for v in wanted if v != variant_table.AUTO), *cfg.export_variants]))
        data = None if ev.split == "synthetic" else ev.source
        tcol, lcol = cfg.text_column or target.text_column, cfg.label_column or target.label_column
        export = export_bundle(target, tdir / "bundle", wanted, data, tcol, lcol)
        target.bundle = tdir / "bundle"
        target.notes.append(f"bertdeploy variants exported on the fly to {target.bundle}")
        sweep.report.targets.setdefault(target.name, {})["export"] = export
    sequences = None  # text classification: one sequence per text
    if target.task != DEFAULT:
        sequences = sequence_lengths(target.task, target.tokenizer_file(), target.max_length, ev.timing_texts)
    lengths = token_lengths(target, ev.timing_texts) if sequences is None else [sum(s) for s in sequences]
    dims = encoder_dims(target.model_config())
    texts_file = tdir / "texts.json"
    data = {"eval_texts": ev.texts, "eval_labels": ev.label_ids, "timing_texts": ev.timing_texts}
    if "openvino" in cfg.backends and target.task == DEFAULT:
        data["calibration_texts"] = calibration_texts(cfg.data or target.data, cfg, target, ev.timing_texts)
    data.update(timing_lengths=lengths, timing_sequences=sequences)
    texts_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    entry = sweep.report.targets.setdefault(target.name, {})
    entry.update(_target_record(target, ev, lengths, dims))
    if sequences is not None:  # windows (QA, long texts) or choices: what one timed record really runs
        entry["timing"]["mean_sequences"] = sum(map(len, sequences)) / max(len(sequences), 1)
    return texts_file, dims


def calibration_texts(path: str | None, cfg: Any, target: Target, fallback: list[str], n: int = 300) -> list[str]:
    """A seeded sample of the data's training split (else validation) for engines that calibrate (NNCF);
    ``fallback`` (the timing texts) when the data has neither or there is no data (synthetic, speed only)."""
    import random

    from bertdeploy.data import DataSpec, load_data

    if path is None:
        return fallback[:n]
    tcol, lcol = cfg.text_column or target.text_column, cfg.label_column or target.label_column
    splits = load_data(DataSpec(path=str(path), text_column=tcol, label_column=lcol)).splits
    name = next((s for s in ("train", "validation") if s in splits), None)
    if name is None:
        return fallback[:n]
    texts = list(splits[name]["text"])
    return [texts[i] for i in sorted(random.Random(cfg.seed).sample(range(len(texts)), min(n, len(texts))))]


def token_lengths(target: Target, texts: list[str]) -> list[int]:
    """True token lengths (special tokens included, truncated to the target's max_length)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(target.tokenizer_file()))
    tok.enable_truncation(target.max_length)
    tok.no_padding()
    return [len(e.ids) for e in tok.encode_batch(texts)]


def _target_record(target: Target, ev: EvalSet, lengths: list[int], dims: dict[str, int]) -> dict[str, Any]:
    parity, bundle_info, raw = {}, {}, {}
    if target.bundle is not None:
        manifest = read_manifest(target.bundle)
        raw = manifest.raw
        parity = {v.name: v.parity for v in manifest.variants}
        bundle_info = {
            "created": manifest.raw.get("created"),
            "sha256": {v.name: v.sha256 for v in manifest.variants},
            "rejected": {r.get("name"): r.get("reason") for r in manifest.rejected},
        }
    return {
        "task": target.task,
        "reference_scores": reference_scores(target, raw),
        "spec": target.spec,
        "kind": target.kind,
        "trained": target.trained,
        "labels": target.labels,
        "max_length": target.max_length,
        "eval": {"split": ev.split, "n": len(ev.texts), "source": ev.source, "labelled": ev.label_ids is not None},
        "timing": {"texts": len(lengths), "mean_tokens": sum(lengths) / max(len(lengths), 1)},
        "dims": dims,
        "bundle": str(target.bundle) if target.bundle else None,
        "parity": parity,
        "bundle_manifest": bundle_info,
        "notes": target.notes,
    }


def reference_scores(target: Target, manifest: dict[str, Any]) -> dict[str, Any]:
    """The scores the model had before the bench, to read its numbers against: the training run's final
    evaluation (``metrics.json``: seqeval entity F1 on word tags for token classification) and PyTorch's scores in
    the export gate (the bundle's manifest), each with the split it was computed on."""
    out: dict[str, Any] = {}
    final = {}
    if target.hf_dir is not None and (target.hf_dir / "metrics.json").is_file():
        try:
            final = json.loads((target.hf_dir / "metrics.json").read_text(encoding="utf-8")).get("final") or {}
        except (OSError, ValueError, AttributeError):
            final = {}
    if isinstance(final, dict) and final:
        out["training"] = {k: v for k, v in final.items() if isinstance(v, (int, float, str)) and k != "n"}
    ev = manifest.get("eval") if isinstance(manifest.get("eval"), dict) else {}
    if isinstance(ev.get("pytorch"), dict) and ev["pytorch"]:
        scalars = {k: v for k, v in ev["pytorch"].items() if isinstance(v, (int, float)) and k != "n"}
        out["export"] = {"split": ev.get("split"), **scalars}
    return out


def save_preset(target: Target, out: Path, seed: int = 0) -> Path:
    """Build the preset with random weights and the MiniLM tokenizer, save it (safetensors) to ``out``."""
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    from bertdeploy.bundle import atomic_dir
    from bertdeploy.training.models import build_preset_model

    model, tok = build_preset_model(target.spec, num_labels=len(target.labels), seed=seed)
    model.config.id2label = dict(enumerate(target.labels))
    model.config.label2id = {name: i for i, name in enumerate(target.labels)}
    tok.model_max_length = max(int(getattr(tok, "model_max_length", 0) or 0), target.max_length)
    if out.is_dir():  # incomplete: our own scratch in the sweep's work folder
        shutil.rmtree(out)
    with atomic_dir(out) as tmp:
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
