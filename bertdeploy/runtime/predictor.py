"""What every task head shares: a loaded bundle variant in an ONNX Runtime session, the bundle's tokenizer, the
batch policy and the stream pool, and the loop that runs every batch of an encoding (:meth:`Predictor.run_batches`).

A head (:mod:`bertdeploy.runtime.heads`: the classifier, the tagger, ...) adds how records are encoded
(:meth:`Predictor.encode`), how the outputs of the batches are gathered (:meth:`Predictor.forward`) and how they
become predictions (:meth:`Predictor.decode`). ``forward(encode(texts))`` is what the server's dynamic batcher runs
for the requests of one batch: its result is sliced per request (``outputs[a:b]``) and decoded with each
request's own parameters.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bertdeploy import bundle as _bundle
from bertdeploy import tasks
from bertdeploy.errors import UserError
from bertdeploy.runtime import session as _session
from bertdeploy.runtime.batching import Batch, BatchPolicy, iter_batches
from bertdeploy.runtime.tokenize import Encoded, TextEncoder

#: texts tokenized and sorted together by predict(): large enough for tight length buckets, small enough that
#: memory stays flat on any input size.
SORT_WINDOW = 8192


class Predictor:
    """A loaded bundle variant. Immutable after construction; every method is safe to call from several
    threads at once (``InferenceSession.run`` is thread-safe and no per-call state is stored here).

    With ``streams > 1`` the batches of a call run concurrently on a small thread pool, each ``session.run``
    single-threaded (ORT releases the GIL): on a CPU this keeps every core on large GEMMs instead of
    synchronising two threads inside every small operator (see benchmarks/runtime/README.md).
    """

    #: the head's name in :data:`bertdeploy.runtime.heads.HEADS` (set by each head)
    head: ClassVar[str] = ""

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
        check: Any = None,
    ) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.variant = variant
        self.task: tasks.TaskSpec = tasks.get(manifest.task, stage="the runtime")
        self.labels: list[str] = list(manifest.labels)
        self.max_length = encoder.max_length
        self.policy = policy
        self._session = session
        self._encoder = encoder
        self._specs = _session.input_specs(session)  # type: ignore[arg-type]
        outputs = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
        wanted = [name for name in self.task.outputs if name in outputs] or outputs[:1]
        if len(wanted) < len(self.task.outputs) and len(outputs) >= len(self.task.outputs):
            wanted = outputs[: len(self.task.outputs)]  # other names, same order (Optimum's are the table's)
        width = session.get_outputs()[outputs.index(wanted[0])].shape[-1]  # type: ignore[attr-defined]
        if self.task.labelled and isinstance(width, int) and width != len(self.labels):
            raise UserError(f"the manifest lists {len(self.labels)} labels but the model outputs {width} logits")
        output = wanted[0] if len(wanted) == 1 else wanted
        self._run = _session.Runner(session, output, device_id, shrink_arena)  # type: ignore[arg-type]
        self.streams = streams
        #: a checked variant's re-run of near ties (:class:`bertdeploy.runtime.checked.Check`), or None
        self.check = check
        self._pool = ThreadPoolExecutor(streams, thread_name_prefix="bertdeploy") if streams > 1 else None

    def close(self) -> None:
        """Stop the stream threads (they also stop when the predictor is garbage-collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self):  # noqa: ANN204 - the head's own type
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
        name = type(self).__name__
        return f"{name}({str(self.bundle)!r}, variant={self.variant.name!r}, providers={self.providers})"

    # -- what each head defines ------------------------------------------------------------------------
    @classmethod
    def make_encoder(cls, tokenizer: str | Path, max_length: int) -> TextEncoder:
        """The tokenizer wrapper this head encodes with (the bundle's ``tokenizer.json``)."""
        return TextEncoder(tokenizer, max_length)

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Tokenize only (truncating to ``max_length``; ``.truncated`` counts the texts that were cut)."""
        return self._encoder.encode(as_texts(texts))

    def forward(self, encoded: Encoded) -> Any:
        """The model's outputs for ``encoded``, gathered per text in the caller's order (sliceable by text)."""
        raise NotImplementedError

    def decode(self, outputs: Any, **params: Any) -> list[Any]:
        """One prediction per text from :meth:`forward`'s outputs."""
        raise NotImplementedError

    # -- building blocks -------------------------------------------------------------------------------
    def plan_batches(self, encoded: Encoded) -> list[Batch]:
        """The padded batches for ``encoded`` under this predictor's padding policy."""
        return list(self._iter_batches(encoded))

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Run the model on one batch; returns its first output as float32 (e.g. logits ``[rows, num_labels]``)."""
        return self._run(feed)

    def _iter_batches(self, encoded: Encoded) -> Iterator[Batch]:
        policy = self.policy
        if self.streams > 1 and len(encoded) > 1:  # enough batches to keep every stream busy
            rows = max(1, math.ceil(len(encoded) / self.streams))
            policy = replace(policy, batch_size=min(policy.batch_size, rows))
        return iter_batches(encoded, policy, self.max_length, self._specs, self._encoder.pad_id)

    def run_batches(self, encoded: Encoded, store: Callable[[Batch, np.ndarray], None]) -> None:
        """Run every batch of ``encoded`` and hand each batch with its output to ``store`` (in the calling thread;
        with streams, at most two batches per stream are padded and in flight)."""
        if self._pool is None:
            for batch in self._iter_batches(encoded):
                store(batch, self._run(batch.feed))
            return
        pending: deque = deque()
        for batch in self._iter_batches(encoded):
            pending.append((batch, self._pool.submit(self._run, batch.feed)))
            if len(pending) >= 2 * self.streams:
                done, future = pending.popleft()
                store(done, future.result())
        while pending:
            done, future = pending.popleft()
            store(done, future.result())

    def check_limits(self) -> None:
        """Run the model once on each extreme the bundle promises, so that a bundle whose model cannot take them
        fails at load with one line instead of at the first text that reaches them: the tokenizer's largest id (an
        embedding table smaller than the tokenizer's vocabulary) and a row of ``max_length`` tokens (fewer position
        embeddings than the manifest's ``max_length``)."""
        top = self._encoder.vocab_size - 1
        for what, ids in (
            (f"the tokenizer's vocabulary ({top + 1} ids)", np.full(min(8, self.max_length), top, dtype=np.int64)),
            (f"max_length {self.max_length}", np.full(self.max_length, self._encoder.pad_id, dtype=np.int64)),
        ):
            one = Encoded(ids=ids, offsets=np.zeros(1, dtype=np.int64), lengths=np.array([len(ids)]), truncated=0)
            batch = next(iter_batches(one, self.policy, self.max_length, self._specs, self._encoder.pad_id))
            feed = batch.feed
            if len(self.task.input_axes) == 3:  # multiple choice: [questions, choices, tokens]
                feed = {name: value[:, None, :] for name, value in feed.items()}
            try:
                self._run.probe(feed)
            except Exception as e:  # ONNX Runtime's own error types (InvalidArgument, RuntimeException, Fail)
                said = str(e).split("Status Message:")[-1].strip().splitlines()[0]
                said = ". ".join(said.rsplit(". ", 2)[-2:])[-160:] or type(e).__name__  # its last two sentences
                raise UserError(f"bundle {self.bundle}: {what} is more than the model takes ({said})") from None

    def forward_texts(self, texts: Sequence[str]) -> Any:
        """``forward(encode(texts))``, ``SORT_WINDOW`` texts at a time, concatenated."""
        texts = as_texts(texts)
        parts = [self.forward(self.encode(texts[i : i + SORT_WINDOW])) for i in range(0, len(texts), SORT_WINDOW)]
        return self.concat(parts) if parts else self.forward(self.encode([]))

    def concat(self, parts: list[Any]) -> Any:
        """Join the outputs of several :meth:`forward` calls (in order)."""
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def predict_iter(self, texts: Iterable[str], chunk_size: int = 1024, **params: Any) -> Iterator[Any]:
        """Stream predictions for an iterable of any length, ``chunk_size`` texts at a time, in order."""
        if not isinstance(chunk_size, numbers.Integral) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise UserError(f"chunk_size must be >= 1, got {chunk_size}")
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
            raise UserError(f"texts must be an iterable of strings, got {type(texts).__name__}")
        it = iter(unambiguous(texts))
        while chunk := [t for _, t in zip(range(chunk_size), it)]:
            yield from self.predict(chunk, **params)  # type: ignore[attr-defined]


