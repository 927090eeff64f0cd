"""Reaching the Hugging Face Hub: a fast reachability probe so an offline machine gets one clear error
instead of a long retry storm. The real Hub code paths (model ids, dataset ids) are kept."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hub endpoint accepts a TCP connection (and offline mode is not forced)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def offline_message(kind: str, name: str, hint: str) -> str:
    return f"cannot reach the Hugging Face Hub to fetch {kind} {name!r} (offline, and not in the local cache); {hint}"
