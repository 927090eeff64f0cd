"""Reaching the Hugging Face Hub: a fast reachability probe so an offline machine gets one clear error instead of
a long retry storm. Every Hub path (model and tokenizer ids, dataset ids) calls :func:`require` before it loads
anything: online, it goes ahead; offline with the id in the local cache, it loads from the cache (``local_files_only``
for transformers, :func:`offline` for datasets); offline without it, one :class:`UserError` line, at once."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from bertdeploy.errors import UserError

#: seconds the probe waits for a TCP connection to the Hub (name resolution included)
CONNECT_TIMEOUT = 2.0


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = CONNECT_TIMEOUT) -> bool:
    """True when the Hub endpoint accepts a TCP connection within ``timeout`` (and offline mode is not forced).

    Asked once per process. The connection is tried in a daemon thread so that a hanging DNS lookup (which a
    socket timeout does not bound) cannot stall the caller either."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, name="bertdeploy-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answer and answer[0])


def offline_message(kind: str, name: str, hint: str) -> str:
    return f"cannot reach the Hugging Face Hub to fetch {kind} {name!r} (offline, and not in the local cache); {hint}"


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()


def cached(repo_id: str, kind: str = "model") -> bool:
    """True when the local Hugging Face cache holds a snapshot of ``repo_id`` (``kind``: "model" or "dataset");
    for datasets also the ``datasets`` library's own cache. Reads folder names only."""
    hub = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or _hf_home() / "hub")
    snapshots = hub / f"{kind}s--{repo_id.replace('/', '--')}" / "snapshots"
    if snapshots.is_dir() and any(snapshots.iterdir()):
        return True
    if kind != "dataset":
        return False
    root = Path(os.environ.get("HF_DATASETS_CACHE") or _hf_home() / "datasets").expanduser()
    want = re.sub(r"[^a-z0-9]", "", repo_id.replace("/", "___").lower())
    with contextlib.suppress(OSError):
        return any(p.is_dir() and re.sub(r"[^a-z0-9]", "", p.name.lower()) == want for p in root.iterdir())
    return False


def require(kind: str, repo_id: str, hint: str) -> bool:
    """Before loading ``repo_id`` from the Hub: True when the Hub is reachable, False when it is not but the id is
    cached (load it offline); else a :class:`UserError` naming the id and what to do instead."""
    if hub_reachable():
        return True
    if cached(repo_id, kind):
        return False
    raise UserError(offline_message(kind, repo_id, hint))


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Hugging Face Hub and datasets in offline mode for the duration of the block (restored afterwards), so
    that a cached dataset loads without a retry storm against an unreachable Hub."""
    import huggingface_hub.constants as hub_constants

    targets = [hub_constants]
    with contextlib.suppress(ImportError):
        import datasets.config

        targets.append(datasets.config)
    saved = [(t, t.HF_HUB_OFFLINE) for t in targets]
    try:
        for t in targets:
            t.HF_HUB_OFFLINE = True
        yield
    finally:
        for t, value in saved:
            t.HF_HUB_OFFLINE = value