def as_texts(texts: Sequence[str] | str) -> list[str]:
    """``texts`` as a list of plain ``str`` (``np.str_`` and other ``str`` subclasses are accepted; a lone string
    is one text). Anything else, and an empty or blank text, is a :class:`UserError` (see :func:`check_texts`)."""
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise UserError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
    texts = unambiguous(texts)
    return check_texts(texts if isinstance(texts, list) else list(texts))


#: the column of a data frame that :func:`unambiguous` takes as the texts
TEXT_COLUMN = "text"


def unambiguous(texts: Any) -> Any:
    """``texts`` unless iterating it would not give the texts: a mapping (a ``dict`` iterates its keys) is a
    :class:`UserError`; a data frame (pandas, polars: it iterates its column names) gives its ``"text"`` column,
    and one without such a column is a :class:`UserError`."""
    if isinstance(texts, Mapping):
        raise UserError(
            f"texts is a {type(texts).__name__} (a mapping): its keys or its values? pass list(d.values()) or "
            "list(d.keys())"
        )
    columns = getattr(texts, "columns", None)
    if columns is not None and not isinstance(texts, (list, tuple)) and hasattr(texts, "__getitem__"):
        names = [str(c) for c in columns]
        if TEXT_COLUMN not in names:
            shown = ", ".join(names[:10]) or "none"
            raise UserError(
                f"texts is a {type(texts).__name__} without a {TEXT_COLUMN!r} column (columns: {shown}); "
                "pass the column of texts, e.g. df['review']"
            )
        return texts[TEXT_COLUMN]
    return texts


