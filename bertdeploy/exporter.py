"""``export``: a trained classifier → validated ONNX variants → a deployable bundle.

Every variant (fp32, O1-O3, fp16, qint8, qint8_static) is built from the plain Optimum export (of a BERT whose last
layer is computed for [CLS] only: :mod:`bertdeploy.export_prune`, same logits), run with ONNX
Runtime on the evaluation rows, compared with the PyTorch model and scored; only variants that pass the gate
(:mod:`bertdeploy.export_gate`) go into the bundle, the others are listed under ``rejected``. The bundle is built
in a temporary sibling and renamed into place (:func:`bertdeploy.bundle.atomic_dir`).

    from bertdeploy.exporter import ExportConfig, export
    result = export(ExportConfig(run_dir="runs/emotion", output="models/emotion", variants=["fp32", "O2", "qint8"]))
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy import bundle as bundle_mod
from bertdeploy.errors import UserError
from bertdeploy.export_variants import ATTENTION_OPS

VARIANTS = tuple(bundle_mod.VARIANT_FILES)
#: variants whose graph is expected to contain a fused Attention node
EXPECT_ATTENTION = ("O2", "O3", "fp16")


@dataclass
class ExportConfig:
    """Everything ``bertdeploy export`` needs; each field is a CLI option."""

    run_dir: str
    """A ``bertdeploy train`` run folder or any HF sequence-classification folder (safetensors weights)."""
    output: str
    """Bundle folder to create."""
    variants: list[str] = field(default_factory=lambda: ["fp32"])
    """Any of fp32, O1, O2, O3, fp16, qint8, qint8_static (fp32 is always built: the others derive from it)."""
    required: list[str] | None = None
    """Variants that must pass the gate for the export to count as successful (default: all of ``variants``)."""
    data: str | None = None
    """Evaluation data (folder / file); default: the ``data`` recorded in the run's train_config.json."""
    text_column: str | None = None
    label_column: str | None = None
    opset: int | None = None
    """ONNX opset (default: Optimum's for the architecture)."""
    max_length: int | None = None
    """Token limit (default: the run's max_length, else the model's)."""
    calibration_size: int = 200
    """Training rows used to calibrate qint8_static."""
    max_accuracy_drop: float = 1.0
    """Accuracy points an int8 variant may lose against PyTorch on the eval split."""
    parity_rows: int | None = None
    """K: the first K evaluation rows carry the max |logit diff| / argmax agreement check (default: all rows)."""
    min_agreement: dict[str, float] = field(default_factory=dict)
    """Override the argmax-agreement thresholds per variant (defaults: 0.999 fp32/O1-O3, 0.99 fp16)."""
    isa: str | None = None
    """int8 instruction set (avx512_vnni | avx512 | avx2 | arm64); default: detected."""
    per_channel: bool = True
    """Per-channel int8 weights (per-tensor loses ~1 point of agreement on MiniLM)."""
    int8_weights: str = "int8"
    """Dynamic int8 weight type: "int8" (ORT's default, the fastest kernels) or "uint8" (Optimum's avx2 preset: no
    ``vpmaddubsw`` saturation on AVX2 without VNNI, for models with very large weights; ~20 % slower)."""
    batch_size: int = 64
    cls_only: bool = True
    """Export the last encoder layer for the [CLS] row only (:mod:`bertdeploy.export_prune`; BERT encoders)."""
    force: bool = False
    """Replace an existing bundle."""

    def __post_init__(self) -> None:
        from bertdeploy.export_machine import ISAS

        if isinstance(self.variants, str):
            self.variants = [self.variants]
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise UserError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
        self.variants = [v for v in VARIANTS if v == "fp32" or v in self.variants]  # canonical order, fp32 first
        if self.required is None:
            self.required = list(self.variants)
        if self.opset is not None and not 11 <= self.opset <= 21:
            raise UserError(f"opset must be in [11, 21], got {self.opset}")
        if self.calibration_size < 1:
            raise UserError(f"calibration size must be positive, got {self.calibration_size}")
        if self.max_accuracy_drop < 0:
            raise UserError(f"max accuracy drop must be >= 0 points, got {self.max_accuracy_drop}")
        if (self.parity_rows is not None and self.parity_rows < 1) or self.batch_size < 1:
            raise UserError("parity_rows and batch_size must be positive")
        if self.max_length is not None and not 8 <= self.max_length <= 512:
            raise UserError(f"max_length must be in [8, 512], got {self.max_length}")
        if self.int8_weights not in ("int8", "uint8"):
            raise UserError(f"int8 weights must be int8 or uint8, got {self.int8_weights!r}")
        if self.isa is not None and self.isa not in ISAS:
            raise UserError(f"isa must be one of {', '.join(ISAS)}, got {self.isa!r}")


