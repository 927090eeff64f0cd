"""The bundle for other homes: a Triton model repository and a pip-installable model wheel.

Like the runtime, this package needs neither torch, transformers nor optimum (``onnxruntime`` reads the graph's
inputs and outputs; the wheel is built by setuptools through ``pip wheel``). transformers.js and Optimum's
ORTModel read the bundle folder as it is: nothing to package for them.
"""

from __future__ import annotations

from bertdeploy.package.triton import TritonRepository, triton_repository
from bertdeploy.package.wheel import ModelWheel, build_wheel

__all__ = ["ModelWheel", "TritonRepository", "build_wheel", "triton_repository"]
