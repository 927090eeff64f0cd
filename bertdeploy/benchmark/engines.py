"""Loading the peer engines every task's backends share: a PyTorch model at a precision (fp32, bf16, fp16, dynamic
int8) and Optimum's ORTModel on the bundle's fp32 ONNX file. Heavy libraries are imported inside the functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertdeploy.benchmark.contract import BackendContext, Skip, need
from bertdeploy.benchmark.plan import NO_FP16


def hf_padding(padding: str) -> str:
    """The transformers tokenizer's ``padding`` for a bench padding mode."""
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


def torch_model(ctx: BackendContext, auto_model: str = "AutoModelForSequenceClassification") -> tuple[Any, dict]:
    """The PyTorch model of ``ctx.hf_dir`` (loaded with the transformers class ``auto_model``) at the precision
    ``ctx.variant`` (fp32, bf16, fp16 on CUDA, int8 = :func:`torch_dynamic_int8` on the CPU) on its device, and the
    row facts (file, bytes, precision, providers = [device]). :class:`Skip` where that precision cannot run here."""
    import torch
    import transformers

    from bertdeploy.machine import cpu

    hf = need(ctx.hf_dir, "PyTorch model (pass the training run dir as a target)")
    on_cuda = _cuda(ctx.device)
    dtype = torch.float32
    if ctx.variant == "bf16":
        native = torch.cuda.is_bf16_supported() if on_cuda else cpu().native_bf16
        if not native:
            raise Skip(
                f"bf16 skipped: no native bf16 on this CPU ({torch.backends.cpu.get_cpu_capability()}, "
                "no avx512_bf16 / amx_bf16): emulated bf16 would only measure the emulation"
            )
        dtype = torch.bfloat16
    if ctx.variant == "fp16":
        if not on_cuda:
            raise Skip(NO_FP16)
        dtype = torch.float16
    if ctx.variant == "int8" and on_cuda:
        raise Skip("PyTorch dynamic int8 (torch.ao.quantization.quantize_dynamic) runs on the CPU only")
    torch.set_num_threads(ctx.threads)
    cls = getattr(transformers, auto_model)
    model = cls.from_pretrained(hf, use_safetensors=True, dtype=dtype).eval()
    dev = "cuda" if on_cuda else "cpu"
    model.to(dev)
    size = _dir_bytes(hf, "*.safetensors")
    if ctx.variant == "int8":
        model = torch_dynamic_int8(model)
        size = _state_bytes(model)
    return model, {"file": str(hf), "bytes": size, "precision": ctx.variant, "providers": [dev]}


def ort_model(ctx: BackendContext, class_name: str) -> tuple[Any, dict[str, Any]]:
    """Optimum's ``class_name`` (``ORTModelForSequenceClassification`` ...) on the bundle's ONNX file (the plain fp32
    export, or the file of the bundle variant ``ctx.variant`` names), or exported on the fly from the training run;
    and the row facts."""
    import onnxruntime as ort
    import optimum.onnxruntime

    cls = getattr(optimum.onnxruntime, class_name)
    so = ort.SessionOptions()
    so.intra_op_num_threads = ctx.threads
    so.inter_op_num_threads = 1
    provider = "CUDAExecutionProvider" if ctx.device == "cuda" else "CPUExecutionProvider"
    file, precision = _bundle_file(ctx)
    if ctx.bundle is not None and (ctx.bundle / file).is_file():
        src = ctx.bundle
        onnx = {"subfolder": str(Path(file).parent), "file_name": Path(file).name}
        model = cls.from_pretrained(src, **onnx, session_options=so, provider=provider)
        size = (src / file).stat().st_size
    else:
        src = need(ctx.hf_dir, "ONNX file or PyTorch model")
        model = cls.from_pretrained(src, export=True, session_options=so, provider=provider)
        size = None
    providers = model.model.get_providers()
    if ctx.device == "cuda" and providers[0] != "CUDAExecutionProvider":
        raise Skip(f"CUDAExecutionProvider did not attach (providers: {providers})")
    return model, {"file": str(src), "bytes": size, "precision": precision, "providers": providers}


def _bundle_file(ctx: BackendContext) -> tuple[str, str]:
    """The ONNX file ORTModel reads: that of the bundle variant ``ctx.variant`` names (the whole-file scenario's
    ``ortmodel:qint8``), else the plain fp32 export; and its precision."""
    from bertdeploy.bundle import MANIFEST_NAME, read_manifest

    if ctx.bundle is not None and (ctx.bundle / MANIFEST_NAME).is_file():
        for v in read_manifest(ctx.bundle).variants:
            if v.name == ctx.variant:
                return v.file, v.precision
    return "onnx/model.onnx", "fp32"
