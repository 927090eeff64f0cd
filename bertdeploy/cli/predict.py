"""`bertdeploy predict BUNDLE --input FILE --output FILE`: parse, call
:func:`bertdeploy.runtime.files.predict_file`, show a progress bar and a summary."""

from __future__ import annotations

from typing import Any

import click

from bertdeploy.cli.options import provider_option
from bertdeploy.errors import require_extra

#: bertdeploy.runtime.entities.AGGREGATIONS (not imported here: the CLI starts without numpy)
AGGREGATIONS = ("none", "simple", "first", "average", "max")
_AGGREGATION_HELP = "Token classification: how tokens become entities (the pipeline's strategies). [default: simple]"
_DECODING_HELP = (
    "Token classification: bio = the most probable tag sequence where I-X only follows B-X / I-X, with the"
    " training tags' transition scores the bundle carries; argmax = each token's own best tag (the pipeline's)."
    " [default: bio]"
)
_IGNORE_HELP = "Token classification: comma-separated entity groups left out ('' keeps all). [default: O]"
_THEN_HELP = (
    "Two-stage reader: BUNDLE (multiple choice, or the word overlap: no model, the paragraph holding most of the"
    " question's character bigrams) selects the paragraph, this QA bundle finds the answer in it."
)
_METRICS = {"selection_accuracy": "selection accuracy", "accuracy": "choice accuracy", "exact_match": "exact match",
            "f1": "F1"}  # fmt: skip


