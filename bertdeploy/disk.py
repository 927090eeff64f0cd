"""Disk errors as one line: a full disk, a quota or a read-only file system while writing is a :class:`UserError`
naming what was being written (:func:`disk_errors`), blamed on the right file system. Standard library only."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from bertdeploy.errors import UserError

#: errno values that mean "the disk said no", shown as one line instead of a traceback
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


#: below this many free bytes a failed write is blamed on the full disk (libraries that write through their own
#: I/O, such as safetensors or torch.save, raise their own error types instead of OSError(ENOSPC))
NEARLY_FULL = 1 << 20


def nearly_full(path: str | os.PathLike[str]) -> bool:
    """True when the file system holding ``path`` (or its nearest existing parent) has almost no space left."""
    try:
        st = os.statvfs(_existing(path))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NEARLY_FULL


def _existing(path: str | os.PathLike[str]) -> Path:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _here(error: OSError, probe: str | os.PathLike[str]) -> bool:
    """Whether the disk error ``error`` is known to have happened on the file system of ``probe``: by the file it
    names (the destination of a copy or a rename), else by that file system being full."""
    name = error.filename2 or error.filename
    if isinstance(name, (str, os.PathLike)):
        with contextlib.suppress(OSError):
            return os.stat(_existing(name)).st_dev == os.stat(_existing(probe)).st_dev
    return error.errno == errno.ENOSPC and nearly_full(probe)


@contextlib.contextmanager
def disk_errors(
    what: str | os.PathLike[str], probe: str | os.PathLike[str] | None = None, only_here: bool = False
) -> Iterator[None]:
    """Turn a full disk / quota / read-only file system inside the block into one :class:`UserError` line; with
    ``probe`` (a folder written to), any error raised while that file system is full counts as one too.

    With ``only_here`` (a scratch folder inside an output's block) a disk error is blamed on ``what`` only when it is
    known to have happened on ``probe``'s file system; any other is left to the enclosing output's handler, so that a
    full output disk is not reported as the scratch folder's.
    """
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            if only_here and probe is not None and not _here(e, probe):
                raise
            raise UserError(f"cannot write {what}: {os.strerror(e.errno)}") from None
        if probe is not None and nearly_full(probe):
            raise UserError(f"cannot write {what}: {os.strerror(errno.ENOSPC)}") from None
        raise
