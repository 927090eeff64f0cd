"""The grid of a sweep: targets resolved from the config, and per target the blocks (backend x variant) with
their cells (padding x batch size); blocks that cannot run are known here with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field

from bertdeploy import tasks
from bertdeploy import variants as variant_table
from bertdeploy.benchmark.config import BenchConfig
from bertdeploy.benchmark.results import REFERENCE_DTYPE, CellKey, GroupKey
from bertdeploy.benchmark.targets import Target, resolve_target
from bertdeploy.errors import UserError
from bertdeploy.machine import cpu

NO_BF16 = "bf16 skipped: no native bf16 on this CPU (no avx512_bf16 / amx_bf16); emulated bf16 times the emulation"
NO_FP16 = "fp16 skipped: PyTorch eager fp16 is timed on CUDA only (on a CPU it is emulated)"
NO_TORCH = "no PyTorch model for this target (pass the training run dir as a target)"
NO_BUNDLE = "openvino reads a bundle's ONNX file: pass a bundle, or --export for a training run"
NO_PIPELINE = "transformers has no multiple-choice pipeline (PyTorch eager and ORTModel are the peers)"
TEXT_ONLY = "the openvino backend times text classification only"
TORCH_FP32 = REFERENCE_DTYPE


@dataclass
class Block:
    """One (target, backend, variant): loaded once, timed over its cells."""

    target: Target
    backend: str
    variant: str
    cells: list[CellKey] = field(default_factory=list)
    skip: str | None = None
    """Known before running: the reason every cell of the block is skipped."""

    @property
    def key(self) -> GroupKey:
        return GroupKey(self.target.name, self.backend, self.variant)


def resolve_targets(cfg: BenchConfig) -> list[Target]:
    if not cfg.targets:
        raise UserError("give at least one TARGET (a bundle, a training run or a model preset)")
    targets, seen = [], set()
    for spec in cfg.targets:
        t = resolve_target(spec, cfg.max_length)
        base, n = t.name, 2
        while t.name in seen:
            t.name, n = f"{base}-{n}", n + 1
        seen.add(t.name)
        targets.append(t)
    kinds = sorted({t.task for t in targets})
    if len(kinds) > 1:
        which = "; ".join(f"{t.spec}: {t.task}" for t in targets)
        raise UserError(f"one bench run times one task, these targets mix {' and '.join(kinds)} ({which})")
    tasks.get(kinds[0], stage="bench")
    from bertdeploy.benchmark.evaldata import check_data_task

    for t in targets:  # before any work: data of another task is one line, not a half-run sweep
        if cfg.data or t.data:
            check_data_task(str(cfg.data or t.data), t.task, t.spec)
    return targets


def bertdeploy_variants(cfg: BenchConfig, target: Target) -> tuple[list[str], dict[str, str]]:
    """The variants to time and, for those that will not run, why."""
    if target.kind == "bundle":
        from bertdeploy.bundle import read_manifest

        m = read_manifest(target.bundle)
        accepted = [v.name for v in m.variants]
        wanted = cfg.variants or accepted
        why = {r.get("name"): f"rejected at export: {r.get('reason')}" for r in m.rejected}
        missing = [v for v in wanted if v not in accepted and v != variant_table.AUTO]  # auto: load()'s own pick
        return wanted, {v: why.get(v, "not in the bundle") for v in missing}
    wanted = cfg.variants or cfg.export_variants
    if target.kind == "run" and not cfg.export:
        return wanted, dict.fromkeys(wanted, "training run: pass --export to time bertdeploy variants")
    return wanted, {}


def _blocks(cfg: BenchConfig, target: Target, backend: str) -> list[Block]:
    has_torch = target.hf_dir is not None or target.kind == "preset"
    if backend == "torch":
        bf16 = None if cfg.device != "cpu" or cpu().native_bf16 else NO_BF16
        fp16 = NO_FP16 if cfg.device == "cpu" else None
        return [
            Block(target, "torch", d, skip=(None if has_torch else NO_TORCH) or {"bf16": bf16, "fp16": fp16}.get(d))
            for d in cfg.torch_dtypes
        ]
    if backend == "pipeline":
        no_pipeline = NO_PIPELINE if target.task == "multiple-choice" else None
        return [Block(target, "pipeline", TORCH_FP32, skip=no_pipeline or (None if has_torch else NO_TORCH))]
    if backend == "ortmodel":
        return [Block(target, "ortmodel", TORCH_FP32)]
    if backend == "openvino":
        exportable = target.kind == "preset" or (target.kind == "run" and cfg.export)
        no_bundle = None if target.kind == "bundle" or exportable else NO_BUNDLE
        skip = TEXT_ONLY if target.task != tasks.DEFAULT else no_bundle
        return [Block(target, "openvino", v, skip=skip) for v in cfg.openvino_variants]
    wanted, why = bertdeploy_variants(cfg, target)
    return [Block(target, "bertdeploy", v, skip=why.get(v)) for v in wanted]


def plan(cfg: BenchConfig, target: Target) -> list[Block]:
    """Every block of ``target`` in the config's backend order, each with its cells."""
    blocks = [b for backend in cfg.backends for b in _blocks(cfg, target, backend)]
    for b in blocks:
        b.cells = [CellKey(b.key, p, bs) for p in cfg.padding for bs in sorted(cfg.batch_sizes)]
    return blocks
