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

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy import tasks, variants
from bertdeploy.errors import UserError, outside_stacklevel
from bertdeploy.outputs import atomic_dir, atomic_file, check_output_dir, usual_modes, write_json

__all__ = [  # the atomic writers live in bertdeploy.outputs; re-exported here, where callers have found them
    "atomic_dir",
    "atomic_file",
    "check_output_dir",
    "usual_modes",
    "write_json",
]

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
    provider: str = "cpu"
    """The execution provider it was gated on and runs on (:data:`bertdeploy.variants.PROVIDERS`)."""
    hint: str | None = None
    """The provider's precision hint (OpenVINO: f32 | bf16)."""
    check: dict[str, Any] | None = None
    """A checked variant's re-run: ``{"variant": the variant whose file re-runs near ties, "margin": the top-two
    probability gap under which a text is re-run, ...}`` (:mod:`bertdeploy.exporter.checked`); None: none."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Variant:
        """A variant entry of a manifest, its fields type-checked (a wrong type is a :class:`UserError`)."""
        if not isinstance(d, dict):
            raise UserError(f"a variant entry must be an object, got {_short(d)}")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        missing = [k for k in ("name", "file", "sha256", "bytes") if k not in known]
        if missing:
            raise UserError(f"variant entry {_short(d.get('name'))} lacks {', '.join(missing)}")
        for key, value in known.items():
            want = _VARIANT_TYPES[key]
            if not isinstance(value, want) or isinstance(value, bool) or (want is str and not value):
                name = want.__name__ if isinstance(want, type) else " or ".join(t.__name__ for t in want)
                raise UserError(f"variant {_short(d.get('name'))}: {key} must be {name}, got {_short(value)}")
        return cls(**known)


_VARIANT_TYPES: dict[str, Any] = {
    "name": str,
    "file": str,
    "sha256": str,
    "bytes": int,
    "precision": str,
    "opset": (int, type(None)),
    "fused_nodes": dict,
    "parity": dict,
    "metrics": dict,
    "machine": dict,
    "notes": list,
    "provider": str,
    "hint": (str, type(None)),
    "check": (dict, type(None)),
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Manifest:
    """The parsed ``bertdeploy.json``."""

    labels: list[str]
    max_length: int
    variants: list[Variant]
    task: str = tasks.DEFAULT
    tokenizer_file: str = "tokenizer.json"
    model_inputs: list[str] = field(default_factory=lambda: ["input_ids", "attention_mask"])
    rejected: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] | None = None
    """sha256 of every other file of the bundle (tokenizer, config, ...): relative path -> hex digest; None for a
    bundle exported before bertdeploy recorded them (:func:`verify_files`)."""
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
        """The first accepted variant of ``auto``'s order on ORT's own providers (see :meth:`auto_variants`)."""
        return self.auto_variants(device)[0]

    def auto_variants(
        self, device: str, providers: tuple[str, ...] = ("cpu",), cpu_flags: frozenset[str] = frozenset()
    ) -> list[Variant]:
        """Accepted variants in ``variant="auto"`` order for ``device``, those of other execution providers only
        where ``providers`` has them and the CPU has their ``cpu_flags``; never empty."""
        names = {v.name for v in self.variants}
        out = [self.variant(n) for n in variants.auto_candidates(device, providers, cpu_flags) if n in names]
        if out:
            return out
        plain = [v for v in self.variants if v.provider == "cpu"]
        if plain:
            return plain[:1]
        raise UserError("the bundle has no accepted variant")


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: the largest max_length a manifest may state (a sanity bound; BERT-family encoders stop at 512 or 8192)
MAX_LENGTH_LIMIT = 1 << 20


def resolve_inside(bundle: str | os.PathLike[str], rel: Any, what: str) -> Path:
    """``BUNDLE/rel`` with symlinks followed, after checking that it stays inside the bundle folder.

    A manifest names its files relative to the bundle; an absolute path, a ``../`` or a symlink that leads out of
    the folder is a :class:`UserError` (a sha256 in the same manifest proves integrity, not origin).
    """
    if not isinstance(rel, str) or not rel:
        raise UserError(f"{what} must be a relative path inside the bundle, got {_short(rel)}")
    root = Path(os.path.realpath(bundle))
    if Path(rel).is_absolute():
        raise UserError(f"{what} {rel!r} is an absolute path; a bundle names its files relative to its folder")
    full = Path(os.path.realpath(root / rel))
    if full != root and root not in full.parents:
        raise UserError(f"{what} {rel!r} resolves to {full}, outside the bundle {bundle}")
    return full


def _manifest_fields(raw: dict[str, Any], root: Path) -> dict[str, Any]:
    """The typed fields of :class:`Manifest` from the raw JSON (UserError on any wrong type or value)."""
    task = raw.get("task", tasks.DEFAULT)  # bundles written before the task table are text classifiers
    if not isinstance(task, str):
        raise UserError(f"task must be a string, got {_short(task)}")
    if task not in tasks.TASKS:
        raise UserError(f"unknown task {task!r} (this bertdeploy knows {', '.join(tasks.NAMES)}); upgrade bertdeploy")
    labelled = tasks.TASKS[task].labelled  # question answering and multiple choice have no label set
    labels = raw.get("labels", None if labelled else [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or (labelled and not labels):
        kind = "a non-empty list" if labelled else "a list"
        raise UserError(f"labels must be {kind} of strings, got {_short(labels)}")
    if len(set(labels)) != len(labels):
        raise UserError("labels lists a label twice")
    max_length = raw.get("max_length")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or not 1 <= max_length <= MAX_LENGTH_LIMIT:
        raise UserError(f"max_length must be an integer in [1, {MAX_LENGTH_LIMIT}], got {_short(max_length)}")
    entries = raw.get("variants", [])
    if not isinstance(entries, list):
        raise UserError(f"variants must be a list, got {_short(entries)}")
    found = [Variant.from_dict(v) for v in entries]
    for v in found:
        resolve_inside(root, v.file, f"variant {v.name!r} file")
    tok = raw.get("tokenizer", {})
    if not isinstance(tok, dict):
        raise UserError(f"tokenizer must be an object, got {_short(tok)}")
    tokenizer_file = tok.get("file", "tokenizer.json")
    resolve_inside(root, tokenizer_file, "tokenizer file")
    inputs = raw.get("model_inputs", ["input_ids", "attention_mask"])
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) and x for x in inputs):
        raise UserError(f"model_inputs must be a non-empty list of strings, got {_short(inputs)}")
    rejected = raw.get("rejected", [])
    if not isinstance(rejected, list) or not all(isinstance(r, dict) for r in rejected):
        raise UserError(f"rejected must be a list of objects, got {_short(rejected)}")
    files = raw.get("files")
    if files is not None:
        if not isinstance(files, dict) or not all(isinstance(v, str) and _SHA256.match(v) for v in files.values()):
            raise UserError(f"files must map file names to sha256 hex digests, got {_short(files)}")
        for rel in files:
            resolve_inside(root, rel, "file")
    return dict(labels=list(labels), max_length=max_length, variants=found, task=task, tokenizer_file=tokenizer_file,
                model_inputs=list(inputs), rejected=list(rejected), files=files)  # fmt: skip


def read_manifest(bundle: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``BUNDLE/bertdeploy.json``; raise :class:`UserError` on anything malformed, including a
    file the manifest names outside the bundle folder."""
    if not isinstance(bundle, (str, os.PathLike)) or str(bundle) == "":
        raise UserError(f"a bundle is a folder path, got {_short(bundle)}")
    root = Path(bundle)
    if not root.exists():
        raise UserError(f"bundle not found: {root}")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"not a bertdeploy bundle (no {MANIFEST_NAME}): {root}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"unreadable manifest {path}: {e}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UserError(f"{path} is not a bertdeploy manifest (format != {FORMAT!r})")
    version = raw.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise UserError(f"malformed manifest {path}: format_version must be an integer, got {_short(version)}")
    if version > FORMAT_VERSION:
        raise UserError(f"{path} has format_version {version}; upgrade bertdeploy")
    try:
        return Manifest(**_manifest_fields(raw, root), raw=raw)
    except UserError as e:
        raise UserError(f"malformed manifest {path}: {e}") from None


