"""Fine-tuning with transformers' Trainer: data → tokenize (static | dynamic padding) → Trainer (AdamW,
warmup schedule, per-epoch evaluation, best checkpoint, early stopping, resume) → a run folder.

The run folder (written atomically at the end; checkpoints live in ``<output>.partial`` meanwhile)::

    OUTPUT/  config.json (id2label) · model.safetensors · tokenizer files · train_config.json
             metrics.json (every epoch + final + speed) · curves.png · logs/ (TensorBoard)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.bundle import atomic_dir, check_output_dir
from bertdeploy.data import DataSpec, LoadedData, check_trainable, load_data
from bertdeploy.errors import UserError
from bertdeploy.machine import versions
from bertdeploy.outputs import check_inputs, disk_errors
from bertdeploy.progress import bars_enabled
from bertdeploy.training import checkpoints, vocab
from bertdeploy.training.config import TrainConfig


@dataclass
class TrainResult:
    output: Path
    history: list[dict[str, Any]]
    final: dict[str, Any]
    eval_split: str
    speed: dict[str, Any]
    labels: list[str]
    notes: list[str] = field(default_factory=list)
    task: str = "text-classification"


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _training_args(config: TrainConfig, work: Path, metric: str):
    import importlib.util

    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    report = [r for r in config.report_to if r != "none" and importlib.util.find_spec(r.replace("-", "_"))]
    return TrainingArguments(
        output_dir=str(work),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        label_smoothing_factor=config.label_smoothing,
        lr_scheduler_type=config.scheduler,
        adam_beta1=config.adam_beta1,
        adam_beta2=config.adam_beta2,
        adam_epsilon=config.adam_epsilon,
        max_grad_norm=config.max_grad_norm,
        optim="adamw_torch",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=metric != "loss",
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        logging_dir=str(work / "logs"),
        report_to=report,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        fp16=cuda and not bf16,
        dataloader_num_workers=config.num_workers,
        dataloader_pin_memory=cuda,
        group_by_length=config.group_by_length,
        ddp_backend="gloo" if not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        save_safetensors=True,
        disable_tqdm=False,
    )


@dataclass
class Prepared:
    """A checked output path, the loaded data, model and tokenizer, and the tokenized splits."""

    out: Path
    work: Path
    last_checkpoint: str | None
    data: LoadedData
    model: Any
    tokenizer: Any
    model_info: dict[str, Any]
    trainable: int
    datasets: Any
    incomplete: list[str] = field(default_factory=list)
    """Checkpoints of the work folder a kill left half-written (removed before training)."""
    task: str = "text-classification"
    """The task being trained (:mod:`bertdeploy.tasks`)."""
    metric: str = "f1_macro"
    """The metric that picks the best checkpoint (``--metric`` read for the task)."""


def prepare(config: TrainConfig, stage: str = "train") -> Prepared:
    """Every check that can fail on the user's input, then data, model, tokenizer and tokenized splits
    (``stage``: ``train`` | ``distill``, for the task table's check)."""
    from bertdeploy import tasks
    from bertdeploy.data import resolve_task
    from bertdeploy.runtime.tokenize import uses_question_match
    from bertdeploy.training import task_setup
    from bertdeploy.training.models import add_match_type, check_hub, freeze, load_classifier

    if not config.output:
        raise UserError("an output folder is required (--output)")
    out = Path(config.output)
    work = out.with_name(out.name + ".partial")
    if _is_rank0():
        check_output_dir(out, config.overwrite, "output", kind="run", inputs=config.inputs())
        check_inputs(work, config.inputs())
    last, incomplete = checkpoints.find(work)
    if config.resume and last is None:
        skipped = f" ({', '.join(incomplete)} incomplete: killed while saving)" if incomplete else ""
        raise UserError(f"--resume: no complete checkpoint to resume from in {work}{skipped}")
    if not config.data:
        raise UserError("a dataset is required (--data)")
    check_hub(config.model, config.tokenizer)
    spec = DataSpec(config.data, config.text_column, config.label_column, config.val_ratio, config.test_ratio,
                    config.train_size, config.seed, config.unseen_labels, config.task)  # fmt: skip
    task = resolve_task(spec)
    if config.question_match and task != "question-answering":
        raise UserError(f"--question-match applies to question answering, not {task}")
    setup = task_setup.get(task, stage)
    metric = task_setup.best_metric(task, config.metric)
    data = load_data(spec)
    check_trainable(data, config.unseen_labels)
    head = data.labels or ["LABEL_0", "LABEL_1"]  # QA: two outputs (start, end); multiple choice: one score a choice
    train_texts = vocab.texts_of(data.splits["train"])
    texts = vocab.sample(train_texts, seed=config.seed)
    resumed = Path(last) if config.resume and last else None  # resuming: the vocabulary the checkpoint learnt
    built = vocab.run_tokenizer(train_texts, config.vocab_size, resumed) if config.vocab_from_data else None
    model, tok, info = load_classifier(config.model, head, config.from_scratch, built or config.tokenizer, config.seed,
                                       auto_model=tasks.get(task).auto_model)  # fmt: skip
    info["unk_rate"] = round(vocab.unk_rate(tok, texts), 5)
    if built is not None:
        info["vocab"] = {"from_data": True, "size": len(tok)}
    vocab.check_unk(info["unk_rate"], config.max_unk_rate, config.tokenizer or config.model)
    if task == "question-answering" and (config.question_match or uses_question_match(model.config)):
        add_match_type(model)  # a reader trained with the feature keeps it
        config = dataclasses.replace(config, question_match=True)
    trainable = freeze(model, config.freeze)
    ds = setup.encode(data, tok, config.max_length, config.padding, config)
    return Prepared(out, work, last, data, model, tok, info, trainable, ds, incomplete, task, metric)


def make_trainer(
    config: TrainConfig, prep: Prepared, callbacks: list[Any], trainer_class: Any = None, collator: Any = None
) -> Any:
    """A transformers ``Trainer`` (or ``trainer_class``) over the prepared splits, with our progress callbacks
    (``collator``: instead of the task's)."""
    from transformers import EarlyStoppingCallback, Trainer
    from transformers.trainer_callback import ProgressCallback

    from bertdeploy.metrics import summary
    from bertdeploy.training import task_setup
    from bertdeploy.training.callbacks import QuietProgress, StepProgress

    setup = task_setup.get(prep.task)

    scorer = setup.scorer(prep.data, prep.datasets, "validation")

    def compute_metrics(pred) -> dict[str, float]:
        return summary(scorer(pred.predictions, pred.label_ids))

    if config.early_stopping:
        callbacks = [*callbacks, EarlyStoppingCallback(early_stopping_patience=config.early_stopping)]
    if _is_rank0():
        if prep.work.exists() and not config.resume:
            checkpoints.discard(prep.work)  # a stale, unfinished run of ours: start over
        checkpoints.claim(prep.work, prep.incomplete)
    trainer = (trainer_class or Trainer)(
        model=prep.model,
        args=_training_args(config, prep.work, prep.metric),
        train_dataset=prep.datasets["train"],
        eval_dataset=prep.datasets["validation"],
        processing_class=prep.tokenizer,
        data_collator=collator or setup.collator(prep.tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[*callbacks, StepProgress()],
    )
    trainer.remove_callback(ProgressCallback)
    if bars_enabled():  # tqdm reads TQDM_DISABLE once, on import: checked here, for in-process runs too
        trainer.add_callback(QuietProgress)
    return trainer


def fit(config: TrainConfig, prep: Prepared, trainer: Any, recorder: Any, extra: dict[str, Any] | None = None):
    """Train (resuming when asked), score the eval split, write the run folder on rank 0; the result."""
    from bertdeploy.training import task_setup

    t0 = time.perf_counter()
    with disk_errors(f"checkpoints to {prep.work}", probe=prep.work):
        train_out = trainer.train(resume_from_checkpoint=prep.last_checkpoint if config.resume else None)
    wall = time.perf_counter() - t0
    eval_split = prep.data.eval_split
    pred = trainer.predict(prep.datasets[eval_split], metric_key_prefix="final")
    final = task_setup.get(prep.task).scorer(prep.data, prep.datasets, eval_split)(pred.predictions, pred.label_ids)
    speed = {
        "train_wall_time_s": round(wall, 2),
        "train_samples_per_second": train_out.metrics.get("train_samples_per_second"),
        "train_runtime_s": train_out.metrics.get("train_runtime"),
        "eval_runtime_s": pred.metrics.get("final_runtime"),
        "eval_samples_per_second": pred.metrics.get("final_samples_per_second"),
        "trainable_params": prep.trainable,
        "total_params": sum(p.numel() for p in prep.model.parameters()),
        "train_rows": len(prep.datasets["train"]),
        "resumed_from": Path(prep.last_checkpoint).name if config.resume else None,  # speed: the resumed part only
    }
    result = TrainResult(prep.out, recorder.history, final, eval_split, speed, prep.data.labels, prep.data.notes,
                         task=prep.task)  # fmt: skip
    if trainer.is_world_process_zero():
        _write_run(result, trainer, config, prep, extra or {})
    return result


def train(config: TrainConfig, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data`` and write the run folder ``config.output``."""
    prep = prepare(config)  # first: a bad input fails before transformers is even imported
    from bertdeploy.training.callbacks import EpochRecorder

    recorder = EpochRecorder(on_epoch)
    trainer = make_trainer(config, prep, [recorder])
    return fit(config, prep, trainer, recorder)


def _write_run(result: TrainResult, trainer: Any, config: TrainConfig, prep: Prepared, extra: dict[str, Any]) -> None:
    from bertdeploy.training.callbacks import plot_curves

    data = prep.data
    resolved = {
        **config.to_dict(),
        "output": str(result.output.resolve()),  # where the run lives after the final rename
        "data": str(Path(config.data).resolve()) if Path(config.data).exists() else config.data,
    }
    train_config = {
        **resolved,
        "task": prep.task,
        "metric": prep.metric,
        "labels": data.labels,
        "model_info": prep.model_info,
        "versions": versions(),
    }
    with atomic_dir(result.output, overwrite=config.overwrite, kind="run", inputs=config.inputs()) as tmp:
        trainer.save_model(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle: the run folder ships none
        prep.tokenizer.save_pretrained(str(tmp))
        (tmp / "train_config.json").write_text(json.dumps({**train_config, **extra}, indent=2), encoding="utf-8")
        if prep.task == "token-classification":  # what bio decoding adds, read by the export gate and the runtime
            from bertdeploy.training.task_tokens import TRANSITIONS_FILE, transitions

            (tmp / TRANSITIONS_FILE).write_text(json.dumps(transitions(data)), encoding="utf-8")
        metrics = {
            "epochs": result.history,
            "final": {"split": result.eval_split, **result.final},
            "speed": result.speed,
            "best_step": trainer.state.best_global_step,  # its weights are the model of this folder
            "best_metric": trainer.state.best_metric,
            "data": {
                "source": data.source,
                "rows": {k: data.rows(k) for k in data.splits},
                "notes": data.notes,
            },
        }
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float), encoding="utf-8")
        if result.history:
            plot_curves(result.history, tmp / "curves.png", f"{config.model} on {Path(config.data).name}")
        if (prep.work / "logs").is_dir():
            shutil.copytree(prep.work / "logs", tmp / "logs")
    shutil.rmtree(prep.work, ignore_errors=True)


def run_recipe(
    cells: list[tuple[str, TrainConfig]],
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_cell: Callable[[str], None] | None = None,
    runner: Callable[..., TrainResult] | None = None,
) -> list[dict[str, Any]]:
    """Train every cell of a recipe grid with ``runner`` (default :func:`train`; ``distill`` for a distill
    recipe); one comparison row per cell (a failed cell is recorded, not fatal)."""
    rows = []
    for name, cfg in cells:
        if on_cell:
            on_cell(name)
        try:
            r = (runner or train)(cfg, on_epoch=on_epoch)
        except UserError as e:
            rows.append({"cell": name, "status": f"failed: {e}"})
            continue
        rows.append({"cell": name, "status": "ok", "output": str(r.output), **r.speed,
                     **{k: v for k, v in r.final.items() if isinstance(v, float)}})  # fmt: skip
    return rows
