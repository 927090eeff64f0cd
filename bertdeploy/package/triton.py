"""``bertdeploy package triton``: one bundle variant as a Triton Inference Server model repository.

Layout (``N`` = the model name)::

    REPO/N/config.pbtxt              onnxruntime backend: the graph's inputs (dims [-1]), logits [num_labels],
    REPO/N/labels.txt                max_batch_size, dynamic batching, instance group, optional TensorRT FP16
    REPO/N/1/model.onnx              the variant's file, checked against the manifest's sha256 first
    REPO/N_tokenizer/config.pbtxt    python backend: TEXT (strings) -> the graph's inputs
    REPO/N_tokenizer/1/model.py      bertdeploy/package/triton_tokenizer.py as it is
    REPO/N_tokenizer/1/tokenizer.json, tokenizer_settings.json
    REPO/N_ensemble/config.pbtxt     TEXT -> N_tokenizer -> N -> logits: clients send raw strings
    REPO/N_ensemble/1/               (empty: Triton wants a version folder for an ensemble too)

The output dims come from the task table (:mod:`bertdeploy.tasks`): ``[num_labels]`` for text classification,
``[-1, num_labels]`` (per token) for token classification, whose repository also has ``N_entities`` (Python
backend: the runtime's entity aggregation) and whose ensemble answers ``ENTITIES`` (JSON per text) instead of the
logits: :mod:`bertdeploy.package.triton_tokens`. A question-answering or multiple-choice repository is the model
(two outputs ``[-1]`` for QA, a choices axis for MC) and the answers step ``N_reader`` / ``N_chooser`` (Python
backend: strings in, the runtime's answers out, the model called through BLS) instead of the tokenizer and ensemble:
:mod:`bertdeploy.package.triton_qa`.

Only these model folders are ours: other models in ``REPO`` are left alone, and ours are replaced only with
``overwrite=True``. Everything is built in a temporary sibling of ``REPO`` and renamed into place, one whole model
folder at a time (the whole repository at once when ``REPO`` did not exist), by the outputs module's one mechanism
(:func:`bertdeploy.outputs.install_dir`): after a kill -9 the next run sweeps the temporary sibling and puts back a
model folder that was parked for replacement.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy import bundle as _bundle
from bertdeploy import tasks, variants
from bertdeploy.errors import UserError
from bertdeploy.outputs import disk_errors, install_dir, staging_dir, sweep_siblings
from bertdeploy.package import triton_qa, triton_tokenizer, triton_tokens
from bertdeploy.package.pbtxt import TRITON_TYPES, Enum, TensorSpec, render

KINDS = ("gpu", "cpu")
TEXT_INPUT = "TEXT"
LABELS_FILE = "labels.txt"
_NUMPY = {"TYPE_INT64": "int64", "TYPE_INT32": "int32"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class TritonOptions:
    """What the repository's configs say; validated on construction (:class:`UserError`)."""

    name: str
    """The ONNX model's name; the tokenizer and the ensemble are ``NAME_tokenizer`` / ``NAME_ensemble``."""
    variant: str = "auto"
    """A variant of the bundle; auto: fp32 with ``tensorrt_fp16``, else the runtime's auto choice for the kind."""
    max_batch_size: int = 32
    instances: int = 1
    """Instances of each model (``instance_group`` count)."""
    kind: str = "gpu"
    """``gpu`` | ``cpu``: where the ONNX model's instances run (the tokenizer always runs on the CPU)."""
    tensorrt_fp16: bool = False
    """Add the ONNX Runtime backend's TensorRT accelerator block with precision FP16 (GPU only)."""
    queue_delay_us: int = 100
    """``dynamic_batching.max_queue_delay_microseconds``: how long a request may wait for batch-mates."""
    pad_to_multiple: int = 8
    """The tokenizer pads each request to a multiple of this (at most max_length), so requests share shapes."""
    aggregation: str | None = None
    """Token classification: the entities step's aggregation (default ``simple``)."""
    ignore_labels: tuple[str, ...] | None = None
    """Token classification: entity groups the entities step leaves out (default ``("O",)``)."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise UserError(f"model name {self.name!r}: use letters, digits, '_', '-' or '.' (at most 100)")
        if self.kind not in KINDS:
            raise UserError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.tensorrt_fp16 and self.kind != "gpu":
            raise UserError("--tensorrt-fp16 needs --kind gpu (TensorRT runs on NVIDIA GPUs only)")
        for key in ("max_batch_size", "instances", "pad_to_multiple"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{key} must be an integer >= 1, got {value!r}")
        if not isinstance(self.queue_delay_us, int) or self.queue_delay_us < 0:
            raise UserError(f"queue_delay_us must be an integer >= 0, got {self.queue_delay_us!r}")
        if self.aggregation is not None or self.ignore_labels is not None:
            from bertdeploy.runtime.entities import check_aggregation, check_ignore

            object.__setattr__(self, "aggregation", check_aggregation(self.aggregation or "simple"))
            ignore = ("O",) if self.ignore_labels is None else self.ignore_labels
            object.__setattr__(self, "ignore_labels", tuple(sorted(check_ignore(ignore))))

    @property
    def models(self) -> tuple[str, str, str]:
        """(onnx model, tokenizer, ensemble) names."""
        return self.name, f"{self.name}_tokenizer", f"{self.name}_ensemble"

    @property
    def entities(self) -> str:
        """The entities step of a token-classification repository."""
        return f"{self.name}_entities"


@dataclass
class TritonRepository:
    """What :func:`triton_repository` wrote."""

    repository: Path
    models: tuple[str, str, str]
    """(onnx model, tokenizer, ensemble) names."""
    variant: str
    inputs: list[TensorSpec]
    output: TensorSpec
    kind: str
    replaced: list[str] = field(default_factory=list)
    """Our model folders that existed before and were replaced (``overwrite``)."""
    task: str = tasks.DEFAULT
    entities: str | None = None
    """Token classification: the entities step's model name (the ensemble then answers ``ENTITIES``)."""
    outputs: list[TensorSpec] = field(default_factory=list)
    """Every output of the ONNX model (question answering: ``start_logits`` and ``end_logits``)."""
    limitation: str = ""
    """What the repository needs or leaves out (question answering / multiple choice: the answers step's)."""
    answers: str | None = None
    """Question answering / multiple choice: the answers step's model name (``NAME_reader`` / ``NAME_chooser``)."""


