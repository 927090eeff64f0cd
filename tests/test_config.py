"""Typed config, key=value overrides and every shipped recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertdeploy.errors import UserError
from bertdeploy.exporter import ExportConfig
from bertdeploy.training import TrainConfig, load_recipe

parse_overrides = TrainConfig.parse_overrides

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_overrides_are_typed():
    o = parse_overrides(["lr=3e-5", "padding=static", "train_size=500", "from_scratch=true", "report_to=none"])
    assert o == {"lr": 3e-5, "padding": "static", "train_size": 500, "from_scratch": True, "report_to": ["none"]}
    with pytest.raises(UserError, match="unknown TrainConfig key"):
        parse_overrides(["learning_rate=1"])
    with pytest.raises(UserError, match="bad value for epochs"):
        parse_overrides(["epochs=many"])
    with pytest.raises(UserError, match="not key=value"):
        parse_overrides(["lr"])


def test_one_loader_for_every_stage_config(tmp_path):
    """YAML, then options, then key=value overrides; values coerced by the field's annotation."""
    y = tmp_path / "export.yaml"
    y.write_text("run_dir: runs/r\noutput: out\nvariants: [qint8]\ncalibration_size: 50\n", encoding="utf-8")
    cfg = ExportConfig.load(y, {"calibration_size": 80, "opset": None}, ["max_accuracy_drop=0.5%", "per_channel=false"])
    assert cfg.variants == ["fp32", "qint8"] and cfg.calibration_size == 80 and cfg.opset is None
    assert cfg.max_accuracy_drop == 0.5 and cfg.per_channel is False
    assert ExportConfig.load(None, {"run_dir": "r", "output": "o"}, ["min_agreement={O2: 0.9}"]).min_agreement == {
        "O2": 0.9
    }
    with pytest.raises(UserError, match="bad value for calibration_size"):
        ExportConfig.load(None, {"run_dir": "r", "output": "o"}, ["calibration_size=1.5"])
    with pytest.raises(UserError, match="unknown ExportConfig key 'calibration'"):
        ExportConfig.load(None, {"run_dir": "r", "output": "o"}, ["calibration=1"])
    assert TrainConfig.load(None, None, ["tokenizer=null", "model=001"]).model == "001"  # str fields stay text


@pytest.mark.parametrize(
    "field, value",
    [("padding", "ragged"), ("freeze", "all"), ("metric", "auc"), ("max_length", 4), ("epochs", float("nan"))],
)
def test_config_validation(field, value):
    with pytest.raises(UserError):
        TrainConfig(**{field: value})


def test_there_are_recipes_for_every_seed_experiment():
    names = {p.stem for p in RECIPES}
    assert {"emotion_padding", "tnews_subsets", "sst2_size_ladder", "warmup_ablation", "pretrained_vs_scratch"} <= names
    assert {"distill_emotion", "distill_sst2", "distill_vs_hard_labels"} <= names


def test_a_recipe_runs_with_its_own_command(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("command: distill\nteacher: models/t\ndata: d\noutput: out\ngrid:\n  alpha: [0.0, 0.5]\n")
    recipe = load_recipe(p, command="distill")
    cells = recipe.cells()
    assert [type(c).__name__ for _, c in cells] == ["DistillConfig"] * 2 and cells[0][1].teacher == "models/t"
    assert cells[0][1].model == "bert-mini", "a distill recipe's default student"
    with pytest.raises(UserError, match="is a distill recipe: run it with `bertdeploy distill"):
        load_recipe(p, command="train")
    p.write_text("teacher: models/t\ndata: d\n")
    with pytest.raises(UserError, match="unknown recipe keys \\['teacher'\\]"):
        load_recipe(p)
    p.write_text("command: serve\n")
    with pytest.raises(UserError, match="command must be one of"):
        load_recipe(p)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_and_validates(path):
    text = path.read_text(encoding="utf-8")
    recipe = load_recipe(path)
    command = f"# bertdeploy {recipe.command} --recipe recipes/{path.name}"
    assert text.startswith(command), "a recipe opens with its command"
    for offline in (False, True):
        cells = recipe.cells(offline=offline)
        assert cells
        outputs = {cfg.output for _, cfg in cells}
        assert len(outputs) == len(cells), "every grid cell writes its own folder"
    for _, cfg in recipe.cells(offline=True):
        assert not cfg.model.count("/") or Path(cfg.model).exists(), "offline cells must not need the Hub"


def test_grid_and_overrides(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("data: d\noutput: out\ngrid:\n  lr: [1.0e-4, 2.0e-5]\n  padding: [static, dynamic]\n")
    cells = load_recipe(p).cells({"epochs": 1.0})
    assert len(cells) == 4 and all(c.epochs == 1.0 for _, c in cells)
    assert {c.output for _, c in cells} >= {"out/lr=0.0001__padding=static"}
    assert len(load_recipe(p).cells({"lr": 1e-3})) == 2  # an override pins a grid axis
    p.write_text("data: d\nlearning_rate: 1\n")
    with pytest.raises(UserError, match="unknown recipe keys"):
        load_recipe(p)
