"""Dynamic batching across requests: a bounded queue of requests -> one worker thread that joins the requests
waiting together (up to ``max_batch_texts``, waiting at most ``max_wait_ms`` for company) -> the runtime's own
batcher (:meth:`Predictor.encode` + :meth:`Predictor.forward`: length-sorted token-budget model calls,
order restored) -> each request's future, resolved on its event loop.

Inference runs on the worker thread, never on the event loop. The worker also loads and warms the model, so the
server answers ``/health`` (not ready yet) while a large model loads. Standard library + numpy only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bertdeploy.errors import UserError
from bertdeploy.serve.options import ServeOptions
from bertdeploy.serve.qa_api import warmup_inputs

log = logging.getLogger("bertdeploy.serve")


class QueueFull(Exception):
    """The request queue holds ``max_queue`` requests already."""


class NotReady(Exception):
    """The model is still loading (or failed to load, or the batcher is stopping)."""


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    queued_at: float = field(default_factory=time.perf_counter)
    doc_stride: int | None = None
    """A reader's windows for this request (None: the bundle's); requests with another run as their own batch."""


def _resolve(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    """Runs on the request's event loop; a caller that went away (cancelled future) is skipped."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _deliver(job: _Job, value: Any, error: BaseException | None) -> None:
    try:
        job.loop.call_soon_threadsafe(_resolve, job.future, value, error)
    except RuntimeError:  # the caller's event loop is closed: nobody is waiting any more
        pass


class DynamicBatcher:
    """Owns the classifier (built by ``loader`` on the worker thread) and the queue in front of it.

    ``observe`` receives ``(event, value)`` pairs for metrics: ``("queue_wait", s)``, ``("batch", texts)``,
    ``("inference", s)``, ``("queue_depth", requests)``. A request whose texts fail (a bad input, a backend error)
    fails alone: its batch-mates are run again without it (:meth:`_infer`).
    """

    def __init__(
        self,
        loader: Callable[[], Any],
        options: ServeOptions,
        observe: Callable[[str, float], None] = lambda event, value: None,
        close_classifier: bool = True,
    ) -> None:
        self.options = options
        self.classifier: Any = None
        self.state = "loading"
        """"loading" -> "ready" -> "stopped", or "failed" (see :attr:`error`)."""
        self.error: str | None = None
        self.warmup_seconds: float | None = None
        self._loader = loader
        self._observe = observe
        self._close_classifier = close_classifier
        self._pending: deque[_Job] = deque()
        self._queued_texts = 0
        self._last_batch_requests = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="bertdeploy-batcher", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker (it loads the model first); calling it again does nothing."""
        with self._cond:
            if self._thread.ident is None:
                self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish every queued request, then stop the worker (and close the classifier it loaded)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def queued(self) -> int:
        return len(self._pending)

    # -- requests --------------------------------------------------------------------------------------
    async def submit(self, texts: list[str], doc_stride: int | None = None) -> np.ndarray:
        """Queue ``texts`` (one request; ``doc_stride``: a reader's windows, None: the bundle's) and wait for their
        logits ``[len(texts), num_labels]``, in order."""
        loop = asyncio.get_running_loop()
        job = _Job(texts, loop.create_future(), loop, doc_stride=doc_stride)
        with self._cond:
            if self.state != "ready" or self._stopping:
                raise NotReady(self.error or self.state)
            if len(self._pending) >= self.options.max_queue:
                raise QueueFull(f"{len(self._pending)} requests are queued (--max-queue {self.options.max_queue})")
            self._pending.append(job)
            self._queued_texts += len(texts)
            self._cond.notify()
        self._observe("queue_depth", len(self._pending))
        return await job.future

    # -- the worker thread -----------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._load()
        except Exception as e:  # the server stays up to report it on /health
            self.state, self.error = "failed", f"loading the model failed: {e}"
            log.error("%s", self.error)
            return
        try:
            while (jobs := self._next_batch()) is not None:
                self._run(jobs)
        finally:
            self.state = "stopped"
            if self._close_classifier and hasattr(self.classifier, "close"):
                self.classifier.close()

    def _load(self) -> None:
        start = time.perf_counter()
        self.classifier = self._loader()
        if self.options.warmup:
            self.classifier.forward(self.classifier.encode(warmup_inputs(self.classifier)))
        self.warmup_seconds = time.perf_counter() - start
        with self._cond:
            self.state = "ready"
        log.info("ready in %.2f s: %r", self.warmup_seconds, self.classifier)

    def _next_batch(self) -> list[_Job] | None:
        """Block until a batch is due; None once stopping with nothing left.

        The first request waits up to ``max_wait_ms`` for company only when requests are arriving together (the
        previous batch held several, or several are queued): a lone client is never delayed. Requests that arrive
        while a batch runs are queued and join the next one anyway.
        """
        opts = self.options
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if not self._pending:
                return None
            if opts.batching and (self._last_batch_requests > 1 or len(self._pending) > 1):
                deadline = self._pending[0].queued_at + opts.max_wait_ms / 1000
                while self._queued_texts < opts.max_batch_texts and not self._stopping:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            jobs = [self._pending.popleft()]
            total = len(jobs[0].texts)
            while opts.batching and self._pending and total + len(self._pending[0].texts) <= opts.max_batch_texts:
                jobs.append(self._pending.popleft())
                total += len(jobs[-1].texts)
            self._queued_texts -= total
            self._last_batch_requests = len(jobs)
            depth = len(self._pending)
        self._observe("queue_depth", depth)
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        start = time.perf_counter()
        groups: dict[int | None, list[_Job]] = {}
        for job in jobs:
            self._observe("queue_wait", start - job.queued_at)
            groups.setdefault(job.doc_stride, []).append(job)
        for group in groups.values():  # one model batch per window stride
            self._infer(group, time.perf_counter())

    def _infer(self, jobs: list[_Job], start: float) -> None:
        """Run ``jobs`` as one model batch and resolve each request with its rows.

        Isolation: when the batch fails (one request's bad input, or a backend error), every request is run again
        alone, so the failure reaches only the request(s) that cause it; the others get their answers.
        """
        texts = [t for job in jobs for t in job.texts]
        try:
            clf, stride = self.classifier, jobs[0].doc_stride
            outputs = clf.forward(clf.encode(texts) if stride is None else clf.encode_with(texts, stride))
        except Exception as e:
            if len(jobs) > 1:
                log.warning("a batch of %d requests failed (%s); running each alone", len(jobs), _one_line(e))
                for job in jobs:
                    self._infer([job], time.perf_counter())
                return
            if isinstance(e, UserError):  # a bad input the request checks did not catch: the client's, one line
                log.warning("a request of %d texts was refused: %s", len(texts), e)
            else:
                log.exception("inference failed for a request of %d texts", len(texts))
            _deliver(jobs[0], None, e)
            return
        self._observe("inference", time.perf_counter() - start)
        self._observe("batch", len(texts))
        offset = 0
        for job in jobs:
            part = outputs[offset : offset + len(job.texts)]
            offset += len(job.texts)
            _deliver(job, part, None)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
