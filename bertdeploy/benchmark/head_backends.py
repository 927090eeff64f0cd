"""Backends that run a task through the runtime's own heads (:mod:`bertdeploy.runtime.heads`: encoder, windows,
length-sorted token-budget batches, entity aggregation / answer search / softmax):

* ``bertdeploy``: the runtime itself on one accepted variant of a bundle (:class:`RuntimeBackend`), every task;
* ``torch`` for the tasks beyond text classification: PyTorch eager inside the very same pre- and post-processing
  (:class:`TorchHeadBackend`: the PyTorch model behind the few ``InferenceSession`` methods a head calls), so the
  PyTorch reference differs from the runtime by the engine only — the "= torch fp32" column then measures the
  exported graph, not two tokenizers or two answer searches.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy import variants as variant_table
from bertdeploy.benchmark.contract import RUNTIME_DEFAULT, BackendContext, Skip, need
from bertdeploy.benchmark.scoring import AGGREGATION, QA, TOKENS


def head_predictions(task: str, head: Any, records: list[Any]) -> Any:
    """What a runtime head predicts for ``records``, in the bench's form (:mod:`bertdeploy.benchmark.scoring`)."""
    if task == TOKENS:
        found = head.predict(records, aggregation=AGGREGATION)
        return [[[e.entity_group, e.start, e.end] for e in entities] for entities in found]
    if task == QA:
        return [[a.start, a.end, a.answer] for a in head.predict(records)]
    return np.asarray(head.logits(records), dtype=np.float32)


