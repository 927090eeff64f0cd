"""``predict_file(..., engine="ray")`` for questions: the records (read and checked on the driver, as the local
engine reads them) become a Ray dataset, an actor pool with the job's model(s) in each actor answers them
(:class:`~bertdeploy.runtime.qa_files.QAModels`, the local engine's code), and the driver writes the rows in order.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.errors import require
from bertdeploy.runtime.filejob import PredictFileResult, ProgressFn, open_output
from bertdeploy.runtime.options import LoadOptions
from bertdeploy.runtime.qa_files import QAJob, QAModels, Scores, write_rows
from bertdeploy.runtime.qa_records import QARecord


class QAActor:
    """Loads the job's model(s) once; answers batches of records (JSON strings) into rows (JSON strings)."""

    def __init__(self, job: QAJob, options: LoadOptions) -> None:
        self.models = QAModels(job, options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [_record(json.loads(text)) for text in batch["record"].tolist()]
        rows, windowed = self.models.rows(records)
        by_record: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_record.setdefault(row["row"], []).append(row)
        out = [json.dumps(by_record.get(r.row, []), ensure_ascii=False) for r in records]
        counts = np.zeros(len(records), dtype=np.int64)
        if len(records):
            counts[0] = windowed  # per batch: counted once
        return {
            "rows": np.array(out, dtype=object),
            "windowed": counts,
            "variant": np.full(len(records), self.models.variant),
        }


def _absolute(job: QAJob) -> QAJob:
    """The job with its bundle paths absolute (an actor may run in another working directory)."""
    from bertdeploy.runtime.two_stage import is_overlap

    then = None if job.then is None else str(Path(job.then).resolve())
    lexical = is_overlap(job.bundle, job.then)  # the selector without a model: a word, not a path
    return replace(job, bundle=job.bundle if lexical else str(Path(job.bundle).resolve()), then=then)


def _record(fields: dict[str, Any]) -> QARecord:
    for name in ("choices", "answers", "paragraph_ids"):
        if isinstance(fields.get(name), list):
            fields[name] = tuple(fields[name])
    return QARecord(**fields)


def predict_qa_ray(
    job: QAJob, records: list[QARecord], options: LoadOptions, workers: int | None, progress: ProgressFn | None
) -> PredictFileResult:
    """The same rows as :func:`~bertdeploy.runtime.qa_files.predict_qa_local`, computed by ``workers`` actors."""
    require("ray", "ray")
    import ray.data

    from bertdeploy.errors import UserError
    from bertdeploy.runtime.ray_engine import _ray_data_settings, _start_ray

    threads = options.threads or 1
    cpus = _start_ray()
    workers = workers or max(1, int(cpus // threads))
    if workers > cpus:
        raise UserError(f"workers must be <= {int(cpus)} (the CPUs of the Ray cluster), got {workers}")
    result = PredictFileResult(job.input, job.output, "ray", "", [], task=job.kind, skipped_unit="row")
    scores = Scores()
    start = time.perf_counter()
    items = [{"record": json.dumps(dataclasses.asdict(r), ensure_ascii=False)} for r in records]
    with _ray_data_settings():
        ds = ray.data.from_items(items).map_batches(
            QAActor,
            fn_constructor_kwargs={"job": _absolute(job), "options": replace(options, threads=threads)},
            batch_size=job.chunk_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=max(0.1, min(float(threads), cpus / workers)),
        )
        with open_output(job.output) as f:
            for batch in ds.iter_batches(batch_size=job.chunk_size, batch_format="numpy"):
                rows = [row for text in batch["rows"].tolist() for row in json.loads(text)]
                chunk = records[result.rows : result.rows + len(batch["rows"])]
                write_rows(f, job.ofmt, job.columns, rows, header=result.rows == 0)
                scores.add(chunk, rows, job.kind)
                result.rows += len(chunk)
                result.truncated += int(batch["windowed"].sum())
                result.variant = result.variant or str(batch["variant"][0])
                if progress is not None:
                    progress(result.rows, len(records))
    result.seconds = time.perf_counter() - start
    result.providers = [f"{workers} Ray actor(s) x {threads} thread(s)"]
    result.metrics = scores.metrics(job.kind)
    return result
