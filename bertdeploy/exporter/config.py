"""`ExportConfig`: what ``bertdeploy export`` needs (options, a YAML file or ``key=value`` overrides)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bertdeploy import variants
from bertdeploy.config import Config, accuracy_points, budget_field
from bertdeploy.errors import UserError
from bertdeploy.machine import ISAS


@dataclass
class ExportConfig(Config):
    """Everything ``bertdeploy export`` needs; each field is a CLI option."""

    run_dir: str = ""
    """A ``bertdeploy train`` run folder or any HF sequence-classification folder (safetensors weights)."""
    output: str = ""
    """Bundle folder to create."""
    variants: list[str] = field(default_factory=lambda: [variants.BASE])
    """Names from the variant table (:data:`bertdeploy.variants.VARIANT_TABLE`); fp32 is always built."""
    required: list[str] | None = None
    """Variants that must pass the gate for the export to count as successful (default: all of ``variants``)."""
    data: str | None = None
    """Evaluation data (folder / file); default: the ``data`` recorded in the run's train_config.json."""
    text_column: str | None = None
    """Text column of ``data`` (default: the run's, else "text")."""
    label_column: str | None = None
    """Label column of ``data`` (default: the run's, else "label")."""
    opset: int | None = None
    """ONNX opset (default: Optimum's for the architecture)."""
    max_length: int | None = None
    """Token limit (default: the run's max_length, else the model's)."""
    calibration_size: int = 200
    """Training rows used to calibrate static int8."""
    max_accuracy_drop: float = budget_field(1.0)
    """Accuracy points (1.0 = one point, or "1%") an int8 variant may lose against PyTorch on the eval split."""
    parity_rows: int | None = None
    """K: the first K evaluation rows carry the max |logit diff| / argmax agreement check (default: all rows)."""
    min_agreement: dict[str, float] = field(default_factory=dict)
    """Override the argmax-agreement thresholds of the variant table, per variant."""
    isa: str | None = None
    """int8 instruction set (avx512_vnni | avx512 | avx2 | arm64); default: detected."""
    per_channel: bool = True
    """Per-channel int8 weights (per-tensor loses ~1 point of agreement on MiniLM)."""
    int8_weights: str = "int8"
    """Dynamic int8 weight type: "int8" (ORT's default, the fastest kernels) or "uint8" (Optimum's avx2 preset: no
    ``vpmaddubsw`` saturation on AVX2 without VNNI, for models with very large weights; ~20 % slower)."""
    batch_size: int = 64
    """Rows per batch of the gate's PyTorch and ONNX Runtime runs."""
    cls_only: bool = True
    """Export the last encoder layer for the [CLS] row only (:mod:`bertdeploy.exporter.prune`; BERT encoders)."""
    force: bool = False
    """Replace an existing bundle."""

    def __post_init__(self) -> None:
        if not self.run_dir or not self.output:
            raise UserError("a run folder and an output bundle folder (--output) are required")
        if isinstance(self.variants, str):
            self.variants = [self.variants]
        self.variants = variants.canonical(self.variants)  # table order, fp32 first
        if self.required is None:
            self.required = list(self.variants)
        for name in [*self.required, *self.min_agreement]:
            variants.get(name)
        self.max_accuracy_drop = accuracy_points(self.max_accuracy_drop)
        if self.opset is not None and not 11 <= self.opset <= 21:
            raise UserError(f"opset must be in [11, 21], got {self.opset}")
        if self.calibration_size < 1:
            raise UserError(f"calibration size must be positive, got {self.calibration_size}")
        if (self.parity_rows is not None and self.parity_rows < 1) or self.batch_size < 1:
            raise UserError("parity_rows and batch_size must be positive")
        if self.max_length is not None and not 8 <= self.max_length <= 512:
            raise UserError(f"max_length must be in [8, 512], got {self.max_length}")
        if self.int8_weights not in ("int8", "uint8"):
            raise UserError(f"int8 weights must be int8 or uint8, got {self.int8_weights!r}")
        if self.isa is not None and self.isa not in ISAS:
            raise UserError(f"isa must be one of {', '.join(ISAS)}, got {self.isa!r}")
