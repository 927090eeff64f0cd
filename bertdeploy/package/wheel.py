"""``bertdeploy package wheel``: a bundle as a versioned, pip-installable ``py3-none-any`` wheel.

The wheel holds one Python package (``emotion-classifier`` -> ``emotion_classifier``) whose ``bundle/`` folder is
the bundle (all its variants, or the ones asked for, with their manifest entries and sha256 unchanged), and whose
``__init__.py`` (:mod:`bertdeploy.package.model_package`) exposes ``load()``, ``labels``, ``variants`` and
``manifest``. Its only dependency is the light runtime, ``bertdeploy[cpu]`` (``[gpu]`` with ``gpu=True``).

It is built by setuptools, through ``pip wheel --no-build-isolation --no-deps`` on a generated project (no
network), in a temporary folder ``.PACKAGE.bertdeploy-PID.XXXX.tmp`` inside ``output`` that also holds pip's own
temporary files; the finished wheel is renamed into place. After a kill -9 the next build of the same package
sweeps that folder; a full disk is one error line naming ``output``.
"""

from __future__ import annotations

import errno
import json
import keyword
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bertdeploy import __version__ as _bertdeploy_version
from bertdeploy import bundle as _bundle
from bertdeploy.errors import UserError
from bertdeploy.outputs import disk_errors, staging_dir
from bertdeploy.package import model_package

_DIST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
# PEP 440 public versions (the canonical form of its appendix, without the optional leading "v")
_N = "(0|[1-9][0-9]*)"
_VERSION = re.compile(rf"^([1-9][0-9]*!)?{_N}(\.{_N})*((a|b|rc){_N})?(\.post{_N})?(\.dev{_N})?$")


@dataclass
class ModelWheel:
    """What :func:`build_wheel` wrote."""

    path: Path
    distribution: str
    package: str
    """The import name (``emotion_classifier``)."""
    version: str
    variants: list[str]
    requires: list[str]
    bytes: int


def names(name: str) -> tuple[str, str]:
    """(distribution name, import name) for ``name``; :class:`UserError` when it cannot be both."""
    if not _DIST_NAME.match(name or ""):
        raise UserError(f"package name {name!r}: use letters, digits, '-', '_' or '.' (e.g. emotion-classifier)")
    package = re.sub(r"[-_.]+", "_", name).lower()
    if not package.isidentifier() or keyword.iskeyword(package) or package == "bertdeploy":
        raise UserError(f"package name {name!r} gives the import name {package!r}, which Python cannot import")
    return name.lower(), package


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(type(value).__name__)


def pyproject(distribution: str, package: str, version: str, requires: list[str], summary: str) -> str:
    """The generated project's ``pyproject.toml`` (setuptools backend, the bundle as package data)."""
    return "\n".join(
        [
            "[build-system]",
            'requires = ["setuptools>=61"]',
            'build-backend = "setuptools.build_meta"',
            "",
            "[project]",
            f"name = {_toml(distribution)}",
            f"version = {_toml(version)}",
            f"description = {_toml(summary)}",
            'requires-python = ">=3.10"',
            f"dependencies = {_toml(requires)}",
            "",
            "[tool.setuptools]",
            'package-dir = {"" = "src"}',
            f"packages = {_toml([package])}",
            "",
            "[tool.setuptools.package-data]",
            f"{package} = {_toml(['bundle/*', 'bundle/onnx/*'])}",
            "",
        ]
    )


def _copy_bundle(root: Path, dest: Path, manifest: _bundle.Manifest, chosen: list[_bundle.Variant]) -> None:
    """The bundle's files without the variants left out; the manifest lists the chosen variants only."""
    keep = {v.file for v in chosen}
    drop = {v.file for v in manifest.variants} - keep
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        left_out = any(rel == f or rel.startswith(f + "_data") for f in drop)
        if path.is_dir() or left_out or rel == _bundle.MANIFEST_NAME:
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / rel)
    raw = dict(manifest.raw)
    raw["variants"] = [v for v in raw.get("variants", []) if v.get("file") in keep]
    (dest / _bundle.MANIFEST_NAME).write_text(json.dumps(raw, indent=2, default=str) + "\n", encoding="utf-8")
    copied = _bundle.read_manifest(dest)
    _bundle.verify_files(dest, copied)
    for variant in copied.variants:
        _bundle.verify_variant(dest, variant)


def _write_project(
    project: Path, distribution: str, package: str, version: str, requires: list[str], summary: str
) -> None:
    """``pyproject.toml`` and the package's ``__init__.py`` (:mod:`model_package` with its name and version)."""
    init = Path(model_package.__file__).read_text(encoding="utf-8")
    for sentinel, value in (("__DISTRIBUTION__", distribution), ("__VERSION__", version)):
        init = init.replace(json.dumps(sentinel), json.dumps(value))
    (project / "src" / package / "__init__.py").write_text(init, encoding="utf-8")
    text = pyproject(distribution, package, version, requires, summary)
    (project / "pyproject.toml").write_text(text, encoding="utf-8")


