"""``bertdeploy pretrain``: masked-language pretraining on a data set's own texts, before fine-tuning.

For a language no packaged model covers (the Chinese sets here), a from-scratch model otherwise meets its words for
the first time in the labelled task; pretraining on the training split's texts first (contexts and questions for
question answering, the texts for classification, the sentences for token classification, or a plain ``.txt``
file, one text a line) gives the encoder the language before the labels. It can also continue a pretrained model
on in-domain text (domain-adaptive pretraining). transformers' ``DataCollatorForLanguageModeling`` masks the
tokens (BERT's 80/10/10 rule) and its ``Trainer`` trains; the texts are tokenized once and concatenated into
``max_length`` blocks, as transformers' ``run_mlm.py`` example does. The result is an HF folder that ``train
--model`` and ``distill --student`` load like any other (the masked-language head is dropped there)::

    OUTPUT/  config.json · model.safetensors · tokenizer files · train_config.json · metrics.json
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertdeploy.config import Config
from bertdeploy.errors import UserError
from bertdeploy.progress import bars_enabled
from bertdeploy.training.vocab import DEFAULT_MAX_UNK_RATE, DEFAULT_VOCAB_SIZE


@dataclass
class PretrainConfig(Config):
    """Everything ``bertdeploy pretrain`` needs; each field is a CLI option."""

    model: str = "bert-mini"
    """A preset (random weights, bert-tiny … bert-base) or a folder / ``minilm-l6`` to continue pretraining."""
    data: str = ""
    """A data folder or file of any task (its training split's texts), or a ``.txt`` file (one text a line)."""
    output: str = ""
    """Folder to create (an HF model folder that ``train --model`` loads)."""
    task: str | None = None
    """The data's task when its layout does not say (the texts are read as that task reads them)."""
    text_column: str = "text"
    """Column holding the text (text classification data)."""
    label_column: str = "label"
    """Column holding the label (read only to load the data)."""
    tokenizer: str | None = None
    """Tokenizer of a preset (default: the MiniLM vocab); a folder model keeps its own."""
    vocab_from_data: bool = False
    """A preset with a WordPiece vocabulary built from the texts (each CJK character a token)."""
    vocab_size: int = DEFAULT_VOCAB_SIZE
    """Size of that vocabulary."""
    max_unk_rate: float = DEFAULT_MAX_UNK_RATE
    """Refuse when more than this share of the training tokens is ``[UNK]`` (1 = never refuse)."""
    epochs: float = 20.0
    """Passes over the texts."""
    batch_size: int = 32
    """Blocks per step."""
    lr: float = 5e-4
    """Peak learning rate of AdamW (linear warm-up, then linear decay)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_ratio: float = 0.06
    """Share of the steps spent warming the learning rate up."""
    max_length: int = 256
    """Tokens a block (the texts are concatenated and cut into blocks)."""
    mlm_probability: float = 0.15
    """Share of the tokens masked for prediction."""
    seed: int = 42
    """Seed of the init, the masking and the order."""
    resume: bool = False
    """Continue from the last complete checkpoint in ``OUTPUT.partial`` (kept after a kill)."""
    overwrite: bool = False
    """Replace an existing output folder written by bertdeploy."""

    def inputs(self) -> list[str | None]:
        """What the output must not be, contain or lie inside."""
        return [self.data, self.model, self.tokenizer]

    def __post_init__(self) -> None:
        for key in ("epochs", "lr", "batch_size", "vocab_size"):
            if getattr(self, key) <= 0:
                raise UserError(f"{key} must be > 0, got {getattr(self, key)}")
        if not 16 <= self.max_length <= 512:
            raise UserError(f"max_length must be within 16..512, got {self.max_length}")
        if not 0 < self.mlm_probability < 1:
            raise UserError(f"mlm_probability must be within (0, 1), got {self.mlm_probability}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio must be within [0, 1), got {self.warmup_ratio}")


@dataclass
class PretrainResult:
    output: Path
    history: list[dict[str, Any]]
    final: dict[str, Any]
    speed: dict[str, Any]
    texts: dict[str, int]


def read_texts(config: PretrainConfig) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): a ``.txt`` file's lines (5 % held out, seeded), else the training and
    validation splits of the data as its task reads them (:func:`bertdeploy.training.vocab.texts_of`)."""
    import random

    from bertdeploy.data import DataSpec, load_data
    from bertdeploy.training.vocab import texts_of

    path = Path(config.data)
    if _text_file(config):
        try:
            lines = [t.strip() for t in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as e:
            raise UserError(f"{path} is not UTF-8 text: {e.reason} at byte {e.start}") from None
        lines = [t for t in lines if t]
        random.Random(config.seed).shuffle(lines)
        held = len(lines) // 20
        train, held_out = lines[held:], lines[:held]
    else:
        spec = DataSpec(config.data, config.text_column, config.label_column, seed=config.seed, task=config.task)
        data = load_data(spec)
        if "train" not in data.splits:
            raise UserError(f"{config.data}: no training split to pretrain on")
        train = texts_of(data.splits["train"])
        held_out = texts_of(data.splits["validation"]) if "validation" in data.splits else []
    train = [t for t in train if t.strip()]
    if not train:
        raise UserError(f"{config.data}: no text to pretrain on")
    return train, [t for t in held_out if t.strip()]


def _text_file(config: PretrainConfig) -> bool:
    """``config.data`` is a ``.txt`` file (one text a line; 5 % held out) rather than a data set of a task."""
    return Path(config.data).suffix == ".txt" and Path(config.data).is_file()


def blocks(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    """Every text as ``[CLS] … [SEP]`` token ids, concatenated and cut into blocks of ``max_length`` (the last,
    shorter block kept when it holds at least a quarter of one)."""
    ids: list[int] = []
    for start in range(0, len(texts), 1000):
        encoded = tokenizer(texts[start : start + 1000], add_special_tokens=True, truncation=False, verbose=False)
        for row in encoded["input_ids"]:
            ids.extend(row)
    cut = [ids[i : i + max_length] for i in range(0, len(ids), max_length)]
    return [b for b in cut if len(b) >= max(2, max_length // 4)]


def build_model(
    config: PretrainConfig, texts: list[str], checkpoint: Path | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """(masked-language model, tokenizer, info): a preset from its config (vocabulary from the data — the one saved
    with ``checkpoint`` when resuming — or the ``tokenizer``), or a folder's weights and tokenizer with a
    masked-language head (new where it had none)."""
    import torch
    import transformers

    from bertdeploy.training import vocab
    from bertdeploy.training.models import _hub_error, _hub_kwargs, check_hub, load_tokenizer, preset_config, resolve

    check_hub(config.model, config.tokenizer)
    spec = resolve(config.model)
    torch.manual_seed(config.seed)
    info: dict[str, Any] = {"spec": config.model, "kind": spec.kind, "location": spec.location}
    if spec.kind == "preset":
        tok = vocab.run_tokenizer(texts, config.vocab_size, checkpoint) if config.vocab_from_data else None
        tok = tok or load_tokenizer(config.tokenizer)
        model = transformers.AutoModelForMaskedLM.from_config(preset_config(config.model, 2, vocab_size=len(tok)))
        info.update(pretrained=False, vocab={"from_data": config.vocab_from_data, "size": len(tok)})
        return model, tok, info
    if config.vocab_from_data or config.tokenizer:
        raise UserError("--vocab-from-data and --tokenizer go with a preset; a folder model keeps its own vocabulary")
    tok = load_tokenizer(None, spec)
    try:
        model = transformers.AutoModelForMaskedLM.from_pretrained(
            spec.location, use_safetensors=True, **_hub_kwargs(spec)
        )
    except (OSError, ValueError) as e:
        raise _hub_error(spec, e) from None
    info["pretrained"] = True
    return model, tok, info


def pretrain(config: PretrainConfig, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> PretrainResult:
    """Masked-language pretraining of ``config.model`` on ``config.data``'s texts into ``config.output``
    (checkpoints each epoch in ``OUTPUT.partial``, which ``resume`` continues from)."""
    from bertdeploy.outputs import disk_errors
    from bertdeploy.training import checkpoints, vocab

    out, work, last, incomplete = _paths(config)
    train_texts, held_texts = read_texts(config)
    model, tok, info = build_model(config, train_texts, Path(last) if last else None)
    info["unk_rate"] = round(vocab.unk_rate(tok, vocab.sample(train_texts, seed=config.seed)), 5)
    vocab.check_unk(info["unk_rate"], config.max_unk_rate, config.tokenizer or config.model)
    train_blocks, held_blocks = blocks(tok, train_texts, config.max_length), blocks(tok, held_texts, config.max_length)
    if not train_blocks:
        raise UserError(f"{config.data}: the texts make no block of {config.max_length // 4}+ tokens")
    if work.exists() and not last:
        checkpoints.discard(work)  # a stale, unfinished run of ours: start over
    checkpoints.claim(work, incomplete)
    trainer, recorder = _trainer(config, model, tok, work, train_blocks, held_blocks, on_epoch)
    t0 = time.perf_counter()
    with disk_errors(f"checkpoints to {work}", probe=work):
        out_metrics = trainer.train(resume_from_checkpoint=last).metrics
    wall = time.perf_counter() - t0
    texts = {"train_texts": len(train_texts), "train_blocks": len(train_blocks), "held_out_blocks": len(held_blocks)}
    speed = {
        "train_wall_time_s": round(wall, 2),
        "train_samples_per_second": out_metrics.get("train_samples_per_second"),
        "resumed_from": Path(last).name if last else None,
    }
    held = "held-out lines" if _text_file(config) else "validation"
    result = PretrainResult(out, recorder.history, _final(trainer, held_blocks, held), speed, texts)
    _write(config, result, trainer, tok, info)
    shutil.rmtree(work, ignore_errors=True)
    return result


def _paths(config: PretrainConfig) -> tuple[Path, Path, str | None, list[str]]:
    """(output, work folder, the checkpoint to resume from or None, incomplete checkpoints): every check on the
    paths, before anything is loaded or written."""
    from bertdeploy.outputs import check_inputs, check_output_dir
    from bertdeploy.training import checkpoints

    if not config.output:
        raise UserError("an output folder is required (--output)")
    if not config.data:
        raise UserError("a dataset is required (--data)")
    out = Path(config.output)
    check_output_dir(out, config.overwrite, "output", kind="run", inputs=config.inputs())
    work = out.with_name(out.name + ".partial")
    check_inputs(work, config.inputs())
    last, incomplete = checkpoints.find(work)
    if config.resume and last is None:
        skipped = f" ({', '.join(incomplete)} incomplete: killed while saving)" if incomplete else ""
        raise UserError(f"--resume: no complete checkpoint to resume from in {work}{skipped}")
    return out, work, last if config.resume else None, incomplete


def _write(config: PretrainConfig, result: PretrainResult, trainer: Any, tok: Any, info: dict[str, Any]) -> None:
    from bertdeploy.outputs import atomic_dir

    record = {**config.to_dict(), "task": "fill-mask", "labels": [], "model_info": info, "texts": result.texts}
    with atomic_dir(result.output, overwrite=config.overwrite, kind="run", inputs=config.inputs()) as tmp:
        trainer.save_model(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle: the folder ships none
        tok.save_pretrained(str(tmp))
        (tmp / "train_config.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        metrics = {"epochs": result.history, "final": result.final, "speed": result.speed, "texts": result.texts}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float), encoding="utf-8")


def _trainer(config, model, tok, work: Path, train_blocks, held_blocks, on_epoch) -> tuple[Any, Any]:
    import datasets
    import torch
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments
    from transformers.trainer_callback import ProgressCallback

    from bertdeploy.training.callbacks import EpochRecorder, QuietProgress, StepProgress

    def with_perplexity(row: dict[str, Any]) -> None:  # the recorder's own row: its history gets it too
        if row.get("loss") is not None:
            row["perplexity"] = perplexity(row["loss"])
        if on_epoch:
            on_epoch(row)

    recorder = EpochRecorder(with_perplexity)
    args = TrainingArguments(
        output_dir=str(work),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        eval_strategy="epoch" if held_blocks else "no",
        save_strategy="epoch",
        save_total_limit=1,
        save_safetensors=True,
        logging_strategy="steps",
        logging_steps=10,
        report_to=[],
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_dict({"input_ids": train_blocks}),
        eval_dataset=datasets.Dataset.from_dict({"input_ids": held_blocks}) if held_blocks else None,
        processing_class=tok,
        data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=config.mlm_probability, seed=config.seed),
        callbacks=[recorder, StepProgress()],
    )
    trainer.remove_callback(ProgressCallback)
    if bars_enabled():  # tqdm reads TQDM_DISABLE once, on import: checked here, for in-process runs too
        trainer.add_callback(QuietProgress)
    return trainer, recorder


def _final(trainer: Any, held_blocks: list[list[int]], split: str) -> dict[str, Any]:
    """The held-out masked-language loss and perplexity on ``split`` (empty without held-out texts)."""
    if not held_blocks:
        return {}
    loss = float(trainer.evaluate(metric_key_prefix="final")["final_loss"])
    return {"split": split, "loss": loss, "perplexity": perplexity(loss)}


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean masked-token cross entropy (capped at ``exp(50)``: an untrained model stays finite)."""
    import math

    return math.exp(min(float(loss), 50.0))
