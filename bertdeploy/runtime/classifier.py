"""``load(bundle)`` -> :class:`Classifier`: tokenize, batch, run, restore order, softmax."""

from __future__ import annotations

import itertools
import math
import numbers
import os
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bertdeploy import bundle as _bundle
from bertdeploy.errors import UserError
from bertdeploy.machine import usable_cpus
from bertdeploy.runtime import session as _session
from bertdeploy.runtime.batching import Batch, BatchPolicy, iter_batches
from bertdeploy.runtime.options import LoadOptions
from bertdeploy.runtime.tokenize import Encoded, TextEncoder

#: texts tokenized and sorted together by predict()/logits(): large enough for tight length buckets,
#: small enough that memory stays flat on any input size.
SORT_WINDOW = 8192


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float


class Classifier:
    """A loaded bundle variant. Immutable after construction; every method is safe to call from several
    threads at once (``InferenceSession.run`` is thread-safe and no per-call state is stored here).

    With ``streams > 1`` the batches of a call run concurrently on a small thread pool, each ``session.run``
    single-threaded (ORT releases the GIL): on a CPU this keeps every core on large GEMMs instead of
    synchronising two threads inside every small operator (see benchmarks/runtime/README.md).
    """

    def __init__(
        self,
        bundle: Path,
        manifest: _bundle.Manifest,
        variant: _bundle.Variant,
        session: object,
        encoder: TextEncoder,
        policy: BatchPolicy,
        device_id: int = 0,
        shrink_arena: bool = True,
        streams: int = 1,
    ) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.variant = variant
        self.labels: list[str] = list(manifest.labels)
        self.max_length = encoder.max_length
        self.policy = policy
        self._session = session
        self._encoder = encoder
        self._specs = _session.input_specs(session)  # type: ignore[arg-type]
        outputs = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
        output = "logits" if "logits" in outputs else outputs[0]
        width = session.get_outputs()[outputs.index(output)].shape[-1]  # type: ignore[attr-defined]
        if isinstance(width, int) and width != len(self.labels):
            raise UserError(f"the manifest lists {len(self.labels)} labels but the model outputs {width} logits")
        self._run = _session.Runner(session, output, device_id, shrink_arena)  # type: ignore[arg-type]
        self.streams = streams
        self._pool = ThreadPoolExecutor(streams, thread_name_prefix="bertdeploy") if streams > 1 else None

    def close(self) -> None:
        """Stop the stream threads (they also stop when the classifier is garbage-collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())  # type: ignore[attr-defined]

    @property
    def input_names(self) -> list[str]:
        return list(self._specs)

    def __repr__(self) -> str:
        return f"Classifier({str(self.bundle)!r}, variant={self.variant.name!r}, providers={self.providers})"

    # -- building blocks -------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> Encoded:
        """Tokenize only (truncating to ``max_length``; ``.truncated`` counts the texts that were cut)."""
        return self._encoder.encode(_as_list(texts))

    def plan_batches(self, encoded: Encoded) -> list[Batch]:
        """The padded batches for ``encoded`` under this classifier's padding policy."""
        return list(self._iter_batches(encoded))

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Run the model on one batch; returns float32 logits ``[rows, num_labels]``."""
        return self._run(feed)

    def _iter_batches(self, encoded: Encoded) -> Iterator[Batch]:
        policy = self.policy
        if self.streams > 1 and len(encoded) > 1:  # enough batches to keep every stream busy
            rows = max(1, math.ceil(len(encoded) / self.streams))
            policy = replace(policy, batch_size=min(policy.batch_size, rows))
        return iter_batches(encoded, policy, self.max_length, self._specs, self._encoder.pad_id)

    def logits_encoded(self, encoded: Encoded) -> np.ndarray:
        """Logits for already-encoded texts, in their original order."""
        out = np.empty((len(encoded), len(self.labels)), dtype=np.float32)
        if self._pool is None:
            for batch in self._iter_batches(encoded):
                out[batch.index] = self._run(batch.feed)
            return out
        pending: deque = deque()  # at most 2 batches per stream padded and in flight
        for batch in self._iter_batches(encoded):
            pending.append((batch.index, self._pool.submit(self._run, batch.feed)))
            if len(pending) >= 2 * self.streams:
                index, future = pending.popleft()
                out[index] = future.result()
        while pending:
            index, future = pending.popleft()
            out[index] = future.result()
        return out

    # -- public predictions ----------------------------------------------------------------------------
    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits ``[n, num_labels]`` in the caller's order."""
        texts = _as_list(texts)
        parts = [
            self.logits_encoded(self._encoder.encode(texts[i : i + SORT_WINDOW]))
            for i in range(0, len(texts), SORT_WINDOW)
        ]
        return np.concatenate(parts) if parts else np.empty((0, len(self.labels)), dtype=np.float32)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax probabilities ``[n, num_labels]``; columns follow :attr:`labels`."""
        return softmax(self.logits(texts))

    def predict(self, texts: Sequence[str], top_k: int = 1) -> list[Prediction] | list[list[Prediction]]:
        """One :class:`Prediction` per text (``top_k > 1``: a best-first list of ``top_k`` per text)."""
        return self.to_predictions(self.predict_proba(texts), top_k)

    def predict_iter(
        self, texts: Iterable[str], chunk_size: int = 1024, top_k: int = 1
    ) -> Iterator[Prediction] | Iterator[list[Prediction]]:
        """Stream predictions for an iterable of any length, ``chunk_size`` texts at a time, in order."""
        if chunk_size < 1:
            raise UserError(f"chunk_size must be >= 1, got {chunk_size}")
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
            raise UserError(f"texts must be an iterable of strings, got {type(texts).__name__}")
        it = iter(texts)
        while chunk := list(itertools.islice(it, chunk_size)):
            yield from self.predict(chunk, top_k=top_k)  # type: ignore[misc]

    def to_predictions(self, proba: np.ndarray, top_k: int = 1) -> list[Prediction] | list[list[Prediction]]:
        if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 1:
            raise UserError(f"top_k must be an integer >= 1, got {top_k!r}")
        top_k = int(top_k)
        labels = self.labels
        if top_k == 1:
            best = proba.argmax(axis=1)
            scores = proba[np.arange(len(best)), best]
            return [Prediction(labels[i], s) for i, s in zip(best.tolist(), scores.tolist())]
        k = min(top_k, len(labels))
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(proba, order, axis=1)
        return [[Prediction(labels[i], s) for i, s in zip(idx, sc)] for idx, sc in zip(order.tolist(), top.tolist())]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _as_list(texts: Sequence[str] | str) -> list[str]:
    """``texts`` as a list of plain ``str`` (``np.str_`` and other ``str`` subclasses are accepted; a lone string
    is one text). Anything else, and an empty or blank text, is a :class:`UserError` (see :func:`check_texts`)."""
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise UserError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
    return check_texts(texts if isinstance(texts, list) else list(texts))


def check_texts(texts: list[object]) -> list[str]:
    """The one rule for texts, shared by the API and the file predictor: every text is a ``str`` (subclasses are
    converted) holding something besides whitespace. An empty text is never classified: the API raises
    :class:`UserError` naming its index; ``predict_file`` skips such records and reports their lines."""
    out: list[str] | None = None
    for i, t in enumerate(texts):
        if type(t) is not str:
            if not isinstance(t, str):
                raise UserError(f"text #{i} is {type(t).__name__}, not str")
            if out is None:
                out = [str(x) for x in texts[:i]]
            t = str(t)
        if not t or t.isspace():
            raise UserError(f"text #{i} is empty or blank; bertdeploy does not classify empty texts")
        if out is not None:
            out.append(t)
    return out if out is not None else texts  # type: ignore[return-value]


def load(
    bundle: str | os.PathLike[str],
    variant: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 64,
    max_tokens: int = 8192,
    padding: str = "bucketed",
    allow_fallback: bool = False,
    *,
    streams: int | None = None,
    session_config: _session.SessionConfig | None = None,
) -> Classifier:
    """Load a bundle variant into an ONNX Runtime session.

    Args:
        bundle: a folder written by ``bertdeploy export`` (has ``bertdeploy.json``).
        variant: a variant name from the manifest, or "auto" (the best accepted one for the device:
            int8 on CPU, fp16 on CUDA).
        device: "auto" | "cpu" | "cuda" | "cuda:N" | "tensorrt". An explicitly requested GPU that does not
            attach raises :class:`UserError` (a warning instead with ``allow_fallback=True``); "auto" quietly
            takes the best device that works.
        threads: CPU threads in total (None: the cores this process may use).
        batch_size, max_tokens, padding: see :class:`bertdeploy.runtime.batching.BatchPolicy`.
        streams: batches run concurrently, each with ``threads // streams`` intra-op threads. None = 1: one
            session call at a time using every thread (the lowest latency of a single text or batch, and within
            run-to-run noise of the best throughput on an idle machine). ``streams=threads`` runs single-threaded
            batches in parallel: steadier throughput on a busy machine, but one text then uses one core
            (benchmarks/runtime/README.md).
        session_config: fine-grained ONNX Runtime settings (its ``threads`` is ignored: see above).

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
    )
    return load_with(bundle, options)