def render(result, console) -> None:  # noqa: ANN001 - PredictFileResult, rich Console (imported lazily)
    from rich.table import Table

    table = Table(title=f"predictions -> {result.output}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("input", result.input)
    table.add_row("variant", result.variant)
    table.add_row("engine", f"{result.engine}: {', '.join(result.providers)}")
    table.add_row("rows predicted", f"{result.rows:,}")
    questions = result.task in ("question-answering", "multiple-choice", "two-stage")
    if not questions:  # a question with an empty field is an error, never skipped
        table.add_row("empty rows skipped", f"{result.skipped:,}")
    windowed = result.task in ("token-classification", "question-answering")  # windows, not cut
    if result.task not in ("multiple-choice", "two-stage"):
        table.add_row("texts windowed" if windowed else "texts truncated", f"{result.truncated:,}")
    unit = "texts" if result.task in ("text-classification", "token-classification") else "questions"
    table.add_row("time", f"{result.seconds:.2f} s ({result.texts_per_second:,.0f} {unit}/s)")
    for key, name in _METRICS.items():
        if key in result.metrics:
            counted = result.metrics.get("labelled" if "accuracy" in key else "answered")
            table.add_row(name, f"{result.metrics[key]:.4f} ({counted:,} questions)")
    console.print(table)
    if result.skipped:
        shown = ", ".join(map(str, result.skipped_lines[:20]))
        more = " ..." if result.skipped > 20 else ""
        console.print(f"[yellow]skipped empty text at {result.skipped_unit}(s): {shown}{more}[/]")


def _questions(options: dict[str, Any]) -> Any:
    """The QA options given on the command line (taken out of ``options``) as a ``QuestionOptions``, or None."""
    from bertdeploy.runtime.qa_files import QuestionOptions

    names = ("top_k", "max_answer_len", "doc_stride", "handle_impossible_answer")
    given = {name: value for name in names if (value := options.pop(name)) not in (None, False)}
    return QuestionOptions(**given) if given else None


@click.command(name="predict")
@click.argument("bundle", type=click.Path())
@click.option("--input", "-i", "input_", required=True, help="csv / tsv / jsonl / parquet / text file, or - (stdin).")
@click.option("--output", "-o", required=True, help="Predictions file: .jsonl, .csv or .tsv (- for stdout jsonl).")
@click.option("--text-column", default="text", show_default=True, help="Column holding the text.")
@click.option("--id-column", default=None, help="Column copied to the output as the row id (default: 'id' if present).")
@click.option(
    "--input-format",
    type=click.Choice(["csv", "tsv", "jsonl", "json", "parquet", "text"]),
    default=None,
    help="Default: from the file suffix (stdin: text). json: SQuAD JSON or the paragraph-id layout (questions).",
)
@click.option("--then", "then", type=click.Path(), default=None, help=_THEN_HELP)
@click.option("--top-k", type=int, default=None, help="Question answering: answers per question (rows). [default: 1]")
@click.option(
    "--max-answer-len", type=int, default=None, help="Question answering: longest answer, in tokens. [the bundle's; 15]"
)
@click.option("--doc-stride", type=int, default=None, help="Question answering: tokens shared by consecutive windows.")
@click.option("--handle-impossible-answer", is_flag=True, help="Question answering: the empty answer competes.")
@click.option("--variant", default="auto", show_default=True, help="Bundle variant (auto: int8 on CPU, fp16 on CUDA).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | tensorrt.")
@click.option("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores).")
@click.option(
    "--streams",
    type=int,
    default=None,
    help="Model calls run side by side, each on threads/streams cores (default on the CPU: one per thread).",
)
@click.option("--batch-size", type=int, default=64, show_default=True, help="Max rows per model call.")
@click.option(
    "--max-tokens", type=int, default=None, help="Token budget per call (rows x length; 1024 on the CPU EP, else 8192)."
)
@click.option(
    "--padding",
    type=click.Choice(["bucketed", "dynamic", "static"]),
    default="bucketed",
    show_default=True,
    help="bucketed: sort by length; dynamic: input order; static: pad to max_length.",
)
@click.option("--probabilities", is_flag=True, help="Also write the probability of every label (text classification).")
@click.option("--aggregation", type=click.Choice(AGGREGATIONS), help=_AGGREGATION_HELP)
@click.option("--ignore-labels", help=_IGNORE_HELP)
@click.option("--decoding", type=click.Choice(["bio", "argmax"]), help=_DECODING_HELP)
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--workers", type=int, default=None, help="Ray actors (default: CPUs / threads).")
@click.option("--chunk-size", type=int, default=4096, show_default=True, help="Records read and sorted together.")
@click.option("--allow-fallback", is_flag=True, help="Run on the CPU (with a warning) if the GPU does not attach.")
@provider_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def command(
    bundle: str,
    input_: str,
    output: str,
    text_column: str,
    id_column: str | None,
    input_format: str | None,
    probabilities: bool,
    aggregation: str | None,
    ignore_labels: str | None,
    decoding: str | None,
    engine: str,
    workers: int | None,
    chunk_size: int,
    quiet: bool,
    **load_options: Any,
) -> object:
    """Predict every record of --input with BUNDLE into one row per record of --output: a label and score, entities,
    an answer span (QA) or a choice (multiple choice), by the bundle's task. --then QA_BUNDLE: BUNDLE selects each
    question's paragraph, the QA bundle answers from it."""
    require_extra("cpu", "bertdeploy predict")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bertdeploy.runtime import LoadOptions, predict_file

    then, questions = load_options.pop("then"), _questions(load_options)
    options = LoadOptions(**load_options)  # the CLI's load options are named like its fields
    console = Console(stderr=True)
    bar = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, disable=quiet or not console.is_terminal, transient=True)  # fmt: skip
    with bar:
        task = bar.add_task("predict", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=max(total, done) if total is not None else None)

        result = predict_file(
            bundle,
            input_,
            output,
            options=options,
            text_column=text_column,
            id_column=id_column,
            input_format=input_format,
            probabilities=probabilities,
            aggregation=aggregation,
            ignore_labels=None if ignore_labels is None else [x.strip() for x in ignore_labels.split(",") if x.strip()],
            decoding=decoding,
            engine=engine,
            workers=workers,
            chunk_size=chunk_size,
            progress=progress,
            then=then,
            questions=questions,
        )
    if not quiet:
        render(result, console if output == "-" else Console())
    return result
