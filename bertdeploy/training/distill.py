"""Knowledge distillation: a small student trained on a teacher's soft labels, with transformers' Trainer.

    from bertdeploy.training import DistillConfig, distill
    distill(DistillConfig(teacher="models/minilm-emotion", model="bert-mini", data="data/emotion", output="runs/d"))

The student is prepared exactly as ``train`` prepares a model (same options, same run folder, metrics, curves,
``--resume``). The teacher's logits on the training texts (plus ``unlabelled`` texts, which widen the transfer
set and count in the soft loss only) are computed once before training and cached in ``OUTPUT.partial``. The
loss (:func:`distillation_loss`) is a ``Trainer.compute_loss`` override::

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)

plus, with ``hidden_loss > 0``, the hidden-state term of :mod:`bertdeploy.training.hidden` (TinyBERT). Token
classification computes the same loss per token, the teacher's logits aligned through the words
(:mod:`bertdeploy.training.distill_tokens`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.data import LoadedData
from bertdeploy.errors import UserError
from bertdeploy.training import augment, hidden, prune, vocab
from bertdeploy.training.config import DistillConfig
from bertdeploy.training.losses import SOFT, UNLABELLED, distillation_loss, hard_loss
from bertdeploy.training.task_setup import tokenize
from bertdeploy.training.teacher import Teacher, caches_kept, label_order, resolve_teacher, teacher_logits
from bertdeploy.training.trainer import Prepared, TrainResult, fit, make_trainer, prepare


@dataclass
class DistillResult(TrainResult):
    """A :class:`TrainResult` plus what the teacher was and how it scored on the eval split."""

    teacher: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _trainer_class():
    """``Trainer`` with the distillation loss (built once, on first use: transformers is imported lazily)."""
    from transformers import Trainer

    class DistillTrainer(Trainer):
        def __init__(self, *args: Any, temperature: float, alpha: float, hidden: Any = None,
                     hidden_weight: float = 0.0, soft_loss: Any = None, **kwargs: Any) -> None:  # fmt: skip
            super().__init__(*args, **kwargs)
            self.temperature = temperature
            self.alpha = alpha
            self.hidden, self.hidden_weight = hidden, hidden_weight
            self.soft_loss = soft_loss or functools.partial(distillation_loss, temperature=temperature, alpha=alpha)

        def create_optimizer(self):
            optimizer = super().create_optimizer()
            if self.hidden is not None and not any(g.get("bertdeploy_hidden") for g in optimizer.param_groups):
                optimizer.add_param_group({"params": list(self.hidden.parameters()), "weight_decay": 0.0,
                                           "bertdeploy_hidden": True})  # fmt: skip
            return optimizer

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            if self.hidden is not None:
                folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
                if folder.is_dir():
                    hidden.save(self.hidden, folder)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            if self.hidden is not None and model is None:
                hidden.load(self.hidden, resume_from_checkpoint)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if SOFT not in self._signature_columns:  # keep the teacher's logits: compute_loss reads them
                self._signature_columns = [*self._signature_columns, SOFT]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            soft = inputs.pop(SOFT, None)
            labels = inputs.pop("labels")
            with_hidden = soft is not None and self.hidden is not None
            outputs = model(**inputs, output_hidden_states=True) if with_hidden else model(**inputs)
            smoothing = self.args.label_smoothing_factor
            if soft is None:  # evaluation: the plain cross entropy, comparable with `train`
                loss = hard_loss(outputs.logits, labels, smoothing)
            else:
                loss = self.soft_loss(outputs.logits, soft, labels, label_smoothing=smoothing)
            if with_hidden:
                loss = loss + self.hidden_weight * self.hidden(outputs.hidden_states, inputs)
            return (loss, outputs) if return_outputs else loss

    return DistillTrainer


def truncate_layers(model: Any, layers: int | None) -> None:
    """Keep the first ``layers`` encoder layers (dropping the top layers keeps most of a fine-tuned BERT's
    accuracy; Sajjad et al., 2023, "On the effect of dropping layers of pre-trained transformer models")."""
    if layers is None:
        return
    import torch

    base = getattr(model, model.base_model_prefix)
    body = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    stack = getattr(body, "layer", None)
    if stack is None:
        raise UserError(f"student_layers: cannot find the encoder layers of a {model.config.model_type} model")
    if layers > len(stack):
        raise UserError(f"student_layers={layers}, but the student has only {len(stack)} layers")
    body.layer = torch.nn.ModuleList(list(stack)[:layers])
    model.config.num_hidden_layers = layers


def init_embeddings(model: Any, spec: str | None) -> dict[str, Any] | None:
    """Initialise the student's word / position / token-type embeddings from a pretrained model's (``spec``: a
    folder or ``minilm-l6``), projected onto their top principal components when the student is narrower. A
    from-scratch student then starts with a pretrained lexicon. The pretrained model needs the student's
    vocabulary (its tokenizer)."""
    if spec is None:
        return None
    import torch
    from transformers import AutoModel

    from bertdeploy.training.models import resolve

    ms = resolve(spec)
    if ms.kind != "local":
        raise UserError(f"student_embeddings: {spec!r} must be a local folder or minilm-l6")
    source = AutoModel.from_pretrained(ms.location, use_safetensors=True, local_files_only=True).embeddings
    target = getattr(model, model.base_model_prefix).embeddings
    if source.word_embeddings.weight.shape[0] != target.word_embeddings.weight.shape[0]:
        raise UserError(f"student_embeddings: {spec!r} has another vocabulary size than the student")
    words = source.word_embeddings.weight.detach()
    mean = words.mean(0, keepdim=True)
    width = target.word_embeddings.weight.shape[1]
    basis = torch.linalg.svd(words - mean, full_matrices=False).Vh[:width].T  # [source width, student width]
    with torch.no_grad():
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            src, dst = getattr(source, name, None), getattr(target, name, None)
            if src is None or dst is None:
                continue
            rows = min(src.weight.shape[0], dst.weight.shape[0])
            dst.weight[:rows] = (src.weight[:rows] - mean) @ basis
    return {"from": spec, "location": ms.location, "projected": f"{words.shape[1]} -> {width} (PCA)"}


def read_unlabelled(path: str, text_column: str) -> list[str]:
    """Texts of an unlabelled file (empty rows skipped): plain text one per line, or a table's ``text_column``."""
    from bertdeploy.runtime.readers import detect_format, iter_chunks

    texts = []
    for chunk in iter_chunks(path, detect_format(path), text_column):
        texts.extend(str(t) for t in chunk.texts if t is not None and str(t).strip())
    if not texts:
        raise UserError(f"--unlabelled {path}: no texts")
    return texts