def verify_variant(bundle: str | os.PathLike[str], variant: Variant) -> Path:
    """Return the variant's path (inside the bundle, symlinks followed) after checking that it exists and its
    sha256 matches the manifest."""
    path = resolve_inside(bundle, variant.file, f"variant {variant.name!r} file")
    if not path.is_file():
        raise UserError(f"variant {variant.name!r}: file missing: {Path(bundle) / variant.file}")
    digest = sha256_file(path)
    if digest != variant.sha256:
        raise UserError(
            f"variant {variant.name!r}: sha256 mismatch for {path} (file changed since export; re-export the bundle)"
        )
    return path


def file_digests(bundle: str | os.PathLike[str], skip: list[str]) -> dict[str, str]:
    """The manifest's ``files``: relative path -> sha256 of every file of the bundle except the manifest and the
    variant files in ``skip`` (their entries hold their own sha256)."""
    root = Path(bundle)
    left_out = {MANIFEST_NAME, *skip}
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in left_out)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in paths}


def verify_files(bundle: str | os.PathLike[str], manifest: Manifest) -> None:
    """Check the sha256 of the bundle's other files (tokenizer, config, ...; the variants: :func:`verify_variant`).
    A bundle exported before bertdeploy recorded them loads with one warning."""
    if manifest.files is None:
        warnings.warn(
            f"bundle {bundle} has no sha256 for its tokenizer and config (exported by an older bertdeploy): they are "
            "not verified; re-export it to have them checked",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )
        return
    if manifest.tokenizer_file not in manifest.files:
        raise UserError(f"bundle {bundle}: the manifest has no sha256 for its tokenizer file {manifest.tokenizer_file}")
    for rel, digest in manifest.files.items():
        path = resolve_inside(bundle, rel, "file")
        if not path.is_file():
            raise UserError(f"bundle {bundle}: file missing: {rel} (the manifest lists it)")
        if sha256_file(path) != digest:
            raise UserError(
                f"bundle {bundle}: sha256 mismatch for {rel} (file changed since export; re-export the bundle)"
            )
