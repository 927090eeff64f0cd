"""``bertdeploy package triton|wheel BUNDLE ...``: parse, call :func:`bertdeploy.package.triton_repository` or
:func:`bertdeploy.package.wheel.build_wheel`, print what was written."""

from __future__ import annotations

import click

from bertdeploy.cli import render
from bertdeploy.cli.predict import AGGREGATIONS


def _say(text: str) -> None:
    render.console.print(text, markup=False, highlight=False, soft_wrap=True)  # "bertdeploy[cpu]" is no markup


@click.group(name="package")
def command() -> None:
    """Package a bundle for another home: a Triton model repository or a pip-installable wheel."""


@command.command(name="triton")
@click.argument("bundle", type=click.Path())
@click.option("--output", "-o", required=True, help="Model repository folder (created or added to).")
@click.option(
    "--variant",
    default="auto",
    show_default=True,
    help="Bundle variant (auto: fp32 with --tensorrt-fp16, else what load() picks: fp16 on gpu, int8 on cpu).",
)
@click.option("--name", default=None, help="Model name (default: the bundle folder's name).")
@click.option("--max-batch-size", type=int, default=32, show_default=True)
@click.option("--instances", type=int, default=1, show_default=True, help="Instances of each model.")
@click.option("--kind", type=click.Choice(["gpu", "cpu"]), default="gpu", show_default=True)
@click.option("--tensorrt-fp16", is_flag=True, help="ONNX Runtime's TensorRT accelerator at FP16 (GPU).")
@click.option(
    "--pad-to-multiple", type=int, default=8, show_default=True, help="Tokenizer pads each request to a multiple."
)
@click.option("--aggregation", type=click.Choice(AGGREGATIONS), help="Token classification: the entities step's.")
@click.option("--ignore-labels", help="Token classification: comma-separated groups left out ('' keeps all).")
@click.option("--overwrite", is_flag=True, help="Replace our models if they exist (others are kept).")
def triton(bundle: str, output: str, ignore_labels: str | None, **options: object) -> object:
    """Write a Triton model repository: NAME (onnxruntime), NAME_tokenizer (python), NAME_ensemble (and, for a
    token-classification bundle, NAME_entities (python)); for question answering / multiple choice NAME and the answers
    step NAME_reader / NAME_chooser (python: strings in, answers out)."""
    from bertdeploy.package import triton_repository

    ignore = None if ignore_labels is None else [x.strip() for x in ignore_labels.split(",") if x.strip()]
    result = triton_repository(bundle, output, ignore_labels=ignore, **options)  # type: ignore[arg-type]
    name, tokenizer, ensemble = result.models
    inputs = ", ".join(f"{s.name} {s.data_type}" for s in result.inputs)
    _say(f"wrote {result.repository} (variant {result.variant}, kind {result.kind}, {result.task})")
    out = result.output
    outs = ", ".join(f"{o.name} {o.data_type} {list(o.dims)}" for o in result.outputs or [out])
    _say(f"  {name}: {inputs} -> {outs}")
    if result.answers:
        reader = result.answers.endswith("_reader")
        fields = "CONTEXT -> ANSWER, SCORE, START, END" if reader else "CHOICES -> LABEL, SCORE"
        _say(f"  {result.answers}: QUESTION, {fields} (python; its model calls go to {name})")
    if result.limitation:
        _say(f"  note: {result.limitation}")
    elif result.entities is None:
        _say(f"  {tokenizer}: TEXT TYPE_STRING -> token ids")
        _say(f"  {ensemble}: TEXT -> {tokenizer} -> {name} -> {result.output.name}")
    else:
        _say(f"  {tokenizer}: TEXT TYPE_STRING -> token ids, OFFSETS, WORD_IDS")
        _say(f"  {result.entities}: TEXT, {out.name}, OFFSETS, WORD_IDS -> ENTITIES (JSON per text)")
        _say(f"  {ensemble}: TEXT -> {tokenizer} -> {name} -> {result.entities} -> ENTITIES")
    if result.replaced:
        _say(f"  replaced: {', '.join(result.replaced)}")
    return result


@command.command(name="wheel")
@click.argument("bundle", type=click.Path())
@click.option("--name", required=True, help="Distribution name, e.g. emotion-classifier (import emotion_classifier).")
@click.option("--version", "version", default="1.0.0", show_default=True, help="PEP 440 version of the wheel.")
@click.option("--output", "-o", required=True, help="Folder the wheel is written to.")
@click.option("--variants", default=None, help="Comma-separated variants to package (default: all in the bundle).")
@click.option("--gpu", is_flag=True, help="Depend on bertdeploy[gpu] instead of bertdeploy[cpu].")
@click.option("--overwrite", is_flag=True, help="Replace a wheel of the same name and version.")
def wheel(
    bundle: str, name: str, version: str, output: str, variants: str | None, gpu: bool, overwrite: bool
) -> object:
    """Build a py3-none-any wheel holding BUNDLE: `import NAME; NAME.load().predict([...])`."""
    from bertdeploy.package.wheel import build_wheel

    chosen = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    result = build_wheel(bundle, name, output, version=version, variants=chosen, gpu=gpu, overwrite=overwrite)
    _say(f"wrote {result.path} ({result.bytes / 1e6:.2f} MB)")
    _say(f"  variants: {', '.join(result.variants)} · requires: {', '.join(result.requires)}")
    pkg = result.package
    _say(f"  pip install {result.path.name} && python -c 'import {pkg}; print({pkg}.load().predict([\"hello\"]))'")
    return result