def _transfer_set(config: DistillConfig, prep: Prepared, unlabelled: list[str], soft: np.ndarray):
    """The training split with the teacher's logits, plus the unlabelled texts (label -100)."""
    from datasets import concatenate_datasets

    train = prep.datasets["train"]
    n = len(train)
    train = train.add_column(SOFT, soft[:n].tolist())
    if not unlabelled:
        return train
    extra = LoadedData({"train": {"text": unlabelled, "label": [UNLABELLED] * len(unlabelled)}}, prep.data.labels, "")
    extra_ds = tokenize(extra, prep.tokenizer, config.max_length, config.padding)["train"]
    extra_ds = extra_ds.add_column(SOFT, soft[n : n + len(unlabelled)].tolist())
    return concatenate_datasets([train, extra_ds.cast(train.features)])


def _score(config: DistillConfig, teacher: Teacher, prep: Prepared, unlabelled: list[str]) -> dict[str, Any]:
    """Teacher logits on train + unlabelled + eval texts (cached in the partial folder); the transfer set is put
    in place of the training split, and the teacher's eval-split scores are returned."""
    from bertdeploy.metrics import classification_metrics

    order = label_order(teacher.labels, prep.data.labels)
    splits = prep.data.splits
    ev = prep.data.eval_split
    texts = [*splits["train"]["text"], *unlabelled, *splits[ev]["text"]]
    logits, cache = teacher_logits(teacher, texts, prep.work, config.teacher_batch_size)
    train = list(splits["train"]["text"])
    extra, extra_logits, augment_info = augment.for_config(config, teacher, prep.tokenizer, train)
    soft = np.concatenate([logits[: len(texts) - len(splits[ev]["text"])], extra_logits])[:, order]
    logits = logits[:, order]
    prep.datasets["train"] = _transfer_set(config, prep, [*unlabelled, *extra], soft)
    eval_logits = logits[len(texts) - len(splits[ev]["text"]) :]
    scores = classification_metrics(splits[ev]["label"], eval_logits.argmax(-1), prep.data.labels)
    agree = float(np.mean(logits[: len(splits["train"]["text"])].argmax(-1) == np.asarray(splits["train"]["label"])))
    return {**teacher.describe(), "cache": cache, "scored_texts": len(texts), "unlabelled_texts": len(unlabelled),
            "train_agreement": round(agree, 4), "eval_split": ev, "augment": augment_info,
            "eval": {k: v for k, v in scores.items() if isinstance(v, float)}}  # fmt: skip


def _hidden_teacher(config: DistillConfig, teacher: Teacher) -> str | None:
    """The PyTorch teacher of the hidden-state term (``hidden_loss > 0``), checked before any work."""
    if config.hidden_loss == 0:
        return None
    spec = config.hidden_teacher or (str(teacher.path) if teacher.kind == "run" else "")
    if not spec:
        raise UserError("--hidden-loss needs a PyTorch teacher: a run-folder --teacher, or --hidden-teacher RUN")
    hidden.check_folder(spec)
    return spec


