"""The sweep: targets x blocks (backend, variant) x cells (padding, batch size), resumable.

Each block is timed in its own subprocess (``isolation="process"``) or in this process (``"inline"``). Results
are saved to ``results.json`` after every cell, so an interrupted sweep resumes where it stopped; a cell that
raises — or whose worker dies — is recorded as failed with its error and the sweep goes on.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertdeploy.benchmark.config import BenchConfig
from bertdeploy.benchmark.contract import RUNTIME_DEFAULT
from bertdeploy.benchmark.isolation import run_block_subprocess
from bertdeploy.benchmark.plan import Block, plan, resolve_targets
from bertdeploy.benchmark.results import FINISHED, TIMING_KEYS, Cell, Group, Report, fingerprint, now
from bertdeploy.benchmark.targets import Target
from bertdeploy.errors import UserError
from bertdeploy.machine import load_average, machine_info, versions
from bertdeploy.outputs import KINDS, check_inputs, check_output_dir, kind_of

Progress = Callable[[dict[str, Any]], None]
EVAL_PADDING = "dynamic"
OUTPUTS = ("results.json", "results.csv", "report.md", "config.json", "plots", ".work")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when this onnxruntime build offers CUDA, else ``cpu``."""
    if device != "auto":
        return device
    from bertdeploy.runtime.session import resolve_device as runtime_device

    return "cpu" if runtime_device("auto") == "cpu" else "cuda"


