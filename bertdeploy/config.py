"""Typed training config, YAML recipes (optionally holding a grid) and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.errors import UserError

PADDING = ("static", "dynamic")
FREEZE = ("none", "embeddings", "encoder")
METRICS = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro", "loss")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial")


@dataclass
class TrainConfig:
    """Everything ``bertdeploy train`` needs; each field is a CLI option and a recipe key."""

    model: str = "minilm-l6"
    """Local HF folder, Hub id, ``minilm-l6`` or a preset (bert-tiny … bert-base, distilbert-base)."""
    data: str = ""
    """Folder of train/validation/test files, a single file, or a Hub dataset id."""
    output: str = ""
    """Run folder to create (model, tokenizer, metrics.json, curves.png)."""
    text_column: str = "text"
    label_column: str = "label"
    tokenizer: str | None = None
    """Tokenizer spec for presets (default: the MiniLM vocab)."""
    from_scratch: bool = False
    """Initialise the model from its config (random weights) instead of pretrained weights."""
    epochs: float = 3.0
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    max_length: int = 128
    padding: str = "dynamic"
    """``static`` pads every row to max_length; ``dynamic`` pads each batch to its longest row."""
    group_by_length: bool = False
    """With dynamic padding: batch rows of similar length together (less padding, faster epochs)."""
    freeze: str = "none"
    """``none`` | ``embeddings`` | ``encoder`` (train only the pooler + classifier)."""
    train_size: int | None = None
    """Stratified, seeded subset of the training split."""
    val_ratio: float = 0.1
    test_ratio: float = 0.0
    seed: int = 42
    metric: str = "f1_macro"
    """Metric that picks the best checkpoint."""
    early_stopping: int | None = None
    """Stop after N evaluations without improvement."""
    resume: bool = False
    overwrite: bool = False
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Trainer loggers (tensorboard, wandb …); ``none`` disables."""
    logging_steps: int = 50
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.padding not in PADDING:
            raise UserError(f"padding must be one of {PADDING}, got {self.padding!r}")
        if self.freeze not in FREEZE:
            raise UserError(f"freeze must be one of {FREEZE}, got {self.freeze!r}")
        if self.metric not in METRICS:
            raise UserError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.epochs <= 0 or self.batch_size < 1 or self.lr <= 0:
            raise UserError("epochs, batch_size and lr must be positive")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 8 <= self.max_length <= 512:
            raise UserError(f"max_length must be in [8, 512], got {self.max_length}")
        if self.train_size is not None and self.train_size < 2:
            raise UserError(f"train_size must be at least 2, got {self.train_size}")
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, value: Any) -> Any:
    """Parse a ``key=value`` string (or YAML scalar) into the field's type."""
    import yaml

    if key not in FIELDS:
        raise UserError(f"unknown config key {key!r}; known: {', '.join(FIELDS)}")
    if isinstance(value, str):
        value = yaml.safe_load(value) if value != "" else ""
    typ = str(FIELDS[key].type)
    if value is None:
        return None
    try:
        if typ.startswith("int"):
            return int(value)
        if typ.startswith("float"):
            return float(value)
        if typ.startswith("bool"):
            if isinstance(value, bool):
                return value
            raise ValueError
        if typ.startswith("str"):
            return str(value)
        if typ.startswith("list"):
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    except (TypeError, ValueError):
        raise UserError(f"bad value for {key}: {value!r} (expected {typ})") from None
    return value


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["lr=3e-5", "padding=static"]`` → ``{"lr": 3e-5, "padding": "static"}``."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"override {pair!r} is not key=value")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        out[key] = _coerce(key, value)
    return out


@dataclass
class Recipe:
    """A YAML recipe: base settings plus an optional grid (every combination is one training run)."""

    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    offline: dict[str, Any] = field(default_factory=dict)
    """Overrides that make the recipe run here without the Hub (``--offline``)."""
    description: str = ""

    def cells(self, overrides: dict[str, Any] | None = None, offline: bool = False) -> list[tuple[str, TrainConfig]]:
        """(cell name, config) for every grid combination; the output of a cell is ``<output>/<cell name>``."""
        off = dict(self.offline) if offline else {}
        grid = {**self.grid, **off.pop("grid", {})}
        base = {**self.base, **off, **(overrides or {})}
        grid = {k: v for k, v in grid.items() if k not in (overrides or {})}
        if not grid:
            return [(self.name, TrainConfig(**base))]
        keys = list(grid)
        out = []
        for values in itertools.product(*(grid[k] for k in keys)):
            cell = dict(zip(keys, values, strict=True))
            name = "__".join(f"{k}={_short(v)}" for k, v in cell.items())
            cfg = {**base, **{k: _coerce(k, v) for k, v in cell.items()}}
            cfg["output"] = str(Path(base.get("output") or f"runs/{self.name}") / name)
            out.append((name, TrainConfig(**cfg)))
        return out


def _short(v: Any) -> str:
    return Path(str(v)).name if isinstance(v, str) and "/" in v else str(v)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file (unknown keys and bad values are errors)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe is a mapping")
    extra = set(raw) - {"name", "description", "grid", "offline", *FIELDS}
    if extra:
        raise UserError(f"{path}: unknown recipe keys {sorted(extra)}")
    base = {k: _coerce(k, v) for k, v in raw.items() if k in FIELDS}
    grid = raw.get("grid") or {}
    offline_raw = dict(raw.get("offline") or {})
    offline_grid = offline_raw.pop("grid", None) or {}
    offline: dict[str, Any] = {k: _coerce(k, v) for k, v in offline_raw.items()}
    if offline_grid:
        offline["grid"] = offline_grid
    for k, values in {**grid, **offline_grid}.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{path}: grid.{k} must be a non-empty list")
        for v in values:
            _coerce(k, v)
    recipe = Recipe(
        name=str(raw.get("name", path.stem)),
        base=base,
        grid=grid,
        offline=offline,
        description=raw.get("description", ""),
    )
    for on in (False, True):  # validate every cell now, not midway through a grid
        recipe.cells(offline=on)
    return recipe
