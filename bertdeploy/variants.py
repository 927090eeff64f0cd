"""The variant table: every ONNX variant a bundle can hold, described once.

The exporter builds and gates variants from it, the bundle names their files from it, the runtime's
``variant="auto"`` ranks them from it, and the CLI choices and the bench defaults are read from it. Adding a
variant is one :class:`VariantSpec` entry here plus its builder in :mod:`bertdeploy.exporter.builders`
(registered under the spec's ``build`` name).

Standard library only: the runtime reads this table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bertdeploy.errors import UserError

#: fused attention operators (ORT contrib ops) a graph-optimized variant is expected to contain
ATTENTION_OPS = ("Attention", "MultiHeadAttention")
PRECISIONS = ("fp32", "fp16", "int8")
DEVICES = ("cpu", "cuda")
#: execution providers a variant can name: ORT's own CPU EP, and the OpenVINO EP plugin (PyPI
#: ``onnxruntime-ep-openvino``, registered beside stock onnxruntime; extra ``bertdeploy[openvino-ep]``)
PROVIDERS = ("cpu", "openvino")
#: precision hints the OpenVINO EP takes (its ``INFERENCE_PRECISION_HINT``)
HINTS = ("f32", "bf16")


@dataclass(frozen=True)
class VariantSpec:
    """One variant: its file, precision, how it is built, how it is judged and where ``auto`` ranks it."""

    name: str
    """The variant's name in manifests, CLI options and bench rows."""
    file: str
    """Its path inside the bundle (the Hugging Face ONNX naming convention)."""
    precision: str
    """``fp32`` | ``fp16`` | ``int8``: the arithmetic of its weights and matmuls."""
    build: str
    """The builder that makes it (a key of ``bertdeploy.exporter.builders.BUILDERS``)."""
    options: Mapping[str, object] = field(default_factory=dict)
    """Keyword arguments for the builder (e.g. the optimization level)."""
    min_agreement: float | None = 0.999
    """Minimum argmax agreement with PyTorch; ``None``: judged on the accuracy drop instead (int8)."""
    expect_fused: tuple[str, ...] = ()
    """Operators of which at least one should appear in the graph (a note is recorded when none does)."""
    auto_rank: Mapping[str, int] = field(default_factory=dict)
    """``variant="auto"`` preference per device, lower first; a device missing here never picks it."""
    cli_flag: str | None = None
    """The ``bertdeploy export`` flag that asks for it (None: reachable via ``--optimize`` / ``--variants``)."""
    notes: tuple[str, ...] = ()
    """Notes recorded with the variant in the manifest."""
    js_dtype: str | None = None
    """The transformers.js ``dtype`` that loads :attr:`file` from the bundle folder (None: no dtype names it)."""
    help: str = ""
    provider: str = "cpu"
    """The execution provider that runs it (:data:`PROVIDERS`)."""
    hint: str | None = None
    """The provider's precision hint (:data:`HINTS`, OpenVINO only): bf16 computes the float parts in bfloat16."""
    runs: str | None = None
    """An *execution variant*: the name of the file variant whose file it runs on :attr:`provider` (no file of
    its own is built; it is gated on its provider like any other variant). None: a file variant."""
    cpu_flags: tuple[str, ...] = ()
    """CPU feature flags (``/proc/cpuinfo`` names) without which ``variant="auto"`` never picks it."""
    check: str | None = None
    """A *checked* variant (text classification): it runs the file of :attr:`runs`, and the texts whose top-two
    probability gap there is under a margin the export calibrates run again on the file of the variant named here.
    None: every text runs once."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"{self.name}: precision must be one of {PRECISIONS}")
        if self.provider not in PROVIDERS or (self.hint is not None and self.hint not in HINTS):
            raise ValueError(f"{self.name}: provider must be one of {PROVIDERS}, hint one of {HINTS}")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "auto_rank", MappingProxyType(dict(self.auto_rank)))

    @property
    def source(self) -> str:
        """The file variant whose file this variant runs (itself for a file variant)."""
        return self.runs or self.name

    @property
    def gated_on_accuracy(self) -> bool:
        """True for variants whose accuracy may move (int8): judged on the accuracy drop, not on agreement."""
        return self.min_agreement is None


_OPTIMIZED = "graph-optimized with ORTOptimizer"
VARIANT_TABLE: tuple[VariantSpec, ...] = (
    VariantSpec(
        "fp32",
        "onnx/model.onnx",
        "fp32",
        "export",
        auto_rank={"cpu": 5, "cuda": 4},
        js_dtype="fp32",
        help="plain Optimum export",
    ),
    VariantSpec(
        "O1",
        "onnx/model_O1.onnx",
        "fp32",
        "optimize",
        {"level": "O1"},
        auto_rank={"cpu": 3, "cuda": 2},
        help=f"{_OPTIMIZED} (basic fusions)",
    ),
    VariantSpec(
        "O2",
        "onnx/model_O2.onnx",
        "fp32",
        "optimize",
        {"level": "O2"},
        expect_fused=ATTENTION_OPS,
        auto_rank={"cpu": 2, "cuda": 1},
        help=f"{_OPTIMIZED} (+ Attention, SkipLayerNorm, BiasGelu)",
    ),
    VariantSpec(
        "O3",
        "onnx/model_O3.onnx",
        "fp32",
        "optimize",
        {"level": "O3"},
        expect_fused=ATTENTION_OPS,
        auto_rank={"cpu": 4, "cuda": 3},
        help=f"{_OPTIMIZED} (+ GELU approximation)",
    ),
    VariantSpec(
        "fp16",
        "onnx/model_fp16.onnx",
        "fp16",
        "half",
        min_agreement=0.99,
        expect_fused=ATTENTION_OPS,
        auto_rank={"cuda": 0},
        cli_flag="--fp16",
        js_dtype="fp16",
        notes=("fp16 is meant for CUDA: validated here on CPU, where expect no speed-up over fp32",),
        help="half precision (for CUDA; validated on CPU)",
    ),
    # Dynamic int8 is written under the Hugging Face ONNX name for it (model_quantized.onnx: what transformers.js
    # loads with dtype "q8"), so one file serves every runtime. Bundles exported before this name keep loading:
    # the runtime reads each variant's file name from the manifest, never from this table.
    VariantSpec(
        "qint8",
        "onnx/model_quantized.onnx",
        "int8",
        "dynamic_int8",
        min_agreement=None,
        auto_rank={"cpu": 0},
        cli_flag="--int8",
        js_dtype="q8",
        help="dynamic int8 for this CPU's instruction set",
    ),
    VariantSpec(
        "qint8_checked",
        "onnx/model_quantized.onnx",
        "int8",
        "check",
        min_agreement=0.99,
        auto_rank={"cpu": -1},
        runs="qint8",
        check="fp32",
        cli_flag="--int8-checked",
        notes=(
            "the qint8 file; texts it is unsure of (top-two probability gap under the manifest's margin) "
            "run again on the fp32 file",
        ),  # fmt: skip
        help="dynamic int8 whose near ties run again in fp32 (text classification): fp32's labels on >= 99 % of "
        "texts at nearly int8's speed",
    ),
    VariantSpec(
        "qint8_qkv",
        "onnx/model_qint8_qkv.onnx",
        "int8",
        "dynamic_int8",
        {"fuse_qkv": True},
        min_agreement=None,
        cli_flag="--int8-qkv",
        notes=("Q/K/V projections fused into one MatMul before quantization (same int8 scales)",),
        help="dynamic int8 with each layer's Q/K/V projections fused into one MatMul (experimental)",
    ),
    VariantSpec(
        "qint8_static",
        "onnx/model_qint8_static.onnx",
        "int8",
        "static_int8",
        min_agreement=None,
        auto_rank={"cpu": 1},
        cli_flag="--int8-static",
        help="static int8 (QDQ), calibrated on training rows",
    ),
)

# Execution variants: a file above x a provider x a precision hint. Built at export only where the provider is
# installed (skipped with a note elsewhere); ``auto`` picks them only where the provider attaches and the CPU has
# the flags (benchmarks/openvino-ep/README.md has the measurements behind the ranks).
_OV_NOTE = 'runs on the OpenVINO execution provider (pip install "bertdeploy[openvino-ep]")'
VARIANT_TABLE += (
    VariantSpec(
        "fp32_ov_bf16",
        "onnx/model.onnx",
        "fp32",
        "execute",
        min_agreement=0.99,
        provider="openvino",
        hint="bf16",
        runs="fp32",
        cpu_flags=("amx_bf16",),
        auto_rank={"cpu": -2},
        notes=(_OV_NOTE + ", matmuls in bf16 (AMX where the CPU has it)",),
        help="the fp32 file on the OpenVINO EP in bf16 (AMX-BF16 CPUs)",
    ),
    VariantSpec(
        "qint8_static_ov",
        "onnx/model_qint8_static.onnx",
        "int8",
        "execute",
        min_agreement=None,
        provider="openvino",
        hint="bf16",
        runs="qint8_static",
        cpu_flags=("amx_int8",),
        notes=(_OV_NOTE + ": its QDQ MatMuls in int8, the rest in bf16",),
        help="the static int8 (QDQ) file on the OpenVINO EP",
    ),
)

VARIANTS: Mapping[str, VariantSpec] = MappingProxyType({v.name: v for v in VARIANT_TABLE})
NAMES: tuple[str, ...] = tuple(VARIANTS)
#: the variant every other one is derived from (built first, always)
BASE = VARIANT_TABLE[0].name
#: not a variant: "what ``load(bundle)`` picks on this machine", accepted where a variant is chosen to run or time
AUTO = "auto"
#: named selections: what ``bertdeploy bench --export`` builds by default, and what the quickstart exports
BENCH_EXPORT: tuple[str, ...] = ("fp32", "O2", "fp16", "qint8", "qint8_static")
QUICKSTART: tuple[str, ...] = ("fp32", "O2", "qint8")


def get(name: str) -> VariantSpec:
    """The spec of ``name``; :class:`UserError` naming the known variants otherwise."""
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown variant {name!r}; choose from {', '.join(NAMES)}") from None


def canonical(names: Iterable[str]) -> list[str]:
    """``names`` validated, de-duplicated, in table order, with the base variant first (always included) and the
    file variant of every execution variant asked for before it."""
    wanted = set()
    for name in names:
        spec = get(name)
        wanted.update((spec.name, spec.source))
    return [v for v in NAMES if v == BASE or v in wanted]


def auto_order(device: str) -> list[str]:
    """Variant names in ``variant="auto"`` preference order for ``device`` (``cpu`` | ``cuda``)."""
    dev = device if device in DEVICES else "cpu"
    ranked = [v for v in VARIANT_TABLE if dev in v.auto_rank]
    return [v.name for v in sorted(ranked, key=lambda v: v.auto_rank[dev])]


def runnable(spec: VariantSpec, providers: Iterable[str], cpu_flags: Iterable[str]) -> bool:
    """True when ``auto`` may try ``spec`` here: its provider is installed (``providers``: names of
    :data:`PROVIDERS`) and the CPU has its flags. Whether the provider then attaches is checked on the session."""
    flags = set(cpu_flags)
    return spec.provider in set(providers) and all(f in flags for f in spec.cpu_flags)


def auto_candidates(device: str, providers: Iterable[str], cpu_flags: Iterable[str]) -> list[str]:
    """:func:`auto_order` less the variants this machine cannot run (:func:`runnable`); CUDA takes only ORT's own."""
    providers, cpu_flags = list(providers), list(cpu_flags)
    out = []
    for name in auto_order(device):
        spec = VARIANTS[name]
        if (device == "cpu" and runnable(spec, providers, cpu_flags)) or spec.provider == "cpu":
            out.append(name)
    return out


def execution_variants(provider: str | None = None) -> list[str]:
    """Names of the execution variants (a file variant on another provider), optionally of one provider."""
    return [v.name for v in VARIANT_TABLE if v.runs and v.provider != "cpu" and provider in (None, v.provider)]


def with_flag() -> list[VariantSpec]:
    """Variants that have their own ``bertdeploy export`` flag."""
    return [v for v in VARIANT_TABLE if v.cli_flag]


def by_build(build: str) -> list[str]:
    """Names of the variants made by one builder (e.g. the ``optimize`` levels)."""
    return [v.name for v in VARIANT_TABLE if v.build == build]


def float_reference(name: str) -> bool:
    """True when ``name`` computes in fp32 (an accuracy reference for picks)."""
    spec = VARIANTS.get(name)
    return spec is not None and spec.precision == "fp32" and spec.hint in (None, "f32")
