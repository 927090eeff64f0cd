"""The Triton model of a question-answering or multiple-choice bundle: the ONNX model alone, its dims from the task
table (:mod:`bertdeploy.tasks`).

* question answering: inputs ``[batch, sequence]``, two outputs ``start_logits`` / ``end_logits`` ``[batch,
  sequence]`` (Triton dims ``[-1]`` each);
* multiple choice: inputs ``[batch, num_choices, sequence]`` (dims ``[-1, -1]``), output ``logits [batch,
  num_choices]`` (dims ``[-1]``).

What the repository does not hold, plainly: no tokenizer step and no ensemble. A question-answering request is a
(question, context) pair cut into overlapping windows, and its answer comes from an n-best search over the windows
with offsets into the context (:mod:`bertdeploy.runtime.spans`); a Python-backend step for that is not written here,
so a Triton client tokenizes the pairs (``tokenizer.json`` is copied beside the model) and post-processes the
logits itself, e.g. with ``bertdeploy.runtime.spans.answers``. Multiple choice likewise: the client pads each
question's (question, choice) pairs together and takes the softmax over the choices.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bertdeploy import tasks
from bertdeploy.errors import UserError
from bertdeploy.package.pbtxt import TRITON_TYPES, TensorSpec, render

QUESTION_HEADS = ("reader", "chooser")
#: what the CLI and the result say about the missing steps
LIMITATION = (
    "the repository holds the ONNX model only (no tokenizer step, no ensemble): tokenize the (question, context) "
    "pairs or (question, choice) pairs on the client (tokenizer.json is beside the model) and post-process the "
    "logits there (QA: windows and the n-best span search, bertdeploy.runtime.spans; a bundle with "
    "question_match: token types from bertdeploy.runtime.tokenize.question_match_types); not done in Triton here"
)


def serves_questions(task: str) -> bool:
    """Whether ``task``'s repository is the model alone (question answering, multiple choice)."""
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
