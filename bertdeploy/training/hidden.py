"""The hidden-state term of ``bertdeploy distill --hidden-loss W`` (TinyBERT's intermediate-layer loss, Jiao et
al., 2020): the student's embedding output and each of its layers, projected to the teacher's width by a learned
linear map, are pulled towards the teacher's embedding output and the layers they map to, by mean squared error
over the real (unpadded) tokens. Student layer ``m`` of ``M`` maps to teacher layer ``ceil(m * N / M)`` of ``N``
(0 = the embeddings), so a 4-layer student of a 6-layer teacher learns layers 2, 3, 5 and 6.

This needs the teacher *in PyTorch* in every step (a run folder with ``model.safetensors``) and the student's
vocabulary: the two models read the same token ids. The logits term still comes from the cached scores.
The projections are trained with the student (their own optimizer group) and saved in each checkpoint
(``hidden_projection.safetensors``), so ``--resume`` restores them; they are not part of the exported student.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

from bertdeploy.errors import UserError

#: the projections' file inside a Trainer checkpoint folder
PROJECTION_FILE = "hidden_projection.safetensors"


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state index for each student hidden-state index 0..student_layers (0 = embeddings)."""
    return [math.ceil(m * teacher_layers / student_layers) for m in range(student_layers + 1)]


def check_folder(spec: str) -> Path:
    """The teacher's folder, or one clear error when it is not a PyTorch model folder (cheap: no loading)."""
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise UserError(
            f"--hidden-teacher {path}: needs a run folder with config.json and model.safetensors "
            "(the hidden-state loss runs the teacher in PyTorch; a bundle holds ONNX files only)"
        )
    return path


def _load_teacher(spec: str):
    from transformers import AutoModel, AutoTokenizer

    path = check_folder(spec)
    try:
        tok = AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True)
        model = AutoModel.from_pretrained(path, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the hidden-state teacher {path}: {str(e).splitlines()[0]}") from None
    return tok, model.eval().requires_grad_(False)


def _same_ids(teacher_tok: Any, student_tok: Any, texts: list[str]) -> bool:
    a = teacher_tok(texts, truncation=True, max_length=64)["input_ids"]
    b = student_tok(texts, truncation=True, max_length=64)["input_ids"]
    return a == b


def build(spec: str, student: Any, student_tok: Any, sample: list[str]):
    """The :class:`HiddenDistiller` for a student, or one clear error (a bundle teacher, another vocabulary)."""
    teacher_tok, teacher = _load_teacher(spec)
    if not _same_ids(teacher_tok, student_tok, sample[:256]):
        raise UserError(
            f"--hidden-teacher {spec}: its tokenizer gives other token ids than the student's; the hidden-state "
            "loss compares the two models token by token (train the student with the teacher's tokenizer)"
        )
    return _module_class()(teacher, student.config, str(Path(spec).expanduser().resolve()))


def _module_class():
    import torch

    class HiddenDistiller(torch.nn.Module):
        """Projections student width -> teacher width, one per student hidden state; the frozen teacher is held
        outside the module's parameters (not trained, not saved)."""

        def __init__(self, teacher: Any, student_config: Any, source: str) -> None:
            super().__init__()
            self.source = source
            self.__dict__["teacher"] = teacher  # not a submodule: kept out of parameters() and state_dict()
            accepted = inspect.signature(teacher.forward).parameters
            self.inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted]
            n_student = int(student_config.num_hidden_layers)
            self.mapping = layer_map(n_student, int(teacher.config.num_hidden_layers))
            width_s, width_t = int(student_config.hidden_size), int(teacher.config.hidden_size)
            self.proj = torch.nn.ModuleList(torch.nn.Linear(width_s, width_t) for _ in range(n_student + 1))

        def describe(self) -> dict[str, Any]:
            return {"teacher": self.source, "teacher_layers": self.mapping,
                    "width": [self.proj[0].in_features, self.proj[0].out_features]}  # fmt: skip

        def forward(self, student_hidden: tuple, inputs: dict[str, Any]) -> Any:
            with torch.no_grad():
                self.teacher.to(student_hidden[0].device)
                out = self.teacher(**{k: inputs[k] for k in self.inputs if k in inputs}, output_hidden_states=True)
            mask = inputs["attention_mask"].unsqueeze(-1).to(student_hidden[0].dtype)
            tokens = mask.sum().clamp(min=1.0)
            loss = student_hidden[0].new_zeros(())
            for proj, hs, t in zip(self.proj, student_hidden, self.mapping, strict=True):
                diff = (proj(hs) - out.hidden_states[t]) * mask
                loss = loss + diff.pow(2).sum() / (tokens * diff.shape[-1])
            return loss / len(self.proj)

    return HiddenDistiller


def save(module: Any, folder: str | Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(Path(folder) / PROJECTION_FILE))


def load(module: Any, folder: str | Path) -> bool:
    """Restore the projections from a checkpoint folder; False when it has none (the run started without them)."""
    from safetensors.torch import load_file

    path = Path(folder) / PROJECTION_FILE
    if not path.is_file():
        return False
    module.load_state_dict(load_file(str(path)))
    return True
