"""The machine an export was validated on: CPU model, instruction set (for int8), ONNX Runtime providers and the
versions of the libraries that produced the artifacts. Standard library only (onnxruntime imported lazily)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

#: libraries whose versions are recorded in the manifest
VERSIONED = ("bertdeploy", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tokenizers")
#: ISA names as used by ``optimum.onnxruntime.AutoQuantizationConfig`` (fastest first)
ISAS = ("avx512_vnni", "avx512", "avx2", "arm64")


def _cpu_flags_and_model() -> tuple[set[str], str]:
    flags: set[str] = set()
    model = ""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return flags, platform.processor() or platform.machine()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
    return flags, model or platform.processor() or platform.machine()


def detect_isa(flags: set[str] | None = None, machine: str | None = None) -> str:
    """The best int8 instruction set of this CPU: ``avx512_vnni`` | ``avx512`` | ``avx2`` | ``arm64``.

    Falls back to ``avx2`` (the most portable x86-64 int8 configuration) when nothing better is detected.
    """
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if flags is None:
        flags, _ = _cpu_flags_and_model()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2"


def machine_info() -> dict[str, Any]:
    """CPU model, ISA, core count, OS and the ONNX Runtime providers available here."""
    flags, model = _cpu_flags_and_model()
    info: dict[str, Any] = {
        "cpu": model,
        "isa": detect_isa(flags),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import onnxruntime

        info["providers"] = list(onnxruntime.get_available_providers())
    except ImportError:  # pragma: no cover - onnxruntime is required for export
        info["providers"] = []
    info["provider"] = "CPUExecutionProvider"  # every gate measurement runs on CPU
    return info


def versions() -> dict[str, str]:
    """Installed versions of the libraries that matter for reproducing an export."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "onnxruntime":
                try:
                    out[name] = metadata.version("onnxruntime-gpu")
                except metadata.PackageNotFoundError:
                    pass
    return out
