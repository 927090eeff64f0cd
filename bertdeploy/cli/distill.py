"""``bertdeploy distill``: train a small student on a teacher's soft labels (or every cell of a distill recipe)."""

from __future__ import annotations

import click

from bertdeploy.cli.train import common_options, run_command
from bertdeploy.errors import require_extra


@click.command(name="distill")
@click.option(
    "--teacher",
    help="Teacher: a bundle (scored with the ONNX runtime) or a run folder (PyTorch); A,B,C: an ensemble.",
)
@click.option("--student", "model", help="Student: a preset (bert-mini, bert-tiny …), a folder, or minilm-l6.")
@click.option(
    "--student-layers", type=int, help="Keep only the student's first N encoder layers (with --student-init: N cut)."
)
@click.option("--student-embeddings", help="Initialise the student's embeddings from this model's (e.g. minilm-l6).")
@click.option(
    "--student-init", help="Start the student from this BERT (run folder, folder, minilm-l6), pruned to size."
)
@click.option("--temperature", type=float, help="Softmax temperature of the soft targets (default 2).")
@click.option("--alpha", type=float, help="Weight of the soft (KL) loss; 1 - alpha weighs the hard labels (0.5).")
@click.option("--augment", type=int, help="Perturbed copies of each training text for the teacher to label (0 = none).")
@click.option(
    "--unlabelled",
    type=click.Path(dir_okay=False),
    help="Extra raw texts for the teacher to label (token data: split into words at spaces and CJK characters).",
)
@click.option("--hidden-loss", type=float, help="Weight of a TinyBERT-style hidden-state loss (needs a torch teacher).")
@click.option("--hidden-teacher", help="Run folder of the PyTorch teacher for --hidden-loss (default: --teacher).")
@click.option("--teacher-variant", help="Bundle variant that scores the texts (default fp32).")
@common_options
def command(recipe: str | None, offline: bool, overrides: tuple[str, ...], **options) -> object:
    """Distil a teacher into a small student: KL on temperature-scaled logits + hard-label cross entropy.

    \b
    bertdeploy distill --teacher models/minilm-emotion --student bert-mini --data ../shared/datasets/emotion \\
        --epochs 10 --output runs/bert-mini-distilled
    bertdeploy distill --teacher runs/minilm-emotion --student minilm-l6 --student-layers 3 --data ... -o runs/l3
    bertdeploy distill --teacher models/minilm-emotion --student bert-mini --student-init runs/minilm-emotion ...
    bertdeploy distill --teacher models/minilm-emotion --student bert-mini --augment 8 ...
    bertdeploy distill --teacher models/minilm-emotion --hidden-teacher runs/minilm-emotion --hidden-loss 1 ...
    bertdeploy distill --teacher models/snips-slots --student bert-mini --student-init runs/snips-slots \\
        --data ../shared/datasets/snips_slots -o runs/slots-mini   # token classification: per-token soft labels
    bertdeploy distill --teacher runs/slots-a,runs/slots-b,runs/slots-c --student minilm-l6 \\
        --student-init runs/slots-b --data ../shared/datasets/snips_slots -o runs/slots-ens  # an ensemble teacher
    bertdeploy distill --recipe recipes/distill_emotion.yaml
    """
    require_extra("train", "bertdeploy distill")
    from bertdeploy.training import distill

    return run_command("distill", distill, recipe, offline, overrides, options)
