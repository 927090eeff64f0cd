"""`BenchConfig`: the typed description of one sweep (a YAML file, options, ``key=value`` overrides)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from bertdeploy import variants as variant_table
from bertdeploy.config import Config, accuracy_points, budget_field
from bertdeploy.errors import UserError
from bertdeploy.machine import usable_cpus

BACKENDS = ("bertdeploy", "torch", "pipeline", "ortmodel", "openvino")
PADDINGS = ("static", "dynamic", "bucketed")
TORCH_DTYPES = ("fp32", "bf16", "fp16", "int8")
OPENVINO_EXTRA = ("nncf", "bf16")
DEVICES = ("cpu", "cuda", "auto")
ISOLATIONS = ("process", "inline")


@dataclass
class BenchConfig(Config):
    """One benchmark sweep: targets x backends x variants x padding x batch sizes."""

    targets: list[str] = field(default_factory=list)
    """Bundles (bertdeploy.json), training runs (train_config.json + HF model) or model preset names."""
    output: str = ""
    """Folder for results.json/csv, report.md, config.json and plots/ (required)."""
    data: str | None = None
    """Evaluation data (folder or file); default: the training run's own data. Presets without data time
    synthetic texts of ``max_length`` tokens."""
    text_column: str | None = None
    label_column: str | None = None
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    variants: list[str] | None = None
    """bertdeploy variants to time (default: every accepted variant of the bundle)."""
    torch_dtypes: list[str] = field(default_factory=lambda: ["fp32", "bf16", "int8"])
    """PyTorch eager precisions (of fp32, bf16, fp16, int8); bf16 is skipped (with the reason) on a CPU without native
    bf16, fp16 on any CPU; int8 is ``torch.ao.quantization.quantize_dynamic`` on the Linear layers (CPU only)."""
    openvino_variants: list[str] = field(default_factory=lambda: ["fp32", "bf16", "nncf"])
    """What the openvino backend times: bundle variants (their ONNX files), ``nncf`` (NNCF int8 of fp32) and/or
    ``bf16`` (the fp32 file in bf16, on CPUs with native bf16)."""
    padding: list[str] = field(default_factory=lambda: list(PADDINGS))
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    max_length: int | None = None
    """Truncation / static-padding length (default: the model's: manifest or train_config, else 128)."""
    threads: int | None = None
    """Intra-op threads for every engine (default: all logical CPUs)."""
    max_tokens: int | None = None
    """Token budget of one model call of the engines batched by the runtime's planner (bertdeploy, OpenVINO, and
    PyTorch eager for the tasks it runs inside the runtime's head), counted as rows x padded length. None: what
    ``load(bundle)`` does by default on the device (1,024 on ONNX Runtime's CPU EP, 8,192 on a GPU or the OpenVINO
    EP), the peers given the same budget: a cell's batch is what one ``predict()`` call is handed. N: N for every
    such engine (largest batch x max_length: a call holds a whole batch, the bench's rule before 2026-12-07)."""
    device: str = "cpu"
    min_seconds: float = 2.0
    min_iterations: int = 10
    warmup_iterations: int = 3
    max_seconds: float = 60.0
    """Cap per timed loop: a loop that hits it before ``min_iterations`` is flagged ``capped``."""
    repeats: int = 1
    """Rounds over the whole grid: each round times every block once more, in the same order, so that blocks
    measured minutes apart share the machine's slow and fast phases; a cell keeps its median round (by end-to-end
    throughput) and records every round's timings. A resume adds the rounds a cell lacks."""
    model_only: bool = True
    """Also time the model alone on pre-tokenized batches (besides end to end with tokenization)."""
    gemm_seconds: float = 0.5
    """Time per shape and engine for the fp32 GEMM peak (0: do not measure it)."""
    timing_texts: int = 512
    """Texts (a seeded sample of the evaluation split) cycled through by the timed loops."""
    eval_limit: int | None = None
    """Score the task's metric on at most this many evaluation records (default: all)."""
    export: bool = False
    """Export a training-run target to a temporary bundle so its bertdeploy variants are timed too."""
    export_variants: list[str] = field(default_factory=lambda: list(variant_table.BENCH_EXPORT))
    """Variants exported on the fly for training-run and preset targets."""
    isolation: str = "process"
    """``process``: each (target, backend, variant) block runs in its own subprocess (clean thread pools, its
    own peak RSS, a crash only fails its cells); ``inline``: everything in this process (fast, for tests)."""
    resume: bool = True
    """Keep finished cells of an earlier run into the same output folder (matched by key and timing method)."""
    overwrite: bool = False
    """Start from scratch, discarding earlier results in the output folder."""
    pick: bool = False
    max_accuracy_drop: float = budget_field(1.0)
    """Points of the task's primary metric (accuracy, entity F1, F1 ...; 1.0 = one point, or "1%") a picked variant
    may lose against the fp32 reference."""
    pick_batch_size: int | None = None
    """Batch size the pick compares latencies at (default: the smallest in the grid)."""
    pick_tolerance: float = 0.05
    """Latencies within this share of the fastest are a tie; the more accurate variant wins it."""
    pick_output: str | None = None
    """Copy the picked variant into a new single-variant bundle here."""
    keep_work: bool = False
    """Keep the work folder (saved preset models, temporary bundles) after a complete sweep."""
    seed: int = 0
    name: str | None = None
    """A label for this result set (shown by ``bench compare``)."""
    command: str | None = None
    """The command line that produced the run (filled in by the CLI)."""

    def __post_init__(self) -> None:
        if not self.output:
            raise UserError("an output folder is required (--output DIR, or `output:` in the --config file)")
        lists = ("targets", "backends", "torch_dtypes", "padding", "batch_sizes", "export_variants", "variants")
        for key in (*lists, "openvino_variants"):
            value = getattr(self, key)
            if isinstance(value, str):
                setattr(self, key, [v.strip() for v in value.split(",") if v.strip()])
        try:
            self.batch_sizes = [int(b) for b in self.batch_sizes]
        except (TypeError, ValueError):
            raise UserError(f"batch sizes must be positive integers, got {self.batch_sizes!r}") from None
        _check_choices("backend", self.backends, BACKENDS)
        _check_choices("padding", self.padding, PADDINGS)
        _check_choices("torch dtype", self.torch_dtypes, TORCH_DTYPES)
        _check_choices("variant", self.variants or [], (*variant_table.NAMES, variant_table.AUTO))
        _check_choices("export variant", self.export_variants, variant_table.NAMES)
        _check_choices("openvino variant", self.openvino_variants, (*variant_table.NAMES, *OPENVINO_EXTRA))
        _check_choices("device", [self.device], DEVICES)
        _check_choices("isolation", [self.isolation], ISOLATIONS)
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise UserError("batch sizes must be positive integers")
        if self.max_length is not None and not 8 <= self.max_length <= 8192:
            raise UserError(f"max_length must be between 8 and 8192, got {self.max_length}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UserError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.threads is not None and self.threads < 1:
            raise UserError("threads must be >= 1")
        if self.threads is not None and self.threads > usable_cpus():  # a result must hold the threads it names
            raise UserError(f"threads must be <= {usable_cpus()} (the CPUs this process may use), got {self.threads}")
        for key in ("min_seconds", "max_seconds", "gemm_seconds", "pick_tolerance"):
            if not math.isfinite(getattr(self, key)) or getattr(self, key) < 0:
                raise UserError(f"{key} must be a finite number >= 0, got {getattr(self, key)}")
        if self.repeats < 1:
            raise UserError(f"repeats must be >= 1, got {self.repeats}")
        if self.min_iterations < 1 or self.warmup_iterations < 0 or self.max_seconds <= 0:
            raise UserError("min_iterations >= 1, min_seconds >= 0, warmup_iterations >= 0, max_seconds > 0")
        if self.seed < 0 or (self.pick_batch_size is not None and self.pick_batch_size < 1):
            raise UserError("seed must be >= 0 and pick_batch_size >= 1")
        self.max_accuracy_drop = accuracy_points(self.max_accuracy_drop)
        if self.timing_texts < 1:
            raise UserError("timing_texts must be >= 1")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise UserError(f"eval_limit must be >= 1, got {self.eval_limit}")

    @property
    def resolved_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


def _check_choices(what: str, values: list[str], allowed: tuple[str, ...]) -> None:
    for v in values:
        if v not in allowed:
            raise UserError(f"unknown {what} {v!r} (choose from {', '.join(allowed)})")
