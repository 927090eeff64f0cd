"""What a measurement was taken on — one shape for bundle manifests, training runs and bench results.

CPU model and feature flags, the int8 instruction set (named as ``optimum.onnxruntime.AutoQuantizationConfig``
names them), cores, memory, GPUs, ONNX Runtime providers, load average, and the versions of the libraries
that matter. Standard library only (onnxruntime is asked lazily for its providers, nothing heavy is imported).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

#: libraries whose versions are recorded (absent ones are left out)
PACKAGES = (
    "bertdeploy",
    "numpy",
    "torch",
    "transformers",
    "tokenizers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-ep-openvino",
    "openvino",
    "datasets",
    "accelerate",
    "scikit-learn",
)
#: int8 instruction sets, fastest first
ISAS = ("avx512_vnni", "avx512", "avx2", "arm64")
#: CPU feature flags worth recording next to a speed number
FEATURE_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
)
_NATIVE_BF16 = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Cpu:
    model: str
    flags: frozenset[str]

    @property
    def features(self) -> list[str]:
        """The :data:`FEATURE_FLAGS` this CPU has."""
        return [f for f in FEATURE_FLAGS if f in self.flags]

    @property
    def native_bf16(self) -> bool:
        return any(f in self.flags for f in _NATIVE_BF16)


def parse_cpuinfo(text: str) -> Cpu:
    """Model name and flags from the text of ``/proc/cpuinfo`` (x86 ``flags`` or ARM ``Features``)."""
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
    return Cpu(model or platform.processor() or platform.machine(), frozenset(flags))


@functools.lru_cache(maxsize=1)
def cpu() -> Cpu:
    """This machine's CPU (``/proc/cpuinfo``; on other systems the platform's processor name, no flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return Cpu(platform.processor() or platform.machine(), frozenset())
    return parse_cpuinfo(text)


def detect_isa(flags: set[str] | frozenset[str] | None = None, arch: str | None = None) -> str:
    """The best int8 instruction set: ``avx512_vnni`` | ``avx512`` | ``avx2`` | ``arm64``.

    Falls back to ``avx2`` (the most portable x86-64 int8 configuration) when nothing better is detected.
    """
    arch = (arch or platform.machine()).lower()
    if arch in ("arm64", "aarch64"):
        return "arm64"
    flags = cpu().flags if flags is None else flags
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2"


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Python's version and those of the installed ``packages``."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def load_average() -> list[float] | None:
    """The 1/5/15-minute load average (``uptime``), or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def usable_cpus() -> int:
    """CPUs this process may run on (affinity / container limits), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def gpus() -> list[str]:
    """GPU names and memory from ``nvidia-smi`` (empty without an NVIDIA GPU)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def ort_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """The machine facts recorded with every measurement (``threads``: how many a measurement used)."""
    c = cpu()
    return {
        "cpu": c.model,
        "isa": detect_isa(c.flags),
        "cpu_features": c.features,
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "threads": threads,
        "memory_gib": memory_gib(),
        "gpus": gpus(),
        "providers": ort_providers(),
        "load_average": load_average(),
    }