def load_with(bundle: str | os.PathLike[str], options: LoadOptions) -> Classifier:
    """:func:`load` with its settings as a :class:`~bertdeploy.runtime.options.LoadOptions`."""
    manifest = _bundle.read_manifest(bundle)  # first: it also checks that ``bundle`` is a path
    root = Path(bundle)
    if not isinstance(options, LoadOptions):
        raise UserError(f"options must be a LoadOptions, got {type(options).__name__}")
    name, device_id = _session.parse_device(options.device)
    tokenizer_path = _bundle.resolve_inside(root, manifest.tokenizer_file, "tokenizer file")
    if not tokenizer_path.is_file():
        raise UserError(f"bundle {root} has no tokenizer file {manifest.tokenizer_file}")
    encoder = TextEncoder(tokenizer_path, manifest.max_length)
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
    return Classifier(root, manifest, chosen, sess, encoder, options.policy, device_id, config.cpu_arena, streams)


def _build(
    root: Path, manifest: _bundle.Manifest, options: LoadOptions, target: str, device_id: int, fallback: bool
) -> tuple[_bundle.Variant, object, _session.SessionConfig]:
    """The chosen variant (checked against its sha256) in a session on ``target``."""
    gpu = target in ("cuda", "tensorrt")
    streams = options.streams or 1
    total = options.threads or usable_cpus()
    intra = None if gpu and options.threads is None else max(1, total // streams)
    config = replace(options.session_config or _session.SessionConfig(), threads=intra)
    if options.variant == "auto":
        chosen = manifest.auto_variant("cuda" if gpu else "cpu")
    else:
        chosen = manifest.variant(options.variant)
    path = _bundle.verify_variant(root, chosen)
    sess = _session.create_session(
        path,
        target,
        device_id,
        config,
        fallback,
        precision=chosen.precision,
        max_shape=(options.batch_size, manifest.max_length),
        input_names=tuple(manifest.model_inputs),
    )
    return chosen, sess, config
