"""``predict_file``: predict every record of a csv / tsv / jsonl / parquet / text file into jsonl / csv / tsv: a
label and its score per record for a text-classification bundle, the record's entities for a token-classification
one.

Streams in chunks (memory stays flat on any input size), skips empty texts and reports them by line, and
writes the output to a temporary sibling that is renamed into place only when everything succeeded. The local
engine is here; ``engine="ray"`` hands the same job to :mod:`bertdeploy.runtime.ray_engine`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from bertdeploy import tasks
from bertdeploy.bundle import read_manifest
from bertdeploy.errors import UserError
from bertdeploy.machine import usable_cpus
from bertdeploy.runtime.entities import check_aggregation, check_decoding, check_ignore
from bertdeploy.runtime.filejob import (
    ENGINES,
    TOKENS,
    FileJob,
    PredictFileResult,
    ProgressFn,
    check_paths,
    make_writer,
    open_output,
    predict_rows,
    split_empty,
)
from bertdeploy.runtime.options import LoadOptions
from bertdeploy.runtime.qa_files import MC, QA, QUESTION_TASKS, SELECT, QAJob, QuestionOptions, predict_qa_local
from bertdeploy.runtime.qa_records import input_format as qa_input_format
from bertdeploy.runtime.qa_records import read_records
from bertdeploy.runtime.readers import check_input, count_rows, detect_format, iter_chunks
from bertdeploy.runtime.writers import resolve_output_format


def predict_file(
    bundle: str | os.PathLike[str],
    input: str,
    output: str,
    *,
    options: LoadOptions | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
    probabilities: bool = False,
    aggregation: str | None = None,
    ignore_labels: Sequence[str] | None = None,
    decoding: str | None = None,
    engine: str = "local",
    chunk_size: int = 4096,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    then: str | os.PathLike[str] | None = None,
    questions: QuestionOptions | None = None,
    **load_options: Any,
) -> PredictFileResult:
    """Predict every record of ``input`` ("-": stdin) and write ``output`` ("-": stdout).

    ``options`` says how the bundle is loaded (variant, device, threads, batching); its fields may instead be
    given as keywords (``variant="fp32", threads=1``). Output rows carry the input's id column (``id_column``,
    or a column named "id" when present) or the 1-based record number ("row"), then

    * text classification: the label, its score and with ``probabilities`` one column per label;
    * token classification: ``entities`` (``Tagger.predict``'s dicts; in csv / tsv a JSON string column), with
      ``aggregation`` (``simple``), ``ignore_labels`` (``["O"]``; ``[]`` keeps all) and ``decoding`` (``bio``) as
      ``Tagger.predict`` takes them; a jsonl / parquet record may hold pre-split words, joined with single spaces.
    * question answering / multiple choice, and the two-stage reader (a selection ``bundle`` ``then`` a QA
      bundle): see :mod:`bertdeploy.runtime.qa_files` (``questions``: ``top_k``, ``doc_stride``, ...).

    ``engine="ray"`` runs the same on Ray Data with ``workers`` actors (one session each).
    """
    _check_args(bundle, input, output, engine, chunk_size, workers, text_column, id_column)
    input, output = str(input), str(output)
    options = _options(options, load_options)
    options = file_job_options(options) if engine == "local" else options
    task = _task_of(bundle, then)
    if then is not None or task in QUESTION_TASKS:
        given = {"probabilities": probabilities, "aggregation": aggregation, "ignore_labels": ignore_labels,
                 "decoding": decoding, "text_column": text_column != "text"}  # fmt: skip
        job = (bundle, input, output, then, input_format, output_format, id_column, chunk_size)
        return _questions(task, given, job, questions, options, engine, workers, progress)
    if questions is not None:
        raise UserError(f"question options apply to question-answering / multiple-choice bundles, not {task}")
    formats = detect_format(input, input_format), resolve_output_format(output, output_format)
    check_paths(input, output, str(bundle))
    check_input(input)
    head = _head_options(bundle, probabilities, aggregation, ignore_labels, decoding)
    job = FileJob(str(bundle), input, output, *formats, text_column, id_column, probabilities, chunk_size, **head)
    if engine == "ray":
        from bertdeploy.runtime.ray_engine import predict_file_ray

        return predict_file_ray(job, options, workers, progress)
    return _predict_local(job, options, progress)


def _task_of(bundle: Any, then: Any) -> str:
    """The task of ``bundle`` (``overlap`` before ``then``: the lexical selector, a multiple-choice stage)."""
    from bertdeploy.runtime.two_stage import OVERLAP, is_overlap

    if is_overlap(bundle, then):
        return MC
    if str(bundle) == OVERLAP and not os.path.exists(bundle):
        raise UserError("overlap is a selection stage without a model: name the QA bundle that answers after it "
                            "(--then QA_BUNDLE)")  # fmt: skip
    return tasks.get(read_manifest(bundle).task, stage="predict").name


def _check_args(
    bundle: Any, input: Any, output: Any, engine: Any, chunk_size: Any, workers: Any, *columns: Any
) -> None:
    for name, value in (("bundle", bundle), ("input", input), ("output", output)):
        if not isinstance(value, (str, os.PathLike)) or str(value) == "":
            raise UserError(f"{name} must be a path (input / output: or '-'), got {value!r}")
    if engine not in ENGINES:
        raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise UserError(f"chunk_size must be >= 1, got {chunk_size!r}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise UserError(f"workers must be >= 1, got {workers!r}")
    for name, value in zip(("text_column", "id_column"), columns):
        if value is not None and not isinstance(value, str):
            raise UserError(f"{name} must be a column name, got {value!r}")


def _questions(
    task: str,
    given: dict[str, Any],
    job: tuple,
    questions: QuestionOptions | None,
    options: LoadOptions,
    engine: str,
    workers: int | None,
    progress: ProgressFn | None,
) -> PredictFileResult:
    """A QA / MC bundle or the two-stage reader: the text options refused, then :func:`predict_questions`."""
    wrong = [name for name, value in given.items() if value not in (None, False)]
    if wrong:
        raise UserError(f"{', '.join(wrong)} do not apply to {task} bundles (questions are read by field name)")
    check_paths(job[1], job[2], str(job[0]))
    return predict_questions(*job, questions or QuestionOptions(), options, engine, workers, progress)


def _head_options(
    bundle: str | os.PathLike[str], probabilities: bool, aggregation: Any, ignore_labels: Any, decoding: Any = None
) -> dict[str, Any]:
    """The task of ``bundle`` and its output options, checked: each option belongs to one task."""
    task = tasks.get(read_manifest(bundle).task, stage="predict").name
    if task != TOKENS:
        for name, value in (("aggregation", aggregation), ("ignore_labels", ignore_labels), ("decoding", decoding)):
            if value is not None:
                raise UserError(f"{name} applies to token-classification bundles; {bundle} is {task}")
        return {"task": task}
    if probabilities:
        raise UserError(f"probabilities apply to text-classification bundles; {bundle} is {task} (rows hold entities)")
    ignore = check_ignore(["O"] if ignore_labels is None else ignore_labels)
    return {"task": task, "aggregation": check_aggregation(aggregation or "simple"), "ignore_labels": tuple(ignore),
            "decoding": check_decoding(decoding or "bio")}  # fmt: skip


def _options(options: LoadOptions | None, given: dict[str, Any]) -> LoadOptions:
    """``options``, or the load keywords ``given`` as one (not both)."""
    if options is not None and given:
        raise UserError(f"pass either options= or load keywords, not both ({', '.join(given)})")
    if options is not None:
        return options
    known = set(LoadOptions.__dataclass_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise UserError(f"unknown predict_file option(s) {', '.join(unknown)}; load options: {', '.join(known)}")
    return LoadOptions(**given)


def file_job_options(options: LoadOptions) -> LoadOptions:
    """A local file job's load options: ``streams`` left out means one stream per thread on the CPU. A file is
    throughput only, and more streams were ahead of one on whole files on every CPU kind measured: single-threaded
    sessions on ONNX Runtime's CPU EP, OpenVINO's own streams on its EP (bert-tiny +15 %, MiniLM-L6 +5 % on an
    Intel Xeon with AMX; benchmarks/runtime/README.md); a GPU keeps one stream."""
    from dataclasses import replace

    from bertdeploy.runtime.session import parse_device, resolve_device

    if options.streams is not None or resolve_device(parse_device(options.device)[0]) != "cpu":
        return options
    return replace(options, streams=options.threads or usable_cpus())


def _predict_local(job: FileJob, options: LoadOptions, progress: ProgressFn | None) -> PredictFileResult:
    from bertdeploy.runtime.loader import load_with

    clf = load_with(job.bundle, options)
    result = PredictFileResult(job.input, job.output, "local", clf.variant.name, clf.providers, task=job.task)
    if job.fmt == "parquet":
        result.skipped_unit = "row"
    total = count_rows(job.input, job.fmt)
    start = time.perf_counter()
    done = 0
    with open_output(job.output) as f:
        writer = None
        for chunk in iter_chunks(job.input, job.fmt, job.text_column, job.id_column, job.chunk_size):
            if writer is None:
                writer = make_writer(f, job, chunk.key_name, clf.labels)
            texts, keys = split_empty(chunk, result, job.words)
            if texts:
                columns, truncated = predict_rows(clf, texts, job)
                writer.write_columns(keys, columns)
                result.truncated += truncated
                result.rows += len(texts)
            done += len(chunk.texts)
            if progress is not None:
                progress(done, total)
        if result.rows == 0:
            raise UserError(f"no non-empty text in {job.input} (all {result.skipped} records are empty)")
    result.seconds = time.perf_counter() - start
    return result


def predict_questions(
    bundle: Any,
    input: str,
    output: str,
    then: Any,
    input_format: str | None,
    output_format: str | None,
    id_column: str | None,
    chunk_size: int,
    questions: QuestionOptions,
    options: LoadOptions,
    engine: str,
    workers: int | None,
    progress: ProgressFn | None,
) -> PredictFileResult:
    """``predict_file`` of a QA / MC bundle (``then``: a QA bundle after a selection bundle): check, read every
    record, then predict with the local engine or Ray."""
    task = _task_of(bundle, then)
    if then is not None:
        if task != MC:
            raise UserError(f"--then reads the answer after a multiple-choice selection bundle; {bundle} is {task}")
        second = tasks.get(read_manifest(then).task, stage="predict").name
        if second != QA:
            raise UserError(f"--then needs a question-answering bundle; {then} is {second}")
    if not isinstance(questions, QuestionOptions):
        raise UserError(f"questions must be a QuestionOptions, got {type(questions).__name__}")
    kind = SELECT if then is not None else task
    fmt, ofmt = qa_input_format(input, input_format), resolve_output_format(output, output_format)
    job = QAJob(str(bundle), input, output, fmt, ofmt, kind, None if then is None else str(then), id_column,
                min(chunk_size, 1024), questions)  # fmt: skip
    records = read_records(input, fmt, kind, id_column)
    if engine == "ray":
        from bertdeploy.runtime.qa_ray import predict_qa_ray

        return predict_qa_ray(job, records, options, workers, progress)
    return predict_qa_local(job, records, options, progress)
