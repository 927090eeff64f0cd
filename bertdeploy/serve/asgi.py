"""The ASGI app (Starlette): ``POST /`` (the Hugging Face Inference API for the bundle's task), ``POST /predict``
(TEI shapes), ``GET /health``, ``GET /info``, ``GET /metrics``. Both ``POST`` routes share the dynamic batcher; each
request decodes its slice of a batch with its own parameters (:mod:`bertdeploy.serve.inference_api`).

Every error is a JSON body ``{"error", "error_type"}``: a 4xx naming the problem for anything the client sent
(408 for a body that does not arrive within ``body_timeout_s``), a 503 with ``Retry-After`` while loading, when the
queue is full or when the drain timeout cut a request off; a 500 (logged, counted in ``/metrics``) only for a backend
failure or a bug, and only for the request that met it (the batcher isolates it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bertdeploy import __version__, tasks
from bertdeploy.bundle import read_manifest
from bertdeploy.errors import UserError
from bertdeploy.machine import versions
from bertdeploy.runtime import LoadOptions, Predictor, load_with
from bertdeploy.serve.batcher import DynamicBatcher, NotReady, QueueFull
from bertdeploy.serve.inference_api import Parsed, parse_inference, parse_tei
from bertdeploy.serve.metrics import Metrics
from bertdeploy.serve.options import ServeOptions, serving_load_options
from bertdeploy.serve.protocol import RequestError, check_content_type, parse_json

#: requests of more texts than this decode their answer on a worker thread instead of the event loop
INLINE_DECODE_TEXTS = 8

log = logging.getLogger("bertdeploy.serve")
#: the status counted for a client that disconnected mid-body (nginx's "client closed request"; nobody reads it)
CLIENT_CLOSED = 499
_VERSIONS = ("onnxruntime", "onnxruntime-gpu", "tokenizers", "numpy", "starlette", "uvicorn", "prometheus-client")


def app(
    bundle: str | os.PathLike[str] | Predictor,
    load: LoadOptions | None = None,
    options: ServeOptions | None = None,
) -> Starlette:
    """The ASGI app serving ``bundle`` (a bundle folder, or an already loaded runtime head: a ``Classifier`` or a
    ``Tagger``).

    The model is loaded (and warmed up) on the batching thread when the app starts (its lifespan), so
    ``/health`` answers 503 until it is ready; stopping the app finishes the queued requests first. Mounted in
    another Starlette app (whose lifespan does not run a mounted app's), it starts on its first request instead.

    Args:
        bundle: a folder written by ``bertdeploy export``, or a loaded head (not closed by the app).
        load: how to load the bundle (variant, device, threads, model batch size); ignored for a loaded head.
            Default: :func:`~bertdeploy.serve.options.serving_load_options` (batch size 4, one stream per thread).
        options: limits and dynamic batching (:class:`ServeOptions`).

    Mount it in your own service (``Mount("/classifier", app=...)``) or run it: ``uvicorn.run(app(...))``.
    """
    options = options or ServeOptions()
    if isinstance(bundle, Predictor):
        clf = bundle
        tasks.get(clf.task.name, stage="serve")
        loader: Callable[[], Predictor] = lambda: clf  # noqa: E731
        name, owned = str(clf.bundle), False
    else:
        load = serving_load_options(load)
        path = Path(bundle)
        tasks.get(read_manifest(path).task, stage="serve")  # a task serve cannot answer fails before starting
        loader, name, owned = (lambda: load_with(path, load)), str(path), True
    return _build(loader, name, options, owned)


def _build(loader: Callable[[], Predictor], name: str, options: ServeOptions, owned: bool) -> Starlette:
    metrics = Metrics()
    batcher = DynamicBatcher(loader, options, metrics.observe, close_classifier=owned)
    service = _Service(batcher, metrics, options, name)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):
        batcher.start()
        try:
            yield
        finally:  # in-flight requests have been answered by now (uvicorn drains connections first)
            await run_in_threadpool(batcher.stop)

    routes = [
        Route("/", service.inference, methods=["POST"]),
        Route("/predict", service.predict, methods=["POST"]),
        Route("/health", service.health, methods=["GET"]),
        Route("/info", service.info, methods=["GET"]),
        Route("/metrics", service.metrics, methods=["GET"]),
    ]
    handlers = {HTTPException: _http_error, Exception: _server_error}
    starlette = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)  # type: ignore[arg-type]
    starlette.state.batcher = batcher
    return starlette


def _error(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return _error(exc.status_code, message, "validation" if exc.status_code < 500 else "backend", exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, f"internal error ({type(exc).__name__}); see the server log", "backend")


class _Service:
    """The endpoints, over one batcher."""

    def __init__(self, batcher: DynamicBatcher, metrics: Metrics, options: ServeOptions, name: str) -> None:
        self.batcher, self.stats, self.options, self.name = batcher, metrics, options, name

    async def predict(self, request: Request) -> Response:
        """``POST /predict``: TEI's shapes (entities per text for a token-classification bundle)."""
        return await self._serve(request, "predict", parse_tei)

    async def inference(self, request: Request) -> Response:
        """``POST /``: the Hugging Face Inference API for the bundle's task."""
        return await self._serve(request, "inference", parse_inference)

    async def _serve(self, request: Request, endpoint: str, parse: Callable[[Any, int, Any], Parsed]) -> Response:
        self.batcher.start()  # a no-op once started: for an app mounted without its lifespan
        start, error_type = time.perf_counter(), None
        try:
            check_content_type(request.headers.get("content-type"))
            body = await self._body(request)
            predictor = self.batcher.classifier
            if predictor is None:  # the request shapes depend on the bundle's task
                raise NotReady(self.batcher.error or self.batcher.state)
            parsed = parse(parse_json(body), self.options.max_request_texts, predictor)
            outputs = await self.batcher.submit(parsed.texts, parsed.doc_stride)
            if len(parsed.texts) > INLINE_DECODE_TEXTS:
                answer = await run_in_threadpool(parsed.respond, outputs)
            else:
                answer = parsed.respond(outputs)
            response: Response = JSONResponse(answer)
            self.stats.latency.observe(time.perf_counter() - start)
        except Exception as e:
            response, error_type = self._failed(e, request.url.path)
        except asyncio.CancelledError:  # the drain timeout expired: answer instead of uvicorn's plain-text 500
            response, error_type = self._unavailable("the server stopped before answering; retry", "shutdown"), None
        self._count(endpoint, response.status_code, error_type)
        return response

    def _failed(self, e: Exception, path: str) -> tuple[Response, str]:
        """The JSON error answering a failed request, and its error type: 4xx for what the client sent, 503 while
        loading or overloaded, 499 for a client that went away mid-body, 500 (logged) for a backend failure."""
        if isinstance(e, RequestError):
            status, message, error_type = e.status, e.message, e.error_type
        elif isinstance(e, UserError):  # the runtime's text rule refused a text (the request checks share it)
            status, message, error_type = 422, str(e), "validation"
        elif isinstance(e, QueueFull):
            return self._unavailable(f"overloaded: {e}; retry later", "overloaded"), "overloaded"
        elif isinstance(e, NotReady):
            return self._unavailable(f"not ready: {e}", "unhealthy"), "unhealthy"
        elif isinstance(e, ClientDisconnect):  # one line, not uvicorn's traceback per stalled client
            log.info("POST %s: the client disconnected before sending its whole body", path)
            status, message, error_type = CLIENT_CLOSED, "the client disconnected mid-body", "disconnected"
        else:
            log.exception("POST %s failed (500): %s", path, type(e).__name__)
            status, message, error_type = 500, f"internal error ({type(e).__name__}); see the server log", "backend"
        return _error(status, message, error_type), error_type

    async def _body(self, request: Request) -> bytes:
        limit = self.options.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the request body has {declared} bytes; at most {limit} are accepted")
        chunks: list[bytes] = []

        async def read() -> None:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, f"the request body is larger than {limit} bytes")
                chunks.append(chunk)

        timeout = self.options.body_timeout_s
        try:
            await asyncio.wait_for(read(), timeout)
        except asyncio.TimeoutError:
            raise RequestError(408, f"the request body did not arrive within {timeout:g} s", "timeout") from None
        return b"".join(chunks)

    def _unavailable(self, message: str, error_type: str) -> Response:
        return _error(503, message, error_type, {"Retry-After": str(self.options.retry_after_s)})

    def _count(self, endpoint: str, code: int, error_type: str | None = None) -> None:
        self.stats.requests.labels(endpoint, str(code)).inc()
        if error_type is not None:
            self.stats.errors.labels(error_type).inc()

    async def health(self, request: Request) -> Response:
        b = self.batcher
        b.start()
        if b.ready:
            self._count("health", 200)
            return JSONResponse({"status": "ready", "warmup_seconds": b.warmup_seconds})
        self._count("health", 503)
        return self._unavailable(b.error or b.state, "unhealthy")

    async def info(self, request: Request) -> Response:
        clf, opts = self.batcher.classifier, self.options
        body: dict[str, Any] = {"bundle": self.name, "state": self.batcher.state, "version": __version__}
        if clf is not None:
            body.update(
                task=clf.task.name,
                variant=clf.variant.name,
                precision=clf.variant.precision,
                labels=clf.labels,
                max_input_length=clf.max_length,
                providers=clf.providers,
                batch_size=clf.policy.batch_size,
                streams=clf.streams,
                max_batch_tokens=clf.policy.max_tokens,
            )
        body.update(
            max_client_batch_size=opts.max_request_texts,
            serve=opts.to_dict(),
            pid=os.getpid(),
            versions={"bertdeploy": __version__, **versions(_VERSIONS)},
        )
        self._count("info", 200)
        return JSONResponse(body)

    async def metrics(self, request: Request) -> Response:
        return Response(self.stats.render(), media_type=self.stats.content_type)
