"""The engines a user would pick, one small class each behind a tiny contract (:class:`Backend`).

``predict`` is end to end (tokenization included) and returns logits in the model's label order; ``prepare`` +
``run`` split it so the model alone can be timed (``prepare`` returns None where the engine has no such split).
Padding: ``static`` pads every row to max_length; ``dynamic`` and ``bucketed`` pad each batch to its longest row
(bucketed batches are made of similar lengths by the sweep). Heavy libraries are imported inside ``load``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.benchmark.contract import Backend, BackendContext, Skip, need
from bertdeploy.benchmark.openvino_backend import OpenVINOBackend
from bertdeploy.benchmark.plan import NO_FP16
from bertdeploy.errors import UserError

__all__ = ["REGISTRY", "Backend", "BackendContext", "Skip", "make_backend"]


def _hf_padding(padding: str) -> str:
    return "max_length" if padding == "static" else "longest"


def _dir_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def _cuda(device: str) -> bool:
    if device == "cpu":
        return False
    import torch

    if not torch.cuda.is_available():
        if device == "cuda":
            raise Skip("no CUDA device visible to torch")
        return False
    return True


def torch_dynamic_int8(model: Any) -> Any:
    """``model`` with every ``nn.Linear`` replaced by PyTorch's dynamic int8 Linear
    (``torch.ao.quantization.quantize_dynamic``: int8 weights per tensor, activations quantized per batch), the
    recipe of PyTorch's own BERT dynamic-quantization tutorial. CPU only."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch 2.13 marks torch.ao.quantization deprecated (moved to torchao)
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _state_bytes(model: Any) -> int:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


