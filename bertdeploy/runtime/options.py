"""`LoadOptions`: how a bundle is loaded — variant, device, threads, batching — as one value, so the API, the
file predictor, the Ray actors and the CLI pass the same object instead of re-spelling the parameters."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from bertdeploy.errors import UserError, outside_stacklevel
from bertdeploy.machine import usable_cpus
from bertdeploy.runtime.batching import BatchPolicy
from bertdeploy.runtime.session import SessionConfig, parse_device
from bertdeploy.variants import PROVIDERS as _VARIANT_PROVIDERS

PROVIDERS = ("auto", *_VARIANT_PROVIDERS)
#: the token budget of a model call where ``max_tokens`` is None, on ONNX Runtime's CPU EP: a batch's activations
#: stay in the caches (MiniLM-L6 on a 2-core Zen 5: 384-token QA windows 1.6x faster than at 8,192 tokens, 4 x
#: 256-token choices 1.4x, 128-token texts 1.6x, short texts unchanged; benchmarks/runtime/README.md)
CPU_MAX_TOKENS = 1024
#: ... on a GPU, where larger calls pay, and on the OpenVINO EP (measured at this budget; it compiles per shape)
GPU_MAX_TOKENS = 8192


@dataclass(frozen=True)
class LoadOptions:
    """The settings of :func:`bertdeploy.runtime.load` (see its docstring for each one)."""

    variant: str = "auto"
    """A variant name of the manifest, or "auto" (int8 on CPU, fp16 on CUDA)."""
    device: str = "auto"
    """"auto" | "cpu" | "cuda" | "cuda:N" | "tensorrt"."""
    provider: str = "auto"
    """The execution provider on the CPU: "auto" (the variant's own; ``variant="auto"`` tries other providers'
    variants only where they are installed, attach and the CPU has what they need), "cpu" (ONNX Runtime's CPU EP
    only) or "openvino" (the OpenVINO EP plugin: a variant gated on it, or the one that runs the named file)."""
    threads: int | None = None
    """CPU threads in total (None: the cores this process may use); more than the CPUs this process may use is
    clamped to them, with a ``RuntimeWarning``."""
    batch_size: int = 64
    """At most this many rows per model call."""
    max_tokens: int | None = None
    """Token budget per model call (rows x padded length); None: :data:`CPU_MAX_TOKENS` on ONNX Runtime's CPU EP,
    :data:`GPU_MAX_TOKENS` on a GPU or the OpenVINO EP."""
    padding: str = "bucketed"
    """"bucketed" | "dynamic" | "static" (:mod:`bertdeploy.runtime.batching`)."""
    allow_fallback: bool = False
    """Run on the CPU with a warning when the requested GPU does not attach (else an error)."""
    streams: int | None = None
    """Batches run concurrently, each with ``threads // streams`` intra-op threads (None: 1); clamped to the CPUs
    like ``threads``. On the OpenVINO EP: OpenVINO's streams (``NUM_STREAMS``) inside one compiled model."""
    session_config: SessionConfig | None = None
    """Fine-grained ONNX Runtime settings (its ``threads`` is ignored)."""

    def __post_init__(self) -> None:
        if not isinstance(self.variant, str) or not self.variant:
            raise UserError(f"variant must be a variant name or 'auto', got {self.variant!r}")
        parse_device(self.device)
        if self.provider not in PROVIDERS:
            raise UserError(f"unknown provider {self.provider!r}; use one of: {', '.join(PROVIDERS)}")
        limit = usable_cpus()
        for name in ("threads", "streams"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserError(f"{name} must be >= 1 (an integer), got {value!r}")
            if value is not None and value > limit:  # more never helps, and 10**6 threads exhaust the memory
                warnings.warn(
                    f"{name}={value} is more than the {limit} CPUs this process may use; using {limit}",
                    RuntimeWarning,
                    stacklevel=outside_stacklevel(),
                )
                object.__setattr__(self, name, limit)
        self.policy_for(cpu_ep=True)  # validates batch_size / max_tokens / padding

    def policy_for(self, cpu_ep: bool) -> BatchPolicy:
        """The batching of a predictor on ONNX Runtime's CPU EP (``cpu_ep``) or another provider (a GPU, the
        OpenVINO EP): ``max_tokens``, else that provider's default, and that provider's padding bound."""
        budget = self.max_tokens if self.max_tokens is not None else default_max_tokens(cpu_ep)
        return BatchPolicy(padding=self.padding, batch_size=self.batch_size, max_tokens=budget,
                           max_padding=default_max_padding(cpu_ep))  # fmt: skip


def default_max_tokens(cpu_ep: bool) -> int:
    """The token budget of a model call where ``max_tokens`` is None: on ONNX Runtime's CPU EP, or elsewhere."""
    return CPU_MAX_TOKENS if cpu_ep else GPU_MAX_TOKENS


def default_max_padding(cpu_ep: bool) -> float:
    """The padding bound of a bucketed batch (:attr:`BatchPolicy.max_padding`): the CPU EP's, where it was measured;
    elsewhere batches are cut on rows and tokens only, as before it (TensorRT and the OpenVINO EP prepare kernels
    per input shape, and more, smaller batches would mean more shapes)."""
    return BatchPolicy.max_padding if cpu_ep else 1.0
