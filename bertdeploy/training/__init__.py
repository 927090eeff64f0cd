"""The training stage: fine-tuning with transformers' Trainer into a run folder.

    from bertdeploy.training import TrainConfig, train
    result = train(TrainConfig(model="minilm-l6", data="data/emotion", output="runs/emotion"))
    result = distill(DistillConfig(teacher="models/emotion", model="bert-mini", data="data/emotion", output="runs/d"))

Modules: config (TrainConfig, DistillConfig, recipes), trainer (prepare → Trainer → run folder), distill (the
soft-label loss, a student on a teacher's logits), teacher (bundle or run folder, logits cached), callbacks
(per-epoch rows, curves), models (model specs and presets), data_stats (token lengths and padding waste).
Heavy libraries (torch, transformers, datasets) are imported when a function runs, not on import.
"""

from __future__ import annotations

from bertdeploy.training.config import COMMANDS, DistillConfig, Recipe, TrainConfig, load_recipe
from bertdeploy.training.distill import DistillResult, distill
from bertdeploy.training.trainer import TrainResult, run_recipe, train

__all__ = [
    "COMMANDS",
    "DistillConfig",
    "DistillResult",
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "distill",
    "load_recipe",
    "run_recipe",
    "train",
]
