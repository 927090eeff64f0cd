"""Protobuf text format (what Triton's ``config.pbtxt`` is) written from plain dicts, standard library only.

A dict is a message, a list of dicts a repeated message field (map fields too: a list of ``{"key", "value"}``
entries), a list of scalars a repeated scalar field, :class:`Enum` a bare enum value. The tests parse every
file written this way with ``google.protobuf.text_format`` into Triton's own ``ModelConfig`` message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: ONNX tensor type -> Triton data type
TRITON_TYPES = {
    "tensor(int64)": "TYPE_INT64",
    "tensor(int32)": "TYPE_INT32",
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
}


class Enum(str):
    """An enum value (``TYPE_INT64``, ``KIND_GPU``): written without quotes."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as Triton declares it (``dims`` without the batch dimension)."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"name": self.name, "data_type": Enum(self.data_type), "dims": list(self.dims), **extra}


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if not value.isascii():
            raise ValueError(f"only ASCII strings are written to config.pbtxt: {value!r}")
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} to protobuf text format")


def _lines(message: dict[str, Any], pad: str) -> list[str]:
    out: list[str] = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, dict):
            out += [f"{pad}{key} {{", *_lines(value, pad + "  "), f"{pad}}}"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(f"{pad}{key} [")
            for i, item in enumerate(value):
                comma = "," if i < len(value) - 1 else ""
                out += [f"{pad}  {{", *_lines(item, pad + "    "), f"{pad}  }}{comma}"]
            out.append(f"{pad}]")
        elif isinstance(value, (list, tuple)):
            out.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            out.append(f"{pad}{key}: {_scalar(value)}")
    return out


def render(message: dict[str, Any]) -> str:
    """``message`` in protobuf text format (one field a line, nested messages indented)."""
    return "\n".join(_lines(message, "")) + "\n"
