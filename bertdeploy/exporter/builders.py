"""Building each ONNX variant with Optimum / ONNX Runtime tooling, registered by the ``build`` name of the
variant table (:mod:`bertdeploy.variants`). Every builder writes into a scratch folder (never the working
directory) and returns the one ``.onnx`` file it produced plus what the manifest should record about it.

- fp32: ``optimum.exporters.onnx.onnx_export_from_model`` (dynamic batch and sequence axes)
- O1/O2/O3: ``optimum.onnxruntime.ORTOptimizer`` with ``AutoOptimizationConfig``
- fp16: ``onnxruntime.transformers`` fusion + ``convert_float_to_float16(keep_io_types=True)`` with an op block list
- qint8: ``ORTQuantizer`` dynamic, ``AutoQuantizationConfig.<isa>`` with int8 weights, weight MatMuls only, from
  the *plain* export
- qint8_static: ``ORTQuantizer`` static (QDQ), MinMax calibration, LayerNorm / GELU / residual Add excluded
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.exporter.keys import transpose_keys_file
from bertdeploy.variants import VariantSpec

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
#: kept in float32 by the fp16 conversion: decomposed LayerNorm pieces overflow in half precision
#: (x**2 of activations > 256 exceeds 65504), on top of onnxruntime's default block list
FP16_KEEP_FP32 = ("Pow", "ReduceMean", "Sqrt", "Erf")
ONNX_NAME = "model.onnx"


STATIC_EXCLUDED = ["LayerNormalization", "GELU", "residual Add", "embeddings Add", "attention-mask Add"]


@contextlib.contextmanager
def quiet_logs(names: tuple[str, ...] = ("optimum", "onnxruntime", "root")) -> Iterator[None]:
    """Silence the chatty INFO/WARNING logs of Optimum and ONNX Runtime for one build, then restore the levels."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@dataclass
class BuildContext:
    """What every builder may need: the plain fp32 export, a scratch folder, the source model, int8 settings."""

    fp32_path: Path
    work: Path
    source: Any  # bertdeploy.exporter.source.Source
    isa: str
    per_channel: bool = True
    int8_weights: str = "int8"
    calibration: list[str] = field(default_factory=list)
    accepted: dict[str, Path] = field(default_factory=dict)
    """Accepted file variants so far -> their file in the bundle (what an execution variant runs)."""


@dataclass
class Built:
    """A built variant file and the extra manifest keys / notes that describe it."""

    path: Path
    record: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


Builder = Callable[[VariantSpec, BuildContext], Built]
#: ``VariantSpec.build`` -> builder
BUILDERS: dict[str, Builder] = {}


def builder(name: str) -> Callable[[Builder], Builder]:
    """Register a builder under ``name`` (the ``build`` field of the variant table)."""

    def register(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        return fn

    return register


def build(spec: VariantSpec, ctx: BuildContext) -> Built:
    """Build one variant (logs of the tools silenced for the call)."""
    with quiet_logs():
        return BUILDERS[spec.build](spec, ctx)


@builder("export")
def _base(spec: VariantSpec, ctx: BuildContext) -> Built:
    return Built(ctx.fp32_path)


@builder("execute")
def _execute(spec: VariantSpec, ctx: BuildContext) -> Built:
    """An execution variant: no new file, the accepted file of :attr:`VariantSpec.runs` on another provider."""
    path = ctx.accepted.get(spec.source)
    if path is None:
        raise RuntimeError(f"its file variant {spec.source} was not accepted")
    return Built(path, record={"runs": spec.source})


@builder("check")
def _check(spec: VariantSpec, ctx: BuildContext) -> Built:
    """A checked variant: no new file, the accepted file of :attr:`VariantSpec.runs` (the check file and the margin
    are settled by the gate, :mod:`bertdeploy.exporter.checked`)."""
    if spec.check not in ctx.accepted:
        raise RuntimeError(f"its check variant {spec.check} was not accepted")
    return _execute(spec, ctx)


@builder("optimize")
def _optimized(spec: VariantSpec, ctx: BuildContext) -> Built:
    return Built(optimize(ctx.fp32_path.parent, str(spec.options["level"]), ctx.work))


@builder("half")
def _half(spec: VariantSpec, ctx: BuildContext) -> Built:
    return Built(convert_fp16(ctx.fp32_path, ctx.source.config, ctx.work))


@builder("dynamic_int8")
def _dynamic(spec: VariantSpec, ctx: BuildContext) -> Built:
    source, graph = ctx.fp32_path.parent, {}
    if spec.options.get("fuse_qkv"):
        from bertdeploy.exporter.fuse import fuse_file

        source = ctx.work / f"{spec.name}_fused"
        graph = {"graph_edits": {"fused_shared_input_matmuls": fuse_file(ctx.fp32_path, source / ONNX_NAME)}}
    path = quantize_dynamic(source, ctx.isa, ctx.work / spec.name, ctx.per_channel, ctx.int8_weights)
    graph.setdefault("graph_edits", {})["keys_read_transposed"] = transpose_keys_file(path)
    quantization = {
        "mode": "dynamic",
        "isa": ctx.isa,
        "per_channel": ctx.per_channel,
        "weights": ctx.int8_weights,
        "activations": "uint8",
        "activation_matmuls": "float",
    }
    notes = [f"int8 configured for {ctx.isa}"]
    if graph["graph_edits"]["keys_read_transposed"]:
        notes.append("attention scores read the keys with FusedMatMul transB (no transposed copy; exact)")
    return Built(path, {"quantization": quantization, **graph}, notes)


@builder("static_int8")
def _static(spec: VariantSpec, ctx: BuildContext) -> Built:
    src = ctx.source
    if src.spec.input_axes != src.spec.input_axes[:1] + src.spec.input_axes[-1:]:
        raise ValueError(f"static int8 calibration is not implemented for {src.spec.name} inputs")
    path = quantize_static(
        ctx.fp32_path.parent, ctx.isa, src.tokenizer, ctx.calibration, src.max_length, ctx.work, ctx.per_channel
    )
    quantization = {
        "mode": "static",
        "format": "QDQ",
        "isa": ctx.isa,
        "per_channel": ctx.per_channel,
        "calibration": {"method": "minmax", "rows": len(ctx.calibration)},
        "excluded": STATIC_EXCLUDED,
    }
    return Built(path, {"quantization": quantization}, [f"int8 configured for {ctx.isa}"])


def export_fp32(model: Any, tokenizer: Any, work: Path, opset: int | None, task: str = "text-classification") -> Path:
    """Export the PyTorch model with Optimum for ``task`` (an Optimum task name, :mod:`bertdeploy.tasks`); returns
    ``work/fp32/model.onnx`` (config + tokenizer beside it)."""
    from optimum.exporters.onnx import onnx_export_from_model

    out = work / "fp32"
    with (
        quiet_logs(),
        warnings.catch_warnings(),
    ):  # torch.jit tracer warnings about constant masks are expected and harmless
        warnings.simplefilter("ignore")
        onnx_export_from_model(
            model,
            out,
            opset=opset,
            task=task,
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
    out = work / "half"
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

    config = _qconfig(isa, False, per_channel)
    config.weights_dtype = QuantType.QInt8 if weights == "int8" else QuantType.QUInt8
    config.nodes_to_exclude = [*config.nodes_to_exclude, *activation_matmuls(fp32_dir / ONNX_NAME)]
    quantizer = ORTQuantizer.from_pretrained(fp32_dir, file_name=ONNX_NAME)
    out = work / "dynamic_int8"
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
    out = work / "static_int8"
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
