"""Building each ONNX variant with Optimum / ONNX Runtime tooling. Every function writes into a scratch folder
(never the working directory) and returns the path of the one ``.onnx`` file it produced.

- fp32: ``optimum.exporters.onnx.onnx_export_from_model`` (dynamic batch and sequence axes)
- O1/O2/O3: ``optimum.onnxruntime.ORTOptimizer`` with ``AutoOptimizationConfig``
- fp16: ``onnxruntime.transformers`` fusion + ``convert_float_to_float16(keep_io_types=True)`` with an op block list
- qint8: ``ORTQuantizer`` dynamic, ``AutoQuantizationConfig.<isa>`` with int8 weights, weight MatMuls only, from
  the *plain* export
- qint8_static: ``ORTQuantizer`` static (QDQ), MinMax calibration, LayerNorm / GELU / residual Add excluded
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

#: fused / contrib operators whose counts go into the manifest
FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "GemmFastGelu",
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "QuantizeLinear",
    "DequantizeLinear",
)
ATTENTION_OPS = ("Attention", "MultiHeadAttention")
#: kept in float32 by the fp16 conversion: decomposed LayerNorm pieces overflow in half precision
#: (x**2 of activations > 256 exceeds 65504), on top of onnxruntime's default block list
FP16_KEEP_FP32 = ("Pow", "ReduceMean", "Sqrt", "Erf")
ONNX_NAME = "model.onnx"


def _quiet() -> None:
    for name in ("optimum", "onnxruntime", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)


def export_fp32(model: Any, tokenizer: Any, work: Path, opset: int | None) -> Path:
    """Export the PyTorch model with Optimum; returns ``work/fp32/model.onnx`` (config + tokenizer beside it)."""
    from optimum.exporters.onnx import onnx_export_from_model

    _quiet()
    out = work / "fp32"
    with warnings.catch_warnings():  # torch.jit tracer warnings about constant masks are expected and harmless
        warnings.simplefilter("ignore")
        onnx_export_from_model(
            model,
            out,
            opset=opset,
            task="text-classification",
            do_validation=False,  # the gate validates every variant on real rows
            preprocessors=[tokenizer],
        )
    path = out / ONNX_NAME
    if not path.is_file():  # pragma: no cover - optimum contract
        raise RuntimeError(f"Optimum did not write {path}")
    return path


def optimize(fp32_dir: Path, level: str, work: Path) -> Path:
    """Graph-optimize the plain export with ORTOptimizer at ``O1`` / ``O2`` / ``O3`` (CPU-portable fusions)."""
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    _quiet()
    config = getattr(AutoOptimizationConfig, level)(for_gpu=False)
    optimizer = ORTOptimizer.from_pretrained(fp32_dir, file_names=[ONNX_NAME])
    out = work / level
    optimizer.optimize(config, save_dir=out, file_suffix=None)
    return out / ONNX_NAME


def convert_fp16(fp32_path: Path, hf_config: Any, work: Path) -> Path:
    """Fuse (portable, provider-independent fusions) then convert to float16 with float32 inputs/outputs."""
    from onnxruntime.transformers import float16
    from onnxruntime.transformers.optimizer import optimize_model
    from optimum.onnxruntime.utils import ORTConfigManager
    from optimum.utils import NormalizedConfigManager

    _quiet()
    normalized = NormalizedConfigManager.get_normalized_config_class(hf_config.model_type)(hf_config)
    model = optimize_model(
        str(fp32_path),
        model_type=ORTConfigManager.get_model_ort_type(hf_config.model_type),
        num_heads=normalized.num_attention_heads,
        hidden_size=normalized.hidden_size,
        opt_level=0,  # python fusions only: the file stays valid for both CPU and CUDA providers
        use_gpu=False,
    )
    model.convert_float_to_float16(keep_io_types=True, op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FP32])
    out = work / "fp16"
    out.mkdir(parents=True, exist_ok=True)
    model.save_model_to_file(str(out / ONNX_NAME))
    return out / ONNX_NAME


def _qconfig(isa: str, is_static: bool, per_channel: bool):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    factory = getattr(AutoQuantizationConfig, isa)
    return factory(is_static=is_static, per_channel=per_channel)


def activation_matmuls(path: Path) -> list[str]:
    """MatMul nodes with no constant operand (attention scores and context): dynamic int8 leaves them in float,
    as ONNX Runtime's own ``quantize_dynamic`` does (``MatMulConstBOnly``); quantizing both activations of these
    tiny batched products costs accuracy and buys no speed."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


