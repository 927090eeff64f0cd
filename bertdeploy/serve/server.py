"""`serve()`: run the app under uvicorn (what ``bertdeploy serve`` calls).

SIGTERM / SIGINT drain gracefully: uvicorn stops accepting connections, waits up to ``drain_timeout`` seconds for
the requests in flight, then the app's lifespan ends, which finishes the batcher's queue. ``workers > 1`` runs that
many processes (each loads its own session with ``threads // workers`` threads) on one port.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import uvicorn

from bertdeploy import bundle as _bundle
from bertdeploy.errors import UserError
from bertdeploy.machine import usable_cpus
from bertdeploy.runtime import LoadOptions
from bertdeploy.serve.asgi import app
from bertdeploy.serve.metrics import MULTIPROC_ENV
from bertdeploy.serve.options import SERVE_BATCH_SIZE, ServeOptions, serving_load_options

SPEC_ENV = "BERTDEPLOY_SERVE_SPEC"
"""The app's settings as JSON, for the worker processes of ``workers > 1`` (uvicorn imports the app by name)."""


def serve(
    bundle: str | os.PathLike[str],
    load: LoadOptions | None = None,
    options: ServeOptions | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    drain_timeout: float = 30.0,
    access_log: bool = False,
    log_level: str = "info",
    max_connections: int = 1024,
) -> None:
    """Serve ``bundle`` on ``host:port`` until SIGTERM / SIGINT (then drain and return).

    ``max_connections``: open connections (and requests) per worker process; beyond it uvicorn answers 503 at once
    (``limit_concurrency``). ``workers`` may not exceed the CPUs this process may use (each loads a model).
    Raises :class:`UserError` before listening when the bundle, the variant, the port or an option is wrong.
    """
    options = options or ServeOptions()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise UserError(f"workers must be an integer >= 1, got {workers!r}")
    if workers > usable_cpus():
        raise UserError(f"workers must be <= {usable_cpus()} (the CPUs this process may use), got {workers}")
    if not isinstance(max_connections, int) or isinstance(max_connections, bool) or max_connections < 1:
        raise UserError(f"max_connections must be an integer >= 1, got {max_connections!r}")
    if workers > 1 and (load is None or load.threads is None):
        load = dataclasses.replace(
            load or LoadOptions(batch_size=SERVE_BATCH_SIZE), threads=max(1, usable_cpus() // workers)
        )
    load = serving_load_options(load)
    manifest = _bundle.read_manifest(bundle)
    if load.variant != "auto":
        manifest.variant(load.variant)
    _check_port(host, port)
    settings: dict[str, Any] = dict(
        host=host,
        port=port,
        timeout_graceful_shutdown=drain_timeout,
        limit_concurrency=max_connections,
        access_log=access_log,
        log_level=log_level,
        log_config=_log_config(),
    )
    if workers == 1:
        uvicorn.run(app(bundle, load, options), **settings)
        return
    spec = {"bundle": str(Path(bundle).resolve()), "load": _load_dict(load), "serve": options.to_dict()}
    own_dir = None
    if not os.environ.get(MULTIPROC_ENV):  # /metrics sums the workers through prometheus-client's files
        own_dir = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="bertdeploy-metrics-")
    os.environ[SPEC_ENV] = json.dumps(spec)
    try:
        uvicorn.run("bertdeploy.serve.server:app_from_env", factory=True, workers=workers, **settings)
    finally:
        os.environ.pop(SPEC_ENV, None)
        if own_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(own_dir, ignore_errors=True)


def app_from_env():  # noqa: ANN201 - a Starlette app; the factory uvicorn calls in each worker process
    spec = json.loads(os.environ[SPEC_ENV])
    return app(spec["bundle"], LoadOptions(**spec["load"]), ServeOptions(**spec["serve"]))


def _load_dict(load: LoadOptions) -> dict[str, Any]:
    if load.session_config is not None:
        raise UserError("workers > 1 takes the load options of the command line only (no session_config)")
    return {f.name: getattr(load, f.name) for f in dataclasses.fields(load) if f.name != "session_config"}


def _check_port(host: str, port: int) -> None:
    """Fail with one line (not uvicorn's exit 1 after a log line) when the address cannot be bound."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise UserError(f"port must be an integer in 0..65535, got {port!r}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, port), family=family):
            pass
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _log_config() -> dict[str, Any]:
    """uvicorn's logging configuration plus the ``bertdeploy.serve`` logger (model ready / load failures)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["bertdeploy.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
