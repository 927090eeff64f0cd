"""Writing outputs without losing anything: atomic writes, ownership before replacement, leftover sweeping.

- **Atomic.** A file or folder is built in a temporary sibling ``.NAME.bertdeploy-PID.XXXX.tmp`` and renamed into
  place when complete (:func:`atomic_file`, :func:`atomic_dir`); a replaced folder is parked as
  ``.NAME.bertdeploy-PID.old`` for the instant between the two renames. An output that is a symlink keeps its
  link: the file or folder it points to is replaced.
- **Leftovers.** The writer's PID is in every temporary name. Before writing NAME, leftovers of NAME whose writer
  process is gone (kill -9, power loss) are removed (:func:`sweep_siblings`); a parked ``.old`` folder whose NAME
  is missing is put back (the kill hit between the two renames). Scratch folders in the system temp dir are named
  ``bertdeploy-KIND-PID-XXXX`` and swept the same way by :func:`scratch_dir`.
- **Ownership.** ``--overwrite`` / ``--force`` replace a non-empty folder only when it is recognisably an output of
  the same kind (:data:`KINDS`: a bundle manifest, a run's ``train_config.json``, a bench ``results.json``);
  anything else is a :class:`UserError` naming what is in the way. An output never is, contains or lies inside an
  input (:func:`check_inputs`).
- **Disk errors.** A full disk, a quota or a read-only file system while writing is one :class:`UserError` line
  (:mod:`bertdeploy.disk`).
- **Special files.** An output that is a pipe or a character device is written in place (:func:`atomic_file`).

Standard library only: the runtime depends on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertdeploy.disk import disk_errors
from bertdeploy.errors import UserError

#: in the name of every temporary file / folder bertdeploy creates, followed by ``-PID``
TAG = "bertdeploy"


@dataclass(frozen=True)
class OutputKind:
    """What makes a folder recognisably an output of one kind: a JSON ``marker`` file holding ``keys``, the first
    of which starts with ``prefix`` when one is given."""

    label: str
    marker: str
    keys: tuple[str, ...]
    prefix: str | None = None


#: the kinds of folder bertdeploy writes (and may therefore replace). A new writer adds its kind here.
#: (``bundle``: :data:`bertdeploy.bundle.MANIFEST_NAME` / ``FORMAT``; ``bench``: ``benchmark.results.SCHEMA``.)
KINDS: dict[str, OutputKind] = {
    "bundle": OutputKind("bertdeploy bundle", "bertdeploy.json", ("format",), "bertdeploy-bundle"),
    "run": OutputKind("bertdeploy training run", "train_config.json", ("labels", "model_info")),
    "bench": OutputKind("bertdeploy bench result folder", "results.json", ("schema",), "bertdeploy-bench/"),
    "cloze": OutputKind("bertdeploy cloze data folder", "cloze.json", ("format",), "bertdeploy-cloze"),
}


def _marked(folder: Path, kind: OutputKind) -> bool:
    try:
        data = json.loads((folder / kind.marker).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(data, dict) or not all(k in data for k in kind.keys):
        return False
    return kind.prefix is None or str(data[kind.keys[0]]).startswith(kind.prefix)


def kind_of(folder: str | os.PathLike[str]) -> str | None:
    """The :data:`KINDS` key of ``folder`` when bertdeploy wrote it, else None."""
    path = Path(folder)
    return next((name for name, kind in KINDS.items() if _marked(path, kind)), None)


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _real(path: str | os.PathLike[str]) -> Path:
    """``path`` with symlinks followed (also a dangling one), so that a link to an output keeps being a link."""
    return Path(os.path.realpath(Path(path).expanduser()))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sweep_siblings(path: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary siblings of ``path`` left by writers that no longer run; put a parked ``.old`` folder
    back when ``path`` itself is missing. Returns the names handled."""
    target = _real(path)
    if not target.parent.is_dir():
        return []
    name = re.escape(target.name)
    ours = re.compile(rf"^\.{name}\.{TAG}-(\d+)\.(.+)$")
    legacy = re.compile(rf"^\.{name}\.old-(\d+)$")  # parked folders of bertdeploy before 0.2
    handled = []
    for entry in target.parent.iterdir():
        m = ours.match(entry.name) or legacy.match(entry.name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        parked = m.re is legacy or m.group(2) == "old"
        if not parked and not m.group(2).endswith(".tmp"):
            continue
        if parked and not os.path.lexists(target):
            os.replace(entry, target)
        else:
            _remove(entry)
        handled.append(entry.name)
    return handled


def _scratch_prefix(kind: str, pid: int | None = None) -> str:
    return f"{TAG}-{kind}-{pid if pid is not None else os.getpid()}-"


def sweep_scratch(kind: str, root: str | os.PathLike[str] | None = None) -> list[str]:
    """Remove ``bertdeploy-KIND-PID-*`` folders in ``root`` (the system temp dir) whose process is gone."""
    base = Path(root or tempfile.gettempdir())
    pattern = re.compile(rf"^{TAG}-{re.escape(kind)}-(\d+)-")
    removed = []
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            m = pattern.match(entry.name)
            if m and not pid_alive(int(m.group(1))) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    return removed


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """A scratch folder ``bertdeploy-KIND-PID-XXXX`` in the system temp dir, removed afterwards; stale ones of the
    same kind (their process is gone) are removed first."""
    sweep_scratch(kind)
    with (
        tempfile.TemporaryDirectory(prefix=_scratch_prefix(kind)) as tmp,
        disk_errors(f"scratch files in {tempfile.gettempdir()}", probe=tmp, only_here=True),  # before the cleanup
    ):
        yield Path(tmp)


def check_inputs(output: str | os.PathLike[str], inputs: Iterable[Any], what: str = "output") -> None:
    """Refuse an ``output`` that is, contains or lies inside one of ``inputs`` (paths that do not exist, such as
    Hub ids, and None are ignored). Symlinks are followed."""
    out = _real(output)
    for given in inputs:
        if given is None or str(given) in ("", "-"):
            continue
        p = Path(str(given)).expanduser()
        if not os.path.lexists(p):
            continue
        src = _real(p)
        if out == src:
            relation = "is"
        elif src in out.parents:
            relation = "lies inside"
        elif out in src.parents:
            relation = "contains"
        else:
            continue
        raise UserError(f"the {what} {output} {relation} the input {given}: choose another {what}")


def _describe(folder: Path, limit: int = 5) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_output_dir(
    path: str | os.PathLike[str],
    overwrite: bool,
    what: str = "output",
    kind: str | None = None,
    inputs: Iterable[Any] = (),
) -> Path:
    """Validate an output folder before any work starts (so a bad path fails fast, writing nothing).

    A non-empty folder is replaced only with ``overwrite`` and only when it is an output of ``kind`` (None: of any
    kind of :data:`KINDS`); the output must not be, contain or lie inside any of ``inputs``.
    """
    path = Path(path)
    real = _real(path)
    check_inputs(path, inputs, what)
    if real.exists() and not real.is_dir():
        raise UserError(f"{what} path exists and is a file: {path}")
    if real.is_dir() and any(real.iterdir()):
        if not overwrite:
            raise UserError(f"{what} folder already exists and is not empty: {path} (pass --overwrite/--force)")
        found = kind_of(real)
        allowed = [kind] if kind is not None else list(KINDS)
        if found not in allowed:
            wanted = " or ".join(KINDS[k].label for k in allowed)
            why = f"it is a {KINDS[found].label}" if found else f"it holds {_describe(real)}"
            raise UserError(f"refusing to replace {path}: not a {wanted} ({why}); choose another {what} folder")
    probe = real.parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UserError(f"cannot write to {probe} (permission denied)")
    return path


def usual_modes(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the modes the umask gives new files.

    ``mkstemp`` / ``mkdtemp`` create 0600 / 0700; what bertdeploy writes is shipped, served or shared, so every
    atomic writer calls this before renaming into place.
    """
    mask = os.umask(0)
    os.umask(mask)
    root = Path(path)
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for p in paths:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{TAG}-{os.getpid()}."


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists and is neither a regular file nor a folder (symlinks followed): "pipe" (a
    FIFO, a shell's ``<(...)``, ``/dev/stdout`` on a pipe), "device" (a character device: ``/dev/null``, a
    terminal; or any file reached through ``/dev/`` or ``/proc/``, such as ``/dev/stdout`` redirected to a file),
    "block device" or "socket"; else None."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    kinds = (
        (stat.S_ISFIFO, "pipe"),
        (stat.S_ISCHR, "device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    )
    kind = next((name for test, name in kinds if test(mode)), None)
    if kind is None and stat.S_ISREG(mode) and os.path.abspath(path).startswith(("/dev/", "/proc/")):
        return "device"  # /dev/stdout onto a redirected file: written through the descriptor, never replaced
    return kind


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it into place on success, delete it on failure.

    A pipe or a character device (``mkfifo out.jsonl``, ``/dev/null``, ``/dev/stdout``) is written in place
    instead: renaming over it would replace it with a regular file, and its reader would get nothing. A block device
    or a socket is refused."""
    kind = special_kind(path)
    if kind in ("block device", "socket"):
        raise UserError(f"refusing to write to {path}: it is a {kind}")
    if kind is not None:
        with disk_errors(path):
            yield Path(path)
        return
    target = _real(path)
    with disk_errors(path, probe=target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_siblings(target)
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            usual_modes(tmp)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically (temporary sibling, then rename)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def relative_paths(data: Any, root: str | os.PathLike[str] | None = None) -> Any:
    """``data`` (JSON-like) with every string that is a path under ``root`` (default: the working directory) made
    relative to it: committed results name files as a user's checkout has them, not as the measuring machine did."""
    base = str(Path(root or Path.cwd()).resolve())
    prefix = base + os.sep

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return "." if value == base else value[len(prefix) :] if value.startswith(prefix) else value
        if isinstance(value, dict):
            return {key: fix(v) for key, v in value.items()}
        if isinstance(value, list | tuple):
            return [fix(v) for v in value]
        return value

    return fix(data)


@contextlib.contextmanager
def staging_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary sibling folder of ``path`` (``.NAME.bertdeploy-PID.XXXX.tmp``, on the same file system, so that
    what is built there can be renamed into place), removed afterwards unless it was renamed away. The leftovers of
    writers of ``path`` that no longer run are swept first (:func:`sweep_siblings`)."""
    target = _real(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_siblings(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _park(target: Path) -> Path:
    """Move ``target`` aside as ``.NAME.bertdeploy-PID.old`` (put back by :func:`sweep_siblings` after a kill)."""
    old = target.with_name(f".{target.name}.{TAG}-{os.getpid()}.old")
    os.replace(target, old)
    return old


def install_dir(folder: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """Rename the finished ``folder`` (a sibling of ``path``, e.g. from :func:`staging_dir`) to ``path``. An existing
    ``path`` is parked for the instant between the two renames, then removed: a kill there leaves it parked, and the
    next writer of ``path`` puts it back. True when an existing folder was replaced. The one mechanism of every
    folder bertdeploy replaces (bundles, runs, bench results, Triton model folders)."""
    target = _real(path)
    if not os.path.lexists(target):
        os.replace(folder, target)
        return False
    old = _park(target)
    os.replace(folder, target)
    shutil.rmtree(old, ignore_errors=True)
    return True


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str], overwrite: bool = False, kind: str | None = None, inputs: Iterable[Any] = ()
) -> Iterator[Path]:
    """Build a folder in a temporary sibling and rename it into place when the block succeeds.

    An exception (or a kill) inside the block leaves ``path`` untouched; the temporary folder is removed (after a
    kill: by the next writer of ``path``). ``overwrite`` / ``kind`` / ``inputs``: see :func:`check_output_dir`,
    which runs when the block starts and again just before an existing folder is replaced.
    """
    check_output_dir(path, overwrite, kind=kind, inputs=inputs)
    target = _real(path)
    with disk_errors(path, probe=target.parent), staging_dir(target) as tmp:
        yield tmp
        usual_modes(tmp)
        if target.exists():
            check_output_dir(path, overwrite, kind=kind)  # it may have changed while the block ran
        install_dir(tmp, target)
