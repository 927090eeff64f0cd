"""The bundle: the deployable folder ``export`` writes and ``runtime`` reads.

Layout::

    BUNDLE/
      bertdeploy.json      manifest (see :data:`MANIFEST_NAME` and :func:`read_manifest`)
      config.json          HF config with id2label, so Optimum's ORTModel can load the folder
      tokenizer.json ...   fast tokenizer files
      onnx/model*.onnx     one file per accepted variant (names: :data:`bertdeploy.variants.VARIANT_TABLE`)

This module imports only the standard library: the runtime depends on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy import variants
from bertdeploy.errors import UserError

MANIFEST_NAME = "bertdeploy.json"
FORMAT = "bertdeploy-bundle"
FORMAT_VERSION = 1


@dataclass
class Variant:
    """One accepted ONNX file of a bundle, as recorded in the manifest."""

    name: str
    file: str
    sha256: str
    bytes: int
    precision: str = "fp32"
    opset: int | None = None
    fused_nodes: dict[str, int] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Variant:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class Manifest:
    """The parsed ``bertdeploy.json``."""

    labels: list[str]
    max_length: int
    variants: list[Variant]
    task: str = "text-classification"
    tokenizer_file: str = "tokenizer.json"
    model_inputs: list[str] = field(default_factory=lambda: ["input_ids", "attention_mask"])
    rejected: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        names = ", ".join(v.name for v in self.variants) or "none"
        rejected = [r for r in self.rejected if r.get("name") == name]
        why = f" (rejected at export: {rejected[0].get('reason')})" if rejected else ""
        raise UserError(f"variant {name!r} is not in the bundle{why}; accepted variants: {names}")

    def auto_variant(self, device: str) -> Variant:
        names = {v.name for v in self.variants}
        for name in variants.auto_order(device):
            if name in names:
                return self.variant(name)
        if self.variants:
            return self.variants[0]
        raise UserError("the bundle has no accepted variant")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(bundle: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``BUNDLE/bertdeploy.json``; raise :class:`UserError` on anything malformed."""
    root = Path(bundle)
    if not root.exists():
        raise UserError(f"bundle not found: {root}")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"not a bertdeploy bundle (no {MANIFEST_NAME}): {root}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"unreadable manifest {path}: {e}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UserError(f"{path} is not a bertdeploy manifest (format != {FORMAT!r})")
    if int(raw.get("format_version", 0)) > FORMAT_VERSION:
        raise UserError(f"{path} has format_version {raw['format_version']}; upgrade bertdeploy")
    try:
        tok = raw.get("tokenizer", {})
        return Manifest(
            labels=list(raw["labels"]),
            max_length=int(raw["max_length"]),
            variants=[Variant.from_dict(v) for v in raw.get("variants", [])],
            task=raw.get("task", "text-classification"),
            tokenizer_file=tok.get("file", "tokenizer.json") if isinstance(tok, dict) else "tokenizer.json",
            model_inputs=list(raw.get("model_inputs", ["input_ids", "attention_mask"])),
            rejected=list(raw.get("rejected", [])),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"malformed manifest {path}: {e!r}") from None


def verify_variant(bundle: str | os.PathLike[str], variant: Variant) -> Path:
    """Return the variant's path after checking that it exists and its sha256 matches the manifest."""
    path = Path(bundle) / variant.file
    if not path.is_file():
        raise UserError(f"variant {variant.name!r}: file missing: {path}")
    digest = sha256_file(path)
    if digest != variant.sha256:
        raise UserError(
            f"variant {variant.name!r}: sha256 mismatch for {path} (file changed since export; re-export the bundle)"
        )
    return path


def usual_modes(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the modes the umask gives new files.

    ``mkstemp`` / ``mkdtemp`` create 0600 / 0700; what bertdeploy writes is shipped, served or shared, so every
    atomic writer below calls this before renaming into place.
    """
    mask = os.umask(0)
    os.umask(mask)
    root = Path(path)
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for p in paths:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically (temporary sibling, then rename)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it into place on success, delete it on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        usual_modes(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_output_dir(path: str | os.PathLike[str], overwrite: bool, what: str = "output") -> Path:
    """Validate an output folder before any work starts (so a bad path fails fast, writing nothing)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} path exists and is a file: {path}")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserError(f"{what} folder already exists and is not empty: {path} (pass --overwrite/--force)")
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UserError(f"cannot write to {probe} (permission denied)")
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling and rename it into place when the block succeeds.

    An exception (or a kill) inside the block leaves ``path`` untouched; the temporary folder is removed.
    """
    path = check_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        usual_modes(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
