"""Which accepted variant(s) of a bundle ``load`` tries, given ``variant`` and ``provider``.

A variant is a file x an execution provider x a precision hint (:mod:`bertdeploy.variants`). ``variant="auto"`` on
the CPU tries the variants of other providers (the OpenVINO EP in bf16) first only where their provider is
installed and the CPU has their flags (``amx_bf16``); the loader then checks that the provider really attached and
goes on to the next candidate when it did not.
"""

from __future__ import annotations

from bertdeploy import variants
from bertdeploy.bundle import Manifest, Variant
from bertdeploy.errors import UserError
from bertdeploy.machine import cpu
from bertdeploy.runtime.plugins import OPENVINO_EXTRA, installed_providers


def candidates(manifest: Manifest, variant: str, provider: str, gpu: bool) -> tuple[list[Variant], bool]:
    """The variants to try, best first, and whether to go on to the next one when a provider does not attach
    (only for ``variant="auto"`` with ``provider="auto"`` on the CPU)."""
    if gpu and provider == "openvino":
        raise UserError("provider='openvino' runs on the CPU: pass device='cpu'")
    if variant == "auto":
        if gpu:
            return [manifest.auto_variant("cuda")], False
        if provider == "cpu":
            return [manifest.auto_variant("cpu")], False
        if provider != "auto":
            return [_best_on(manifest, provider)], False
        return manifest.auto_variants("cpu", installed_providers(), cpu().flags), True
    chosen = manifest.variant(variant)
    if provider in ("auto", chosen.provider):
        return [chosen], False
    if provider == "cpu":
        source = _source(chosen.name)
        raise UserError(f"variant {chosen.name!r} runs on the {chosen.provider} provider; on ONNX Runtime's CPU EP "
                        f"load variant {source!r}")  # fmt: skip
    matches = [v for v in manifest.variants if v.provider == provider and _source(v.name) == chosen.name]
    if not matches:
        raise UserError(f"no variant of the bundle runs {chosen.name!r} on the {provider} provider; "
                        f"{_export_hint(provider)}")  # fmt: skip
    return matches[:1], False


def _source(name: str) -> str:
    spec = variants.VARIANTS.get(name)
    return spec.source if spec is not None else name


def _best_on(manifest: Manifest, provider: str) -> Variant:
    """The accepted variant of ``provider`` that ``auto`` ranks first (table order for unranked ones)."""
    order = {name: i for i, name in enumerate([*variants.auto_order("cpu"), *variants.NAMES])}
    mine = [v for v in manifest.variants if v.provider == provider]
    if not mine:
        raise UserError(f"no variant of the bundle was gated on the {provider} provider; {_export_hint(provider)}")
    return min(mine, key=lambda v: order.get(v.name, len(order)))


def _export_hint(provider: str) -> str:
    names = ",".join(variants.execution_variants(provider))
    return f"export with --all or variants=fp32,{names} where it is installed ({OPENVINO_EXTRA})"
