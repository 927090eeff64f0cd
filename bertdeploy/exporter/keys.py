"""Graph edit: the attention scores read the keys through MatMul's ``transB`` instead of a transposed copy.

PyTorch's BERT attention exports ``scores = q @ k.transpose(-1, -2)`` as the keys reshaped to ``[batch, length,
heads, head]`` and transposed to ``[batch, heads, head, length]`` (``Transpose perm=[0, 2, 3, 1]``), with SDPA's
scalar ``Mul`` on the way. That permutation moves the innermost axis, and ONNX Runtime's CPU ``Transpose`` then runs
~10x slower than the ``[0, 2, 1, 3]`` of the queries and values (0.67 against 0.07 ms for MiniLM-L6's keys of 64
texts x 22 tokens, benchmarks/runtime/README.md): about an eighth of a dynamic-int8 MiniLM's time on short texts.
ONNX Runtime's own optimizer folds only a transpose of the last two axes into a MatMul, so the edit writes what it
would: the keys transposed like the values (``[0, 2, 1, 3]``) and the scores' MatMul an ORT ``FusedMatMul``
(``com.microsoft``) with ``transB=1``. The products are the same; only the summation order may move the last bit.

Used on the dynamic-int8 files (ONNX Runtime runs them: its CPU EP, onnxruntime-node under transformers.js and
Triton's ORT backend all have ``FusedMatMul``; OpenVINO 2026.4's ONNX reader takes it too, logits within its int8
noise of ORT's); the plain fp32 export stays as Optimum writes it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

KEYS_PERM = [0, 2, 3, 1]
HEADS_PERM = [0, 2, 1, 3]
MS_DOMAIN = "com.microsoft"


def _perm(node: Any) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _scalars(model: Any) -> set[str]:
    """Names of values of one element (shape inference; constants included); empty when inference fails."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - an uninferable graph is simply left alone
        return set()
    names = set()
    for info in [*inferred.graph.value_info, *inferred.graph.input]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") and d.dim_value == 1 for d in dims):
            names.add(info.name)
    names |= {i.name for i in model.graph.initializer if all(d == 1 for d in i.dims)}  # weights are not read
    for node in model.graph.node:
        if node.op_type == "Constant" and any(a.name == "value" and a.t.dims in ([], [1]) for a in node.attribute):
            names.add(node.output[0])
    return names


def _scores_matmul(keys: Any, consumers: dict[str, list[Any]], scalars: set[str]) -> Any | None:
    """The MatMul whose right operand is ``keys``' output (through one Mul / Div by a scalar), else None."""
    users, via = consumers.get(keys.output[0], []), keys.output[0]
    if len(users) != 1:
        return None
    user = users[0]
    if user.op_type in ("Mul", "Div") and user.domain in ("", "ai.onnx"):
        other = [i for i in user.input if i != via]
        if len(other) != 1 or other[0] not in scalars or (user.op_type == "Div" and user.input[0] != via):
            return None
        users, via = consumers.get(user.output[0], []), user.output[0]
        if len(users) != 1:
            return None
        user = users[0]
    if user.op_type != "MatMul" or user.domain not in ("", "ai.onnx") or list(user.input) != [user.input[0], via]:
        return None
    return None if user.input[0] == via else user


def transpose_keys(model: Any) -> int:
    """Edit ``model`` in place (see the module's docstring); returns the number of attention layers edited."""
    from onnx import helper

    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)
    candidates = [n for n in model.graph.node if n.op_type == "Transpose" and _perm(n) == KEYS_PERM]
    scalars = _scalars(model) if candidates else set()
    edited = 0
    for keys in candidates:
        scores = _scores_matmul(keys, consumers, scalars)
        if scores is None:
            continue
        next(a for a in keys.attribute if a.name == "perm").ints[:] = HEADS_PERM
        scores.op_type, scores.domain = "FusedMatMul", MS_DOMAIN
        scores.attribute.append(helper.make_attribute("transB", 1))
        edited += 1
    if edited and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return edited


def transpose_keys_file(path: Path) -> int:
    """Apply :func:`transpose_keys` to the ONNX file at ``path`` (rewritten in place when anything changed)."""
    import onnx

    model = onnx.load(str(path))
    edited = transpose_keys(model)
    if edited:
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return edited
