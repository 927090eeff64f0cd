"""Graph edit: MatMuls that share one input and have constant weights become one wider MatMul.

A BERT layer's query, key and value projections read the same hidden states: three ``[h x h]`` MatMuls (each with
its bias Add) become one ``[h x 3h]`` MatMul, one bias Add and a ``Split`` back into the three outputs (the last
layer of a [CLS]-only export fuses key and value, its query reads the [CLS] row only). One larger GEMM runs closer
to the kernel peak than three small ones, and dynamic int8 then quantizes the shared input once for one
``DynamicQuantizeMatMul`` instead of three ``MatMulIntegerToFloat`` nodes. The function is exact: concatenated
columns compute the same dot products, and per-channel int8 scales are per output column, so they do not change.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any


def _bias_add(mm: Any, consumers: dict[str, list[Any]], inits: dict[str, Any]) -> tuple[Any, str] | None:
    """The ``Add(bias)`` that alone consumes ``mm``'s output, with its 1-D constant bias name, else None."""
    users = consumers.get(mm.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add":
        return None
    others = [i for i in users[0].input if i != mm.output[0]]
    if len(others) == 1 and others[0] in inits and len(inits[others[0]].dims) == 1:
        return users[0], others[0]
    return None


def _groups(graph: Any, inits: dict[str, Any]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
            groups[node.input[0]].append(node)
    return {x: mms for x, mms in groups.items() if len(mms) > 1}


def fuse_shared_input_matmuls(model: Any) -> int:
    """Fuse, in place, every group of constant-weight MatMuls reading the same tensor; returns the groups fused.

    A group is fused when all its MatMuls have a bias Add (fused with them) or none has; their outputs keep their
    names (the ``Split`` produces them), so the rest of the graph is untouched.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    order = list(graph.node)
    fused = 0
    for x, mms in _groups(graph, inits).items():
        adds = [_bias_add(mm, consumers, inits) for mm in mms]
        if len({a is None for a in adds}) != 1:
            continue
        weights = [numpy_helper.to_array(inits[mm.input[1]]) for mm in mms]
        if len({w.shape[0] for w in weights}) != 1:
            continue
        name = f"{mms[0].name}_fused"
        graph.initializer.append(numpy_helper.from_array(np.concatenate(weights, axis=1), f"{name}_weight"))
        nodes = [helper.make_node("MatMul", [x, f"{name}_weight"], [f"{name}_out"], name=name)]
        last = f"{name}_out"
        if adds[0] is not None:
            bias = np.concatenate([numpy_helper.to_array(inits[b]) for _, b in adds])  # type: ignore[misc]
            graph.initializer.append(numpy_helper.from_array(bias, f"{name}_bias"))
            nodes.append(helper.make_node("Add", [last, f"{name}_bias"], [f"{name}_biased"], name=f"{name}_add"))
            last = f"{name}_biased"
        sizes = np.array([w.shape[1] for w in weights], dtype=np.int64)
        graph.initializer.append(numpy_helper.from_array(sizes, f"{name}_sizes"))
        outputs = [(a[0] if a else mm).output[0] for mm, a in zip(mms, adds, strict=True)]
        nodes.append(helper.make_node("Split", [last, f"{name}_sizes"], outputs, name=f"{name}_split", axis=-1))
        dead = {id(n) for mm, a in zip(mms, adds, strict=True) for n in (mm, a[0] if a else None) if n is not None}
        first = min(i for i, n in enumerate(order) if id(n) in dead)
        order = (
            [n for n in order[:first] if id(n) not in dead] + nodes + [n for n in order[first:] if id(n) not in dead]
        )
        fused += 1
    if fused:
        del graph.node[:]
        graph.node.extend(order)
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        keep = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return fused


def fuse_file(src: Path, dest: Path) -> int:
    """Fuse ``src`` into ``dest`` (checked with ``onnx.checker``); returns the number of groups fused."""
    import onnx

    model = onnx.load(str(src))
    fused = fuse_shared_input_matmuls(model)
    onnx.checker.check_model(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return fused
