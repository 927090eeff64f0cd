"""Execution providers that come as ONNX Runtime *plugins*: today the OpenVINO EP (PyPI ``onnxruntime-ep-openvino``,
extra ``bertdeploy[openvino-ep]``), which installs beside stock onnxruntime instead of replacing it.

A plugin is registered once per process with ``ort.register_execution_provider_library(name, path)`` (the package
gives the path), then attached to a session with ``SessionOptions.add_provider_for_devices(ep_devices, options)``;
its OpenVINO settings go in the provider option ``load_config`` (``{"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}``).
Nothing is imported or registered until a session asks for the provider.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from typing import Any

import onnxruntime as ort

from bertdeploy.errors import UserError

OPENVINO = "OpenVINOExecutionProvider"
OPENVINO_PACKAGE = "onnxruntime_ep_openvino"
OPENVINO_EXTRA = 'pip install "bertdeploy[openvino-ep]"'
#: batches on a plugin provider are padded to a multiple of this many tokens: OpenVINO prepares its kernels per input
#: shape, so fewer distinct shapes cost less on first sight and keep less memory (MiniLM-L6, 2,000 emotion texts,
#: 1 thread: first pass 728 -> 843 texts/s, RSS after 442 -> 340 MB; benchmarks/openvino-ep/README.md)
PAD_MULTIPLE = 8
#: bertdeploy's name for each execution provider -> ONNX Runtime's
ORT_NAMES = {"cpu": "CPUExecutionProvider", "openvino": OPENVINO}


def openvino_installed() -> bool:
    """True when the OpenVINO EP plugin package is importable (found, not imported)."""
    return importlib.util.find_spec(OPENVINO_PACKAGE) is not None


def installed_providers() -> tuple[str, ...]:
    """bertdeploy's names of the execution providers installed here ("cpu" always)."""
    return ("cpu", "openvino") if openvino_installed() else ("cpu",)


_REGISTER_LOCK = threading.Lock()
_REGISTERED: set[str] = set()
#: the name bertdeploy registers the plugin library under (ORT refuses a second registration of one name)
REGISTRATION = "bertdeploy-openvino"


def register_openvino() -> None:
    """Register the OpenVINO EP library with ONNX Runtime, once per process (a no-op when the application or an
    earlier load registered it; ORT's registry is process-wide). Registered is not the same as usable: on a CPU
    the plugin does not serve (see :func:`openvino_unavailable`) it offers no device, so whether it is registered is
    remembered here rather than read from ``ort.get_ep_devices()``."""
    with _REGISTER_LOCK:
        if REGISTRATION in _REGISTERED or any(d.ep_name == OPENVINO for d in ort.get_ep_devices()):
            return
        try:
            import onnxruntime_ep_openvino as plugin
        except ImportError:
            raise UserError(f"the OpenVINO execution provider is not installed: {OPENVINO_EXTRA}") from None
        try:
            ort.register_execution_provider_library(REGISTRATION, plugin.get_library_path())
        except Exception as e:  # noqa: BLE001 - ORT raises its own Fail type; "already registered" is success
            if "already registered" not in str(e):
                raise
        _REGISTERED.add(REGISTRATION)


def openvino_devices() -> list[Any]:
    """The OpenVINO EP's CPU devices (``ort.OrtEpDevice``), registering the plugin first."""
    register_openvino()
    cpu = ort.OrtHardwareDeviceType.CPU
    return [d for d in ort.get_ep_devices() if d.ep_name == OPENVINO and d.device.type == cpu]


def _no_device() -> str:
    cpu = ort.OrtHardwareDeviceType.CPU
    vendors = ", ".join(sorted({d.device.vendor for d in ort.get_ep_devices() if d.device.type == cpu})) or "?"
    return (f"the OpenVINO execution provider is installed but offers no device for this CPU ({vendors}): "
            "its plugin serves Intel hardware only")  # fmt: skip


def openvino_unavailable() -> str | None:
    """Why the OpenVINO EP cannot run here (not installed; installed but offering no device for this CPU: the
    plugin lists Intel hardware only, so an AMD CPU gets none), or None where it can. Registers the plugin."""
    if not openvino_installed():
        return f"the OpenVINO execution provider is not installed ({OPENVINO_EXTRA})"
    return None if openvino_devices() else _no_device()


def unavailable(provider: str) -> str | None:
    """Why the execution provider ``provider`` (bertdeploy's name) cannot run sessions here, or None."""
    if provider == "cpu":
        return None
    if provider == "openvino":
        return openvino_unavailable()
    return f"unknown execution provider {provider!r}; use one of: {', '.join(ORT_NAMES)}"


def openvino_config(hint: str | None, threads: int | None, streams: int = 1) -> dict[str, Any]:
    """The OpenVINO CPU plugin properties for a precision hint, a thread count and a number of streams (infer
    requests that run at once inside the one compiled model, the threads shared out among them)."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint or "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if streams > 1:
        config["NUM_STREAMS"] = int(streams)
    return config


def add_openvino(options: ort.SessionOptions, hint: str | None, threads: int | None, streams: int = 1) -> None:
    """Put the OpenVINO EP (CPU device) first on ``options``; ONNX Runtime's CPU EP takes what it leaves.
    ``streams`` > 1: OpenVINO's own streams, ``threads`` in all (concurrent ``run`` calls each get one)."""
    devices = openvino_devices()
    if not devices:
        raise UserError(_no_device())
    load_config = json.dumps({"CPU": openvino_config(hint, threads, streams)})
    options.add_provider_for_devices(devices, {"load_config": load_config})
