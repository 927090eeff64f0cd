"""``bertdeploy pretrain``: masked-language pretraining on a data set's own texts (before ``train --model``)."""

from __future__ import annotations

import click

from bertdeploy.cli import render
from bertdeploy.errors import require_extra

TASKS = ["text-classification", "token-classification", "question-answering", "multiple-choice"]


@click.command(name="pretrain")
@click.option("--model", help="A preset (random weights: bert-tiny … bert-base) or a folder / minilm-l6 to continue.")
@click.option("--data", help="Data folder or file of any task (its training texts), or a .txt file (a text a line).")
@click.option("--output", "-o", help="Folder to create (an HF model folder for train --model).")
@click.option("--task", type=click.Choice(TASKS), help="The data's task when its layout does not say.")
@click.option("--text-column")
@click.option("--tokenizer", help="Tokenizer of a preset (default: the MiniLM vocab).")
@click.option(
    "--vocab-from-data", is_flag=True, default=None, help="A WordPiece vocabulary from the texts (CJK: a character)."
)
@click.option("--vocab-size", type=int, help="Size of the --vocab-from-data vocabulary (default 8000).")
@click.option("--max-unk-rate", type=float, help="Refuse above this share of [UNK] tokens (default 0.05; 1 = off).")
@click.option("--epochs", type=float, help="Passes over the texts (default 20).")
@click.option("--batch-size", type=int, help="Blocks a step (default 32).")
@click.option("--lr", type=float, help="Peak learning rate (default 5e-4).")
@click.option("--warmup-ratio", type=float)
@click.option("--max-length", type=int, help="Tokens a block (default 256).")
@click.option("--mlm-probability", type=float, help="Share of the tokens masked (default 0.15).")
@click.option("--seed", type=int)
@click.option("--resume", is_flag=True, default=None, help="Continue from the last checkpoint of a killed run.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing output folder of bertdeploy's.")
@click.argument("overrides", nargs=-1)
def command(overrides: tuple[str, ...], **options) -> object:
    """Masked-language pretraining on a data set's own texts; fine-tune the result with train --model.

    \b
    bertdeploy pretrain --model bert-mini --vocab-from-data --data ../shared/datasets/drcd_select -o runs/drcd-mlm
    bertdeploy train --model runs/drcd-mlm --data ../shared/datasets/drcd_select --task question-answering ...
    bertdeploy pretrain --model minilm-l6 --data corpus.txt --epochs 3 --lr 5e-5 -o runs/minilm-domain
    """
    require_extra("train", "bertdeploy pretrain")
    from bertdeploy.training.pretrain import PretrainConfig, pretrain

    config = PretrainConfig.load(None, options, overrides)
    render.console.print(f"[bold]pretrain[/] {config.model} on {config.data} → {config.output}")
    result = pretrain(config, on_epoch=render.epoch_row)
    final = result.final
    held = f"held-out loss {final['loss']:.4f} · perplexity {final['perplexity']:.2f} · " if final else ""
    s = result.speed
    render.console.print(
        f"{held}{result.texts['train_blocks']} blocks of {config.max_length} tokens · "
        f"train {s['train_wall_time_s']:.1f} s · wrote {result.output}"
    )
    return result