@dataclass
class ExportResult:
    """What was written and why."""

    bundle: Path
    rows: list[dict[str, Any]]
    """One per variant: name, accepted, reason, size_mb, max_diff, agreement, accuracy, f1_macro, fused_nodes, notes,
    seconds (build), eval_seconds (ONNX Runtime on the eval rows)."""
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
        return [r for r in self.rows if not r["accepted"] and r["name"] in required]


def _check_paths(config: ExportConfig) -> tuple[Path, Path]:
    from bertdeploy.export_source import check_folder

    run_dir = check_folder(config.run_dir).resolve()
    out = bundle_mod.check_output_dir(config.output, config.force, what="bundle")
    resolved = out.resolve()
    if resolved == run_dir or resolved in run_dir.parents:
        raise UserError(f"the bundle cannot replace the run folder or contain it: {out}")
    return run_dir, out


def _build(name: str, ctx: dict[str, Any]) -> Path:
    from bertdeploy import export_variants as ev

    fp32_path: Path = ctx["fp32_path"]
    work: Path = ctx["work"]
    if name == "fp32":
        return fp32_path
    if name in ("O1", "O2", "O3"):
        return ev.optimize(fp32_path.parent, name, work)
    if name == "fp16":
        return ev.convert_fp16(fp32_path, ctx["source"].config, work)
    if name == "qint8":
        return ev.quantize_dynamic(fp32_path.parent, ctx["isa"], work, ctx["per_channel"], ctx["int8_weights"])
    if name == "qint8_static":
        src = ctx["source"]
        return ev.quantize_static(
            fp32_path.parent, ctx["isa"], src.tokenizer, ctx["calibration"], src.max_length, work, ctx["per_channel"]
        )
    raise AssertionError(name)  # pragma: no cover - validated in ExportConfig


def _row(name: str, **kw: Any) -> dict[str, Any]:
    row = {
        "name": name,
        "accepted": False,
        "reason": "",
        "size_mb": None,
        "max_diff": None,
        "agreement": None,
        "accuracy": None,
        "f1_macro": None,
        "fused_nodes": {},
        "notes": [],
        "seconds": None,
        "eval_seconds": None,
    }
    row.update(kw)
    return row


