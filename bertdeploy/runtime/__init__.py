"""The runtime: ONNX Runtime + ``tokenizers`` + numpy only (no torch, transformers or optimum).

from bertdeploy.runtime import load
clf = load("models/emotion")                 # best accepted variant for the device
clf.predict(["i feel great today"])          # [Prediction(label='joy', score=0.97)]
tagger = load("models/slots")                # a token-classification bundle: a Tagger
tagger.predict(["book a table at the ritz in paris"])   # [[Entity(entity_group='restaurant_name', ...), ...]]
reader = load("models/squad")                # question answering: a Reader
reader.predict([{"question": "who?", "context": "..."}])  # [Answer(answer=..., score=..., start=..., end=...)]
"""

from __future__ import annotations

from bertdeploy.runtime.batching import PADDING_MODES, Batch, BatchPolicy
from bertdeploy.runtime.classifier import Classifier, Prediction, softmax
from bertdeploy.runtime.filejob import PredictFileResult
from bertdeploy.runtime.files import predict_file
from bertdeploy.runtime.loader import load, load_with
from bertdeploy.runtime.options import LoadOptions
from bertdeploy.runtime.predictor import Predictor
from bertdeploy.runtime.qa_files import QuestionOptions
from bertdeploy.runtime.session import SessionConfig
from bertdeploy.runtime.tagger import Entity, Tagger
from bertdeploy.runtime.tokenize import Encoded

__all__ = [
    "PADDING_MODES",
    "Batch",
    "BatchPolicy",
    "Classifier",
    "Encoded",
    "Entity",
    "LoadOptions",
    "Prediction",
    "PredictFileResult",
    "Predictor",
    "QuestionOptions",
    "SessionConfig",
    "Tagger",
    "load",
    "load_with",
    "predict_file",
    "softmax",
]