def graph_io(path: Path, num_labels: int, task: str = tasks.DEFAULT) -> tuple[list[TensorSpec], TensorSpec]:
    """The graph's inputs and its logits output, read with ONNX Runtime (no optimisation, CPU); the output's axes
    are the task table's (``[batch, num_labels]``, per token ``[batch, sequence, num_labels]``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = []
    for node in session.get_inputs():
        if node.type not in TRITON_TYPES or len(node.shape) != 2:
            raise UserError(f"{path.name}: input {node.name!r} ({node.type}, rank {len(node.shape)}) is not a token id")
        inputs.append(TensorSpec(node.name, TRITON_TYPES[node.type], (-1,)))
    spec = tasks.get(task, stage="package triton")
    axes = spec.outputs[spec.output]
    outputs = {o.name: o for o in session.get_outputs()}
    out = outputs.get(spec.output) or next(iter(outputs.values()))
    fits = len(out.shape) == len(axes) and (out.shape[-1] == num_labels or not isinstance(out.shape[-1], int))
    if out.type not in TRITON_TYPES or not fits:
        shape = ", ".join(num_labels if a == tasks.LABELS else a for a in axes)  # type: ignore[misc]
        raise UserError(f"{path.name}: output {out.name!r} {out.type} {out.shape} is not [{shape}] logits")
    dims = tuple(num_labels if a == tasks.LABELS else -1 for a in axes[1:])
    return inputs, TensorSpec(out.name, TRITON_TYPES[out.type], dims)


def choose_variant(manifest: _bundle.Manifest, options: TritonOptions) -> _bundle.Variant:
    if options.variant != "auto":
        spec = variants.get(options.variant)  # a UserError naming the known variants for a typo
        if spec.check:
            raise UserError(f"variant {spec.name!r} runs two model files (near ties again on {spec.check}); "
                            f"a Triton model serves one: package {spec.source!r}")  # fmt: skip
        return manifest.variant(options.variant)
    if options.tensorrt_fp16:  # TensorRT builds its own fp16 engine from the plain fp32 graph
        names = {v.name for v in manifest.variants}
        return manifest.variant(variants.BASE) if variants.BASE in names else manifest.auto_variant("cuda")
    chosen = manifest.auto_variant("cuda" if options.kind == "gpu" else "cpu")
    return manifest.variant(variants.get(chosen.name).source) if chosen.check else chosen  # one file: its int8


def onnx_config(options: TritonOptions, inputs: list[TensorSpec], output: TensorSpec) -> dict[str, Any]:
    """The ONNX model's ``config.pbtxt`` as a dict (see :func:`bertdeploy.package.pbtxt.render`)."""
    config: dict[str, Any] = {
        "name": options.name,
        "backend": "onnxruntime",
        "max_batch_size": options.max_batch_size,
        "input": [spec.config() for spec in inputs],
        "output": [_labelled(output)],
        "dynamic_batching": {"max_queue_delay_microseconds": options.queue_delay_us},
        "instance_group": [{"count": options.instances, "kind": Enum(f"KIND_{options.kind.upper()}")}],
    }
    if options.tensorrt_fp16:
        params = {"precision_mode": "FP16", "max_workspace_size_bytes": str(1 << 30)}
        accelerator = {"name": "tensorrt", "parameters": [{"key": k, "value": v} for k, v in params.items()]}
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}
    return config