class TorchBackend:
    """PyTorch eager (``AutoModelForSequenceClassification``): fp32, bf16, fp16 (CUDA), or ``int8`` = dynamic int8
    Linear layers (:func:`torch_dynamic_int8`, CPU only)."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.model: Any = None

    def load(self) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from bertdeploy.machine import cpu

        hf = need(self.ctx.hf_dir, "PyTorch model (pass the training run dir as a target)")
        self.on_cuda = _cuda(self.ctx.device)
        dtype = torch.float32
        if self.ctx.variant == "bf16":
            native = torch.cuda.is_bf16_supported() if self.on_cuda else cpu().native_bf16
            if not native:
                raise Skip(
                    f"bf16 skipped: no native bf16 on this CPU ({torch.backends.cpu.get_cpu_capability()}, "
                    "no avx512_bf16 / amx_bf16): emulated bf16 would only measure the emulation"
                )
            dtype = torch.bfloat16
        if self.ctx.variant == "fp16":
            if not self.on_cuda:
                raise Skip(NO_FP16)
            dtype = torch.float16
        if self.ctx.variant == "int8" and self.on_cuda:
            raise Skip("PyTorch dynamic int8 (torch.ao.quantization.quantize_dynamic) runs on the CPU only")
        torch.set_num_threads(self.ctx.threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(hf)
        self.model = AutoModelForSequenceClassification.from_pretrained(hf, use_safetensors=True, dtype=dtype).eval()
        self.dev = "cuda" if self.on_cuda else "cpu"
        self.model.to(self.dev)
        size = _dir_bytes(hf, "*.safetensors")
        if self.ctx.variant == "int8":
            self.model = torch_dynamic_int8(self.model)
            size = _state_bytes(self.model)
        # a BERT tokenizer on a DistilBERT model: feed only what forward() takes (no token_type_ids)
        accepted = set(inspect.signature(self.model.forward).parameters)
        self.tok.model_input_names = [n for n in self.tok.model_input_names if n in accepted]
        return {
            "file": str(hf),
            "bytes": size,
            "precision": self.ctx.variant,
            "providers": [self.dev],
        }

    def prepare(self, texts: list[str], padding: str) -> Any:
        enc = self.tok(
            texts, padding=_hf_padding(padding), truncation=True, max_length=self.ctx.max_length, return_tensors="pt"
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
            padding=_hf_padding(padding),
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
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSequenceClassification
        from transformers import AutoTokenizer

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.ctx.threads
        so.inter_op_num_threads = 1
        provider = "CUDAExecutionProvider" if self.ctx.device == "cuda" else "CPUExecutionProvider"
        if self.ctx.bundle is not None and (self.ctx.bundle / "onnx" / "model.onnx").is_file():
            src = self.ctx.bundle
            self.model = ORTModelForSequenceClassification.from_pretrained(
                src, subfolder="onnx", file_name="model.onnx", session_options=so, provider=provider
            )
            size = (src / "onnx" / "model.onnx").stat().st_size
        else:
            src = need(self.ctx.hf_dir, "ONNX file or PyTorch model")
            self.model = ORTModelForSequenceClassification.from_pretrained(
                src, export=True, session_options=so, provider=provider
            )
            size = None
        self.tok = AutoTokenizer.from_pretrained(self.ctx.hf_dir or src)
        providers = self.model.model.get_providers()
        if self.ctx.device == "cuda" and providers[0] != "CUDAExecutionProvider":
            raise Skip(f"CUDAExecutionProvider did not attach (providers: {providers})")
        return {"file": str(src), "bytes": size, "precision": "fp32", "providers": providers}

    def prepare(self, texts: list[str], padding: str) -> Any:
        return self.tok(
            texts, padding=_hf_padding(padding), truncation=True, max_length=self.ctx.max_length, return_tensors="pt"
        )

    def run(self, prepared: Any) -> Any:
        return self.model(**prepared).logits

    def predict(self, texts: list[str], padding: str) -> np.ndarray:
        return np.asarray(self.run(self.prepare(texts, padding)), dtype=np.float32)

    def sync(self) -> None:
        return None


class RuntimeBackend:
    """The bertdeploy runtime (ONNX Runtime + tokenizers) on one accepted variant of a bundle."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.clfs: dict[str, Any] = {}

    def _clf(self, padding: str) -> Any:
        if padding not in self.clfs:
            from bertdeploy.runtime import load

            self.clfs[padding] = load(
                need(self.ctx.bundle, "bundle (bertdeploy.json)"),
                variant=self.ctx.variant,
                device=self.ctx.device,
                threads=self.ctx.threads,
                batch_size=self.ctx.max_batch_size,
                max_tokens=self.ctx.max_batch_size * self.ctx.max_length,
                padding=padding,
                allow_fallback=False,
            )
        return self.clfs[padding]

    def load(self) -> dict[str, Any]:
        from bertdeploy.bundle import read_manifest

        bundle = need(self.ctx.bundle, "bundle (bertdeploy.json): pass --export to export a training run")
        manifest = read_manifest(bundle)
        names = [v.name for v in manifest.variants]
        if self.ctx.variant not in names:
            why = [r.get("reason") for r in manifest.rejected if r.get("name") == self.ctx.variant]
            raise Skip(f"rejected at export: {why[0]}" if why else f"variant {self.ctx.variant} is not in the bundle")
        clf = self._clf("dynamic")
        v = clf.variant
        return {"file": str(bundle / v.file), "bytes": v.bytes, "precision": v.precision, "providers": clf.providers}

    def prepare(self, texts: list[str], padding: str) -> Any:
        clf = self._clf(padding)
        return clf, [b.feed for b in clf.plan_batches(clf.encode(texts))]

    def run(self, prepared: Any) -> Any:
        clf, feeds = prepared
        return [clf.run_feed(feed) for feed in feeds]

    def predict(self, texts: list[str], padding: str) -> np.ndarray:
        return np.asarray(self._clf(padding).logits(texts), dtype=np.float32)

    def sync(self) -> None:
        return None


#: backend name -> class (the ``torch`` variants are dtypes; ``bertdeploy`` and ``openvino`` variants are bundle
#: variants, plus ``nncf`` for OpenVINO)
REGISTRY: dict[str, type] = {
    "torch": TorchBackend,
    "pipeline": PipelineBackend,
    "ortmodel": ORTModelBackend,
    "bertdeploy": RuntimeBackend,
    "openvino": OpenVINOBackend,
}


def make_backend(name: str, ctx: BackendContext) -> Backend:
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r} (choose from {', '.join(REGISTRY)})") from None
    return cls(ctx)