def invalid_unicode(text: str) -> str | None:
    """None when ``text`` is valid Unicode (it can be encoded as UTF-8, what the tokenizer needs); else what is
    wrong: a lone surrogate (U+D800..U+DFFF, e.g. JSON ``"\\ud800"`` or a string cut out of UTF-16) and where."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (
            f"holds a lone surrogate U+{ord(text[e.start]):04X} at character {e.start} (not valid Unicode; "
            "bertdeploy does not guess what it stood for: fix the encoding that produced it)"
        )
    return None


def check_texts(texts: list[object]) -> list[str]:
    """The one rule for texts, shared by the API, the file predictor and the server: every text is a ``str``
    (subclasses are converted) holding something besides whitespace, and valid Unicode (:func:`invalid_unicode`).
    An empty text is never predicted: the API raises :class:`UserError` naming its index; ``predict_file`` skips
    such records and reports their lines. Invalid Unicode is a :class:`UserError` naming the text's index (its line
    for ``predict_file``, a 422 naming the input for the server)."""
    out: list[str] | None = None
    for i, t in enumerate(texts):
        if type(t) is not str:
            if not isinstance(t, str):
                raise UserError(f"text #{i} is {type(t).__name__}, not str")
            if out is None:
                out = [str(x) for x in texts[:i]]
            t = str(t)
        if not t or t.isspace():
            raise UserError(f"text #{i} is empty or blank; bertdeploy does not predict empty texts")
        if (wrong := invalid_unicode(t)) is not None:
            raise UserError(f"text #{i} {wrong}")
        if out is not None:
            out.append(t)
    return out if out is not None else texts  # type: ignore[return-value]
