"""The work folder of a run (``OUTPUT.partial``): Trainer's checkpoints while training, kept after a kill so that
``--resume`` can continue.

A kill -9 can land while transformers writes ``checkpoint-N/`` (model, optimizer, scheduler, RNG state, then
``trainer_state.json`` last), so a checkpoint counts only when all of them are there and its trainer state parses
and names step N; resume takes the newest complete one and the incomplete ones are removed. The folder is ours
only when it holds our marker (or nothing but checkpoints and logs): anything else is never deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from bertdeploy.errors import UserError

MARKER = ".bertdeploy-partial"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
#: what Trainer writes into a checkpoint (weights: one of WEIGHTS); ``trainer_state.json`` comes last
REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_TRAINER_OWN = ("logs", "runs")


def is_ours(work: Path) -> bool:
    """True when ``work`` is a work folder bertdeploy made (marker), is empty, or holds checkpoints and logs only
    (the work folder of a run from before the marker)."""
    if (work / MARKER).is_file():
        return True
    names = [p.name for p in work.iterdir()]
    if not names:
        return True
    return all(_CHECKPOINT.match(n) or n in _TRAINER_OWN for n in names) and any(_CHECKPOINT.match(n) for n in names)


def check_ours(work: Path) -> None:
    if work.exists() and not (work.is_dir() and is_ours(work)):
        raise UserError(
            f"{work} exists but is not the work folder of an interrupted bertdeploy run; "
            "move it away or choose another --output"
        )


def claim(work: Path, incomplete: list[str] = ()) -> None:  # type: ignore[assignment]
    """Create ``work`` with our marker; remove the incomplete checkpoints found by :func:`find`."""
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text(json.dumps({"pid": os.getpid()}) + "\n", encoding="utf-8")
    for name in incomplete:
        shutil.rmtree(work / name, ignore_errors=True)


def discard(work: Path) -> None:
    """Remove a stale work folder (only ours: see :func:`check_ours`)."""
    check_ours(work)
    shutil.rmtree(work)


def incomplete_reason(path: Path) -> str | None:
    """Why ``checkpoint-N`` cannot be resumed from, or None when it is complete."""
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if not any((path / w).is_file() for w in WEIGHTS):
        missing.append(WEIGHTS[0])
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return "unreadable trainer_state.json"
    m = _CHECKPOINT.match(path.name)
    if not isinstance(state, dict) or m is None or state.get("global_step") != int(m.group(1)):
        return "trainer_state.json does not match the checkpoint"
    return None


def find(work: Path) -> tuple[str | None, list[str]]:
    """(the newest complete checkpoint, the names of incomplete ones) in ``work`` (which must be ours)."""
    if not work.is_dir():
        return None, []
    check_ours(work)
    found = sorted((int(m.group(1)), p) for p in work.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir())
    incomplete = [p.name for _, p in found if incomplete_reason(p)]
    complete = [p for _, p in found if p.name not in incomplete]
    return (str(complete[-1]) if complete else None), incomplete
