"""``predict_file(..., engine="ray")``: Ray Data reads the input, ``map_batches`` runs an actor pool with one
ONNX Runtime session per actor, and the driver streams the (order-preserved) results into the same writer
as the local engine, so both engines produce the same rows and labels.

Needs the ``ray`` extra (``pip install "bertdeploy[ray]"``). Connects to a running cluster when
``RAY_ADDRESS`` is set (or ``ray.init`` was called), else starts a local one.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.errors import UserError, require
from bertdeploy.runtime.filejob import (
    MAX_REPORTED,
    FileJob,
    PredictFileResult,
    ProgressFn,
    blank_columns,
    make_writer,
    open_output,
    predict_rows,
    split_empty,
)
from bertdeploy.runtime.options import LoadOptions
from bertdeploy.runtime.readers import Chunk, count_rows, is_stream, iter_chunks

_KEY = "__key"


class RayPredictor:
    """The actor: loads the bundle once, then predicts batches ({column: numpy array}) into the job's columns
    (:func:`~bertdeploy.runtime.filejob.predict_rows`, as the local engine)."""

    def __init__(self, job: FileJob, options: LoadOptions, text_column: str, id_column: str | None) -> None:
        from bertdeploy.runtime.loader import load_with

        self.clf = load_with(job.bundle, options)
        self.job = job
        self.text_column = text_column
        self.id_column = id_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # a list column (pre-split words) arrives as numpy arrays: back to lists, as the local readers give them
        raw = [v.tolist() if isinstance(v, np.ndarray) else v for v in batch[self.text_column].tolist()]
        n = len(raw)
        probe = PredictFileResult("", "", "ray", "", [])
        chunk = Chunk(texts=raw, keys=list(range(n)), lines=list(range(n)))
        texts, positions = split_empty(chunk, probe, self.job.words)
        out = blank_columns(self.job, n, len(self.clf.labels))
        out["ok"] = np.zeros(n, dtype=bool)
        truncated = 0
        if texts:
            columns, truncated = predict_rows(self.clf, texts, self.job)
            for name, values in columns.items():
                out[name][positions] = values
            out["ok"][positions] = True
        out["truncated"] = np.full(n, truncated, dtype=np.int64)
        out["variant"] = np.full(n, self.clf.variant.name)  # the driver reports what the actors really loaded
        out["first"] = np.zeros(n, dtype=bool)
        if n:
            out["first"][0] = True  # the truncated count is per batch: count it once
        if self.id_column is not None:
            out[_KEY] = batch[self.id_column]
        return out


#: logical CPUs a read task asks for: reading is light, and if the actor pool held every CPU the reads could
#: never be scheduled (Ray Data would wait forever)
READ_CPUS = 0.25


def _read(path: str, fmt: str, columns: list[str], text_column: str, id_column: str | None):
    import ray.data

    common = {"num_cpus": READ_CPUS}
    if fmt in ("csv", "tsv"):
        import pyarrow as pa
        from pyarrow import csv as pacsv

        ds = ray.data.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="," if fmt == "csv" else "\t", newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False,
                include_columns=[text_column] + ([id_column] if id_column else []),
            ),
            **common,
        )
    elif fmt == "jsonl":
        ds = ray.data.read_json(path, lines=True, **common)
    elif fmt == "parquet":
        ds = ray.data.read_parquet(path, columns=[text_column] + ([id_column] if id_column else []), **common)
    else:
        ds = ray.data.read_text(path, drop_empty_lines=False, **common)
    return ds


def _header(path: str, fmt: str) -> list[str]:
    if fmt not in ("csv", "tsv"):
        return []
    with open(path, encoding="utf-8-sig", newline="") as f:
        return next(csv.reader(f, delimiter="," if fmt == "csv" else "\t"), [])


@contextlib.contextmanager
def _ray_data_settings() -> Iterator[Any]:
    """Ray Data's context set for ordered, quiet output during the call, restored afterwards."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start)
    log = logging.getLogger("ray.data")
    level = log.level
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    log.setLevel(logging.WARNING)  # Ray Data's INFO lines would mix with our output
    try:
        yield ctx
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        log.setLevel(level)


