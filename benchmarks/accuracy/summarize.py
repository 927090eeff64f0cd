"""One committed summary per accuracy run: what a run folder's metrics.json / train_config.json say (not the
weights), with the command that produced it, its wall time and the load average around it.

    python benchmarks/accuracy/summarize.py runs/RUN --command "bertdeploy distill ..." \
        --wall-s 1234 --load "5.1 4.8 4.0" -o benchmarks/accuracy/runs/RUN.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEEP_CONFIG = ("model", "teacher", "student_layers", "temperature", "alpha", "unlabelled", "epochs", "batch_size",
               "lr", "weight_decay", "warmup_ratio", "label_smoothing", "scheduler", "max_length", "padding",
               "group_by_length", "train_size", "seed", "metric", "from_scratch", "hidden_loss",
               "hidden_teacher", "student_init", "augment")  # fmt: skip
TEACHER_KEYS = ("kind", "path", "variant", "eval_split", "eval", "cache", "scored_texts", "unlabelled_texts",
                "train_agreement", "augment")  # fmt: skip
SCORES = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "n")


def _best_step(metrics: dict) -> int | None:
    """The kept checkpoint's step: `best_step`, or, in run folders from before it, `best_checkpoint`'s suffix."""
    if metrics.get("best_step") is not None:
        return metrics["best_step"]
    checkpoint = metrics.get("best_checkpoint")
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else None


def summarize(run: Path, command: str, wall_s: float | None, load: str | None) -> dict:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    config = json.loads((run / "train_config.json").read_text(encoding="utf-8"))
    final = metrics["final"]
    epochs = [{k: e.get(k) for k in ("epoch", "train_loss", "loss", "accuracy", "f1_macro")} for e in metrics["epochs"]]
    out = {
        "run": str(run),
        "command": command,
        "wall_time_s": wall_s,
        "load_average": load,
        "final": {"split": final["split"], **{k: final[k] for k in SCORES if k in final}},
        "epochs": epochs,
        "best_step": _best_step(metrics),  # the checkpoint the run kept (best validation metric)
        "best_metric": metrics.get("best_metric"),
        "speed": metrics.get("speed"),
        "config": {k: config[k] for k in KEEP_CONFIG if k in config},
        "model_info": config.get("model_info"),
        "versions": config.get("versions"),
    }
    if "distill" in config:
        teacher = config["distill"]["teacher"]
        out["teacher"] = {k: teacher.get(k) for k in TEACHER_KEYS}
        if config["distill"].get("hidden_loss"):
            out["hidden_loss"] = config["distill"]["hidden_loss"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--command", required=True)
    p.add_argument("--wall-s", type=float)
    p.add_argument("--load", help="load average (1, 5, 15 min) while it ran")
    p.add_argument("-o", "--output", type=Path, required=True)
    a = p.parse_args()
    summary = summarize(a.run, a.command, a.wall_s, a.load)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"{a.output}: {summary['final']['split']} accuracy {summary['final']['accuracy']:.4f}")


if __name__ == "__main__":
    main()
