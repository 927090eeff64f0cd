"""What ``export`` starts from: a run folder (or any HF folder of a task in :mod:`bertdeploy.tasks`: a sequence or
token classifier) checked and loaded, and the evaluation / calibration rows. Every problem with the input is a
:class:`UserError` raised before anything is written."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.errors import UserError

TRAIN_CONFIG = "train_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")

#: parity rows used when there is no labelled evaluation data (plain HF folder without ``--data``)
SAMPLE_SENTENCES = [
    "i feel great today, everything is going well",
    "this is the worst service i have ever had",
    "the package arrived on tuesday",
    "i am so angry that the train was late again",
    "what a lovely surprise, thank you so much",
    "i'm not sure how i feel about the new update",
    "the movie was long but the ending made it worth it",
    "i am scared of what the results will say",
    "set an alarm for seven tomorrow morning",
    "play some jazz music in the kitchen",
    "the food was cold and the waiter was rude",
    "honestly the best book i have read this year",
    "i miss my family so much it hurts",
    "the weather is fine, nothing special",
    "wow, i did not expect that at all!",
    "please cancel my subscription",
]


@dataclass
class Source:
    """A checked, loaded model folder."""

    path: Path
    config: Any  # transformers.PretrainedConfig
    model: Any  # torch model in eval mode
    tokenizer: Any  # transformers fast tokenizer
    labels: list[str]
    max_length: int
    train_config: dict[str, Any] = field(default_factory=dict)
    task: Any = None  # bertdeploy.tasks.TaskSpec (text classification when None)
    transitions: dict[str, Any] | None = None
    """Token classification: the training tags' transition counts (``tag_transitions.json`` of the run folder),
    which the gate decodes with and the manifest carries to the runtime; None for older runs."""
    prior: Any = None  # the TagPrior of ``transitions``

    @property
    def spec(self) -> Any:
        from bertdeploy import tasks

        return self.task or tasks.get(tasks.DEFAULT)


@dataclass
class EvalData:
    """Evaluation rows (labelled when ``label_ids`` is not None) and calibration rows.

    Token classification: ``words`` holds each sentence's pre-split words, ``label_ids`` its tag ids per word and
    ``texts`` the words joined with spaces (what static int8 calibrates on). Question answering: ``pairs`` holds
    (question, context) pairs and ``label_ids`` the reference answers; multiple choice: ``texts`` the questions,
    ``choices`` their choices and ``label_ids`` the right choice's index."""

    texts: list[str]
    label_ids: list[Any] | None
    split: str
    source: str
    calibration: list[str]
    notes: list[str] = field(default_factory=list)
    words: list[list[str]] | None = None
    pairs: list[tuple[str, str]] | None = None
    choices: list[list[str]] | None = None


def _read_train_config(path: Path) -> dict[str, Any]:
    f = path / TRAIN_CONFIG
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"unreadable {f}: {e}") from None
    return data if isinstance(data, dict) else {}