def _start_ray() -> float:
    """Connect to ``RAY_ADDRESS`` (or the running cluster) or start a local one; its logical CPUs."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            num_cpus=None if os.environ.get("RAY_ADDRESS") else os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    return float(ray.cluster_resources().get("CPU", 1))


def _dataset(job: FileJob, options: LoadOptions, id_col: str | None, workers: int, actor_cpus: float):
    import ray

    ds = _read(job.input, job.fmt, _header(job.input, job.fmt), job.text_column, id_col)
    return ds.map_batches(
        RayPredictor,
        fn_constructor_kwargs={
            "job": replace(job, bundle=str(Path(job.bundle).resolve())),
            "options": options,
            "text_column": "text" if job.fmt == "text" else job.text_column,
            "id_column": id_col,
        },
        batch_size=job.chunk_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=actor_cpus,
    )


def predict_file_ray(
    job: FileJob, options: LoadOptions, workers: int | None, progress: ProgressFn | None
) -> PredictFileResult:
    """``predict_file(..., engine="ray")``: the same rows as the local engine, computed by an actor pool."""
    require("ray", "ray")
    from bertdeploy.bundle import read_manifest

    if is_stream(job.input):
        raise UserError("--engine ray reads files; stdin and pipes are only supported by --engine local")
    # Validate the input (column, encoding of the start, emptiness) and the bundle before starting Ray.
    key_name = next(iter_chunks(job.input, job.fmt, job.text_column, job.id_column, chunk_size=1)).key_name
    labels = read_manifest(job.bundle).labels
    threads = options.threads or 1
    cpus = _start_ray()
    workers = workers or max(1, int(cpus // threads))
    if workers > cpus:  # each actor holds a session: more than the cluster's CPUs only queue or exhaust memory
        raise UserError(f"workers must be <= {int(cpus)} (the CPUs of the Ray cluster), got {workers}")
    # Logical CPUs per actor: its thread count, minus room for the read tasks (ORT's threads are set apart).
    actor_cpus = max(0.1, min(float(threads), (cpus - READ_CPUS) / workers))
    id_col = None if key_name == "row" and job.id_column != "row" else key_name  # None: number the rows
    result = PredictFileResult(job.input, job.output, "ray", "", [], skipped_unit="row", task=job.task)
    start = time.perf_counter()
    with _ray_data_settings():
        ds = _dataset(job, replace(options, threads=threads), id_col, workers, actor_cpus)
        with open_output(job.output) as f:
            writer = make_writer(f, job, key_name, labels)
            _write_batches(ds, job, writer, result, progress)
    result.seconds = time.perf_counter() - start
    result.providers = [f"{workers} Ray actor(s) x {threads} thread(s)"]
    return result


def _write_batches(ds: Any, job: FileJob, writer: Any, result: PredictFileResult, progress: Any) -> None:
    total = count_rows(job.input, job.fmt)
    row = 0
    for batch in ds.iter_batches(batch_size=job.chunk_size, batch_format="numpy"):
        ok = batch["ok"]
        n = len(ok)
        rows = np.arange(row + 1, row + n + 1)
        keys = batch[_KEY] if _KEY in batch else rows
        row += n
        for r in rows[~ok].tolist():
            result.skipped += 1
            if len(result.skipped_lines) < MAX_REPORTED:
                result.skipped_lines.append(r)
        result.truncated += int(batch["truncated"][batch["first"]].sum())
        if n and not result.variant:
            result.variant = str(batch["variant"][0])
        if ok.any():
            columns = {name: batch[name][ok] for name in ("label", "proba", "entities") if name in batch}
            writer.write_columns(np.asarray(keys)[ok].tolist(), columns)
            result.rows += int(ok.sum())
        if progress is not None:
            progress(row, total)
    if result.rows == 0:
        raise UserError(f"no non-empty text in {job.input} (all {result.skipped} records are empty)")