def _labelled(output: TensorSpec) -> dict[str, Any]:
    """An output's config; ``[num_labels]`` logits name ``labels.txt`` (Triton's classification extension)."""
    return output.config(label_filename=LABELS_FILE) if len(output.dims) == 1 else output.config()


def tokenizer_config(options: TritonOptions, inputs: list[TensorSpec], offsets: bool = False) -> dict[str, Any]:
    outputs = inputs + (triton_tokens.token_outputs(TensorSpec) if offsets else [])
    return {
        "name": options.models[1],
        "backend": "python",
        "max_batch_size": options.max_batch_size,
        "input": [TensorSpec(TEXT_INPUT, "TYPE_STRING", (1,)).config()],
        "output": [spec.config() for spec in outputs],
        "instance_group": [{"count": options.instances, "kind": Enum("KIND_CPU")}],
    }


def ensemble_config(
    options: TritonOptions, inputs: list[TensorSpec], output: TensorSpec, entities: bool = False
) -> dict[str, Any]:
    """TEXT -> tokenizer -> model -> logits (``entities``: -> the entities step -> ``ENTITIES``)."""
    onnx_name, tokenizer_name, ensemble_name = options.models
    ids = [{"key": spec.name, "value": spec.name} for spec in inputs]
    if entities:
        names = (*options.models, options.entities)
        steps = triton_tokens.ensemble_steps(names, ids, output, TEXT_INPUT)
        answer = {"name": triton_tokens.ENTITIES, "data_type": Enum("TYPE_STRING"), "dims": [1]}
        return _ensemble(options, steps, answer)
    steps = [
        {
            "model_name": tokenizer_name,
            "model_version": -1,
            "input_map": [{"key": TEXT_INPUT, "value": TEXT_INPUT}],
            "output_map": ids,
        },
        {
            "model_name": onnx_name,
            "model_version": -1,
            "input_map": ids,
            "output_map": [{"key": output.name, "value": output.name}],
        },
    ]
    return _ensemble(options, steps, _labelled(output))