def check_folder(run_dir: str | Path) -> Path:
    """Cheap checks of the folder (no heavy imports): exists, has config.json, safetensors weights, a tokenizer."""
    path = Path(run_dir).expanduser()
    if not path.exists():
        raise UserError(f"run folder not found: {path}")
    if not path.is_dir():
        raise UserError(f"run folder is not a folder: {path}")
    if not (path / "config.json").is_file():
        raise UserError(f"not a Hugging Face model folder (no config.json): {path}")
    if not ((path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()):
        if (path / "pytorch_model.bin").is_file():
            raise UserError(f"{path} has only pytorch_model.bin; bertdeploy loads safetensors weights only")
        raise UserError(f"no model weights (model.safetensors) in {path}")
    if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise UserError(f"no tokenizer in {path} (expected tokenizer.json or vocab.txt)")
    return path


def load_source(run_dir: str | Path, max_length: int | None = None) -> Source:
    """Load config, tokenizer and PyTorch model; raise :class:`UserError` for anything the exporter cannot take."""
    path = check_folder(run_dir)
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    from bertdeploy import tasks

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many types for a bad config
        raise UserError(f"unreadable config.json in {path}: {str(e).splitlines()[0]}") from None
    archs = list(getattr(config, "architectures", None) or [])
    task = tasks.from_architectures(archs)
    if task is None:
        kinds = ", ".join(f"*{tasks.TASKS[t].architecture}" for t in tasks.supported("export"))
        raise UserError(
            f"{path} is not a model of a supported task (architectures: {', '.join(archs) or 'none'}; "
            f"exportable: {kinds}); fine-tune it with `bertdeploy train` first"
        )
    tasks.get(task.name, stage="export")
    _check_supported(config.model_type, task.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot load the tokenizer of {path}: {str(e).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"the tokenizer of {path} has no fast (tokenizers) version; the runtime needs tokenizer.json")
    try:
        model, info = getattr(transformers, task.auto_model).from_pretrained(
            path, use_safetensors=True, local_files_only=True, output_loading_info=True
        )
    except Exception as e:  # noqa: BLE001 - corrupt safetensors, shape mismatch, ...
        raise UserError(f"cannot load the weights of {path} (corrupt file?): {str(e).splitlines()[0]}") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise UserError(
            f"{path}: the weights lack {len(missing)} parameter(s) (e.g. {missing[0]}); not a trained {task.name} model"
        )
    model.eval()
    labels = [str(config.id2label[i]) for i in range(config.num_labels)] if task.labelled else []
    train_config = _read_train_config(path)
    if max_length is None:
        max_length = int(train_config.get("max_length") or 0) or None
    if max_length is None:
        limits = [512, int(getattr(config, "max_position_embeddings", 512) or 512)]
        if isinstance(tokenizer.model_max_length, int) and tokenizer.model_max_length > 0:
            limits.append(tokenizer.model_max_length)
        max_length = min(limits)
    source = Source(path, config, model, tokenizer, labels, int(max_length), train_config, task)
    if task.name == "token-classification":
        from bertdeploy.training.task_tokens import read_transitions

        source.transitions, source.prior = read_transitions(path, labels)
    return source


def _check_supported(model_type: str, task: str = "text-classification") -> None:
    import optimum.exporters.onnx.model_configs  # noqa: F401 - registers the ONNX configs with the TasksManager
    from optimum.exporters.tasks import TasksManager

    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(
            model_type, exporter="onnx", library_name="transformers"
        )
    except Exception:  # noqa: BLE001 - KeyError / ValueError depending on the optimum version
        tasks = {}
    if task not in tasks:
        raise UserError(f"model type {model_type!r} is not supported by the Optimum ONNX exporter for {task}")


def _resolve_data_path(data: str, run_dir: Path) -> str:
    p = Path(data).expanduser()
    if p.exists() or p.is_absolute():
        return str(p)
    if (run_dir / p).exists():  # a relative path recorded by `train`, run from another folder
        return str(run_dir / p)
    return data


def load_eval_data(source: Source, data: str | None, calibration_size: int, seed: int = 42) -> EvalData:
    """The eval split (``--data`` else the run's own data) and ``calibration_size`` training rows."""
    from bertdeploy.data import DataSpec, load_data

    tc = source.train_config
    if data is None and not tc.get("data") and not source.spec.labelled:
        raise UserError(f"exporting a {source.spec.name} model needs evaluation data: pass --data")
    if data is None and not tc.get("data"):
        note = (
            "no evaluation data (no --data and no train_config.json): accuracy not measured; parity on "
            f"{len(SAMPLE_SENTENCES)} built-in sentences; int8 gated on argmax agreement instead"
        )
        samples = list(SAMPLE_SENTENCES)
        words = [s.split() for s in samples] if source.spec.per_token else None
        return EvalData(samples, None, "samples", "built-in", samples, [note], words=words)
    path = data if data is not None else _resolve_data_path(str(tc["data"]), source.path)
    text_col = tc.get("text_column") or "text"  # --text-column / --label-column are merged into tc by export()
    label_col = tc.get("label_column") or "label"
    seed = int(tc.get("seed", seed) or seed)
    spec = DataSpec(path=path, text_column=text_col, label_column=label_col, seed=seed, task=source.spec.name)
    loaded = load_data(spec, labels=source.labels)
    name = loaded.eval_split if loaded.eval_split in loaded.splits else next(iter(loaded.splits))
    split = loaded.splits[name]
    pool_name = "train" if "train" in loaded.splits else name
    if loaded.task in ("question-answering", "multiple-choice"):
        return _qa_eval_data(loaded, name, calibration_size, seed)
    per_token = loaded.task == "token-classification"
    pool = [" ".join(w) for w in loaded.splits[pool_name]["tokens"]] if per_token else loaded.splits[pool_name]["text"]
    rng = random.Random(seed)
    calibration = rng.sample(pool, min(calibration_size, len(pool)))
    notes = list(loaded.notes)
    if pool_name != "train":
        notes.append(f"no training split: calibration uses {len(calibration)} rows of {pool_name}")
    if per_token:
        texts = [" ".join(w) for w in split["tokens"]]
        return EvalData(texts, split["tags"], name, loaded.source, calibration, notes, words=split["tokens"])
    return EvalData(split["text"], split["label"], name, loaded.source, calibration, notes)


def _qa_eval_data(loaded: Any, name: str, calibration_size: int, seed: int) -> EvalData:
    """Question answering / multiple choice: the eval split's records and calibration pairs from training."""
    split = loaded.splits[name]
    pool = loaded.splits.get("train", split)
    rng = random.Random(seed)
    picks = rng.sample(range(len(pool["id"])), min(calibration_size, len(pool["id"])))
    if loaded.task == "multiple-choice":
        calibration = [f"{pool['question'][i]} {pool['choices'][i][0]}" for i in picks]
        return EvalData(list(split["question"]), list(split["label"]), name, loaded.source, calibration,
                        list(loaded.notes), choices=list(split["choices"]))  # fmt: skip
    calibration = [f"{pool['question'][i]} {pool['context'][i]}" for i in picks]
    pairs = list(zip(split["question"], split["context"]))
    return EvalData([q for q, _ in pairs], list(split["answers"]), name, loaded.source, calibration,
                    list(loaded.notes), pairs=pairs)  # fmt: skip
