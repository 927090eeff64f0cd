"""OpenVINO as a bench peer: the bundle's own ONNX file read by the ``openvino`` runtime (variant = a bundle variant,
e.g. ``fp32`` or ``qint8``), that fp32 file in bf16 (variant ``bf16``: what OpenVINO runs by default on a CPU with
native bf16, AMX or AVX512_BF16, whatever vendor; skipped elsewhere), or that fp32 file quantized to int8 with NNCF's
post-training quantization (variant ``nncf``: ``nncf.quantize(..., model_type=TRANSFORMER)``, Intel's recipe for
BERT), compiled for the CPU.

Texts are tokenized and batched exactly as the bertdeploy runtime does it (the bundle's ``tokenizer.json``, the
same length-sorted token-budget batches), so a row compares the inference engines, not the tokenizers. Needs the
optional extra: ``pip install "bertdeploy[openvino]"`` (``openvino``; ``nncf`` for the ``nncf`` variant); without
it the block is skipped with that line. Optimum-Intel is not used (it needs a newer optimum than the one pinned).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bertdeploy.benchmark.contract import BackendContext, Skip, need

NNCF = "nncf"
#: the fp32 file with OpenVINO's bf16 precision hint (its default where the CPU has native bf16)
BF16 = "bf16"
#: peer variants that read the bundle's fp32 file in another form
DERIVED = (NNCF, BF16)
#: NNCF calibration rows (its default ``subset_size`` is 300)
CALIBRATION_ROWS = 300
EXTRA = 'pip install "bertdeploy[openvino]"'


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise Skip(f"{module} is not installed ({EXTRA})") from None


def _need_native_bf16() -> None:
    from bertdeploy.machine import cpu

    if not cpu().native_bf16:
        raise Skip("openvino bf16 needs a CPU with native bf16 (avx512_bf16 / amx_bf16); OpenVINO runs f32 here")


def _effective(compiled: Any) -> str:
    """The precision a compiled model really runs in (``bf16`` / ``f32``)."""
    name = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
    return "bf16" if "bf" in name else "f32" if "32" in name else name


class OpenVINOBackend:
    """OpenVINO (CPU plugin) on a bundle variant's ONNX file, or on an NNCF int8 model of the fp32 file."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx

    def load(self) -> dict[str, Any]:
        from bertdeploy.bundle import read_manifest, verify_variant
        from bertdeploy.errors import UserError
        from bertdeploy.runtime.tokenize import TextEncoder

        ov = _import("openvino")
        if self.ctx.device not in ("cpu", "auto"):
            raise Skip("the openvino backend is timed on the CPU plugin only")
        bundle = need(self.ctx.bundle, "bundle (bertdeploy.json)")
        manifest = read_manifest(bundle)
        source = "fp32" if self.ctx.variant in DERIVED else self.ctx.variant
        if self.ctx.variant == BF16:
            _need_native_bf16()
        try:
            variant = manifest.variant(source)
        except UserError as e:
            raise Skip(str(e)) from None
        path = verify_variant(bundle, variant)
        self.encoder = TextEncoder(bundle / manifest.tokenizer_file, self.ctx.max_length)
        core = ov.Core()
        model = core.read_model(str(path))
        self.specs = {inp.get_any_name(): np.int64 for inp in model.inputs}
        # a bundle variant gated on the OpenVINO EP (fp32_ov_bf16) is read with its own precision hint
        hint = BF16 if self.ctx.variant == BF16 else variant.hint or "f32"
        precision = "bf16" if hint == "bf16" else variant.precision
        if self.ctx.variant == NNCF:
            model, precision = self._nncf(model), "int8"
        config = {
            "INFERENCE_NUM_THREADS": int(self.ctx.threads),
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": hint,  # f32 unless the variant says bf16: no silent down-casting
        }
        self.compiled = core.compile_model(model, "CPU", config)
        if hint == BF16 and _effective(self.compiled) != "bf16":  # OpenVINO ignores a hint the CPU cannot serve
            raise Skip(f"openvino compiled the bf16 hint as {_effective(self.compiled)} on this CPU")
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.outputs[0]
        return {
            "file": str(path),
            "bytes": variant.bytes if self.ctx.variant != NNCF else None,
            "hint": hint,
            "precision": precision,
            "providers": [f"openvino {ov.get_version().split('-')[0]} CPU"],
            "source_variant": source,
        }

    def _nncf(self, model: Any) -> Any:
        """NNCF post-training int8 (MinMax ranges on calibration rows one at a time, transformer preset)."""
        nncf = _import("nncf")
        texts = self.ctx.calibration[:CALIBRATION_ROWS]
        if not texts:
            raise Skip("NNCF needs calibration texts (give the bench data with a train or validation split)")
        encoded = self.encoder.encode(texts)
        feeds = [self._feed(encoded, np.array([i]), int(encoded.lengths[i])) for i in range(len(encoded))]
        return nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds))

    def _feed(self, encoded: Any, index: np.ndarray, padded: int) -> dict[str, np.ndarray]:
        from bertdeploy.runtime.batching import make_feed

        return make_feed(encoded, index, padded, self.specs, self.encoder.pad_id)

    def prepare(self, texts: list[str], padding: str) -> Any:
        from bertdeploy.runtime.batching import plan

        encoded = self.encoder.encode(texts)
        groups = plan(encoded.lengths, self.ctx.policy(padding), self.ctx.max_length)
        return len(encoded), [(idx, self._feed(encoded, idx, padded)) for idx, padded in groups]

    def run(self, prepared: Any) -> np.ndarray:
        n, batches = prepared
        out: np.ndarray | None = None
        for idx, feed in batches:
            logits = self.request.infer(feed)[self.output]
            if out is None:
                out = np.empty((n, logits.shape[-1]), dtype=np.float32)
            out[idx] = logits
        return out if out is not None else np.empty((0, len(self.ctx.labels)), dtype=np.float32)

    def predict(self, texts: list[str], padding: str) -> np.ndarray:
        return self.run(self.prepare(texts, padding))

    def sync(self) -> None:
        return None