def _ensemble(options: TritonOptions, steps: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": options.models[2],
        "platform": "ensemble",
        "max_batch_size": options.max_batch_size,
        "input": [TensorSpec(TEXT_INPUT, "TYPE_STRING", (1,)).config()],
        "output": [output],
        "ensemble_scheduling": {"step": steps},
    }


def _write_models(
    stage: Path, root: Path, manifest: _bundle.Manifest, chosen: _bundle.Variant, options: TritonOptions
) -> tuple[list[TensorSpec], TensorSpec]:
    """Write our model folders into ``stage``; returns the graph's inputs and output."""
    source = _bundle.verify_variant(root, chosen)
    _bundle.verify_files(root, manifest)  # the tokenizer copied below
    inputs, output = graph_io(source, len(manifest.labels), manifest.task)
    tokens = _per_token(manifest)
    onnx_dir, tok_dir, ens_dir = (stage / name for name in options.models)
    labels = "".join(f"{label}\n" for label in manifest.labels)
    (onnx_dir / "1").mkdir(parents=True)
    shutil.copy2(source, onnx_dir / "1" / "model.onnx")
    for data in source.parent.glob(f"{source.name}_data*"):  # external weights keep the name the graph refers to
        shutil.copy2(data, onnx_dir / "1" / data.name)
    (onnx_dir / LABELS_FILE).write_text(labels, encoding="utf-8")
    (onnx_dir / "config.pbtxt").write_text(render(onnx_config(options, inputs, output)), encoding="utf-8")
    _write_tokenizer(tok_dir, root, manifest, options, inputs, tokens)
    (ens_dir / "1").mkdir(parents=True)
    if not tokens:
        (ens_dir / LABELS_FILE).write_text(labels, encoding="utf-8")
    config = ensemble_config(options, inputs, output, entities=tokens)
    (ens_dir / "config.pbtxt").write_text(render(config), encoding="utf-8")
    if tokens:
        config = triton_tokens.entities_model(options.entities, options, output, TEXT_INPUT)
        ignore = ("O",) if options.ignore_labels is None else options.ignore_labels
        aggregation = options.aggregation or "simple"
        triton_tokens.write_entities_model(stage / options.entities, config, manifest.labels, aggregation, ignore,
                                           manifest.raw.get("tag_transitions"))  # fmt: skip
    return inputs, output