class HeadBackend:
    """A runtime head per padding mode (built on first use by :meth:`build`), run end to end or on its own feeds."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.heads: dict[str, Any] = {}

    def build(self, padding: str) -> Any:
        raise NotImplementedError

    def head(self, padding: str) -> Any:
        if padding not in self.heads:
            self.heads[padding] = self.build(padding)
        return self.heads[padding]

    def prepare(self, texts: list[Any], padding: str) -> Any:
        head = self.head(padding)
        encoded = head.encode(texts)
        if head.check is not None:  # a checked variant: its model time includes the re-runs
            return head, None, encoded
        return head, [b.feed for b in head.plan_batches(encoded)], None

    def run(self, prepared: Any) -> Any:
        head, feeds, encoded = prepared
        if encoded is not None:
            return head.forward(encoded)
        return [head.run_feed(feed) for feed in feeds]

    def predict(self, texts: list[Any], padding: str) -> Any:
        return head_predictions(self.ctx.task, self.head(padding), texts)

    def sync(self) -> None:
        return None


class RuntimeBackend(HeadBackend):
    """The bertdeploy runtime (ONNX Runtime + tokenizers) on one accepted variant of a bundle."""

    def build(self, padding: str) -> Any:
        from bertdeploy.runtime import load

        return load(
            need(self.ctx.bundle, "bundle (bertdeploy.json)"),
            variant=self.ctx.variant,
            device=self.ctx.device,
            threads=self.ctx.threads,
            batch_size=self.ctx.max_batch_size,
            max_tokens=None if self.ctx.max_tokens == RUNTIME_DEFAULT else self.ctx.token_budget,
            padding=padding,
            allow_fallback=False,
            streams=self.ctx.streams,
        )

    def load(self) -> dict[str, Any]:
        from bertdeploy.bundle import read_manifest

        bundle = need(self.ctx.bundle, "bundle (bertdeploy.json): pass --export to export a training run")
        manifest = read_manifest(bundle)
        names = [v.name for v in manifest.variants]
        if self.ctx.variant == variant_table.AUTO:  # what `load(bundle)` gives by default on this machine
            return self._info(bundle)
        if self.ctx.variant not in names:
            why = [r.get("reason") for r in manifest.rejected if r.get("name") == self.ctx.variant]
            raise Skip(f"rejected at export: {why[0]}" if why else f"variant {self.ctx.variant} is not in the bundle")
        from bertdeploy.runtime.plugins import unavailable

        why_not = unavailable(manifest.variant(self.ctx.variant).provider)
        if why_not is not None:
            raise Skip(why_not)
        return self._info(bundle)

    def _info(self, bundle: Path) -> dict[str, Any]:
        head = self.head("dynamic")
        v = head.variant
        return {"file": str(bundle / v.file), "bytes": v.bytes, "precision": v.precision, "providers": head.providers,
                "variant": v.name, "streams": head.streams}  # fmt: skip


@dataclass(frozen=True)
class _Node:
    name: str
    type: str
    shape: list[Any]


class TorchSession:
    """A PyTorch model behind the part of ``onnxruntime.InferenceSession`` the runtime heads use (``get_inputs``,
    ``get_outputs``, ``get_providers``, ``run``): numpy feeds in, the named outputs as float32 numpy arrays out."""

    def __init__(self, model: Any, inputs: list[str], outputs: dict[str, list[Any]], device: str) -> None:
        import torch

        self.torch, self.model, self.device = torch, model, device
        self.inputs = [_Node(name, "tensor(int64)", ["batch_size", "sequence_length"]) for name in inputs]
        self.outputs = [_Node(name, "tensor(float)", shape) for name, shape in outputs.items()]

    def get_inputs(self) -> list[_Node]:
        return self.inputs

    def get_outputs(self) -> list[_Node]:
        return self.outputs

    def get_providers(self) -> list[str]:
        return [f"PyTorch {self.device}"]

    def run(self, names: list[str], feed: dict[str, np.ndarray], options: Any = None) -> list[np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in feed.items()})
            return [getattr(out, name).float().cpu().numpy() for name in names]


class TorchHeadBackend(HeadBackend):
    """PyTorch eager (the task's AutoModel: fp32, bf16, fp16 on CUDA, int8 = dynamic int8 Linear layers) inside the
    runtime head of the task: same tokenizer file, windows, batches and post-processing as ``bertdeploy``."""

    def load(self) -> dict[str, Any]:
        from bertdeploy import tasks
        from bertdeploy.benchmark.engines import torch_model

        spec = tasks.get(self.ctx.task)
        self.model, info = torch_model(self.ctx, spec.auto_model)
        accepted = set(inspect.signature(self.model.forward).parameters)
        inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
        width = len(self.ctx.labels) if spec.labelled else "n"
        outputs = {name: [*axes[:-1], width] if axes[-1] == tasks.LABELS else list(axes)
                   for name, axes in spec.outputs.items()}  # fmt: skip
        self.session = TorchSession(self.model, inputs, outputs, info["providers"][0])
        self.size = info["bytes"]
        self.head("dynamic")
        return info

    def build(self, padding: str) -> Any:
        from bertdeploy.bundle import Manifest, Variant
        from bertdeploy.runtime.heads import head_for

        root = self.ctx.bundle or need(self.ctx.hf_dir, "PyTorch model")
        tokenizer = root / "tokenizer.json"
        if not tokenizer.is_file():
            raise Skip(f"no tokenizer.json in {root}: the runtime's encoder reads the fast tokenizer's file")
        cls = head_for(self.ctx.task)
        policy = self.ctx.policy(padding)
        manifest = Manifest(labels=list(self.ctx.labels), max_length=self.ctx.max_length, variants=[],
                            task=self.ctx.task, raw=self._decoding(root))  # fmt: skip
        variant = Variant(f"torch-{self.ctx.variant}", "", "-", self.size or 0, precision=self.ctx.variant)
        return cls(root, manifest, variant, self.session, cls.make_encoder(tokenizer, self.ctx.max_length), policy)

    def _decoding(self, root: Path) -> dict[str, Any]:
        """The manifest keys a head encodes and decodes with (token classification: the tag transitions; QA: the
        answer cap and the question-match types), so that PyTorch runs exactly as the runtime: the bundle's, or the
        run folder's files."""
        from bertdeploy.bundle import read_manifest
        from bertdeploy.runtime.tokenize import uses_question_match
        from bertdeploy.training.task_tokens import read_transitions

        if self.ctx.bundle:
            raw = read_manifest(self.ctx.bundle).raw
            return {k: raw[k] for k in ("tag_transitions", "answers", "question_match") if k in raw}
        table, _ = read_transitions(root, list(self.ctx.labels))
        matched = {"question_match": True} if uses_question_match(self.model.config) else {}
        return {"tag_transitions": table, **matched} if table else matched
