"""Serve a bundle over HTTP: an ASGI app (Starlette) with dynamic batching across requests, the Hugging Face
Inference API of the bundle's task on ``/``, TEI-shaped ``/predict``, ``/health``, ``/info`` and Prometheus
``/metrics``. Needs the ``serve`` extra (starlette, uvicorn,
prometheus-client) beside an onnxruntime one; never torch / transformers / optimum.

    import bertdeploy.serve
    asgi = bertdeploy.serve.app("models/emotion")      # mount it, or run it with uvicorn
    bertdeploy.serve.serve("models/emotion", port=8080) # what `bertdeploy serve` calls
"""

from __future__ import annotations

from bertdeploy.errors import require

require("onnxruntime", "cpu")
for _module in ("starlette", "uvicorn", "prometheus_client"):
    require(_module, "serve")

from bertdeploy.serve.asgi import app  # noqa: E402
from bertdeploy.serve.options import ServeOptions  # noqa: E402
from bertdeploy.serve.server import serve  # noqa: E402

__all__ = ["ServeOptions", "app", "serve"]