class Sweep:
    def __init__(self, cfg: BenchConfig, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.progress = progress or (lambda event: None)
        self.out = Path(cfg.output)
        self.work = self.out / ".work"
        self.threads = cfg.resolved_threads
        self.device = resolve_device(cfg.device)
        self.report = Report.new(cfg.to_dict())
        self.previous: Report | None = None
        self.done: dict = {}
        self.created = False
        self.round = 0

    # ------------------------------------------------------------------ setup
    def check_output(self) -> None:
        """Before any work: the output folder is not a file, not (inside) a target or the data, and the names
        the sweep writes are either free or ours (a bench ``results.json``): bench never replaces other files."""
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"output path exists and is a file: {self.out}")
        inputs = [*self.cfg.targets, self.cfg.data]
        check_inputs(self.out, inputs)
        if self.cfg.pick_output:
            pick = Path(self.cfg.pick_output).resolve()
            if pick == self.out.resolve() or pick in self.out.resolve().parents:
                raise UserError(f"--pick-output {self.cfg.pick_output} would replace the bench output {self.out}")
            check_output_dir(self.cfg.pick_output, self.cfg.overwrite, "--pick-output", "bundle", inputs)
        taken = [n for n in OUTPUTS if (self.out / n).exists()]
        if taken and kind_of(self.out) != "bench":
            found = kind_of(self.out)
            what = f"it is a {KINDS[found].label}" if found else "no bench results.json"
            raise UserError(
                f"refusing to write into {self.out}: it holds {', '.join(taken)} but {what}; choose another --output"
            )

    def _open(self) -> Report:
        self.check_output()
        resumable = self.cfg.resume and not self.cfg.overwrite
        previous = Report.read(self.out / "results.json") if resumable else None
        ours = [self.out / n for n in OUTPUTS if (self.out / n).exists()]
        if ours and previous is None:  # other files (a config.yaml, a README) may live beside the results
            if not self.cfg.overwrite:
                raise UserError(f"{self.out} holds earlier results that cannot be resumed (pass --overwrite)")
            for p in ours:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        self.created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        report = Report.new(self.cfg.to_dict())
        self.previous = previous
        self.done = previous.finished() if previous else {}
        if previous:
            report.started, report.groups, report.targets = previous.started, previous.groups, previous.targets
        return report

    def _save(self) -> None:
        self.report.save(self.out / "results.json")

    def _machine(self, pending: int) -> None:
        """Machine, versions, load and GEMM peak: kept from the earlier run when nothing is re-measured."""
        from bertdeploy.benchmark.gemm import measure_peak

        prev, rep = self.previous, self.report
        if prev is not None:
            rep.machine, rep.versions, rep.load, rep.gemm = prev.machine, prev.versions, prev.load, prev.gemm
        if pending or prev is None:
            rep.machine = {**machine_info(self.threads), "device": self.device}
            rep.versions = versions()
            if prev is not None and prev.load:
                rep.load.setdefault("resumed", []).append({"at": now(), "start": load_average()})
            else:
                rep.load = {"start": load_average()}
        if self.cfg.gemm_seconds > 0 and (pending or not (prev and prev.gemm)):
            self.progress({"type": "stage", "message": f"fp32 GEMM peak on {self.threads} threads"})
            rep.gemm = measure_peak(self.threads, self.cfg.gemm_seconds)

    # ------------------------------------------------------------------ run
    def run(self) -> Report:
        targets = resolve_targets(self.cfg)
        self.report = self._open()
        try:
            return self._run(targets)
        except UserError:
            self._discard_if_nothing_measured()
            raise

    def _discard_if_nothing_measured(self) -> None:
        """A sweep refused before its first measured cell (bad data, a bad column) leaves nothing behind; cells
        recorded as skipped without running (a backend this machine lacks) are not measurements."""
        if self.previous is not None or any(c.status != "skipped" for c in self.report.cells):
            return
        for name in OUTPUTS:
            p = self.out / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if self.created and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()

    def _run(self, targets: list[Target]) -> Report:
        self.report.task = targets[0].task  # one task per sweep (resolve_targets checks)
        plans = [(t, plan(self.cfg, t)) for t in targets]
        order = {key: i for i, key in enumerate(k for _, blocks in plans for b in blocks for k in b.cells)}
        self.report.cells = [c for k, c in self.done.items() if k in order]
        reps = self.cfg.repeats
        done = sum(min(c.round_count, reps) if c.status == "ok" else reps for c in self.report.cells)
        self.progress({"type": "plan", "total": len(order) * reps, "done": done})
        pending = len(order) * reps - done  # cell-rounds to time: a resume adding rounds measures anew
        self._machine(pending)
        self._save()
        for r in range(self.cfg.repeats):  # round r times the cells that have fewer than r + 1 rounds
            self.round = r
            for target, blocks in plans:
                self._run_target(target, blocks, r)
        if pending or self.previous is None:
            self.report.load["end"] = load_average()
        self.report.cells.sort(key=lambda c: order.get(c.key, 1 << 30))
        self.report.complete = all(c.status in FINISHED for c in self.report.cells)
        self._save()
        return self.report

    def cleanup(self) -> None:
        if not self.cfg.keep_work and self.report.complete:
            shutil.rmtree(self.work, ignore_errors=True)

    def _pending(self, block: Block, fp: dict[str, Any], round_: int = 0) -> list[Any]:
        """Cells of ``block`` that round ``round_`` (0-based) times: not finished with these timing settings, or
        measured ok in fewer rounds than ``round_ + 1``."""
        done = self.done
        return [
            k
            for k in block.cells
            if k not in done or done[k].fingerprint != fp or (done[k].status == "ok" and done[k].round_count <= round_)
        ]

    def _run_target(self, target: Target, blocks: list[Block], round_: int = 0) -> None:
        fp = fingerprint(self.cfg, self.threads, self.device, target.max_length)
        entry = self.report.targets.setdefault(target.name, {})
        entry.update(spec=target.spec, kind=target.kind, trained=target.trained, max_length=target.max_length)
        todo = [(b, cells) for b in blocks if (cells := self._pending(b, fp, round_))]
        for b, cells in todo:  # blocks known to be skipped need no model at all
            if b.skip:
                for k in cells:
                    self._record(b, {"padding": k.padding, "batch_size": k.batch_size, "status": "skipped",
                                     "error": b.skip}, fp)  # fmt: skip
        todo = [(b, cells) for b, cells in todo if not b.skip]
        if not todo:
            return
        tdir = self.work / target.name
        tdir.mkdir(parents=True, exist_ok=True)
        from bertdeploy.benchmark.materialize import prepare_target

        texts_file, dims = prepare_target(self, target, tdir)
        for b, cells in todo:
            of = f" (round {round_ + 1}/{self.cfg.repeats})" if self.cfg.repeats > 1 else ""
            self.progress({"type": "stage", "message": f"{target.name}: {b.backend} {b.variant}{of}"})
            job = self._job(target, b, cells, texts_file, dims, tdir)
            handler = self._handler(b, fp)
            if self.cfg.isolation == "inline":
                from bertdeploy.benchmark.worker import run_group

                run_group(job, handler)
            else:
                run_block_subprocess(job, tdir, handler, self.cfg.max_seconds)
        self.report.agreement()
        self._save()

    def _job(self, target: Target, b: Block, cells: list[Any], texts: Path, dims: dict, tdir: Path) -> dict:
        """The block's job as the worker reads it (JSON: it may cross a process boundary)."""
        g = self.report.groups.get(b.key)
        need_eval = g is None or g.status != "ok" or (g.logits and g.logits_file() is None)
        return {
            "group": str(b.key),
            "backend": b.backend,
            "variant": b.variant,
            "ctx": {
                "hf_dir": str(target.hf_dir) if target.hf_dir else None,
                "bundle": str(target.bundle) if target.bundle else None,
                "labels": target.labels,
                "max_length": target.max_length,
                "variant": b.variant,
                "threads": self.threads,
                "device": self.device,
                "max_batch_size": max(self.cfg.batch_sizes),
                "max_tokens": RUNTIME_DEFAULT if self.cfg.max_tokens is None else self.cfg.max_tokens,
                "task": target.task,
            },
            "cells": [{"key": str(k), "padding": k.padding, "batch_size": k.batch_size} for k in cells],
            "texts_file": str(texts),
            "dims": dims,
            "settings": {
                **{k: getattr(self.cfg, k) for k in TIMING_KEYS},
                "eval": bool(need_eval),
                "eval_padding": EVAL_PADDING,
                "logits_out": str(tdir / f"logits_{b.backend}_{b.variant}.npy"),
            },
        }

    def _record(self, block: Block, event: dict[str, Any], fp: dict[str, Any]) -> None:
        fields = {k: v for k, v in event.items() if k not in ("type", "group", "key")}
        key = block.key
        cell = Cell.from_dict({**fields, "target": key.target, "backend": key.backend, "variant": key.variant})
        cell.fingerprint, cell.measured = fp, now()
        earlier = self.done.get(cell.key)
        if cell.status != "ok" and earlier is not None and earlier.status == "ok" and earlier.fingerprint == fp:
            earlier.error = f"a later round: {cell.error}"  # its rounds stand; a resume retries the missing one
            cell = earlier
        else:
            cell.add_round(earlier)
        self.report.put(cell)
        self.done[cell.key] = cell
        self._save()
        weight = 1 if cell.status == "ok" else self.cfg.repeats - self.round  # not timed again in this sweep
        self.progress({"type": "cell", "cell": cell.to_dict(), "weight": weight})

    def _handler(self, block: Block, fp: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
        def on_event(ev: dict[str, Any]) -> None:
            if ev["type"] == "eval":
                self.report.groups[block.key] = Group.from_dict(ev)
                self._save()
            elif ev["type"] == "cell":
                self._record(block, ev, fp)
            elif ev["type"] == "cell_start":
                self.progress({"type": "cell_start", "key": ev["key"]})

        return on_event
