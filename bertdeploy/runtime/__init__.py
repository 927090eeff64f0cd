"""The runtime: ONNX Runtime + ``tokenizers`` + numpy only (no torch, transformers or optimum).

from bertdeploy.runtime import load
clf = load("models/emotion")                 # best accepted variant for the device
clf.predict(["i feel great today"])          # [Prediction(label='joy', score=0.97)]
"""

from __future__ import annotations

from bertdeploy.runtime.batching import PADDING_MODES, Batch, BatchPolicy
from bertdeploy.runtime.classifier import Classifier, Prediction, load, load_with, softmax
from bertdeploy.runtime.filejob import PredictFileResult
from bertdeploy.runtime.files import predict_file
from bertdeploy.runtime.options import LoadOptions
from bertdeploy.runtime.session import SessionConfig
from bertdeploy.runtime.tokenize import Encoded

__all__ = [
    "PADDING_MODES",
    "Batch",
    "BatchPolicy",
    "Classifier",
    "Encoded",
    "LoadOptions",
    "Prediction",
    "PredictFileResult",
    "SessionConfig",
    "load",
    "load_with",
    "predict_file",
    "softmax",
]
