"""ONNX Runtime session: execution-provider choice, session options, the fallback check and IO binding.

onnxruntime-gpu silently falls back to the CPU when CUDA / TensorRT cannot be initialised (no driver, wrong
CUDA, no GPU). We therefore never trust the provider list we *asked* for: after creating the session we read
``session.get_providers()`` and raise :class:`UserError` (or warn, with ``allow_fallback=True``) when the
requested accelerator is not the one that attached.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bertdeploy.errors import UserError
from bertdeploy.runtime import plugins

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

#: device name -> the providers to request, best first (CPU always last so that ORT can place
#: unsupported nodes there)
_CHAINS = {"cpu": [CPU], "cuda": [CUDA, CPU], "tensorrt": [TENSORRT, CUDA, CPU]}
DEVICES = ("auto", "cpu", "cuda", "tensorrt")

_NP_TYPES = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


#: ORT fusions that make this project's graphs slower on the CPU (measured; see SessionConfig.disabled_optimizers)
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


@dataclass(frozen=True)
class SessionConfig:
    """How to build the session. Every field has a measured default (benchmarks/runtime/README.md)."""

    threads: int | None = None
    """intra-op threads of one ``run``; None = ONNX Runtime's default (one per physical core)."""
    spinning: str = "run"
    """"run": worker threads spin during a call and stop when it returns (``session.force_spinning_stop``);
    "off": never spin (``session.intra_op.allow_spinning=0``); "on": ORT default (keeps spinning after calls)."""
    graph_optimization: str = "all"
    """ORT graph optimization level: "disable" | "basic" | "extended" | "all"."""
    cpu_arena: bool = True
    """ORT's CPU memory arena; shrunk after every call (``memory.enable_memory_arena_shrinkage``), so it does
    not keep the peak of the longest batch forever."""
    gelu_approximation: bool = False
    """let ORT replace erf-GELU by its tanh approximation (FastGelu): ~5-10 % faster on CPU, logits move by
    ~1e-3, so the served graph is no longer exactly the one the export gate validated. Off by default."""
    disabled_optimizers: tuple[str, ...] = DISABLED_OPTIMIZERS
    """ORT graph transformers not to run (``InferenceSession(disabled_optimizers=...)``). Default: ORT's
    ``SkipLayerNormFusion``, whose CPU kernel in onnxruntime 1.31 is 3-5x slower than the Add + Add +
    LayerNormalization it replaces (int8 MiniLM-L6: +10-20 % texts/s without it; benchmarks/runtime/README.md)."""
    extra: dict[str, str] = field(default_factory=dict)
    """additional ``add_session_config_entry`` pairs."""


_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def parse_device(device: str) -> tuple[str, int]:
    """``"cuda:1"`` -> ("cuda", 1); validates the name."""
    name, _, idx = str(device).lower().partition(":")
    if name not in DEVICES or (idx and not idx.isdigit()):
        raise UserError(f"unknown device {device!r}; use one of: auto, cpu, cuda, cuda:N, tensorrt")
    return name, int(idx or 0)


def gpu_available() -> bool:
    """True when this onnxruntime build offers CUDA (it may still fail to attach: see :func:`check_providers`)."""
    return CUDA in ort.get_available_providers()


def resolve_device(device: str) -> str:
    """Map "auto" to the best device this onnxruntime build offers ("tensorrt" > "cuda" > "cpu")."""
    name, _ = parse_device(device)
    if name != "auto":
        return name
    available = ort.get_available_providers()
    if TENSORRT in available and CUDA in available:
        return "tensorrt"
    return "cuda" if CUDA in available else "cpu"


