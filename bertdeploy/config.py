"""One config pattern for every stage.

Each stage has a typed dataclass — :class:`~bertdeploy.training.config.TrainConfig`,
:class:`~bertdeploy.exporter.config.ExportConfig`, :class:`~bertdeploy.benchmark.config.BenchConfig` — with a
one-line doc per field and validation in ``__post_init__`` (a :class:`UserError` naming the field). All three
derive from :class:`Config` and are built the same way by :meth:`Config.load`: a YAML file, then the options a
caller (the CLI) gives, then dotted-free ``key=value`` overrides, later ones winning. Values are coerced by the
field's annotation; an unknown key is an error that lists the known ones.

The accuracy budget (``max_accuracy_drop``) has one unit everywhere: **accuracy points** (``1.0`` = one
percentage point); ``"1%"`` is accepted as a spelling of the same value (:func:`accuracy_points`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bertdeploy.errors import UserError

C = TypeVar("C", bound="Config")
#: override texts that mean "no value" (``tokenizer=null``)
_NULLS = ("null", "~", "")


def accuracy_points(value: Any) -> float:
    """An accuracy budget in points: ``1.0``, ``"1"``, ``"1%"`` and ``"1pt"`` all mean one percentage point."""
    text = str(value).strip().lower()
    for suffix in ("%", "points", "point", "pts", "pt"):
        if text.endswith(suffix):
            text = text[: -len(suffix)].strip()
            break
    try:
        points = float(text)
    except ValueError:
        raise UserError(f"an accuracy budget is a number of points like 1.0 or 1%, got {value!r}") from None
    if not math.isfinite(points) or points < 0:
        raise UserError(f"an accuracy budget must be >= 0 points, got {value!r}")
    return points


def read_yaml(path: str | os.PathLike[str], what: str = "config") -> dict[str, Any]:
    """A YAML mapping from ``path`` (``yaml.safe_load``); any problem is one :class:`UserError` line."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{p} must hold a mapping of {what} keys")
    return data


def _scalar(typ: str, key: str, value: Any) -> Any:
    if typ == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    if typ == "float":
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if typ == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError
    if typ == "str":
        if isinstance(value, (dict, list)):
            raise ValueError
        return str(value)
    return value


def _split_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Config:
    """Mixin of the stage configs (dataclasses): loading, coercion, overrides, ``to_dict``."""

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def coerce(cls, key: str, value: Any) -> Any:
        """``value`` (a YAML value, or the text of a ``key=value`` override) as the field's type."""
        import yaml

        fields = cls.fields()
        if key not in fields:
            raise UserError(f"unknown {cls.__name__} key {key!r}; known: {', '.join(fields)}")
        field = fields[key]
        parse = field.metadata.get("parse")
        typ = str(field.type).replace(" ", "")
        optional = typ.endswith("|None")
        typ = typ.removesuffix("|None")
        textual = typ == "str" or (typ == "list[str]" and not str(value).lstrip().startswith("["))
        if isinstance(value, str) and parse is None and (not textual or value in _NULLS):
            try:
                value = yaml.safe_load(value) if value != "" else value
            except yaml.YAMLError:
                pass
        if value is None or (optional and value == ""):
            if optional:
                return None
            raise UserError(f"{key} needs a value")
        try:
            if parse is not None:
                return parse(value)
            if typ.startswith("list["):
                inner = typ[5:-1]
                return [_scalar(inner, key, v) for v in _split_list(value)]
            if typ.startswith("dict["):
                if not isinstance(value, Mapping):
                    raise ValueError
                return dict(value)
            return _scalar(typ, key, value)
        except (TypeError, ValueError):
            raise UserError(f"bad value for {key}: {value!r} (expected {field.type})") from None

    @classmethod
    def parse_overrides(cls, pairs: Iterable[str]) -> dict[str, Any]:
        """``["lr=3e-5", "padding=static"]`` -> ``{"lr": 3e-05, "padding": "static"}`` (coerced, validated keys)."""
        out: dict[str, Any] = {}
        for pair in pairs:
            if "=" not in pair:
                raise UserError(f"override {pair!r} is not key=value")
            key, value = pair.split("=", 1)
            key = key.strip().replace("-", "_")
            out[key] = cls.coerce(key, value)
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Build from a mapping of field values (coerced; unknown keys are an error)."""
        values = {k: cls.coerce(k, v) for k, v in data.items()}
        return cls(**values)

    @classmethod
    def load(
        cls: type[C],
        file: str | os.PathLike[str] | None = None,
        options: Mapping[str, Any] | None = None,
        overrides: Iterable[str] = (),
    ) -> C:
        """YAML ``file``, then ``options`` (None values are "not given"), then ``key=value`` ``overrides``."""
        data: dict[str, Any] = dict(read_yaml(file, cls.__name__)) if file else {}
        data.update({k: v for k, v in (options or {}).items() if v is not None})
        data.update(cls.parse_overrides(overrides))
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def budget_field(default: float, doc_unit: str = "points") -> Any:
    """A dataclass field holding an accuracy budget (parsed by :func:`accuracy_points`)."""
    return dataclasses.field(default=default, metadata={"parse": accuracy_points, "unit": doc_unit})
