"""The typed bench report — :class:`Report` of :class:`Group` (one per target x backend x variant) and
:class:`Cell` (one per padding x batch size of a group) — its ``results.json`` form, resume bookkeeping, and the
flat rows every table, CSV and plot is made of.

results.json (``Report.to_dict``)::

    {"schema": "bertdeploy-bench/1", "name", "command", "config", "started", "updated", "complete", "task",
     "machine", "versions", "gemm", "load": {"start", "end"},
     "targets": {name: {spec, kind, task, trained, labels, max_length, eval: {split, n, source}, dims, notes,
                        reference_scores}},
     "groups": {"target|backend|variant": {status, n, metrics, logits, agreement_torch, max_abs_diff_torch,
                                           agreement_peer}},
     "cells": [{key, target, backend, variant, padding, batch_size, status, error, fingerprint, e2e, model,
                memory, info, load_start, load_end, measured,
                rounds: [{e2e, model, memory, load_start, load_end, measured}] (--repeats N > 1: every round)}],
     "pick": {...} | null}
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertdeploy.benchmark import scoring
from bertdeploy.bundle import write_json
from bertdeploy.outputs import relative_paths
from bertdeploy.tasks import DEFAULT

SCHEMA = "bertdeploy-bench/1"
FINISHED = ("ok", "skipped")
TIMING_KEYS = (
    "min_seconds",
    "min_iterations",
    "warmup_iterations",
    "max_seconds",
    "model_only",
    "timing_texts",
    "seed",
)
SEP = "|"
#: a cell's fields that each round of a multi-round sweep measures anew
ROUND_FIELDS = ("e2e", "model", "memory", "load_start", "load_end", "measured")
#: the block every other block's agreement is measured against: PyTorch eager in float32
REFERENCE_BACKEND, REFERENCE_DTYPE = "torch", "fp32"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True, order=True)
class GroupKey:
    """A block of the grid: one target timed with one backend and variant."""

    target: str
    backend: str
    variant: str

    def __str__(self) -> str:
        return SEP.join((self.target, self.backend, self.variant))

    @classmethod
    def parse(cls, text: str) -> GroupKey:
        return cls(*text.split(SEP))


@dataclass(frozen=True, order=True)
class CellKey:
    """One cell of a block: its padding mode and batch size."""

    group: GroupKey
    padding: str
    batch_size: int

    def __str__(self) -> str:
        return SEP.join((str(self.group), self.padding, str(self.batch_size)))

    @classmethod
    def parse(cls, text: str) -> CellKey:
        target, backend, variant, padding, batch = text.split(SEP)
        return cls(GroupKey(target, backend, variant), padding, int(batch))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class Cell:
    """The measurement of one cell (status ``ok`` | ``skipped`` | ``failed``)."""

    target: str
    backend: str
    variant: str
    padding: str
    batch_size: int
    status: str = "pending"
    error: str | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    """The timing settings it was measured with (a resume reuses it only when they are equal)."""
    e2e: dict[str, Any] | None = None
    """End-to-end timings (tokenization included): percentiles, seq/s, tokens/s, useful GFLOP/s."""
    model: dict[str, Any] | None = None
    """The same for the model alone on pre-tokenized batches (None where the engine has no such split)."""
    memory: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    """Facts of the loaded backend: file, bytes, precision, providers, load seconds."""
    load_start: list[float] | None = None
    load_end: list[float] | None = None
    measured: str | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """Every round's timings (``e2e``, ``model``, ``memory``, loads, time) when the sweep ran more than one; the
    fields above are then its median round's."""

    @property
    def key(self) -> CellKey:
        return CellKey(GroupKey(self.target, self.backend, self.variant), self.padding, int(self.batch_size))

    @property
    def round_count(self) -> int:
        """Rounds measured (a cell from before rounds, or of a one-round sweep: 1 when ok)."""
        return len(self.rounds) or int(self.status == "ok")

    def add_round(self, earlier: Cell | None) -> None:
        """Join this cell's timings to ``earlier``'s rounds (the same key and timing method, measured ok), then
        take the median round's (by end-to-end throughput) as the cell's own."""
        if self.status != "ok" or earlier is None or earlier.status != "ok":
            return
        if earlier.fingerprint != self.fingerprint:
            return
        rounds = [*(earlier.rounds or [earlier._round()]), self._round()]
        ranked = sorted(rounds, key=lambda r: (r.get("e2e") or {}).get("seq_per_s") or 0.0)
        median = ranked[(len(ranked) - 1) // 2]
        for name in ROUND_FIELDS:
            setattr(self, name, median.get(name))
        self.rounds = rounds
        self.error = self.error or earlier.error  # a failed round in between stays on record

    def _round(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ROUND_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return {"key": str(self.key), **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(**_known(cls, data))


@dataclass
class Group:
    """What a block measured once, on the evaluation texts: scores, logits, agreement with PyTorch."""

    status: str = "pending"
    n: int | None = None
    seconds: float | None = None
    padding: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    logits: str | None = None
    """Path of the saved predictions in the sweep's work folder: logits (``.npy``), or entities / answers
    (``.json``) for token classification / question answering (:mod:`bertdeploy.benchmark.scoring`)."""
    error: str | None = None
    agreement_torch: float | None = None
    """Share of the evaluation records predicted as PyTorch fp32 predicts them (the task's rule)."""
    max_abs_diff_torch: float | None = None
    agreement_source: str | None = None
    """``measured`` (against PyTorch fp32 in this run) or ``export`` (the bundle's gate record)."""
    agreement_peer: float | None = None
    """The same share against the task's named peer (the transformers pipeline for token classification and
    question answering: "same entities", "same answers"); None where the peer is PyTorch fp32 or did not run."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Group:
        return cls(**_known(cls, data))

    def logits_file(self) -> Path | None:
        return Path(self.logits) if self.logits and Path(self.logits).is_file() else None


def _clean(x: Any) -> Any:
    """NaN/inf -> None so results.json is strict JSON."""
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


@dataclass
class Report:
    """One sweep's results (``results.json``), built and resumed by :class:`bertdeploy.benchmark.sweep.Sweep`."""

    config: dict[str, Any]
    name: str | None = None
    command: str | None = None
    started: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    complete: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    gemm: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[GroupKey, Group] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    pick: dict[str, Any] | None = None
    task: str = DEFAULT
    """The task every target of the sweep has (results written before tasks: text classification)."""
    schema: str = SCHEMA

    @classmethod
    def new(cls, config: dict[str, Any]) -> Report:
        return cls(config=config, name=config.get("name"), command=config.get("command"))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("groups", "cells")}
        out["groups"] = {str(k): g.to_dict() for k, g in self.groups.items()}
        out["cells"] = [c.to_dict() for c in self.cells]
        schema = out.pop("schema")
        return _clean({"schema": schema, **out})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        plain = _known(cls, {k: v for k, v in data.items() if k not in ("groups", "cells")})
        report = cls(**plain)
        report.groups = {GroupKey.parse(k): Group.from_dict(g) for k, g in (data.get("groups") or {}).items()}
        report.cells = [Cell.from_dict(c) for c in data.get("cells") or []]
        return report

    @classmethod
    def read(cls, path: Path) -> Report | None:
        """An earlier results.json, or None when absent / not ours (then the sweep starts fresh)."""
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            return None
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError, KeyError, AttributeError):
            return None

    def save(self, path: Path) -> None:
        self.updated = now()
        write_json(path, relative_paths(self.to_dict()))

    def finished(self) -> dict[CellKey, Cell]:
        """Cells that need not be redone (ok or skipped; failed ones are retried)."""
        return {c.key: c for c in self.cells if c.status in FINISHED}

    def put(self, cell: Cell) -> None:
        """Add ``cell``, replacing an earlier measurement of the same key."""
        self.cells[:] = [c for c in self.cells if c.key != cell.key] + [cell]

    def agreement(self) -> None:
        """Agreement of every group with PyTorch fp32 of the same target (the task's rule,
        :func:`bertdeploy.benchmark.scoring.agreement`; plus the max |logit diff| where predictions are logits),
        measured on the evaluation records; where PyTorch did not run, a bundle variant's parity from export time
        is used when the gate counts it the same way. And agreement with the task's named peer."""
        task = scoring.bench_task(self.task)
        for key, g in self.groups.items():
            if g.status != "ok":
                continue
            ref_file = self._predictions(GroupKey(key.target, REFERENCE_BACKEND, REFERENCE_DTYPE))
            mine = g.logits_file()
            if ref_file is not None:
                if mine is not None:
                    share, diff = scoring.agreement(task.name, scoring.load(mine), scoring.load(ref_file))
                    if share is not None:
                        g.agreement_torch, g.max_abs_diff_torch, g.agreement_source = share, diff, "measured"
            elif key.backend == "bertdeploy" and g.agreement_torch is None and task.export_agreement:
                parity = (self.targets.get(key.target, {}).get("parity") or {}).get(key.variant) or {}
                agree = parity.get("agreement", parity.get("argmax_agreement"))
                if agree is not None:
                    g.agreement_torch = agree
                    g.max_abs_diff_torch = parity.get("max_diff", parity.get("max_abs_diff"))
                    g.agreement_source = "export"
            peer = self._predictions(GroupKey(key.target, *task.peer)) if task.peer else None
            if peer is not None and mine is not None and task.peer != (REFERENCE_BACKEND, REFERENCE_DTYPE):
                g.agreement_peer = scoring.agreement(task.name, scoring.load(mine), scoring.load(peer))[0]

    def _predictions(self, key: GroupKey) -> Path | None:
        g = self.groups.get(key)
        return g.logits_file() if g is not None and g.status == "ok" else None

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per cell (for the CSV, the tables and the plots), with the group's accuracy and
        agreement and the GEMM share joined in."""
        peak = (self.gemm or {}).get("peak_gflops")
        keys = [k for k, _ in scoring.bench_task(self.task).columns]
        return [
            _row(c, self.targets.get(c.target, {}), self.groups.get(c.key.group) or Group(), peak, keys)
            for c in self.cells
        ]


def fingerprint(cfg: Any, threads: int, device: str, max_length: int) -> dict[str, Any]:
    """What must be equal for an earlier cell to be reused on resume."""
    fp = {k: getattr(cfg, k) for k in TIMING_KEYS}
    fp.update(threads=threads, device=device, max_length=max_length, max_tokens=getattr(cfg, "max_tokens", None))
    return fp


def _row(c: Cell, t: dict[str, Any], g: Group, peak: float | None, metrics: list[str]) -> dict[str, Any]:
    info, fp = c.info or {}, c.fingerprint or {}
    e2e, model, mem = c.e2e or {}, c.model or {}, c.memory or {}
    trained = t.get("trained")
    row: dict[str, Any] = {
        "target": c.target,
        "kind": t.get("kind"),
        "trained": trained,
        "backend": c.backend,
        "variant": c.variant,
        "runs": info.get("variant", c.variant),  # the variant that ran: load()'s pick where variant is "auto"
        "precision": info.get("precision"),
        "padding": c.padding,
        "batch_size": c.batch_size,
        "max_length": fp.get("max_length"),
        "threads": fp.get("threads"),
        "status": c.status,
        "rounds": c.round_count,
    }
    for prefix, m in (("e2e", e2e), ("model", model)):
        for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "seq_per_s", "tokens_per_s", "useful_gflops"):
            row[f"{prefix}_{k}"] = m.get(k)
        row[f"{prefix}_iterations"] = m.get("iterations")
        row[f"{prefix}_capped"] = m.get("capped")
    best = model.get("useful_gflops") or e2e.get("useful_gflops")
    rates = [(r.get("e2e") or {}).get("seq_per_s") for r in c.rounds]
    row["e2e_seq_per_s_rounds"] = "/".join(f"{x:.4g}" for x in rates if x is not None) or None
    row.update(
        tokens_per_batch=e2e.get("tokens_per_batch"),
        gemm_peak_gflops=peak,
        peak_share=best / peak if best and peak else None,
        rss_mb=mem.get("rss_mb"),
        peak_rss_mb=mem.get("peak_rss_mb"),
        gpu_peak_mb=mem.get("gpu_peak_mb"),
        size_mb=info["bytes"] / 2**20 if info.get("bytes") else None,
        providers=",".join(info.get("providers") or []),
        **{k: g.metrics.get(k) if trained else None for k in metrics},  # the task's metrics (primary first)
        agreement_torch=g.agreement_torch,
        max_abs_diff_torch=g.max_abs_diff_torch,
        agreement_source=g.agreement_source,
        agreement_peer=g.agreement_peer,
        load_1m_start=(c.load_start or [None])[0],
        load_1m_end=(c.load_end or [None])[0],
        error=(c.error or "").splitlines()[0][:200] if c.error else None,
    )
    return row
