"""``bertdeploy train``: fine-tune a classifier (or run every cell of a recipe grid)."""

from __future__ import annotations

import click

from bertdeploy.cli import render
from bertdeploy.errors import require_extra

SCHEDULERS = ["linear", "cosine", "constant", "constant_with_warmup", "polynomial"]

#: the options ``train`` and ``distill`` share (each a TrainConfig field; None = not given)
COMMON_OPTIONS = [
    click.option("--data", help="Folder of train/validation/test files, one file, or a Hub dataset id."),
    click.option("--output", "-o", help="Run folder to create."),
    click.option("--text-column"),
    click.option("--label-column"),
    click.option("--tokenizer", help="Tokenizer for presets (default: the MiniLM vocab; distill: --student-init's)."),
    click.option("--epochs", type=float),
    click.option("--batch-size", type=int),
    click.option("--lr", type=float),
    click.option("--weight-decay", type=float),
    click.option("--warmup-ratio", type=float),
    click.option("--label-smoothing", type=float, help="Label smoothing of the hard-label cross entropy."),
    click.option("--scheduler", type=click.Choice(SCHEDULERS)),
    click.option("--max-length", type=int),
    click.option("--padding", type=click.Choice(["static", "dynamic"])),
    click.option("--group-by-length", is_flag=True, default=None, help="Batch rows of similar length together."),
    click.option("--freeze", type=click.Choice(["none", "embeddings", "encoder"])),
    click.option("--train-size", type=int, help="Stratified, seeded subset of the training split."),
    click.option("--seed", type=int),
    click.option("--from-scratch", is_flag=True, default=None, help="Random init from the model's config."),
    click.option(
        "--vocab-from-data",
        is_flag=True,
        default=None,
        help="From scratch: a WordPiece vocabulary built from the training texts (each CJK character a token).",
    ),
    click.option("--vocab-size", type=int, help="Size of the --vocab-from-data vocabulary (default 8000)."),
    click.option(
        "--max-unk-rate", type=float, help="Refuse above this share of [UNK] training tokens (default 0.05; 1 = off)."
    ),
    click.option(
        "--task",
        type=click.Choice(["text-classification", "token-classification", "question-answering", "multiple-choice"]),
        help="The task (default: from the data's layout: token JSONL / CoNLL files are token classification).",
    ),
    click.option("--doc-stride", type=int, help="Question answering: tokens shared by consecutive windows (128)."),
    click.option(
        "--question-match",
        is_flag=True,
        default=None,
        help="Question answering: context tokens that occur in the question get token type 2 (for readers from "
        "scratch; the bundle records it and the runtime marks them too).",
    ),
    click.option(
        "--label-all-tokens",
        is_flag=True,
        default=None,
        help="Token classification: label every sub-token of a word, not its first only.",
    ),
    click.option(
        "--metric",
        help="Metric that picks the best checkpoint (default f1_macro; token classification: entity f1).",
    ),
    click.option("--early-stopping", type=int, help="Stop after N epochs without improvement."),
    click.option(
        "--unseen-labels",
        type=click.Choice(["error", "keep", "drop"]),
        help="Validation/test labels never seen in training: error (default), keep (they count as errors), drop.",
    ),
    click.option("--resume", is_flag=True, default=None, help="Continue from the last checkpoint of a killed run."),
    click.option("--overwrite", is_flag=True, default=None, help="Replace an existing run folder."),
    click.option("--recipe", type=click.Path(dir_okay=False), help="YAML recipe (may hold a grid)."),
    click.option("--offline", is_flag=True, help="Apply the recipe's offline overrides (packaged model, local data)."),
    click.argument("overrides", nargs=-1),
]


def common_options(command):
    """Decorate ``command`` with :data:`COMMON_OPTIONS`."""
    for option in reversed(COMMON_OPTIONS):
        command = option(command)
    return command


@click.command(name="train")
@click.option("--model", help="HF folder, Hub id, 'minilm-l6', or a preset (bert-tiny … bert-base, distilbert-base).")
@common_options
def command(recipe: str | None, offline: bool, overrides: tuple[str, ...], **options) -> object:
    """Fine-tune a BERT-family classifier, token classifier, reader (QA) or chooser (multiple choice).

    \b
    bertdeploy train --model minilm-l6 --data ../shared/datasets/emotion --output runs/emotion
    bertdeploy train --model minilm-l6 --data ../shared/datasets/snips_slots --output runs/snips-slots
    bertdeploy train --model bert-mini --vocab-from-data --data ../shared/datasets/weibo_ner --output runs/weibo
    bertdeploy train --recipe recipes/emotion_padding.yaml --offline epochs=1 train_size=2000
    """
    require_extra("train", "bertdeploy train")
    from bertdeploy.training import train

    return run_command("train", train, recipe, offline, overrides, options)


def run_command(kind: str, fn, recipe: str | None, offline: bool, overrides: tuple[str, ...], options) -> object:
    """One run (``fn`` = train or distill) or every cell of a ``kind`` recipe, rendered."""
    from bertdeploy.training import COMMANDS, Recipe, load_recipe, run_recipe

    config_class = COMMANDS[kind]
    given = {k: v for k, v in options.items() if v is not None}
    given.update(config_class.parse_overrides(overrides))
    if recipe:
        rec = load_recipe(recipe, command=kind)
    else:
        rec = Recipe(name=kind, base={}, command=kind)
        config_class.from_dict(given)  # validate before loading anything
    cells = rec.cells(given, offline=offline)
    if len(cells) == 1:
        _, cfg = cells[0]
        teacher = f" (teacher {cfg.teacher})" if kind == "distill" else ""
        render.console.print(f"[bold]{kind}[/] {cfg.model}{teacher} on {cfg.data} → {cfg.output}")
        result = fn(cfg, on_epoch=render.epoch_row)
        render.final_metrics(result.final, result.labels, result.eval_split)
        if kind == "distill":
            render.console.print(_teacher_line(result.teacher))
        s = result.speed
        render.console.print(
            f"train {s['train_wall_time_s']:.1f} s · {s['train_samples_per_second']:.1f} samples/s · "
            f"wrote {result.output}"
        )
        return result
    rows = run_recipe(cells, on_epoch=render.epoch_row, on_cell=lambda name: render.console.rule(name), runner=fn)
    render.comparison(rows, _GRID_COLUMNS, f"recipe {rec.name}: {len(rows)} runs")
    return rows


def _teacher_line(t: dict) -> str:
    """How the teacher scored on the eval split (entity scores for a token classifier)."""
    e = t["eval"]
    if t.get("task") == "token-classification":
        scores = f"entity F1 {e['f1']:.4f} · precision {e['precision']:.4f} · recall {e['recall']:.4f}"
        return f"teacher on {t['eval_split']}: {scores} · {t['scored_texts']} sentences scored ({t['cache']})"
    scores = f"accuracy {e['accuracy']:.4f} · F1 macro {e['f1_macro']:.4f}"
    return f"teacher on {t['eval_split']}: {scores} · {t['scored_texts']} texts scored ({t['cache']})"


_GRID_COLUMNS = [
    ("cell", "run"),
    ("accuracy", "accuracy"),
    ("f1_macro", "F1 macro"),
    ("f1_micro", "F1 micro"),
    ("eval_runtime_s", "eval s"),
    ("eval_samples_per_second", "eval samples/s"),
    ("train_samples_per_second", "train samples/s"),
    ("train_wall_time_s", "train s"),
    ("status", "status"),
]
