"""``load(bundle)``: read the manifest, pick the variant and the device, build the session, and return the head of
the bundle's task (:mod:`bertdeploy.runtime.heads`)."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from bertdeploy import bundle as _bundle
from bertdeploy.errors import UserError
from bertdeploy.machine import usable_cpus
from bertdeploy.runtime import session as _session
from bertdeploy.runtime.checked import Check, check_settings
from bertdeploy.runtime.choice import candidates
from bertdeploy.runtime.heads import head_for
from bertdeploy.runtime.options import LoadOptions
from bertdeploy.runtime.plugins import PAD_MULTIPLE


def load(
    bundle: str | os.PathLike[str],
    variant: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 64,
    max_tokens: int | None = None,
    padding: str = "bucketed",
    allow_fallback: bool = False,
    *,
    streams: int | None = None,
    session_config: _session.SessionConfig | None = None,
    provider: str = "auto",
) -> Any:
    """Load a bundle variant into an ONNX Runtime session; returns the predictor of the bundle's task (a
    :class:`~bertdeploy.runtime.classifier.Classifier` for text classification, a
    :class:`~bertdeploy.runtime.tagger.Tagger` for token classification).

    Args:
        bundle: a folder written by ``bertdeploy export`` (has ``bertdeploy.json``).
        variant: a variant name from the manifest, or "auto" (the best accepted one for the device: on the CPU
            int8 with its near ties re-run in fp32 (``qint8_checked``) where the bundle has it, else int8; fp16 on
            CUDA).
        device: "auto" | "cpu" | "cuda" | "cuda:N" | "tensorrt". An explicitly requested GPU that does not
            attach raises :class:`UserError` (a warning instead with ``allow_fallback=True``); "auto" quietly
            takes the best device that works.
        threads: CPU threads in total (None: the cores this process may use).
        batch_size, max_tokens, padding: see :class:`bertdeploy.runtime.batching.BatchPolicy`; ``max_tokens`` None:
            1,024 tokens a call on ONNX Runtime's CPU EP (long inputs run faster in batches that stay in the
            caches), 8,192 on a GPU or the OpenVINO EP.
        streams: batches run concurrently, each with ``threads // streams`` intra-op threads. None = 1: one
            session call at a time using every thread (the lowest latency of a single text or batch, and within
            run-to-run noise of the best throughput on an idle machine). ``streams=threads`` runs single-threaded
            batches in parallel: steadier throughput on a busy machine, but one text then uses one core
            (benchmarks/runtime/README.md). On the OpenVINO EP they are OpenVINO's own streams of one compiled
            model (``NUM_STREAMS``), the threads shared out among them.
        session_config: fine-grained ONNX Runtime settings (its ``threads`` is ignored: see above).
        provider: the execution provider on the CPU: "auto" (the variant's own; ``variant="auto"`` prefers a
            variant of the OpenVINO EP in bf16 only where the plugin is installed, attaches and the CPU has
            AMX-BF16), "cpu" (ONNX Runtime's CPU EP only) or "openvino" (``pip install "bertdeploy[openvino-ep]"``;
            with a file variant such as "fp32", the execution variant gated on OpenVINO that runs that file).

    The same settings as one object: :class:`~bertdeploy.runtime.options.LoadOptions` and :func:`load_with`.
    """
    options = LoadOptions(
        variant=variant,
        device=device,
        threads=threads,
        batch_size=batch_size,
        max_tokens=max_tokens,
        padding=padding,
        allow_fallback=allow_fallback,
        streams=streams,
        session_config=session_config,
        provider=provider,
    )
    return load_with(bundle, options)


def load_with(bundle: str | os.PathLike[str], options: LoadOptions) -> Any:
    """:func:`load` with its settings as a :class:`~bertdeploy.runtime.options.LoadOptions`."""
    manifest = _bundle.read_manifest(bundle)  # first: it also checks that ``bundle`` is a path
    root = Path(bundle)
    if not isinstance(options, LoadOptions):
        raise UserError(f"options must be a LoadOptions, got {type(options).__name__}")
    name, device_id = _session.parse_device(options.device)
    tokenizer_path = _bundle.resolve_inside(root, manifest.tokenizer_file, "tokenizer file")
    if not tokenizer_path.is_file():
        raise UserError(f"bundle {root} has no tokenizer file {manifest.tokenizer_file}")
    _bundle.verify_files(root, manifest)  # the tokenizer and config are checked like the variant's ONNX file
    head = head_for(manifest.task)  # an unknown or unsupported task fails before any session is built
    encoder = head.make_encoder(tokenizer_path, manifest.max_length)
    target = _session.resolve_device(name)
    if name == "auto" and target != "cpu":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            built = _build(root, manifest, options, target, device_id, True)
        if built[1].get_providers()[0] == _session.CPU:  # type: ignore[attr-defined]
            warnings.warn(
                f"device='auto': {target} is installed but did not attach; running on the CPU",
                RuntimeWarning,
                stacklevel=2,
            )
            built = _build(root, manifest, options, "cpu", device_id, True)
    else:
        built = _build(root, manifest, options, target, device_id, options.allow_fallback)
    chosen, sess, config = built
    streams = options.streams or 1
    policy = options.policy_for(cpu_ep=sess.get_providers()[0] == _session.CPU)  # type: ignore[attr-defined]
    if chosen.provider != "cpu":
        policy = replace(policy, pad_multiple=max(policy.pad_multiple, PAD_MULTIPLE))
    check = _check(root, manifest, chosen, config, options) if chosen.check else None
    predictor = head(root, manifest, chosen, sess, encoder, policy, device_id, config.cpu_arena, streams, check)
    if _session.TENSORRT not in predictor.providers:  # TensorRT would build an engine for each probe shape
        try:
            predictor.check_limits()
        except BaseException:
            predictor.close()
            raise
    return predictor


def _build(
    root: Path, manifest: _bundle.Manifest, options: LoadOptions, target: str, device_id: int, fallback: bool
) -> tuple[_bundle.Variant, object, _session.SessionConfig]:
    """The chosen variant (checked against its sha256) in a session on ``target``."""
    gpu = target in ("cuda", "tensorrt")
    streams = options.streams or 1
    total = options.threads or usable_cpus()
    intra = None if gpu and options.threads is None else max(1, total // streams)
    config = replace(options.session_config or _session.SessionConfig(), threads=intra)
    tries, go_on = candidates(manifest, options.variant, options.provider, gpu)
    for i, chosen in enumerate(tries):
        path = _bundle.verify_variant(root, chosen)
        plugin = chosen.provider != "cpu"
        try:
            sess = _session.create_session(
                path,
                target,
                device_id,
                config,
                fallback and not (plugin and go_on),
                precision=chosen.precision,
                max_shape=(options.batch_size, manifest.max_length),
                input_names=tuple(manifest.model_inputs),
                provider=chosen.provider,
                hint=chosen.hint,
                streams=streams,
            )
        except UserError as e:
            if not (plugin and go_on) or i + 1 == len(tries):
                raise
            msg = f"variant='auto': {chosen.name} did not start ({e}); trying {tries[i + 1].name}"
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            continue
        return chosen, sess, config
    raise UserError("the bundle has no accepted variant")  # pragma: no cover - candidates() is never empty


def _check(
    root: Path,
    manifest: _bundle.Manifest,
    chosen: _bundle.Variant,
    config: _session.SessionConfig,
    options: LoadOptions,
) -> Check:
    """The session that re-runs a checked variant's near ties (on the CPU, with the main session's settings)."""
    variant, margin = check_settings(manifest, chosen)
    path = _bundle.verify_variant(root, variant)
    sess = _session.create_session(
        path,
        "cpu",
        0,
        config,
        False,
        precision=variant.precision,
        max_shape=(options.batch_size, manifest.max_length),
        input_names=tuple(manifest.model_inputs),
    )
    return Check(variant, sess, margin, config.cpu_arena)
