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


def register_openvino() -> None:
    """Register the OpenVINO EP library with ONNX Runtime, once per process (a no-op when the application or an
    earlier load registered it; ORT's registry is process-wide)."""
    with _REGISTER_LOCK:
        if any(d.ep_name == OPENVINO for d in ort.get_ep_devices()):
            return
        try:
            import onnxruntime_ep_openvino as plugin
        except ImportError:
            raise UserError(f"the OpenVINO execution provider is not installed: {OPENVINO_EXTRA}") from None
        ort.register_execution_provider_library("bertdeploy-openvino", plugin.get_library_path())


def openvino_devices() -> list[Any]:
    """The OpenVINO EP's CPU devices (``ort.OrtEpDevice``), registering the plugin first."""
    register_openvino()
    cpu = ort.OrtHardwareDeviceType.CPU
    return [d for d in ort.get_ep_devices() if d.ep_name == OPENVINO and d.device.type == cpu]


def openvino_config(hint: str | None, threads: int | None) -> dict[str, Any]:
    """The OpenVINO CPU plugin properties for a precision hint and a thread count."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint or "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def add_openvino(options: ort.SessionOptions, hint: str | None, threads: int | None) -> None:
    """Put the OpenVINO EP (CPU device) first on ``options``; ONNX Runtime's CPU EP takes what it leaves."""
    devices = openvino_devices()
    if not devices:
        raise UserError("the OpenVINO execution provider is installed but offers no CPU device")
    load_config = json.dumps({"CPU": openvino_config(hint, threads)})
    options.add_provider_for_devices(devices, {"load_config": load_config})
