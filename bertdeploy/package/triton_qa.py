"""The Triton models of a question-answering or multiple-choice bundle: the ONNX model, its dims from the task table
(:mod:`bertdeploy.tasks`), and the answers step.

* question answering: inputs ``[batch, sequence]``, two outputs ``start_logits`` / ``end_logits`` ``[batch,
  sequence]`` (Triton dims ``[-1]`` each);
* multiple choice: inputs ``[batch, num_choices, sequence]`` (dims ``[-1, -1]``), output ``logits [batch,
  num_choices]`` (dims ``[-1]``).

Beside it, the answers step ``NAME_reader`` (``NAME_chooser`` for multiple choice): a Python-backend model that takes
the questions as strings and answers them with the bertdeploy runtime's own head, its model calls sent to ``NAME``
through Triton's business logic scripting (:mod:`bertdeploy.package.triton_answers`): windows, question-match token
types, the n-best span search with the bundle's answer cap. It imports bertdeploy, so Triton's Python environment
needs ``pip install bertdeploy`` (the runtime: no torch). A client may also call ``NAME`` directly with token ids it
made itself (``tokenizer.json`` is beside the model) and post-process the logits, e.g. with
``bertdeploy.runtime.spans.answers``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bertdeploy import tasks
from bertdeploy.errors import UserError
from bertdeploy.package.pbtxt import TRITON_TYPES, Enum, TensorSpec, render

QUESTION_HEADS = ("reader", "chooser")
#: what the CLI and the result say the answers step needs and leaves out
LIMITATION = (
    "the answers step imports bertdeploy: pip install bertdeploy in Triton's Python environment; the reader takes "
    "the pipeline's max_answer_len, top_k, doc_stride, handle_impossible_answer and align_to_words per question as "
    "optional inputs (MAX_ANSWER_LEN, TOP_K, DOC_STRIDE, HANDLE_IMPOSSIBLE_ANSWER, ALIGN_TO_WORDS)"
)
#: the ONNX type of each Triton data type the graphs use (the BLS session reports the graph's types as ORT does)
_ONNX_TYPES = {triton: onnx for onnx, triton in TRITON_TYPES.items()}
_MODEL_PY = (
    '"""The answers step of a bertdeploy Triton repository (written by `bertdeploy package triton`; Triton\'s '
    'Python\nenvironment needs `pip install bertdeploy`): bertdeploy.package.triton_answers."""\n\n'
    "from bertdeploy.package.triton_answers import TritonPythonModel  # noqa: F401\n"
)


def serves_questions(task: str) -> bool:
    """Whether ``task``'s repository is the model and the answers step (question answering, multiple choice)."""
    return tasks.get(task, stage="package triton").head in QUESTION_HEADS


def graph_io(path: Path, task: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs with the task table's axes (every axis after the batch is ``-1``)."""
    import onnxruntime as ort

    spec = tasks.get(task, stage="package triton")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rank = len(spec.input_axes)
    inputs = []
    for node in session.get_inputs():
        if node.type not in TRITON_TYPES or len(node.shape) != rank:
            raise UserError(f"{path.name}: input {node.name!r} ({node.type}, rank {len(node.shape)}) is not "
                            f"[{', '.join(spec.input_axes)}] token ids")  # fmt: skip
        inputs.append(TensorSpec(node.name, TRITON_TYPES[node.type], (-1,) * (rank - 1)))
    found = {o.name: o for o in session.get_outputs()}
    outputs = []
    for name, axes in spec.outputs.items():
        node = found.get(name)
        if node is None or node.type not in TRITON_TYPES or len(node.shape) != len(axes):
            raise UserError(f"{path.name}: no output {name!r} [{', '.join(axes)}] (outputs: {', '.join(found)})")
        outputs.append(TensorSpec(name, TRITON_TYPES[node.type], (-1,) * (len(axes) - 1)))
    return inputs, outputs


def write_model(folder: Path, source: Path, tokenizer: Path, config: dict[str, Any]) -> None:
    """The model folder: ``config.pbtxt``, ``1/model.onnx`` (+ external weights) and the bundle's tokenizer."""
    (folder / "1").mkdir(parents=True)
    shutil.copy2(source, folder / "1" / "model.onnx")
    for data in source.parent.glob(f"{source.name}_data*"):  # external weights keep the name the graph refers to
        shutil.copy2(data, folder / "1" / data.name)
    shutil.copy2(tokenizer, folder / "tokenizer.json")
    (folder / "config.pbtxt").write_text(render(config), encoding="utf-8")


def step_name(name: str, task: str) -> str:
    """The answers step's model name: ``NAME_reader`` (question answering) or ``NAME_chooser``."""
    return f"{name}_{tasks.get(task, stage='package triton').head}"


def step_config(step: str, head: str, options: Any) -> dict[str, Any]:
    """The answers step's ``config.pbtxt`` as a dict: strings in, the head's answer fields out."""
    from bertdeploy.package.triton_answers import CHOICES, CONTEXT, OPTIONAL, OUTPUT_DIMS, OUTPUTS, QUESTION

    second = TensorSpec(CONTEXT, "TYPE_STRING", (1,)) if head == "reader" else TensorSpec(CHOICES, "TYPE_STRING", (-1,))
    optional = [TensorSpec(name, t, (1,)).config(optional=True) for name, (_, t) in OPTIONAL[head].items()]
    return {
        "name": step,
        "backend": "python",
        "max_batch_size": options.max_batch_size,
        "input": [TensorSpec(QUESTION, "TYPE_STRING", (1,)).config(), second.config(), *optional],
        "output": [TensorSpec(name, t, OUTPUT_DIMS[head]).config() for name, t in OUTPUTS[head].items()],
        "dynamic_batching": {"max_queue_delay_microseconds": options.queue_delay_us},
        "instance_group": [{"count": options.instances, "kind": Enum("KIND_CPU")}],
    }


def write_step(folder: Path, root: Path, manifest: Any, variant: str, options: Any,
               graph: tuple[list[TensorSpec], list[TensorSpec]]) -> None:  # fmt: skip
    """The answers step's folder: ``config.pbtxt``; ``1/`` holds ``model.py``, the bundle's tokenizer, its manifest
    with the packaged variant alone, and the settings (the ONNX model's name, inputs and outputs, batch size)."""
    from bertdeploy.package import triton_answers

    head = tasks.get(manifest.task, stage="package triton").head
    version = folder / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(_MODEL_PY, encoding="utf-8")
    shutil.copy2(root / manifest.tokenizer_file, version / "tokenizer.json")
    raw = {key: value for key, value in manifest.raw.items() if key != "files"}  # digests of files not copied
    raw["tokenizer"] = {**(raw.get("tokenizer") or {}), "file": "tokenizer.json"}
    raw["variants"] = [v for v in raw.get("variants", []) if v.get("name") == variant]
    (version / "bertdeploy.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    inputs, outputs = graph
    settings = {
        "model": options.name,
        "variant": variant,
        "max_batch_size": options.max_batch_size,
        "inputs": {s.name: [_ONNX_TYPES[s.data_type], len(s.dims) + 1] for s in inputs},
        "outputs": {s.name: [_ONNX_TYPES[s.data_type], len(s.dims) + 1] for s in outputs},
    }
    (version / triton_answers.SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    (folder / "config.pbtxt").write_text(render(step_config(folder.name, head, options)), encoding="utf-8")