def quantize_dynamic(fp32_dir: Path, isa: str, work: Path, per_channel: bool = True, weights: str = "int8") -> Path:
    """Dynamic int8 for ``isa`` (avx512_vnni | avx512 | avx2 | arm64), quantized from the plain fp32 export.

    ``weights="int8"`` (default): signed int8 weights on every ISA (uint8 activations x int8 weights, ONNX Runtime's
    default). Optimum's ``avx2`` preset asks for uint8 weights to rule out ``vpmaddubsw`` saturation; on this
    project's AVX2 machine the signed kernel is ~20-25 % faster end to end for MiniLM-L6 and the accuracy gate checks
    the result (emotion: 0.9235 vs 0.9245 test accuracy, benchmarks/runtime/README.md). Models with very large
    weights can saturate (a random BERT with std-0.5 weights: 72 % argmax agreement): ``weights="uint8"``.
    """
    from onnxruntime.quantization import QuantType
    from optimum.onnxruntime import ORTQuantizer

    _quiet()
    config = _qconfig(isa, False, per_channel)
    config.weights_dtype = QuantType.QInt8 if weights == "int8" else QuantType.QUInt8
    config.nodes_to_exclude = [*config.nodes_to_exclude, *activation_matmuls(fp32_dir / ONNX_NAME)]
    quantizer = ORTQuantizer.from_pretrained(fp32_dir, file_name=ONNX_NAME)
    out = work / "qint8"
    quantizer.quantize(config, save_dir=out, file_suffix=None)
    return out / ONNX_NAME


def quantize_static(
    fp32_dir: Path, isa: str, tokenizer: Any, texts: list[str], max_length: int, work: Path, per_channel: bool = True
) -> Path:
    """Static int8 (QDQ) calibrated with MinMax on ``texts``; LayerNorm, GELU and residual Adds stay in float.

    Excluding those nodes is the known fix for the accuracy collapse of statically quantized BERTs; the same
    passes are used in Optimum's own static-quantization examples.
    """
    import onnx
    from datasets import Dataset
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig
    from optimum.onnxruntime.preprocessors import QuantizationPreprocessor
    from optimum.onnxruntime.preprocessors.passes import (
        ExcludeGeLUNodes,
        ExcludeLayerNormNodes,
        ExcludeNodeAfter,
        ExcludeNodeFollowedBy,
    )

    _quiet()
    if not texts:
        raise ValueError("static quantization needs calibration rows")
    inputs = {i.name for i in onnx.load(str(fp32_dir / ONNX_NAME), load_external_data=False).graph.input}
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    dataset = Dataset.from_dict({k: v for k, v in enc.items() if k in inputs})
    quantizer = ORTQuantizer.from_pretrained(fp32_dir, file_name=ONNX_NAME)
    qconfig = _qconfig(isa, True, per_channel)
    # Optimum's ExcludeLayerNormNodes matches the decomposed LayerNorm pattern only; the exporter emits the native
    # LayerNormalization op (opset >= 17), which ORT's QDQ defaults would quantize: keep every normalization in float.
    qconfig.operators_to_quantize = [op for op in qconfig.operators_to_quantize if not op.endswith("Normalization")]
    calibration = AutoCalibrationConfig.minmax(dataset)
    ranges = quantizer.fit(
        dataset=dataset,
        calibration_config=calibration,
        onnx_augmented_model_name=work / "augmented_model.onnx",  # never the CWD
        operators_to_quantize=qconfig.operators_to_quantize,
        batch_size=1,  # one row at a time: no padding tokens in the ranges
    )
    pre = QuantizationPreprocessor()
    pre.register_pass(ExcludeLayerNormNodes())
    pre.register_pass(ExcludeGeLUNodes())
    pre.register_pass(ExcludeNodeAfter("Add", "Add"))  # residual connections
    pre.register_pass(ExcludeNodeAfter("Gather", "Add"))  # embeddings sum
    pre.register_pass(ExcludeNodeFollowedBy("Add", "Softmax"))  # attention mask add
    out = work / "qint8_static"
    quantizer.quantize(qconfig, save_dir=out, file_suffix=None, calibration_tensors_range=ranges, preprocessor=pre)
    return out / ONNX_NAME


def graph_info(path: Path) -> dict[str, Any]:
    """Opset, input names and counts of fused / quantization operators of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = Counter(node.op_type for node in model.graph.node)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    initializers = {i.name for i in model.graph.initializer}
    return {
        "opset": opset,
        "inputs": [i.name for i in model.graph.input if i.name not in initializers],
        "fused_nodes": {op: counts[op] for op in FUSED_OPS if counts.get(op)},
        "nodes": sum(counts.values()),
    }


def place(src: Path, dest: Path) -> None:
    """Move a built file into the bundle (plus an external-data sibling, if the exporter wrote one)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dest))
    for ext in ("_data", ".data"):
        side = Path(str(src) + ext)
        if side.exists():
            raise RuntimeError(f"{src} uses external data ({side.name}); models > 2 GB are not supported")