def export(config: ExportConfig, progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export, validate and bundle; see the module docstring. ``progress`` receives one-line status messages."""
    from bertdeploy import export_bundle as eb
    from bertdeploy import export_gate as gate
    from bertdeploy import export_variants as ev
    from bertdeploy.export_machine import detect_isa, machine_info, versions
    from bertdeploy.export_prune import cls_only_copy
    from bertdeploy.export_source import load_eval_data, load_source

    say = progress or (lambda _msg: None)
    run_dir, out = _check_paths(config)
    say(f"loading {run_dir}")
    source = load_source(run_dir, config.max_length)
    if config.text_column or config.label_column:
        source.train_config = {
            **source.train_config,
            **({"text_column": config.text_column} if config.text_column else {}),
            **({"label_column": config.label_column} if config.label_column else {}),
        }
    data = load_eval_data(source, config.data, config.calibration_size)
    notes = list(data.notes)
    machine = machine_info()
    isa = config.isa or detect_isa()
    say(f"PyTorch reference on {len(data.texts)} {data.split} rows")
    start = time.perf_counter()
    batches = gate.make_batches(source.tokenizer, data.texts, source.max_length, config.batch_size)
    reference = gate.torch_logits(source.model, batches)
    torch_seconds = round(time.perf_counter() - start, 2)
    baseline = gate.scores(reference, data.label_ids, source.labels)
    k = min(config.parity_rows or len(data.texts), len(data.texts))

    rows: list[dict[str, Any]] = []
    variants: list[dict[str, Any]] = []
    with (
        bundle_mod.atomic_dir(out, overwrite=config.force) as root,
        tempfile.TemporaryDirectory(prefix="bertdeploy-export-") as tmp,
    ):
        work = Path(tmp)
        say("exporting fp32 with Optimum")
        export_model, not_pruned = cls_only_copy(source.model) if config.cls_only else (source.model, "disabled")
        fp32_path = ev.export_fp32(export_model, source.tokenizer, work, config.opset)
        del export_model
        if config.cls_only and not_pruned:
            notes.append(f"last layer kept for all positions: {not_pruned}")
        fp32_info = ev.graph_info(fp32_path)
        ctx = {
            "fp32_path": fp32_path,
            "work": work,
            "source": source,
            "isa": isa,
            "per_channel": config.per_channel,
            "int8_weights": config.int8_weights,
            "calibration": data.calibration,
        }
        for name in config.variants:
            say(f"building {name}")
            start = time.perf_counter()
            try:
                path = _build(name, ctx)
            except Exception as e:  # noqa: BLE001 - a variant that cannot be built is rejected, not fatal
                if name == "fp32":
                    raise
                msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                rows.append(_row(name, reason=f"build failed: {type(e).__name__}: {msg}"))
                continue
            built = time.perf_counter() - start
            say(f"validating {name}")
            info = ev.graph_info(path)
            try:
                logits = gate.onnx_logits(path, batches)
            except Exception as e:  # noqa: BLE001 - e.g. an operator without a CPU kernel
                msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                rows.append(_row(name, reason=f"onnxruntime cannot run it: {msg}", fused_nodes=info["fused_nodes"]))
                continue
            evaluated = time.perf_counter() - start - built
            par = gate.parity(reference, logits, k)
            metrics = gate.scores(logits, data.label_ids, source.labels)
            verdict = gate.judge(name, par, metrics, baseline, config.max_accuracy_drop, config.min_agreement or None)
            vnotes = _variant_notes(name, info, isa)
            size = path.stat().st_size
            row = _row(
                name,
                accepted=verdict.accepted,
                reason=verdict.reason,
                size_mb=round(size / 2**20, 2),
                max_diff=par["max_abs_diff"],
                agreement=par["agreement"],
                accuracy=metrics.get("accuracy"),
                f1_macro=metrics.get("f1_macro"),
                fused_nodes=info["fused_nodes"],
                notes=vnotes,
                seconds=round(built, 2),
                eval_seconds=round(evaluated, 2),
            )
            rows.append(row)
            if verdict.accepted:
                variants.append(
                    eb.add_variant(
                        root,
                        name,
                        path,
                        row,
                        opset=info["opset"],
                        fused_nodes=info["fused_nodes"],
                        parity={**par, "reference": "pytorch", "checks": verdict.checks},
                        metrics={m: v for m, v in metrics.items() if m != "confusion_matrix"},
                        machine={"cpu": machine["cpu"], "isa": machine["isa"], "provider": machine["provider"]},
                        **eb.quantization_info(
                            name, isa, config.per_channel, len(data.calibration), config.int8_weights
                        ),
                    )
                )
        accepted = [r["name"] for r in rows if r["accepted"]]
        if not accepted:
            reasons = "; ".join(f"{r['name']}: {r['reason']}" for r in rows)
            raise UserError(f"no variant passed the gate, nothing written ({reasons})")
        tokenizer_files = eb.write_hf_files(source, root)
        manifest = eb.write_manifest(
            root,
            {
                "task": "text-classification",
                "model_type": source.config.model_type,
                "labels": source.labels,
                "max_length": source.max_length,
                "tokenizer": {"file": "tokenizer.json", "files": tokenizer_files},
                "model_inputs": fp32_info["inputs"],
                "graph": {"last_layer": "all positions" if not_pruned else "cls only"},
                "variants": variants,
                "rejected": eb.rejected_entries(rows),
                "required": list(config.required or []),
                "eval": {
                    "data": data.source,
                    "split": data.split,
                    "rows": len(data.texts),
                    "parity_rows": k,
                    "labelled": data.label_ids is not None,
                    "pytorch": {m: v for m, v in baseline.items() if m != "confusion_matrix"},
                    "pytorch_seconds": torch_seconds,
                    "notes": notes,
                },
                "gate": {
                    "min_agreement": {**gate.MIN_AGREEMENT, **config.min_agreement},
                    "max_accuracy_drop": config.max_accuracy_drop,
                },
                "versions": versions(),
                "machine": machine,
                "source": eb.source_info(run_dir),
            },
        )
    return ExportResult(bundle=out, rows=rows, baseline=baseline, manifest=manifest, notes=notes)


def _variant_notes(name: str, info: dict[str, Any], isa: str) -> list[str]:
    out = []
    fused = info["fused_nodes"]
    if name in EXPECT_ATTENTION and not any(fused.get(op) for op in ATTENTION_OPS):
        out.append("Attention did not fuse: expect little speed-up from this graph")
    if name == "fp16":
        out.append("fp16 is meant for CUDA: validated here on CPU, where expect no speed-up over fp32")
    if name in ("qint8", "qint8_static"):
        out.append(f"int8 configured for {isa}")
    return out
