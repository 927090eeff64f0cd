"""The engines a user would pick, one small class each behind a tiny contract (:class:`Backend`).

``predict`` is end to end (tokenization included) and returns logits in the model's label order; ``prepare`` +
``run`` split it so the model alone can be timed (``prepare`` returns None where the engine has no such split).
Padding: ``static`` pads every row to max_length; ``dynamic`` and ``bucketed`` pad each batch to its longest row
(bucketed batches are made of similar lengths by the sweep). Heavy libraries are imported inside ``load``.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from bertdeploy.benchmark.contract import Backend, BackendContext, Skip
from bertdeploy.benchmark.engines import hf_padding, ort_model, torch_dynamic_int8, torch_model
from bertdeploy.benchmark.head_backends import RuntimeBackend, TorchHeadBackend
from bertdeploy.benchmark.openvino_backend import OpenVINOBackend
from bertdeploy.benchmark.pipeline_backends import ChoiceORTModelBackend, ORTPipelineBackend, TaskPipelineBackend
from bertdeploy.errors import UserError

__all__ = ["REGISTRY", "TASK_BACKENDS", "Backend", "BackendContext", "Skip", "make_backend", "torch_dynamic_int8"]


class TorchBackend:
    """PyTorch eager (``AutoModelForSequenceClassification``): fp32, bf16, fp16 (CUDA), or ``int8`` = dynamic int8
    Linear layers (:func:`torch_dynamic_int8`, CPU only)."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.model: Any = None

    def load(self) -> dict[str, Any]:
        import torch
        from transformers import AutoTokenizer

        self.model, info = torch_model(self.ctx)
        self.torch, self.dev = torch, info["providers"][0]
        self.on_cuda = self.dev == "cuda"
        self.tok = AutoTokenizer.from_pretrained(self.ctx.hf_dir)
        # a BERT tokenizer on a DistilBERT model: feed only what forward() takes (no token_type_ids)
        accepted = set(inspect.signature(self.model.forward).parameters)
        self.tok.model_input_names = [n for n in self.tok.model_input_names if n in accepted]
        return info

    def prepare(self, texts: list[str], padding: str) -> Any:
        enc = self.tok(
            texts, padding=hf_padding(padding), truncation=True, max_length=self.ctx.max_length, return_tensors="pt"
        )
        return {k: v.to(self.dev) for k, v in enc.items()}

    def run(self, prepared: Any) -> Any:
        with self.torch.inference_mode():
            return self.model(**prepared).logits

    def predict(self, texts: list[str], padding: str) -> np.ndarray:
        return self.run(self.prepare(texts, padding)).float().cpu().numpy()

    def sync(self) -> None:
        if self.on_cuda:
            self.torch.cuda.synchronize()


class PipelineBackend(TorchBackend):
    """The transformers ``pipeline("text-classification")`` on the same PyTorch model (end to end only)."""

    def load(self) -> dict[str, Any]:
        from transformers import pipeline

        info = super().load()
        self.pipe = pipeline(
            "text-classification", model=self.model, tokenizer=self.tok, device=self.model.device, top_k=None
        )
        self.index = {label: i for i, label in enumerate(self.model.config.id2label.values())}
        return info

    def prepare(self, texts: list[str], padding: str) -> Any:
        return None

    def predict(self, texts: list[str], padding: str) -> np.ndarray:
        out = self.pipe(
            texts,
            batch_size=len(texts),
            truncation=True,
            max_length=self.ctx.max_length,
            padding=hf_padding(padding),
            function_to_apply="none",
        )
        logits = np.zeros((len(texts), len(self.index)), dtype=np.float32)
        for row, scores in enumerate(out):
            for s in scores:
                logits[row, self.index[s["label"]]] = s["score"]
        return logits


class ORTModelBackend:
    """Optimum's ``ORTModelForSequenceClassification`` on the plain fp32 ONNX file (the bundle's, or exported on
    the fly from a training run)."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx

    def load(self) -> dict[str, Any]:
        from transformers import AutoTokenizer

        self.model, info = ort_model(self.ctx, "ORTModelForSequenceClassification")
        self.tok = AutoTokenizer.from_pretrained(self.ctx.hf_dir or self.ctx.bundle)
        return info

    def prepare(self, texts: list[str], padding: str) -> Any:
        return self.tok(
            texts, padding=hf_padding(padding), truncation=True, max_length=self.ctx.max_length, return_tensors="pt"
        )

    def run(self, prepared: Any) -> Any:
        return self.model(**prepared).logits

    def predict(self, texts: list[str], padding: str) -> np.ndarray:
        return np.asarray(self.run(self.prepare(texts, padding)), dtype=np.float32)

    def sync(self) -> None:
        return None


#: backend name -> class for text classification (the ``torch`` variants are dtypes; ``bertdeploy`` and
#: ``openvino`` variants are bundle variants, plus ``nncf`` for OpenVINO)
REGISTRY: dict[str, type] = {
    "torch": TorchBackend,
    "pipeline": PipelineBackend,
    "ortmodel": ORTModelBackend,
    "bertdeploy": RuntimeBackend,
    "openvino": OpenVINOBackend,
}


#: the other tasks' backends where they differ from :data:`REGISTRY` (``bertdeploy`` runs every task's head):
#: PyTorch eager inside the runtime's own pre- and post-processing, the transformers pipeline (on PyTorch, or on
#: Optimum's ORTModel), and ORTModel on the tokenizer's batch for multiple choice, which has no pipeline
TASK_BACKENDS: dict[str, dict[str, type]] = {
    "token-classification": {
        "torch": TorchHeadBackend,
        "pipeline": TaskPipelineBackend,
        "ortmodel": ORTPipelineBackend,
    },
    "question-answering": {"torch": TorchHeadBackend, "pipeline": TaskPipelineBackend, "ortmodel": ORTPipelineBackend},
    "multiple-choice": {"torch": TorchHeadBackend, "ortmodel": ChoiceORTModelBackend},
}


def make_backend(name: str, ctx: BackendContext) -> Backend:
    """The backend ``name`` for ``ctx.task``; ``name`` picks the engine, the task what it reads and returns."""
    cls = TASK_BACKENDS.get(ctx.task, {}).get(name) or REGISTRY.get(name)
    if cls is None:
        raise UserError(f"unknown backend {name!r} (choose from {', '.join(REGISTRY)})")
    return cls(ctx)
