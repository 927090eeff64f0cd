"""``export``: a trained model of a task in :mod:`bertdeploy.tasks` → validated ONNX variants → a deployable bundle.

Every variant of the table (:mod:`bertdeploy.variants`) is built from the plain Optimum export for the model's task
(for a text classifier, of a BERT whose last layer is computed for [CLS] only: :mod:`bertdeploy.exporter.prune`,
same logits; tasks that read every position keep every position), run with ONNX Runtime on the evaluation rows,
compared with the PyTorch model and scored on the task's metric (:func:`build_and_judge`); only variants that
pass the gate (:mod:`bertdeploy.exporter.gate`) go into the bundle, the others are listed under ``rejected``
(:func:`manifest_record`). The bundle is built in a temporary sibling and renamed into place
(:func:`bertdeploy.bundle.atomic_dir`).

    from bertdeploy.exporter import ExportConfig, export
    result = export(ExportConfig(run_dir="runs/emotion", output="models/emotion", variants=["fp32", "O2", "qint8"]))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy import bundle as bundle_mod
from bertdeploy import variants
from bertdeploy.errors import UserError
from bertdeploy.exporter import checked
from bertdeploy.exporter.config import ExportConfig
from bertdeploy.outputs import scratch_dir
from bertdeploy.runtime.plugins import ORT_NAMES
from bertdeploy.runtime.plugins import unavailable as provider_unavailable
from bertdeploy.runtime.tokenize import uses_question_match
from bertdeploy.variants import VariantSpec


@dataclass
class ExportResult:
    """What was written and why."""

    bundle: Path
    rows: list[dict[str, Any]]
    """One per variant: name, accepted, reason, size_mb, max_diff, agreement, accuracy, f1_macro (text
    classification) / f1 (token classification), metric (the task's primary metric), fused_nodes, notes, seconds
    (build), eval_seconds (ONNX Runtime on the eval rows)."""
    baseline: dict[str, Any]
    """PyTorch scores on the same rows (``{}`` when unlabelled)."""
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[str]:
        return [r["name"] for r in self.rows if r["accepted"]]

    @property
    def failed_required(self) -> list[dict[str, Any]]:
        """Rows of variants the user asked for explicitly that were rejected (→ non-zero exit in the CLI)."""
        required = set(self.manifest.get("required", []))
        return [r for r in self.rows if not r["accepted"] and not r.get("skipped") and r["name"] in required]


@dataclass
class Reference:
    """The PyTorch side of the gate: evaluation rows, their batches, PyTorch's logits and scores."""

    data: Any  # bertdeploy.exporter.source.EvalData
    batches: Any  # bertdeploy.exporter.gate.Batches
    logits: np.ndarray
    baseline: dict[str, Any]
    seconds: float
    parity_rows: int
    answers: dict[str, Any] | None = None
    """QA: the manifest's ``answers`` record (the answer cap, :func:`~bertdeploy.exporter.gate_qa.pick_answer_len`)."""


def _check_paths(config: ExportConfig) -> tuple[Path, Path]:
    from bertdeploy.exporter.source import check_folder

    run_dir = check_folder(config.run_dir).resolve()
    out = bundle_mod.check_output_dir(config.output, config.force, "bundle", kind="bundle", inputs=_inputs(config))
    return run_dir, out


def _inputs(config: ExportConfig) -> list[str | None]:
    """What the bundle must not be, contain or lie inside."""
    return [config.run_dir, config.data]


def _row(name: str, **kw: Any) -> dict[str, Any]:
    keys = ("reason", "size_mb", "max_diff", "agreement", "accuracy", "f1_macro", "f1", "token_accuracy",
            "exact_match", "metric", "seconds", "eval_seconds")  # fmt: skip
    row: dict[str, Any] = {"name": name, "accepted": False, **dict.fromkeys(keys), "fused_nodes": {}, "notes": []}
    row["reason"] = ""
    row.update(kw)
    return row


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else ""


def variant_notes(spec: VariantSpec, fused_nodes: dict[str, int]) -> list[str]:
    """The table's notes for ``spec``, plus a warning when none of its expected fused operators appeared."""
    out = []
    if spec.expect_fused and not any(fused_nodes.get(op) for op in spec.expect_fused):
        out.append(f"{spec.expect_fused[0]} did not fuse: expect little speed-up from this graph")
    return [*out, *spec.notes]


def load_reference(config: ExportConfig, run_dir: Path, say: Callable[[str], None]) -> tuple[Any, Reference]:
    """The source model and the PyTorch reference on the evaluation rows."""
    from bertdeploy.exporter import gate
    from bertdeploy.exporter.source import load_eval_data, load_source

    say(f"loading {run_dir}")
    source = load_source(run_dir, config.max_length)
    columns = {"text_column": config.text_column, "label_column": config.label_column}
    source.train_config = {**source.train_config, **{k: v for k, v in columns.items() if v}}
    data = load_eval_data(source, config.data, config.calibration_size)
    say(f"PyTorch reference on {len(data.texts)} {data.split} rows")
    start = time.perf_counter()
    batches = _batches(source, data, config.batch_size)
    logits = gate.torch_logits(source.model, batches)
    seconds = round(time.perf_counter() - start, 2)
    answers = None
    if batches.kind == "spans" and data.label_ids is not None:
        from bertdeploy.exporter.gate_qa import pick_answer_len

        batches.max_answer_len, answers = pick_answer_len(logits, data.label_ids, batches)
        how = "picked on the even-numbered questions" if answers["picked"] else answers["reason"]
        say(f"answers of at most {batches.max_answer_len} tokens ({how})")
    baseline = gate.scores(logits, data.label_ids, score_labels(source, data), batches, source.prior)
    k = min(config.parity_rows or len(data.texts), len(data.texts))
    return source, Reference(data, batches, logits, baseline, seconds, k, answers)


def _batches(source: Any, data: Any, batch_size: int) -> Any:
    """The gate's batches for the source's task (:mod:`bertdeploy.exporter.gate`, :mod:`~.gate_qa`)."""
    from bertdeploy.exporter import gate, gate_qa

    tok, n = source.tokenizer, source.max_length
    if data.words is not None:
        return gate.make_token_batches(tok, data.words, n, batch_size)
    if data.pairs is not None:
        return gate_qa.make_span_batches(tok, data.pairs, n, batch_size, uses_question_match(source.config))
    if data.choices is not None:
        return gate_qa.make_choice_batches(tok, data.texts, data.choices, n, batch_size)
    return gate.make_batches(tok, data.texts, n, batch_size)


def score_labels(source: Any, data: Any) -> list[str]:
    """The label names scores are computed over: the model's, or the choice positions for multiple choice."""
    if data.choices is not None:
        return [str(i) for i in range(len(data.choices[0]) if data.choices else 0)]
    return source.labels


def _not_here(spec: VariantSpec, task: str) -> str | None:
    """Why ``spec`` is not built for this export: its provider is not installed or offers no device for this CPU,
    or it is a checked variant and the task has no single label per text; None where it is built."""
    if spec.check and task not in checked.TASKS:
        return f"checked variants are built for {', '.join(checked.TASKS)}"
    return provider_unavailable(spec.provider)


def build_and_judge(
    spec: VariantSpec, ctx: Any, ref: Reference, config: ExportConfig, say: Callable[[str], None]
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Build one variant, run it on the eval rows, judge it: (table row, built variant or None, gate record)."""
    from bertdeploy.exporter import builders, gate

    why_not = _not_here(spec, ctx.source.spec.name)
    if why_not is not None:  # nothing to gate it on here
        return _row(spec.name, reason=f"skipped: {why_not}", skipped=True), None, {}
    say(f"building {spec.name}")
    start = time.perf_counter()
    try:
        built = builders.build(spec, ctx)
    except Exception as e:  # noqa: BLE001 - a variant that cannot be built is rejected, not fatal
        if spec.name == variants.BASE:
            raise
        return _row(spec.name, reason=f"build failed: {type(e).__name__}: {_first_line(e)}"), None, {}
    seconds = time.perf_counter() - start
    say(f"validating {spec.name}")
    info = builders.graph_info(built.path)
    try:
        logits = gate.onnx_logits(built.path, ref.batches, provider=spec.provider, hint=spec.hint)
    except Exception as e:  # noqa: BLE001 - e.g. an operator without a CPU kernel, a provider that did not attach
        reason = f"onnxruntime cannot run it on the {spec.provider} provider: {_first_line(e)}"
        return _row(spec.name, reason=reason, fused_nodes=info["fused_nodes"]), None, {}
    if spec.check:
        logits, built.record["check"] = checked.checked_logits(spec, logits, ctx, ref)
    evaluated = time.perf_counter() - start - seconds
    par = gate.parity(ref.logits, logits, ref.parity_rows, ref.batches)
    metrics = gate.scores(logits, ref.data.label_ids, score_labels(ctx.source, ref.data), ref.batches, ctx.source.prior)
    key = ctx.source.spec.metric.key
    verdict = gate.judge(spec.name, par, metrics, ref.baseline, config.max_accuracy_drop, config.min_agreement, key)
    row = _row(
        spec.name,
        accepted=verdict.accepted,
        reason=verdict.reason,
        size_mb=round(built.path.stat().st_size / 2**20, 2),
        max_diff=par["max_abs_diff"],
        agreement=par["agreement"],
        accuracy=metrics.get("accuracy"),
        f1_macro=metrics.get("f1_macro"),
        f1=metrics.get("f1"),
        token_accuracy=metrics.get("token_accuracy"),
        exact_match=metrics.get("exact_match"),
        metric=metrics.get(key),
        fused_nodes=info["fused_nodes"],
        notes=[*variant_notes(spec, info["fused_nodes"]), *built.notes],
        seconds=round(seconds, 2),
        eval_seconds=round(evaluated, 2),
    )
    record = {
        "opset": info["opset"],
        "fused_nodes": info["fused_nodes"],
        "parity": {**par, "reference": "pytorch", "checks": verdict.checks},
        "metrics": {m: v for m, v in metrics.items() if m != "confusion_matrix"},
        "provider": spec.provider,
        "hint": spec.hint,
        **built.record,
    }
    return row, built, record


def _export_base(config: ExportConfig, source: Any, work: Path, say: Callable[[str], None]) -> tuple[Path, str | None]:
    from bertdeploy.exporter.builders import export_fp32
    from bertdeploy.exporter.prune import cls_only_copy

    say("exporting fp32 with Optimum")
    task = source.spec
    if not task.cls_only:
        model, not_pruned = source.model, None  # every position is read: nothing to prune, nothing to note
    else:
        model, not_pruned = cls_only_copy(source.model) if config.cls_only else (source.model, "disabled")
    return export_fp32(model, source.tokenizer, work, config.opset, task.name), not_pruned


def export(config: ExportConfig, progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export, validate and bundle; see the module docstring. ``progress`` receives one-line status messages."""
    from bertdeploy.exporter import write
    from bertdeploy.exporter.builders import BuildContext, graph_info
    from bertdeploy.machine import detect_isa, machine_info

    say = progress or (lambda _msg: None)
    run_dir, out = _check_paths(config)
    source, ref = load_reference(config, run_dir, say)
    notes = list(ref.data.notes)
    machine = {**machine_info(), "provider": "CPUExecutionProvider"}  # every gate measurement runs on CPU
    isa = config.isa or detect_isa()
    rows: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    with (
        bundle_mod.atomic_dir(out, overwrite=config.force, kind="bundle", inputs=_inputs(config)) as root,
        scratch_dir("export") as tmp,
    ):
        fp32_path, not_pruned = _export_base(config, source, Path(tmp), say)
        if config.cls_only and not_pruned:
            notes.append(f"last layer kept for all positions: {not_pruned}")
        ctx = BuildContext(
            fp32_path, Path(tmp), source, isa, config.per_channel, config.int8_weights, ref.data.calibration
        )
        for name in config.variants:
            row, built, record = build_and_judge(variants.get(name), ctx, ref, config, say)
            rows.append(row)
            if row.get("skipped"):
                notes.append(f"{name} {row['reason']}: not gated, not in the bundle")
            if row["accepted"]:
                provider = ORT_NAMES.get(record["provider"], machine["provider"])
                record["machine"] = {"cpu": machine["cpu"], "isa": machine["isa"], "provider": provider}
                entries.append(write.add_variant(root, name, built.path, row, **record))
                ctx.accepted[name] = root / variants.get(name).file
        if not entries:
            reasons = "; ".join(f"{r['name']}: {r['reason']}" for r in rows)
            raise UserError(f"no variant passed the gate, nothing written ({reasons})")
        tokenizer_files = write.write_hf_files(source, root)
        info = {"inputs": graph_info(fp32_path)["inputs"], "not_pruned": not_pruned, "tokenizer": tokenizer_files}
        record = manifest_record(config, source, ref, rows, entries, info, notes, machine, run_dir)
        manifest = write.write_manifest(root, record)
    return ExportResult(bundle=out, rows=rows, baseline=ref.baseline, manifest=manifest, notes=notes)


def manifest_record(
    config: ExportConfig,
    source: Any,
    ref: Reference,
    rows: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    info: dict[str, Any],
    notes: list[str],
    machine: dict[str, Any],
    run_dir: Path,
) -> dict[str, Any]:
    """The content of ``bertdeploy.json`` (format and creation time are stamped by the writer)."""
    from bertdeploy.exporter import gate, write
    from bertdeploy.machine import versions

    data = ref.data
    task = source.spec
    last_layer = "all positions" if info["not_pruned"] or not task.cls_only else "cls only"
    return {
        "task": task.name,
        "metric": task.metric.key,
        "model_type": source.config.model_type,
        "labels": source.labels,
        "max_length": source.max_length,
        "tokenizer": {"file": "tokenizer.json", "files": info["tokenizer"]},
        "model_inputs": info["inputs"],
        "graph": {"last_layer": last_layer},
        "variants": entries,
        "rejected": write.rejected_entries(rows),
        "required": list(config.required or []),
        "eval": {
            "data": data.source,
            "split": data.split,
            "rows": len(data.texts),
            "parity_rows": ref.parity_rows,
            "labelled": data.label_ids is not None,
            "pytorch": {m: v for m, v in ref.baseline.items() if m != "confusion_matrix"},
            "pytorch_seconds": ref.seconds,
            "notes": notes,
        },
        "gate": {"min_agreement": gate.thresholds(config.min_agreement), "max_accuracy_drop": config.max_accuracy_drop},
        "versions": versions(),
        "machine": machine,
        "source": write.source_info(run_dir),
        **({"tag_transitions": source.transitions} if source.transitions else {}),
        **({"answers": ref.answers} if ref.answers else {}),
        **({"question_match": True} if uses_question_match(source.config) else {}),
    }
