"""The quickstart: the whole path on the embedded default, offline — fine-tune the packaged all-MiniLM-L6-v2 on
the packaged sample dataset (customer-support intents, 5 labels), export and validate ONNX variants, and benchmark
them against PyTorch. Everything lands under one folder (default ``models/quickstart``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.variants import QUICKSTART

SAMPLE_DATA = Path(__file__).parent / "sample_data"


@dataclass
class QuickstartResult:
    root: Path
    train: Any
    export: Any = None
    bench: Any = None
    seconds: dict[str, float] = field(default_factory=dict)


def quickstart(
    output: str | Path = "models/quickstart",
    epochs: float = 5,
    variants: tuple[str, ...] = QUICKSTART,
    bench_seconds: float = 1.0,
    on_stage: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> QuickstartResult:
    """Train → export → bench on the packaged sample; an existing quickstart folder is replaced."""
    from bertdeploy.benchmark import BenchConfig, bench
    from bertdeploy.exporter import ExportConfig, export
    from bertdeploy.training import TrainConfig, train

    root = Path(output)
    stage = on_stage or (lambda _msg: None)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    stage("train: all-MiniLM-L6-v2 on the packaged sample (300 rows, 5 labels)")
    cfg = TrainConfig(
        model="minilm-l6",
        data=str(SAMPLE_DATA),
        output=str(root / "run"),
        epochs=epochs,
        batch_size=16,
        lr=1e-4,
        warmup_ratio=0.1,
        max_length=64,
        overwrite=True,
        report_to=["none"],
        logging_steps=10,
    )
    trained = train(cfg, on_epoch=on_epoch)
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    stage(f"export: {', '.join(variants)} — each checked against PyTorch before it enters the bundle")
    exported = export(
        ExportConfig(run_dir=str(root / "run"), output=str(root / "bundle"), variants=list(variants), force=True)
    )
    seconds["export"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    stage("bench: the bundle's variants against PyTorch eager, batch 1 and 32")
    benched = bench(
        BenchConfig(
            targets=[str(root / "bundle")],
            data=str(SAMPLE_DATA),
            output=str(root / "bench"),
            backends=["bertdeploy", "torch"],
            torch_dtypes=["fp32"],
            padding=["bucketed"],
            batch_sizes=[1, 32],
            min_seconds=bench_seconds,
            min_iterations=5,
            overwrite=True,
        )
    )
    seconds["bench"] = time.perf_counter() - t0
    return QuickstartResult(root=root, train=trained, export=exported, bench=benched, seconds=seconds)
