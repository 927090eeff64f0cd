"""`TrainConfig` (what ``bertdeploy train`` needs), `DistillConfig` (``bertdeploy distill``: the same options plus
the teacher's) and YAML recipes, which may hold a grid of configs."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy import variants
from bertdeploy.config import Config, read_yaml
from bertdeploy.errors import UserError
from bertdeploy.training.vocab import DEFAULT_MAX_UNK_RATE, DEFAULT_VOCAB_SIZE

PADDING = ("static", "dynamic")
FREEZE = ("none", "embeddings", "encoder")
METRICS = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro", "loss",
           "f1", "precision", "recall", "token_accuracy")  # fmt: skip
#: the tasks ``train`` may be asked for (None: from the data's layout); the task table refuses the others
TASKS = (None, "text-classification", "token-classification", "question-answering", "multiple-choice")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial")
UNSEEN_LABELS = ("error", "keep", "drop")
#: ``distill --augment`` when not given, for a ``--student-init`` student: as many copies per training text as make
#: :data:`AUGMENT_BUDGET` perturbed texts, between :data:`AUGMENT_MIN` and :data:`AUGMENT_MAX` (measured:
#: benchmarks/accuracy/distill-defaults.md — 4 copies of 16,000 emotion rows kept the pruned students at their
#: teachers' accuracy; on 1,000 snips rows a 3-layer student needed 32: 8 left it 1.1 points short)
AUGMENT_BUDGET = 64_000
AUGMENT_MAX = 32
#: ... and never fewer than 2 copies (SST-2, 67,349 rows: 1 copy left the student 1.03 points under its teacher, 2
#: copies 0.80)
AUGMENT_MIN = 2
#: ``distill --lr`` when not given: a ``--student-init`` student starts from its teacher's weights
STUDENT_INIT_LR = 1e-4
#: seeds numpy / scikit-learn accept
MAX_SEED = 2**32 - 1


@dataclass
class TrainConfig(Config):
    """Everything ``bertdeploy train`` needs; each field is a CLI option and a recipe key."""

    model: str = "minilm-l6"
    """Local HF folder, Hub id, ``minilm-l6`` or a preset (bert-tiny … bert-base, distilbert-base)."""
    data: str = ""
    """Folder of train/validation/test files, a single file, or a Hub dataset id."""
    output: str = ""
    """Run folder to create (model, tokenizer, metrics.json, curves.png)."""
    text_column: str = "text"
    """Column holding the text."""
    label_column: str = "label"
    """Column holding the label (a name or an integer id)."""
    tokenizer: str | None = None
    """Tokenizer spec for presets (default: the MiniLM vocab)."""
    from_scratch: bool = False
    """Initialise the model from its config (random weights) instead of pretrained weights."""
    vocab_from_data: bool = False
    """From scratch (``from_scratch`` or a preset): build a WordPiece vocabulary from the training texts (each CJK
    character one token), size the model's embeddings to it and save it as the run's tokenizer."""
    vocab_size: int = DEFAULT_VOCAB_SIZE
    """With ``vocab_from_data``: the WordPiece vocabulary size (every character seen is kept even beyond it)."""
    max_unk_rate: float = DEFAULT_MAX_UNK_RATE
    """Refuse to train when more than this share of the training tokens is ``[UNK]`` (1 = never refuse)."""
    task: str | None = None
    """``text-classification`` | ``token-classification`` (the task table's names); None: from the data's layout."""
    doc_stride: int | None = None
    """Question answering: tokens that consecutive windows of a long context share (default: 128, at most a
    quarter of max_length)."""
    question_match: bool = False
    """Question answering: tell the reader which context tokens occur in the question (token type 2; DrQA's
    exact-match feature). The model's token-type embeddings grow a third row; a reader trained with it keeps it."""
    label_all_tokens: bool = False
    """Token classification: label every sub-token of a word (B- turned into I-) instead of its first only."""
    epochs: float = 3.0
    """Training epochs (fractions allowed)."""
    batch_size: int = 32
    """Training rows per device and step."""
    eval_batch_size: int = 64
    """Evaluation rows per device and step."""
    lr: float = 5e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Share of the steps spent warming the learning rate up."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross entropy (transformers' ``label_smoothing_factor``; 0 = none)."""
    scheduler: str = "linear"
    """Learning-rate schedule after warm-up (transformers' ``lr_scheduler_type``)."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.999
    """AdamW beta2."""
    adam_epsilon: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    max_length: int = 128
    """Token limit (longer texts are truncated)."""
    padding: str = "dynamic"
    """``static`` pads every row to max_length; ``dynamic`` pads each batch to its longest row."""
    group_by_length: bool = False
    """With dynamic padding: batch rows of similar length together (less padding, faster epochs)."""
    freeze: str = "none"
    """``none`` | ``embeddings`` | ``encoder`` (train only the pooler + classifier)."""
    train_size: int | None = None
    """Stratified, seeded subset of the training split."""
    val_ratio: float = 0.1
    """Share of train carved out as validation when the data has no validation split."""
    test_ratio: float = 0.0
    """For a single file: share held out as test."""
    seed: int = 42
    """Seed of the model init, the data order and the subsets."""
    metric: str = "f1_macro"
    """Metric that picks the best checkpoint."""
    early_stopping: int | None = None
    """Stop after N evaluations without improvement."""
    unseen_labels: str = "error"
    """Validation / test rows whose label never occurs in training: ``error`` (refuse), ``keep`` (they stay and
    count as errors; the label space comes from labels.txt, else from every split) or ``drop`` (removed, counted)."""
    resume: bool = False
    """Continue from the last checkpoint in ``OUTPUT.partial``."""
    overwrite: bool = False
    """Replace an existing run folder."""
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Trainer loggers (tensorboard, wandb …); ``none`` disables."""
    logging_steps: int = 50
    """Steps between logged training losses."""
    num_workers: int = 0
    """DataLoader worker processes."""

    def inputs(self) -> list[str | None]:
        """What the run folder (and its work folder) must not be, contain or lie inside."""
        return [self.data, self.model, self.tokenizer]

    def __post_init__(self) -> None:
        choices = (("padding", PADDING), ("freeze", FREEZE), ("metric", METRICS), ("scheduler", SCHEDULERS),
                   ("unseen_labels", UNSEEN_LABELS), ("task", TASKS))  # fmt: skip
        for key, allowed in choices:
            if getattr(self, key) not in allowed:
                raise UserError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        finite = ("epochs", "lr", "weight_decay", "warmup_ratio", "adam_beta1", "adam_beta2", "adam_epsilon",
                  "max_grad_norm", "val_ratio", "test_ratio", "label_smoothing")  # fmt: skip
        for key in finite:
            if not math.isfinite(getattr(self, key)):
                raise UserError(f"{key} must be a finite number, got {getattr(self, key)}")
        if not (self.epochs > 0 and self.batch_size >= 1 and self.lr > 0 and self.eval_batch_size >= 1):
            raise UserError("epochs, batch_size, eval_batch_size and lr must be positive")
        self._check_ranges()
        self._check_vocab()
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]

    def _check_ranges(self) -> None:
        ranges = (
            ("warmup_ratio", 0, 1, "[0, 1)"),
            ("label_smoothing", 0, 1, "[0, 1)"),
            ("val_ratio", 0, 1, "(0, 1)"),
            ("test_ratio", 0, 1, "[0, 1)"),
            ("adam_beta1", 0, 1, "[0, 1)"),
            ("adam_beta2", 0, 1, "[0, 1)"),
        )
        for key, lo, hi, shown in ranges:
            value = getattr(self, key)
            if not (lo <= value < hi) or (shown.startswith("(") and value == lo):
                raise UserError(f"{key} must be in {shown}, got {value}")
        if self.val_ratio + self.test_ratio >= 1:
            raise UserError(f"val_ratio + test_ratio must be below 1, got {self.val_ratio} + {self.test_ratio}")
        if self.weight_decay < 0 or self.adam_epsilon <= 0 or self.max_grad_norm <= 0:
            raise UserError("weight_decay must be >= 0, adam_epsilon and max_grad_norm > 0")
        if not 8 <= self.max_length <= 512:
            raise UserError(f"max_length must be in [8, 512], got {self.max_length}")
        if self.train_size is not None and self.train_size < 2:
            raise UserError(f"train_size must be at least 2, got {self.train_size}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        if self.early_stopping is not None and self.early_stopping < 1:
            raise UserError(f"early_stopping must be >= 1 (evaluations without improvement), got {self.early_stopping}")
        if self.logging_steps < 1 or self.num_workers < 0:
            raise UserError("logging_steps must be >= 1 and num_workers >= 0")

    def _check_vocab(self) -> None:
        if not (math.isfinite(self.max_unk_rate) and 0 <= self.max_unk_rate <= 1):
            raise UserError(f"max_unk_rate must be in [0, 1], got {self.max_unk_rate}")
        if not self.vocab_from_data:
            return
        from bertdeploy.training.models import PRESETS

        if not self.from_scratch and self.model not in PRESETS:
            raise UserError("--vocab-from-data builds a new vocabulary, so it needs --from-scratch (or a preset model)")
        if self.tokenizer:
            raise UserError("--vocab-from-data builds the tokenizer: it does not combine with --tokenizer")
        if self.vocab_size < 100:
            raise UserError(f"vocab_size must be at least 100, got {self.vocab_size}")


@dataclass
class DistillConfig(TrainConfig):
    """``bertdeploy distill``: every train option (``model`` is the student) plus the teacher and the loss."""

    model: str = "bert-mini"
    """The student: a preset (from scratch), a pretrained folder, or ``minilm-l6`` (see ``student_layers``)."""
    teacher: str = ""
    """The teacher: a bundle (scored with the ONNX runtime) or a run folder (scored with PyTorch); several,
    comma-separated, form an ensemble whose mean probabilities are the soft labels."""
    teacher_variant: str = variants.BASE
    """Bundle variant that scores the texts (fp32 by default: the teacher's own logits, not int8's)."""
    student_layers: int | None = None
    """Keep only the first N encoder layers of the student (e.g. ``minilm-l6`` cut to 3)."""
    student_embeddings: str | None = None
    """Initialise the student's embeddings from this pretrained model's (a folder or ``minilm-l6``; PCA-projected)."""
    student_init: str | None = None
    """Start the student from this BERT (a run folder, a pretrained folder or ``minilm-l6``) pruned to the student's
    shape: first layers, most active channels / heads / neurons (:mod:`bertdeploy.training.prune`)."""
    temperature: float = 2.0
    """Softmax temperature of the soft targets (the KL term is scaled by T^2)."""
    alpha: float = 0.5
    """Weight of the KL term; ``1 - alpha`` weighs the hard-label cross entropy (0 = hard labels only)."""
    unlabelled: str | None = None
    """Extra texts (txt: one per line, or csv/tsv/jsonl/parquet with ``text_column``) the teacher labels (token
    classification: each split into words at whitespace and CJK characters)."""
    teacher_batch_size: int = 64
    """Texts per teacher batch when scoring."""
    hidden_loss: float = 0.0
    """Weight of a TinyBERT-style hidden-state loss (MSE of the projected student layers on the teacher's; 0 = off)."""
    hidden_teacher: str | None = None
    """Run folder of the PyTorch teacher for ``hidden_loss`` (default: ``teacher`` when it is a run folder)."""
    augment: int | None = None
    """Perturbed copies of each training text added to the transfer set (masking, word swaps, n-gram windows; Tang
    et al. 2019), labelled by the teacher only; ``None``: with ``student_init`` as many as make 64,000 perturbed
    texts, between 2 and 32 copies (32 up to 2,000 training texts, 4 at 16,000, 2 above 32,000), else 0."""
    lr: float | None = None  # type: ignore[assignment]
    """Peak learning rate; ``None``: 1e-4 with ``student_init`` (measured), else 5e-5 as ``train``."""

    def inputs(self) -> list[str | None]:
        """Train's inputs plus the teacher, the pruning source, the hidden-state teacher and the unlabelled texts."""
        from bertdeploy.training.teacher import ensemble_specs

        teachers = ensemble_specs(self.teacher) if self.teacher else []
        return [*super().inputs(), *teachers, self.student_init, self.hidden_teacher, self.unlabelled]

    def __post_init__(self) -> None:
        if self.lr is None:
            self.lr = STUDENT_INIT_LR if self.student_init else 5e-5
        super().__post_init__()
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise UserError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise UserError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.student_layers is not None and self.student_layers < 1:
            raise UserError(f"student_layers must be >= 1, got {self.student_layers}")
        if self.student_init and self.student_embeddings:
            raise UserError("student_init sets the student's embeddings: it does not combine with student_embeddings")
        if self.vocab_from_data and (self.student_init or self.student_embeddings):
            raise UserError(
                "--vocab-from-data builds a new vocabulary: it does not combine with --student-init or "
                "--student-embeddings (they copy another vocabulary's embeddings)"
            )
        if self.teacher_batch_size < 1:
            raise UserError(f"teacher_batch_size must be >= 1, got {self.teacher_batch_size}")
        if not self.hidden_loss >= 0 or not math.isfinite(self.hidden_loss):
            raise UserError(f"hidden_loss must be >= 0, got {self.hidden_loss}")
        if self.augment is not None and not 0 <= self.augment <= 64:
            raise UserError(f"augment must be in [0, 64] copies per training text, got {self.augment}")
        if self.student_init and not self.tokenizer:  # pruning copies its embeddings: the student reads its vocabulary
            self.tokenizer = self.student_init

    def copies(self, train_texts: int) -> int:
        """The ``augment`` in effect for ``train_texts`` training texts (its default depends on ``student_init``)."""
        if self.augment is not None:
            return self.augment
        if not self.student_init:
            return 0
        return max(AUGMENT_MIN, min(AUGMENT_MAX, AUGMENT_BUDGET // max(train_texts, 1)))


#: what a recipe's ``command`` key (default ``train``) runs, and the config its cells are
COMMANDS: dict[str, type[TrainConfig]] = {"train": TrainConfig, "distill": DistillConfig}


@dataclass
class Recipe:
    """A YAML recipe: base settings plus an optional grid (every combination is one training run)."""

    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    offline: dict[str, Any] = field(default_factory=dict)
    """Overrides that make the recipe run here without the Hub (``--offline``)."""
    description: str = ""
    command: str = "train"
    """``train`` or ``distill``: the command that runs the recipe (and the config class of its cells)."""

    def cells(self, overrides: dict[str, Any] | None = None, offline: bool = False) -> list[tuple[str, TrainConfig]]:
        """(cell name, config) for every grid combination; the output of a cell is ``<output>/<cell name>``."""
        cls = COMMANDS[self.command]
        off = dict(self.offline) if offline else {}
        grid = {**self.grid, **off.pop("grid", {})}
        base = {**self.base, **off, **(overrides or {})}
        grid = {k: v for k, v in grid.items() if k not in (overrides or {})}
        if not grid:
            return [(self.name, cls.from_dict(base))]
        keys = list(grid)
        out = []
        for values in itertools.product(*(grid[k] for k in keys)):
            cell = dict(zip(keys, values, strict=True))
            name = "__".join(f"{k}={_short(v)}" for k, v in cell.items())
            cfg = {**base, **cell}
            cfg["output"] = str(Path(base.get("output") or f"runs/{self.name}") / name)
            out.append((name, cls.from_dict(cfg)))
        return out


def _short(v: Any) -> str:
    return Path(str(v)).name if isinstance(v, str) and "/" in v else str(v)


def load_recipe(path: str | Path, command: str | None = None) -> Recipe:
    """Read and validate a recipe file (unknown keys and bad values are errors); with ``command``, a recipe meant
    for another command is an error naming the right one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe not found: {path}")
    raw = read_yaml(path, "recipe")
    kind = str(raw.get("command", "train"))
    if kind not in COMMANDS:
        raise UserError(f"{path}: command must be one of {sorted(COMMANDS)}, got {kind!r}")
    if command is not None and kind != command:
        raise UserError(f"{path} is a {kind} recipe: run it with `bertdeploy {kind} --recipe {path}`")
    cls = COMMANDS[kind]
    fields = cls.fields()
    extra = set(raw) - {"name", "description", "command", "grid", "offline", *fields}
    if extra:
        raise UserError(f"{path}: unknown recipe keys {sorted(extra)}")
    base = {k: cls.coerce(k, v) for k, v in raw.items() if k in fields}
    grid = raw.get("grid") or {}
    offline_raw = dict(raw.get("offline") or {})
    offline_grid = offline_raw.pop("grid", None) or {}
    offline: dict[str, Any] = {k: cls.coerce(k, v) for k, v in offline_raw.items()}
    if offline_grid:
        offline["grid"] = offline_grid
    for k, values in {**grid, **offline_grid}.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{path}: grid.{k} must be a non-empty list")
        for v in values:
            cls.coerce(k, v)
    recipe = Recipe(
        name=str(raw.get("name", path.stem)),
        base=base,
        grid=grid,
        offline=offline,
        description=raw.get("description", ""),
        command=kind,
    )
    for on in (False, True):  # validate every cell now, not midway through a grid
        recipe.cells(offline=on)
    return recipe
