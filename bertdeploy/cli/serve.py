"""`bertdeploy serve BUNDLE`: parse options, call :func:`bertdeploy.serve.serve` (uvicorn until SIGTERM)."""

from __future__ import annotations

from typing import Any

import click

from bertdeploy.cli.options import provider_option
from bertdeploy.errors import require_extra


@click.command(name="serve")
@click.argument("bundle", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Processes, each with its own session.")
@click.option("--variant", default="auto", show_default=True, help="Bundle variant (auto: int8 on CPU, fp16 on CUDA).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | tensorrt.")
@click.option("--threads", type=int, default=None, help="ONNX Runtime threads in total (default: all cores / workers).")
@click.option(
    "--batch-size",
    type=int,
    default=4,  # bertdeploy.serve.options.SERVE_BATCH_SIZE (not imported: the CLI loads without the serve extra)
    show_default=True,
    help="Max rows per model call: a dynamic batch is length-sorted and cut into calls of this size (small calls "
    "waste less padding on a few dozen texts of mixed length; benchmarks/serve).",
)
@click.option(
    "--streams",
    type=int,
    default=None,
    help="Model calls run at once, threads // streams threads each (default: one per thread).",
)
@click.option("--max-tokens", type=int, default=None, help="Token budget per model call (1024 CPU EP, else 8192).")
@click.option("--max-wait-ms", type=float, default=5.0, show_default=True, help="Wait for more requests to batch.")
@click.option("--max-batch-texts", type=int, default=64, show_default=True, help="Texts per dynamic batch.")
@click.option("--max-queue", type=int, default=256, show_default=True, help="Queued requests; more get a 503.")
@click.option("--batching/--no-batching", default=True, show_default=True, help="Dynamic batching across requests.")
@click.option("--max-request-texts", type=int, default=64, show_default=True, help="Texts per request (413 above).")
@click.option("--max-body-bytes", type=int, default=1 << 20, show_default=True, help="Request body size (413 above).")
@click.option("--body-timeout", type=float, default=10.0, show_default=True, help="Seconds to send a body (408 after).")
@click.option("--max-connections", type=int, default=1024, show_default=True, help="Per worker; more get a 503.")
@click.option("--drain-timeout", type=float, default=30.0, show_default=True, help="Seconds to finish on SIGTERM.")
@click.option("--access-log", is_flag=True, help="Log every request (costs throughput).")
@click.option("--allow-fallback", is_flag=True, help="Run on the CPU (with a warning) if the GPU does not attach.")
@provider_option
def command(
    bundle: str,
    host: str,
    port: int,
    workers: int,
    max_wait_ms: float,
    max_batch_texts: int,
    max_queue: int,
    batching: bool,
    max_request_texts: int,
    max_body_bytes: int,
    body_timeout: float,
    max_connections: int,
    drain_timeout: float,
    access_log: bool,
    **load_options: Any,
) -> None:
    """Serve BUNDLE over HTTP: POST / (the Hugging Face Inference API of the bundle's task: labels, entities,
    answer spans, choices), POST /predict (text-embeddings-inference shapes; entities for a token-classification
    bundle; none for question answering / multiple choice), GET /health, /info, /metrics.

    SIGTERM (or Ctrl-C) drains the requests in flight and exits 0: the normal way to stop a server.

    \b
    bertdeploy serve models/emotion --port 8080
    curl -s localhost:8080/predict -H 'Content-Type: application/json' -d '{"inputs": "i feel great"}'
    curl -s localhost:8080/ -H 'Content-Type: application/json' -d '{"inputs": "so great", "parameters": {"top_k": 2}}'
    """
    require_extra("serve", "bertdeploy serve")
    from bertdeploy.runtime import LoadOptions
    from bertdeploy.serve import ServeOptions, serve

    options = ServeOptions(
        max_wait_ms=max_wait_ms,
        max_batch_texts=max_batch_texts,
        max_queue=max_queue,
        batching=batching,
        max_request_texts=max_request_texts,
        max_body_bytes=max_body_bytes,
        body_timeout_s=body_timeout,
    )
    serve(
        bundle,
        LoadOptions(**load_options),
        options,
        host=host,
        port=port,
        workers=workers,
        drain_timeout=drain_timeout,
        access_log=access_log,
        max_connections=max_connections,
    )