def provider_chain(
    device: str,
    device_id: int = 0,
    precision: str = "fp32",
    max_shape: tuple[int, int] = (64, 512),
    input_names: tuple[str, ...] = (),
) -> list[tuple[str, dict[str, Any]]]:
    """The (provider, options) list to pass to ``InferenceSession`` for ``device``.

    CUDA: ``arena_extend_strategy=kSameAsRequested`` so the device arena grows by what a batch needs instead of
    doubling, which matters with variable batch shapes. TensorRT: fp16 when the variant is fp16, an engine
    cache (building an engine takes minutes) and one optimisation profile from 1x1 up to ``max_shape``
    (rows x tokens) for ``input_names``, so that varying batch shapes do not trigger engine rebuilds.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for provider in _CHAINS[device]:
        if provider == CUDA:
            out.append((CUDA, {"device_id": device_id, "arena_extend_strategy": "kSameAsRequested"}))
        elif provider == TENSORRT:
            cache = Path(os.environ.get("BERTDEPLOY_TRT_CACHE", Path.home() / ".cache" / "bertdeploy" / "trt"))
            opts: dict[str, Any] = {
                "device_id": device_id,
                "trt_fp16_enable": precision == "fp16",
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
            }
            if input_names:
                rows, tokens = max_shape

                def shapes(r: int, t: int) -> str:
                    return ",".join(f"{name}:{r}x{t}" for name in input_names)

                opts["trt_profile_min_shapes"] = shapes(1, 1)
                opts["trt_profile_opt_shapes"] = shapes(rows, max(1, tokens // 4))
                opts["trt_profile_max_shapes"] = shapes(rows, tokens)
            out.append((TENSORRT, opts))
        else:
            out.append((CPU, {}))
    return out


def session_options(config: SessionConfig) -> ort.SessionOptions:
    so = ort.SessionOptions()
    if config.threads is not None:
        if config.threads < 1:
            raise UserError(f"threads must be >= 1, got {config.threads}")
        so.intra_op_num_threads = int(config.threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if config.graph_optimization not in _OPT_LEVELS:
        raise UserError(f"graph_optimization must be one of {sorted(_OPT_LEVELS)}")
    so.graph_optimization_level = _OPT_LEVELS[config.graph_optimization]
    # Shapes change from batch to batch: a memory pattern is planned per shape and only pays off when
    # shapes repeat, so it is off.
    so.enable_mem_pattern = False
    so.enable_cpu_mem_arena = config.cpu_arena
    if config.spinning == "off":
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif config.spinning == "run":
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        so.add_session_config_entry("session.force_spinning_stop", "1")
    elif config.spinning != "on":
        raise UserError(f"spinning must be 'run', 'off' or 'on', got {config.spinning!r}")
    if config.gelu_approximation:
        so.add_session_config_entry("optimization.enable_gelu_approximation", "1")
    for key, value in config.extra.items():
        so.add_session_config_entry(key, str(value))
    return so


def check_providers(requested: str, attached: list[str], allow_fallback: bool) -> None:
    """Raise (or warn) when the accelerator the user asked for is not the first attached provider."""
    want = _CHAINS[requested][0]
    if want == CPU or (attached and attached[0] == want):
        return
    msg = (
        f"device {requested!r} requested but ONNX Runtime attached {attached or ['nothing']} "
        f"(it falls back to the CPU silently when {want} cannot start: check the GPU, driver and "
        f"onnxruntime-gpu install)"
    )
    if not allow_fallback:
        raise UserError(msg + "; pass allow_fallback=True / --allow-fallback to run on the CPU anyway")
    warnings.warn("running on the CPU: " + msg, RuntimeWarning, stacklevel=3)


def create_session(
    model_path: Path,
    device: str,
    device_id: int,
    config: SessionConfig,
    allow_fallback: bool,
    precision: str = "fp32",
    max_shape: tuple[int, int] = (64, 512),
    input_names: tuple[str, ...] = (),
    provider: str = "cpu",
    hint: str | None = None,
    streams: int = 1,
) -> ort.InferenceSession:
    """Create the session for ``device`` ("cpu" | "cuda" | "tensorrt") and check what attached.

    ``provider="openvino"`` (a CPU device only): the OpenVINO EP plugin with precision ``hint``
    (:mod:`bertdeploy.runtime.plugins`), checked to have attached like CUDA. ``streams``: the concurrent ``run``
    calls the caller will make, each with ``config.threads``; ONNX Runtime's CPU EP needs nothing for them, the
    OpenVINO EP compiles its model with that many streams of them (one two-threaded stream serves concurrent calls
    one at a time)."""
    if provider != "cpu":
        return _plugin_session(model_path, device, config, allow_fallback, provider, hint, streams)
    chain = provider_chain(device, device_id, precision, max_shape, input_names)
    available = ort.get_available_providers()
    missing = [p for p, _ in chain if p not in available]
    if missing and missing[0] == chain[0][0]:
        msg = f"device {device!r} requested but this onnxruntime build has no {missing[0]} (available: {available})"
        if not allow_fallback:
            raise UserError(msg + '; install onnxruntime-gpu (pip install "bertdeploy[gpu]") on a GPU machine')
        warnings.warn("running on the CPU: " + msg, RuntimeWarning, stacklevel=3)
    chain = [(p, o) for p, o in chain if p in available] or [(CPU, {})]
    try:
        session = ort.InferenceSession(
            str(model_path),
            sess_options=session_options(config),
            providers=[p for p, _ in chain],
            provider_options=[o for _, o in chain],
            disabled_optimizers=list(config.disabled_optimizers),
        )
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        _raise_load_error(model_path, e)
    check_providers(device, list(session.get_providers()), allow_fallback)
    return session


def _raise_load_error(model_path: Path, e: Exception) -> Any:
    if type(e).__module__.startswith("onnxruntime"):
        raise UserError(f"ONNX Runtime cannot load {model_path}: {str(e).splitlines()[0]}") from None
    raise e


def _plugin_session(
    model_path: Path,
    device: str,
    config: SessionConfig,
    allow_fallback: bool,
    provider: str,
    hint: str | None,
    streams: int = 1,
) -> ort.InferenceSession:
    """A session on a plugin execution provider (OpenVINO), ONNX Runtime's CPU EP taking what it leaves."""
    if provider != "openvino":
        raise UserError(f"unknown execution provider {provider!r}; use one of: {', '.join(plugins.ORT_NAMES)}")
    if device != "cpu":
        raise UserError(f"the OpenVINO execution provider runs on the CPU, not on device {device!r}")
    options = session_options(config)
    threads = None if config.threads is None else config.threads * max(streams, 1)
    plugins.add_openvino(options, hint, threads, max(streams, 1))
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=options, disabled_optimizers=list(config.disabled_optimizers)
        )
    except Exception as e:  # noqa: BLE001 - see create_session
        _raise_load_error(model_path, e)
    attached = list(session.get_providers())
    if attached[:1] != [plugins.OPENVINO]:
        msg = f"the OpenVINO execution provider did not attach (ONNX Runtime attached {attached})"
        if not allow_fallback:
            raise UserError(msg)
        warnings.warn("running on ONNX Runtime's CPU EP: " + msg, RuntimeWarning, stacklevel=3)
    return session