def _hidden_distiller(spec: str | None, prep: Prepared):
    """The hidden-state term's module: the teacher in PyTorch plus the projections (None without the term)."""
    if spec is None:
        return None
    sample = vocab.texts_of(prep.data.splits["train"])[:256]
    return hidden.build(spec, prep.model, prep.tokenizer, sample)


def _student_init(config: DistillConfig, prep: Prepared) -> dict[str, Any] | None:
    """Replace the prepared student by ``student_init`` pruned to its shape (None without the option)."""
    if not config.student_init:
        return None
    from bertdeploy.training.models import freeze

    texts = vocab.texts_of(prep.data.splits["train"])
    prep.model, info = prune.prune_into(prep.model, prep.tokenizer, config.student_init, prep.data.labels, texts,
                                        config.max_length, prep.task)  # fmt: skip
    freeze(prep.model, config.freeze)
    return info


def _check_task(config: DistillConfig) -> str | None:
    """The data's task, which ``distill`` must support (one line before the teacher is even looked at)."""
    from bertdeploy.data import DataSpec, resolve_task
    from bertdeploy.training import task_setup

    if not config.data:
        return None
    task = resolve_task(DataSpec(config.data, task=config.task))
    task_setup.get(task, "distill")
    return task


def _check_teacher(teacher: Teacher, task: str | None) -> None:
    if task is not None and teacher.task != task:
        raise UserError(f"the teacher {teacher.path} is a {teacher.task} model, but the data is {task} data")


def _soft_labels(config: DistillConfig, teacher: Teacher, prep: Prepared, unlabelled: list[str]):
    """Teacher scores (the transfer set put in place) -> (teacher info, the soft loss or None for the default)."""
    if prep.task == "token-classification":
        from bertdeploy.training.distill_tokens import score_tokens

        return score_tokens(config, teacher, prep, unlabelled)
    return _score(config, teacher, prep, unlabelled), None


def _collator(prep: Prepared) -> Any:
    """Token classification: the task's collator with the teacher-row column padded (None: the task's own)."""
    if prep.task != "token-classification":
        return None
    from bertdeploy.training import task_setup
    from bertdeploy.training.distill_tokens import SoftCollator

    return SoftCollator(task_setup.get(prep.task).collator(prep.tokenizer), prep.tokenizer.padding_side)


def distill(config: DistillConfig, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> DistillResult:
    """Train ``config.model`` (the student) on ``config.teacher``'s soft labels; write the run folder."""
    from bertdeploy.training.callbacks import EpochRecorder

    if not isinstance(config, DistillConfig):
        raise UserError("distill() takes a DistillConfig")
    task = _check_task(config)
    teacher = resolve_teacher(config.teacher, config.teacher_variant)
    _check_teacher(teacher, task)
    unlabelled = read_unlabelled(config.unlabelled, config.text_column) if config.unlabelled else []
    if config.alpha == 0:
        unlabelled = []  # hard labels only: texts without a label would carry no loss
    hidden_spec = _hidden_teacher(config, teacher)
    if config.student_init:
        prune.check_source(config.student_init)
    prep = prepare(config, stage="distill")
    label_order(teacher.labels, prep.data.labels)  # a different label set fails before any work
    truncate_layers(prep.model, config.student_layers)
    embeddings = init_embeddings(prep.model, config.student_embeddings)
    pruned = _student_init(config, prep)
    prep.trainable = sum(p.numel() for p in prep.model.parameters() if p.requires_grad)
    recorder = EpochRecorder(on_epoch)
    term = _hidden_distiller(hidden_spec, prep)
    trainer_class = functools.partial(_trainer_class(), temperature=config.temperature, alpha=config.alpha,
                                      hidden=term, hidden_weight=config.hidden_loss)  # fmt: skip
    with caches_kept(prep.work):  # make_trainer clears a stale partial folder; the teacher's logits stay valid
        trainer = make_trainer(config, prep, [recorder], trainer_class=trainer_class, collator=_collator(prep))
    info, soft_loss = _soft_labels(config, teacher, prep, unlabelled)
    if soft_loss is not None:
        trainer.soft_loss = soft_loss
    trainer.train_dataset = prep.datasets["train"]
    hidden_info = None if term is None else {"weight": config.hidden_loss, **term.describe()}
    extra = {"distill": {"teacher": info, "temperature": config.temperature, "alpha": config.alpha,
                         "student_embeddings": embeddings, "student_init": pruned,
                         "hidden_loss": hidden_info}}  # fmt: skip
    result = fit(config, prep, trainer, recorder, extra)
    return DistillResult(**vars(result), teacher=info)
