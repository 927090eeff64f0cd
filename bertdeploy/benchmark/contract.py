"""The backend contract every engine of the bench implements, and the context a backend is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

#: :attr:`BackendContext.max_tokens` for "the bertdeploy runtime's own default" (``load(..., max_tokens=None)``; the
#: self-batching peers then get the runtime's budget on ONNX Runtime's CPU EP)
RUNTIME_DEFAULT = 0


class Skip(Exception):
    """The backend cannot run here (e.g. bf16 on a CPU without native bf16); the message is the reason."""


@dataclass
class BackendContext:
    hf_dir: Path | None
    bundle: Path | None
    labels: list[str]
    max_length: int
    variant: str
    threads: int
    device: str
    max_batch_size: int
    calibration: list[str] = field(default_factory=list)
    """Texts an engine may calibrate on (NNCF's int8): training rows when the data has them."""
    task: str = "text-classification"
    """The target's task: what records go in and what predictions come out (:mod:`bertdeploy.benchmark.scoring`)."""
    streams: int | None = None
    """The bertdeploy runtime's ``load(..., streams=)`` (None: its default); the other engines ignore it."""
    max_tokens: int | None = None
    """Token budget of a model call of the self-batching engines (bertdeploy, PyTorch eager in the runtime head,
    openvino); None: ``max_batch_size`` rows of ``max_length``; :data:`RUNTIME_DEFAULT`: the runtime's own default on
    ``device`` (the peers get the budget it has there on ONNX Runtime's EPs)."""

    @property
    def cpu_ep(self) -> bool:
        """Whether the runtime runs on ONNX Runtime's CPU EP here (not a GPU)."""
        return not self.device.startswith(("cuda", "tensorrt"))

    @property
    def token_budget(self) -> int:
        if self.max_tokens == RUNTIME_DEFAULT:
            from bertdeploy.runtime.options import default_max_tokens

            return default_max_tokens(self.cpu_ep)
        return self.max_tokens or self.max_batch_size * self.max_length

    def policy(self, padding: str) -> Any:
        """The batching the runtime's planner gives an engine here: :attr:`token_budget`, ``max_batch_size`` rows and
        the runtime's padding bound on this device (``bertdeploy.runtime.options.default_max_padding``)."""
        from bertdeploy.runtime.batching import BatchPolicy
        from bertdeploy.runtime.options import default_max_padding

        return BatchPolicy(padding=padding, batch_size=self.max_batch_size, max_tokens=self.token_budget,
                           max_padding=default_max_padding(self.cpu_ep))  # fmt: skip


class Backend(Protocol):
    def load(self) -> dict[str, Any]:
        """Load the model; return facts for the rows (file, bytes, precision, providers)."""

    def predict(self, texts: list[Any], padding: str) -> Any:
        """The task's predictions of ``texts`` (records), end to end: logits ``[len(texts), num_labels]`` for text
        classification (``[.., choices]`` for multiple choice), entities / answers for token classification / question
        answering (:mod:`bertdeploy.benchmark.scoring`)."""

    def prepare(self, texts: list[Any], padding: str) -> Any:
        """Tokenized model input for :meth:`run`, or None when the engine cannot be timed without tokenization."""

    def run(self, prepared: Any) -> Any:
        """The model alone on a prepared batch."""

    def sync(self) -> None:
        """Wait for asynchronous device work (CUDA); no-op on CPU."""


def need(path: Path | None, what: str) -> Path:
    if path is None:
        raise Skip(f"no {what} for this target")
    return path
