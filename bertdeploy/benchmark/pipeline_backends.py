"""The peers a user would pick for the tasks beyond text classification, used the way their documentation shows:

* the transformers pipeline (``token-classification`` with ``aggregation_strategy="first"``, ``question-answering``)
  on the PyTorch model (backend ``pipeline``) or on Optimum's ORTModel for the bundle's fp32 ONNX file (backend
  ``ortmodel``) — with the runtime's window settings (``max_length``, stride / ``doc_stride``), ``batch_size`` = the
  cell's, end to end only (a pipeline has no model-only split, and pads each batch itself: no ``static`` padding);
* ``ORTModelForMultipleChoice`` on the tokenizer's ``[questions, choices, tokens]`` batch (multiple choice has no
  pipeline).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bertdeploy import tasks
from bertdeploy.benchmark.contract import BackendContext, Skip, need
from bertdeploy.benchmark.engines import hf_padding, ort_model, torch_model
from bertdeploy.benchmark.scoring import QA, TOKENS
from bertdeploy.runtime.tokenize import uses_question_match

NO_STATIC = "the transformers pipeline pads each batch to its longest row itself: it has no static padding"
ORT_CLASSES = {
    TOKENS: "ORTModelForTokenClassification",
    QA: "ORTModelForQuestionAnswering",
    "multiple-choice": "ORTModelForMultipleChoice",
}


def _tokenizer(ctx: BackendContext) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ctx.hf_dir or need(ctx.bundle, "tokenizer"))
    tok.model_max_length = ctx.max_length  # the windows' length, as the runtime cuts them
    return tok


def answer_cap(ctx: BackendContext) -> int:
    """QA: the answer cap the bundle's reader uses (the manifest's ``answers``, else the pipeline's 15), so that
    every engine of a bench answers with the same cap."""
    from bertdeploy.bundle import read_manifest
    from bertdeploy.runtime.reader import recorded_answer_len

    return recorded_answer_len(read_manifest(ctx.bundle).raw if ctx.bundle else {}, ctx.bundle)


class TaskPipelineBackend:
    """``pipeline(task)`` on the PyTorch model in fp32 (backend ``pipeline``)."""

    #: the model the pipeline runs: ``torch`` (the task's AutoModel) or ``ortmodel`` (Optimum's ORTModel)
    engine = "torch"

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx

    def load(self) -> dict[str, Any]:
        from transformers import pipeline

        spec = tasks.get(self.ctx.task)
        if self.engine == "ortmodel":
            model, info = ort_model(self.ctx, ORT_CLASSES[self.ctx.task])
        else:
            model, info = torch_model(self.ctx, spec.auto_model)
        if uses_question_match(getattr(model, "config", None)):
            raise Skip("the transformers pipeline cannot give this reader its question-match token types "
                       "(train --question-match)")  # fmt: skip
        tok = _tokenizer(self.ctx)
        kwargs: dict[str, Any] = {}
        if self.ctx.task == TOKENS:
            from bertdeploy.runtime.tokenize import TokenEncoder

            stride = TokenEncoder(tok.backend_tokenizer, self.ctx.max_length).stride
            kwargs = {"aggregation_strategy": "first", "stride": stride}
        else:
            self.qa = {"max_seq_len": self.ctx.max_length, "doc_stride": min(self.ctx.max_length // 2, 128),
                       "max_answer_len": answer_cap(self.ctx)}  # fmt: skip
        device = None if self.engine == "ortmodel" else model.device
        self.pipe = pipeline(spec.pipeline, model=model, tokenizer=tok, device=device, **kwargs)
        return info

    def prepare(self, texts: list[Any], padding: str) -> Any:
        return None

    def predict(self, texts: list[Any], padding: str) -> Any:
        if padding == "static":
            raise Skip(NO_STATIC)
        if self.ctx.task == TOKENS:
            found = self.pipe(list(texts), batch_size=len(texts))
            return [[[e["entity_group"], int(e["start"]), int(e["end"])] for e in entities] for entities in found]
        questions, contexts = [r[0] for r in texts], [r[1] for r in texts]
        out = self.pipe(question=questions, context=contexts, batch_size=len(texts), **self.qa)
        out = [out] if isinstance(out, dict) else out
        return [[int(a["start"]), int(a["end"]), a["answer"]] for a in out]

    def sync(self) -> None:
        return None


class ORTPipelineBackend(TaskPipelineBackend):
    """The transformers pipeline on Optimum's ORTModel (the bundle's fp32 ONNX file; backend ``ortmodel``)."""

    engine = "ortmodel"


class ChoiceORTModelBackend:
    """``ORTModelForMultipleChoice`` on the tokenizer's padded ``[questions, choices, tokens]`` batch (``longest_first``
    truncation, as training and the runtime truncate)."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx

    def load(self) -> dict[str, Any]:
        self.model, info = ort_model(self.ctx, ORT_CLASSES["multiple-choice"])
        self.tok = _tokenizer(self.ctx)
        return info

    def prepare(self, texts: list[Any], padding: str) -> Any:
        width = len(texts[0]["choices"])
        firsts = [r["question"] for r in texts for _ in r["choices"]]
        seconds = [c for r in texts for c in r["choices"]]
        enc = self.tok(firsts, seconds, padding=hf_padding(padding), truncation=True, max_length=self.ctx.max_length,
                       return_tensors="pt")  # fmt: skip
        return {k: v.reshape(len(texts), width, -1) for k, v in enc.items()}

    def run(self, prepared: Any) -> Any:
        return self.model(**prepared).logits

    def predict(self, texts: list[Any], padding: str) -> np.ndarray:
        return np.asarray(self.run(self.prepare(texts, padding)), dtype=np.float32)

    def sync(self) -> None:
        return None