#: what pip / setuptools print when the disk is full (they wrap the OSError in "Failed building wheel")
_FULL = ("No space left on device", "[Errno 28]", "Disk quota exceeded", "[Errno 122]")


def _pip_wheel(project: Path, out: Path, scratch: Path) -> Path:
    """``pip wheel`` of ``project`` into ``out``; pip's and setuptools' temporary files go to ``scratch`` (inside
    our staging folder, so that a kill leaves nothing in ``$TMPDIR``: the next run sweeps the staging folder)."""
    import importlib.util

    if importlib.util.find_spec("setuptools") is None:
        raise UserError("building a wheel needs setuptools: pip install setuptools")
    scratch.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch), "TEMP": str(scratch), "TMP": str(scratch)}
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    done = subprocess.run([*cmd, "-w", str(out), str(project)], capture_output=True, text=True, check=False, env=env)
    wheels = sorted(out.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        said = done.stderr or done.stdout
        if any(sign in said for sign in _FULL):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))
        tail = said.strip().splitlines()[-5:]
        raise RuntimeError("pip wheel failed:\n" + "\n".join(tail))
    return wheels[0]


def _check_wheel(path: Path, package: str, chosen: list[_bundle.Variant]) -> None:
    """Every packaged variant inside the wheel still has the manifest's sha256 (what the runtime checks)."""
    import hashlib

    with zipfile.ZipFile(path) as zf:
        for variant in chosen:
            digest = hashlib.sha256()
            with zf.open(f"{package}/bundle/{variant.file}") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
            if digest.hexdigest() != variant.sha256:  # pragma: no cover - a setuptools bug, not a user error
                raise RuntimeError(f"{variant.file}: sha256 changed inside the wheel")


def build_wheel(
    bundle: str | os.PathLike[str],
    name: str,
    output: str | os.PathLike[str],
    *,
    version: str = "1.0.0",
    variants: Sequence[str] | None = None,
    gpu: bool = False,
    overwrite: bool = False,
) -> ModelWheel:
    """Build ``OUTPUT/<name>-<version>-py3-none-any.whl`` holding ``bundle`` (see the module docstring).

    Args:
        bundle: a folder written by ``bertdeploy export``.
        name: the distribution name (``emotion-classifier``; imported as ``emotion_classifier``).
        output: the folder the wheel goes to (created when missing).
        version: the wheel's version (PEP 440).
        variants: the variants to package (default: every accepted one).
        gpu: depend on ``bertdeploy[gpu]`` instead of ``bertdeploy[cpu]``.
        overwrite: replace a wheel of the same name and version in ``output``.
    """
    distribution, package = names(name)
    if not _VERSION.match(version or ""):
        raise UserError(f"version {version!r} is not a PEP 440 version (e.g. 1.0.0, 2.1rc1)")
    root = Path(bundle)
    manifest = _bundle.read_manifest(root)
    chosen = [manifest.variant(v) for v in dict.fromkeys(variants)] if variants else list(manifest.variants)
    if not chosen:
        raise UserError(f"bundle {root} has no accepted variant to package")
    for variant in chosen:
        _bundle.verify_variant(root, variant)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UserError(f"output path exists and is a file: {out}")
    target = out / f"{package}-{version}-py3-none-any.whl"
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists (pass --overwrite to replace it)")
    requires = [f"bertdeploy[{'gpu' if gpu else 'cpu'}]>={_bertdeploy_version}"]
    labels = ", ".join(manifest.labels)
    summary = f"A {manifest.task} model packaged by bertdeploy"
    summary += f" ({len(manifest.labels)} labels: {labels[:200]})" if manifest.labels else ""
    # the staging folder .PACKAGE.bertdeploy-PID.XXXX.tmp in OUTPUT: swept by the next build of PACKAGE after a kill
    with disk_errors(out, probe=out), staging_dir(out / package) as stage:
        project = stage / "project"
        _copy_bundle(root, project / "src" / package / "bundle", manifest, chosen)
        _write_project(project, distribution, package, version, requires, summary)
        built = _pip_wheel(project, stage / "dist", stage / "tmp")
        if built.name != target.name:  # pragma: no cover - setuptools names wheels this way
            raise RuntimeError(f"setuptools wrote {built.name}, expected {target.name}")
        _check_wheel(built, package, chosen)
        _bundle.usual_modes(built)
        os.replace(built, target)
    packaged = [v.name for v in chosen]
    return ModelWheel(target, distribution, package, version, packaged, requires, target.stat().st_size)