def input_specs(session: ort.InferenceSession) -> dict[str, type]:
    """Graph input name -> numpy dtype (the runtime feeds only the inputs the graph declares)."""
    specs = {}
    for node in session.get_inputs():
        if node.type not in _NP_TYPES:
            raise UserError(f"unsupported graph input {node.name!r} of type {node.type}")
        specs[node.name] = _NP_TYPES[node.type]
    return specs


class Runner:
    """Runs one batch. ``session.run`` is thread-safe; this object holds no mutable state.

    On CUDA / TensorRT the batch goes through IO binding: inputs are copied to the device once as OrtValues and
    the logits are allocated on the device by ORT, then copied back, following ORT's documented IO-binding
    contract (``bind_ortvalue_input`` / ``bind_output(name, "cuda")`` / ``copy_outputs_to_cpu``). Not exercised
    by the tests here: no GPU on the development machine.
    """

    def __init__(
        self, session: ort.InferenceSession, output_name: str | list[str], device_id: int = 0, shrink_arena: bool = True
    ) -> None:
        self.session = session
        #: one output, or several of the same shape stacked on a new last axis (QA's start / end logits)
        self.output_names = [output_name] if isinstance(output_name, str) else list(output_name)
        self.output_name = self.output_names[0]
        self.device_id = device_id
        self.on_gpu = session.get_providers()[0] in (CUDA, TENSORRT)
        # Return the arenas' free chunks after every call, so one long batch does not pin its peak forever.
        self.shrink = ("cpu:0" + (f";gpu:{device_id}" if self.on_gpu else "")) if shrink_arena else ""

    def probe(self, feed: dict[str, np.ndarray]) -> None:
        """Run ``feed`` once, on the host, with ONNX Runtime's own error log silenced: a failure is the caller's
        to report (:meth:`bertdeploy.runtime.predictor.Predictor.check_limits`)."""
        options = self._run_options()
        options.log_severity_level = 4  # fatal only: the exception carries the message
        self.session.run([self.output_name], feed, options)

    def _run_options(self) -> ort.RunOptions:
        options = ort.RunOptions()  # per call: nothing shared between concurrent callers
        if self.shrink:
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", self.shrink)
        return options

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self.on_gpu:
            return self._run_bound(feed)
        return self._join(self.session.run(self.output_names, feed, self._run_options()))

    def _join(self, outputs: list[Any]) -> np.ndarray:
        if len(outputs) == 1:
            return np.asarray(outputs[0], dtype=np.float32)
        return np.stack([np.asarray(o, dtype=np.float32) for o in outputs], axis=-1)

    def _run_bound(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        binding = self.session.io_binding()  # one binding per call: thread-safe
        for name, array in feed.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", self.device_id)
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", self.device_id)
        self.session.run_with_iobinding(binding, self._run_options())
        return self._join(binding.copy_outputs_to_cpu())
