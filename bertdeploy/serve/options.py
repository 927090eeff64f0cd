"""`ServeOptions`: the server's own limits and batching settings (the model's are a
:class:`~bertdeploy.runtime.LoadOptions`). Standard library only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from bertdeploy.errors import UserError
from bertdeploy.machine import usable_cpus
from bertdeploy.runtime.options import LoadOptions

#: rows per model call when serving: a dynamic batch holds a few dozen texts of mixed length; sorted and cut into
#: calls of <= 4 rows it wastes far less compute on padding than as one call (benchmarks/serve/README.md: 32
#: clients, MiniLM-L6 qint8, server CPU per text 1.74 ms with 4 rows against 1.91 with 8, median of 5 rounds)
SERVE_BATCH_SIZE = 4


@dataclass(frozen=True)
class ServeOptions:
    """How ``bertdeploy serve`` batches and what it accepts."""

    max_wait_ms: float = 5.0
    """How long the first request of a batch waits for others to join it, when requests arrive together (the previous
    batch held several); 0: run at once with what is queued."""
    max_batch_texts: int = 64
    """At most this many texts per dynamic batch (a single larger request still runs alone). The batch is then cut
    into the runtime's length-sorted token-budget model calls (``batch_size`` / ``max_tokens``)."""
    max_queue: int = 256
    """Requests waiting for a batch; one more is answered 503 with ``Retry-After``."""
    batching: bool = True
    """Dynamic batching across requests; False runs every request alone (the baseline of benchmarks/serve)."""
    max_request_texts: int = 64
    """Texts in one request (TEI's ``max_client_batch_size``); more is answered 413."""
    max_body_bytes: int = 1 << 20
    """Request body size; larger is answered 413."""
    retry_after_s: int = 1
    """The ``Retry-After`` header of a 503."""
    warmup: bool = True
    """Run one prediction after loading, before ``/health`` says ready."""
    body_timeout_s: float = 10.0
    """Seconds a client has to send the whole request body; slower is answered 408 (stalled clients hold no
    connection for long)."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_wait_ms, (int, float)) or isinstance(self.max_wait_ms, bool) or self.max_wait_ms < 0:
            raise UserError(f"max_wait_ms must be a number >= 0, got {self.max_wait_ms!r}")
        timeout = self.body_timeout_s
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout < float("inf"):
            raise UserError(f"body_timeout_s must be a number > 0, got {timeout!r}")
        for name in ("max_batch_texts", "max_queue", "max_request_texts", "max_body_bytes", "retry_after_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be an integer >= 1, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def serving_load_options(load: LoadOptions | None) -> LoadOptions:
    """The model settings for serving: ``load`` (default: batch size :data:`SERVE_BATCH_SIZE`) with ``streams``
    defaulting to one single-threaded model call per thread (a dynamic batch's calls then run side by side)."""
    load = load or LoadOptions(batch_size=SERVE_BATCH_SIZE)
    if load.streams is None:
        load = replace(load, streams=load.threads or usable_cpus())
    return load