def _write_question_model(
    stage: Path, root: Path, manifest: _bundle.Manifest, chosen: _bundle.Variant, options: TritonOptions
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Question answering / multiple choice: the model and the answers step (:mod:`bertdeploy.package.triton_qa`)."""
    source = _bundle.verify_variant(root, chosen)
    _bundle.verify_files(root, manifest)
    inputs, outputs = triton_qa.graph_io(source, manifest.task)
    config = {**onnx_config(options, inputs, outputs[0]), "output": [o.config() for o in outputs]}
    triton_qa.write_model(stage / options.name, source, root / manifest.tokenizer_file, config)
    step = triton_qa.step_name(options.name, manifest.task)
    triton_qa.write_step(stage / step, root, manifest, chosen.name, options, (inputs, outputs))
    return inputs, outputs


def _write_tokenizer(folder: Path, root: Path, manifest: _bundle.Manifest, options: TritonOptions,
                     inputs: list[TensorSpec], offsets: bool) -> None:  # fmt: skip
    from bertdeploy.runtime.tokenize import TextEncoder

    (folder / "1").mkdir(parents=True)
    shutil.copy2(triton_tokenizer.__file__, folder / "1" / "model.py")
    shutil.copy2(root / manifest.tokenizer_file, folder / "1" / "tokenizer.json")
    encoder = TextEncoder(root / manifest.tokenizer_file, manifest.max_length)
    settings = {
        "text_input": TEXT_INPUT,
        "tokenizer_file": "tokenizer.json",
        "max_length": manifest.max_length,
        "pad_id": encoder.pad_id,
        "pad_to_multiple": options.pad_to_multiple,
        "inputs": {spec.name: _NUMPY[spec.data_type] for spec in inputs},
        "offsets": offsets,
    }
    (folder / "1" / triton_tokenizer.SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", "utf-8")
    (folder / "config.pbtxt").write_text(render(tokenizer_config(options, inputs, offsets)), encoding="utf-8")


def _per_token(manifest: _bundle.Manifest) -> bool:
    """Whether the bundle's task tags tokens (its repository then has the entities step)."""
    return tasks.get(manifest.task, stage="package triton").head == "tagger"


def _install(stage: Path, repo: Path, names: tuple[str, ...]) -> list[str]:
    """Move the staged model folders into ``repo`` (the whole stage when ``repo`` does not exist yet), each with
    :func:`~bertdeploy.outputs.install_dir`: a kill between parking an old model folder and renaming the new one in
    leaves the old one parked beside it, and the next run puts it back."""
    if not repo.exists():
        os.replace(stage, repo)
        return []
    return [name for name in names if install_dir(stage / name, repo / name)]


def default_name(bundle: str | os.PathLike[str]) -> str:
    """A model name from the bundle folder's name (characters Triton paths dislike become ``_``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(bundle).resolve().name).lstrip("._-")
    return name[:100] or "model"


def triton_repository(
    bundle: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    name: str | None = None,
    variant: str = "auto",
    max_batch_size: int = 32,
    instances: int = 1,
    kind: str = "gpu",
    tensorrt_fp16: bool = False,
    pad_to_multiple: int = 8,
    aggregation: str | None = None,
    ignore_labels: Sequence[str] | None = None,
    overwrite: bool = False,
) -> TritonRepository:
    """Write a Triton model repository for one variant of ``bundle`` into ``output`` (see the module docstring).

    Raises :class:`UserError` for a bad bundle or option, and when one of our model folders already exists in
    ``output`` without ``overwrite`` (nothing is written then).
    """
    options = TritonOptions(
        name=name or default_name(bundle),
        variant=variant,
        max_batch_size=max_batch_size,
        instances=instances,
        kind=kind,
        tensorrt_fp16=tensorrt_fp16,
        pad_to_multiple=pad_to_multiple,
        aggregation=aggregation,
        ignore_labels=None if ignore_labels is None else tuple(ignore_labels),
    )
    root = Path(bundle)
    manifest = _bundle.read_manifest(root)
    tokens, questions = _per_token(manifest), triton_qa.serves_questions(manifest.task)
    if not tokens and (aggregation is not None or ignore_labels is not None):
        raise UserError(f"aggregation / ignore_labels apply to token-classification bundles; {root} is {manifest.task}")
    step = triton_qa.step_name(options.name, manifest.task) if questions else None
    ours = (options.name, step) if step else (*options.models, options.entities) if tokens else options.models
    chosen = choose_variant(manifest, options)
    repo = Path(output)
    if repo.exists() and not repo.is_dir():
        raise UserError(f"repository path exists and is a file: {repo}")
    for model in ours:  # a killed run's parked model folder goes back first (then it is "taken")
        sweep_siblings(repo / model)
    taken = [m for m in ours if (repo / m).exists()]
    if taken and not overwrite:
        raise UserError(f"{repo} already holds {', '.join(taken)} (pass --overwrite to replace them)")
    with disk_errors(repo, probe=repo.parent), staging_dir(repo) as stage:
        write = _write_question_model if questions else _write_models
        inputs, outs = write(stage, root, manifest, chosen, options)
        _bundle.usual_modes(stage)
        replaced = _install(stage, repo, ours)
    entities = options.entities if tokens else None
    outs = outs if isinstance(outs, list) else [outs]
    return TritonRepository(repo, options.models, chosen.name, inputs, outs[0], options.kind, replaced, manifest.task,
                            entities, outs, triton_qa.LIMITATION if questions else "", step)  # fmt: skip
