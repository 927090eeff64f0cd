"""Prometheus metrics of one app, in a registry of its own (nothing global: two apps in one process do not mix).

With ``--workers N`` every worker process counts its own; ``bertdeploy serve`` then sets prometheus-client's
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``) so that ``/metrics`` adds up all the workers.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "bertdeploy_requests", "HTTP requests by endpoint and status code.", ["endpoint", "code"], registry=r
        )
        self.errors = Counter(
            "bertdeploy_errors", "Requests answered with an error, by error type.", ["error_type"], registry=r
        )
        self.texts = Counter("bertdeploy_texts", "Texts classified.", registry=r)
        self.batches = Histogram(
            "bertdeploy_batch_size", "Texts per dynamic batch (across requests).", buckets=_SIZES, registry=r
        )
        self.queue_wait = Histogram(
            "bertdeploy_queue_wait_seconds", "Time a request waited for its batch.", buckets=_LATENCY, registry=r
        )
        self.inference = Histogram(
            "bertdeploy_inference_seconds",
            "Tokenization + model time of one dynamic batch.",
            buckets=_LATENCY,
            registry=r,
        )
        self.latency = Histogram(
            "bertdeploy_request_seconds", "Time to answer a /predict request.", buckets=_LATENCY, registry=r
        )
        self.queue_depth = Gauge(
            "bertdeploy_queue_depth", "Requests waiting for a batch.", registry=r, multiprocess_mode="livesum"
        )

    def observe(self, event: str, value: float) -> None:
        """The batcher's hook (see :class:`~bertdeploy.serve.batcher.DynamicBatcher`)."""
        if event == "queue_wait":
            self.queue_wait.observe(value)
        elif event == "inference":
            self.inference.observe(value)
        elif event == "batch":
            self.batches.observe(value)
            self.texts.inc(value)
        elif event == "queue_depth":
            self.queue_depth.set(value)

    def render(self) -> bytes:
        """The text exposition format; summed over worker processes in multiprocess mode."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
