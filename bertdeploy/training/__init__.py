"""The training stage: fine-tuning with transformers' Trainer into a run folder.

    from bertdeploy.training import TrainConfig, train
    result = train(TrainConfig(model="minilm-l6", data="data/emotion", output="runs/emotion"))

Modules: config (TrainConfig, recipes), trainer (prepare → Trainer → run folder), callbacks (per-epoch rows,
curves), models (model specs and presets), data_stats (token lengths and padding waste before training).
Heavy libraries (torch, transformers, datasets) are imported when a function runs, not on import.
"""

from __future__ import annotations

from bertdeploy.training.config import Recipe, TrainConfig, load_recipe
from bertdeploy.training.trainer import TrainResult, run_recipe, train

__all__ = ["Recipe", "TrainConfig", "TrainResult", "load_recipe", "run_recipe", "train"]
