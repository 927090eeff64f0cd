"""The grid: targets x blocks (backend, variant) x cells (padding, batch size), resumable.

Each block is timed in its own subprocess (``isolation="process"``) or in this process (``"inline"``). Results
are saved to ``results.json`` after every cell, so an interrupted sweep resumes where it stopped; a cell that
raises — or whose worker dies — is recorded as failed with its error and the sweep goes on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.benchmark import results as store
from bertdeploy.benchmark.config import BenchConfig
from bertdeploy.benchmark.isolation import run_block_subprocess
from bertdeploy.benchmark.machine import cpu_flags
from bertdeploy.benchmark.targets import Target, load_eval_set, resolve_target
from bertdeploy.errors import UserError

Progress = Callable[[dict[str, Any]], None]
NO_BF16 = "bf16 skipped: no native bf16 on this CPU (no avx512_bf16 / amx_bf16); emulated bf16 times the emulation"
EVAL_PADDING = "dynamic"
OUTPUTS = ("results.json", "results.csv", "report.md", "config.json", "plots", ".work")


@dataclass
class Block:
    """One (target, backend, variant): loaded once, timed over its cells."""

    target: Target
    backend: str
    variant: str
    cells: list[dict[str, Any]] = field(default_factory=list)
    skip: str | None = None
    """Known before running: the reason every cell of the block is skipped."""

    @property
    def key(self) -> str:
        return store.group_key(self.target.name, self.backend, self.variant)


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    from bertdeploy.benchmark.machine import gpus

    try:
        import onnxruntime as ort

        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:  # pragma: no cover
        cuda = False
    return "cuda" if cuda and gpus() else "cpu"


def resolve_targets(cfg: BenchConfig) -> list[Target]:
    if not cfg.targets:
        raise UserError("give at least one TARGET (a bundle, a training run or a model preset)")
    targets, seen = [], set()
    for spec in cfg.targets:
        t = resolve_target(spec, cfg.max_length)
        base, n = t.name, 2
        while t.name in seen:
            t.name, n = f"{base}-{n}", n + 1
        seen.add(t.name)
        targets.append(t)
    return targets


def bertdeploy_variants(cfg: BenchConfig, target: Target) -> tuple[list[str], dict[str, str]]:
    """The variants to time and, for those that will not run, why."""
    if target.kind == "bundle":
        from bertdeploy.bundle import read_manifest

        m = read_manifest(target.bundle)
        accepted = [v.name for v in m.variants]
        wanted = cfg.variants or accepted
        why = {r.get("name"): f"rejected at export: {r.get('reason')}" for r in m.rejected}
        return wanted, {v: why.get(v, "not in the bundle") for v in wanted if v not in accepted}
    wanted = cfg.variants or cfg.export_variants
    if target.kind == "run" and not cfg.export:
        return wanted, dict.fromkeys(wanted, "training run: pass --export to time bertdeploy variants")
    return wanted, {}


def plan(cfg: BenchConfig, target: Target) -> list[Block]:
    blocks: list[Block] = []
    no_torch = "no PyTorch model for this target (pass the training run dir as a target)"
    for backend in cfg.backends:
        if backend == "torch":
            bf16 = None if cfg.device != "cpu" or {"avx512_bf16", "amx_bf16"} & cpu_flags() else NO_BF16
            ok = target.hf_dir or target.kind == "preset"
            blocks += [
                Block(target, "torch", d, skip=(None if ok else no_torch) or (bf16 if d == "bf16" else None))
                for d in cfg.torch_dtypes
            ]
        elif backend == "pipeline":
            blocks.append(
                Block(target, "pipeline", "fp32", skip=None if target.hf_dir or target.kind == "preset" else no_torch)
            )
        elif backend == "ortmodel":
            blocks.append(Block(target, "ortmodel", "fp32"))
        elif backend == "bertdeploy":
            wanted, why = bertdeploy_variants(cfg, target)
            blocks += [Block(target, "bertdeploy", v, skip=why.get(v)) for v in wanted]
    for b in blocks:
        b.cells = [
            {"key": store.cell_key(target.name, b.backend, b.variant, p, bs), "padding": p, "batch_size": bs}
            for p in cfg.padding
            for bs in sorted(cfg.batch_sizes)
        ]
    return blocks


class Sweep:
    def __init__(self, cfg: BenchConfig, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.progress = progress or (lambda event: None)
        self.out = Path(cfg.output)
        self.work = self.out / ".work"
        self.threads = cfg.resolved_threads
        self.device = resolve_device(cfg.device)

    # ------------------------------------------------------------------ setup
    def _open(self) -> dict[str, Any]:
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"output path exists and is a file: {self.out}")
        previous = store.read(self.out / "results.json") if self.cfg.resume and not self.cfg.overwrite else None
        ours = [self.out / n for n in OUTPUTS if (self.out / n).exists()]
        if ours and previous is None:  # other files (a config.yaml, a README) may live beside the results
            if not self.cfg.overwrite:
                raise UserError(f"{self.out} holds earlier results that cannot be resumed (pass --overwrite)")
            for p in ours:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        res = store.empty(self.cfg.to_dict())
        self.previous = previous
        self.done = store.finished_cells(previous)
        if previous:
            res["started"] = previous.get("started", res["started"])
            res["groups"] = previous.get("groups", {})
            res["targets"] = previous.get("targets", {})
        return res

    def _save(self) -> None:
        store.save(self.out / "results.json", self.results)

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        from bertdeploy.benchmark.gemm import measure_peak
        from bertdeploy.benchmark.machine import load_average, machine_info, versions

        targets = resolve_targets(self.cfg)
        self.results = self._open()
        prev = self.previous or {}
        plans = [(t, plan(self.cfg, t)) for t in targets]
        self.order = {c["key"]: i for i, c in enumerate(c for _, bl in plans for b in bl for c in b.cells)}
        self.results["cells"] = [c for k, c in self.done.items() if k in self.order]
        self.progress({"type": "plan", "total": len(self.order), "done": len(self.results["cells"])})
        pending = len(self.order) - len(self.results["cells"])
        for key in ("machine", "versions", "load", "gemm"):  # a resume that measures nothing keeps them
            if prev.get(key):
                self.results[key] = prev[key]
        if pending or not prev:
            self.results["machine"] = {**machine_info(self.threads), "device": self.device}
            self.results["versions"] = versions()
            if prev.get("load"):
                self.results["load"].setdefault("resumed", []).append({"at": store.now(), "start": load_average()})
            else:
                self.results["load"] = {"start": load_average()}
        if self.cfg.gemm_seconds > 0 and (pending or not prev.get("gemm")):
            self.progress({"type": "stage", "message": f"fp32 GEMM peak on {self.threads} threads"})
            self.results["gemm"] = measure_peak(self.threads, self.cfg.gemm_seconds)
        self._save()
        for target, blocks in plans:
            self._run_target(target, blocks)
        if pending or not prev:
            self.results["load"]["end"] = load_average()
        self.results["cells"].sort(key=lambda c: self.order.get(c["key"], 1 << 30))
        self.results["complete"] = all(c["status"] in store.FINISHED for c in self.results["cells"])
        self._save()
        return self.results

    def cleanup(self) -> None:
        if not self.cfg.keep_work and self.results.get("complete"):
            shutil.rmtree(self.work, ignore_errors=True)

    def _pending(self, block: Block, fp: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in block.cells if c["key"] not in self.done or self.done[c["key"]].get("fingerprint") != fp]

    def _run_target(self, target: Target, blocks: list[Block]) -> None:
        fp = store.fingerprint(self.cfg, self.threads, self.device, target.max_length)
        entry = self.results["targets"].setdefault(target.name, {})
        entry.update(spec=target.spec, kind=target.kind, trained=target.trained, max_length=target.max_length)
        todo = [(b, self._pending(b, fp)) for b in blocks]
        todo = [(b, cells) for b, cells in todo if cells]
        if not todo:
            return
        for b, cells in todo:  # blocks known to be skipped need no model at all
            if b.skip:
                for c in cells:
                    self._record(b, {**c, "status": "skipped", "error": b.skip}, fp)
        todo = [(b, cells) for b, cells in todo if not b.skip]
        if not todo:
            return
        tdir = self.work / target.name
        tdir.mkdir(parents=True, exist_ok=True)
        texts_file, dims = self._prepare(target, tdir)
        for b, cells in todo:
            self.progress({"type": "stage", "message": f"{target.name}: {b.backend} {b.variant}"})
            g = self.results["groups"].get(b.key, {})
            need_eval = g.get("status") != "ok" or (g.get("logits") and not Path(g["logits"]).is_file())
            job = {
                "group": b.key,
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
                },
                "cells": cells,
                "texts_file": str(texts_file),
                "dims": dims,
                "settings": {
                    **{k: getattr(self.cfg, k) for k in store.TIMING_KEYS},
                    "eval": bool(need_eval),
                    "eval_padding": EVAL_PADDING,
                    "logits_out": str(tdir / f"logits_{b.backend}_{b.variant}.npy"),
                },
            }
            handler = self._handler(b, fp)
            if self.cfg.isolation == "inline":
                from bertdeploy.benchmark.worker import run_group

                run_group(job, handler)
            else:
                run_block_subprocess(job, tdir, handler, self.cfg.max_seconds)
        store.agreement(self.results)
        self._save()

    def _prepare(self, target: Target, tdir: Path) -> tuple[Path, dict[str, int]]:
        """Evaluation texts, the saved preset / temporary bundle, true token lengths and the encoder's dims."""
        from bertdeploy.benchmark import materialize
        from bertdeploy.benchmark.gemm import encoder_dims

        cfg = self.cfg
        ev = load_eval_set(
            target, cfg.data, cfg.text_column, cfg.label_column, cfg.timing_texts, cfg.eval_limit, cfg.seed
        )
        if target.kind == "preset":
            self.progress({"type": "stage", "message": f"{target.name}: building random-weight model"})
            target.hf_dir = materialize.save_preset(target, tdir / "hf", seed=cfg.seed)
        exportable = target.kind == "preset" or (target.kind == "run" and cfg.export)
        wants_bundle = "bertdeploy" in cfg.backends and exportable
        if wants_bundle and target.bundle is None:
            self.progress({"type": "stage", "message": f"{target.name}: exporting a temporary bundle"})
            wanted, _ = bertdeploy_variants(cfg, target)
            data = None if ev.split == "synthetic" else ev.source
            tcol, lcol = cfg.text_column or target.text_column, cfg.label_column or target.label_column
            export = materialize.export_bundle(target, tdir / "bundle", wanted, data, tcol, lcol)
            target.bundle = tdir / "bundle"
            target.notes.append(f"bertdeploy variants exported on the fly to {target.bundle}")
            self.results["targets"].setdefault(target.name, {})["export"] = export
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(target.tokenizer_file()))
        tok.enable_truncation(target.max_length)
        tok.no_padding()
        lengths = [len(e.ids) for e in tok.encode_batch(ev.timing_texts)]
        dims = encoder_dims(target.model_config())
        texts_file = tdir / "texts.json"
        texts_file.write_text(
            json.dumps(
                {
                    "eval_texts": ev.texts,
                    "eval_labels": ev.label_ids,
                    "timing_texts": ev.timing_texts,
                    "timing_lengths": lengths,
                }
            ),
            encoding="utf-8",
        )
        parity, bundle_info = {}, {}
        if target.bundle is not None:
            from bertdeploy.bundle import read_manifest

            manifest = read_manifest(target.bundle)
            parity = {v.name: v.parity for v in manifest.variants}
            bundle_info = {
                "created": manifest.raw.get("created"),
                "sha256": {v.name: v.sha256 for v in manifest.variants},
                "rejected": {r.get("name"): r.get("reason") for r in manifest.rejected},
            }
        self.results["targets"][target.name] = {
            **self.results["targets"].get(target.name, {}),
            "spec": target.spec,
            "kind": target.kind,
            "trained": target.trained,
            "labels": target.labels,
            "max_length": target.max_length,
            "eval": {"split": ev.split, "n": len(ev.texts), "source": ev.source, "labelled": ev.label_ids is not None},
            "timing": {"texts": len(lengths), "mean_tokens": sum(lengths) / max(len(lengths), 1)},
            "dims": dims,
            "bundle": str(target.bundle) if target.bundle else None,
            "parity": parity,
            "bundle_manifest": bundle_info,
            "notes": target.notes,
        }
        return texts_file, dims

    def _record(self, block: Block, cell: dict[str, Any], fp: dict[str, Any]) -> None:
        cell = {
            "target": block.target.name,
            "backend": block.backend,
            "variant": block.variant,
            **{k: v for k, v in cell.items() if k not in ("type", "group")},
            "fingerprint": fp,
            "measured": store.now(),
        }
        cells = self.results["cells"]
        cells[:] = [c for c in cells if c["key"] != cell["key"]] + [cell]
        self.done[cell["key"]] = cell
        self._save()
        self.progress({"type": "cell", "cell": cell})

    def _handler(self, block: Block, fp: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
        def on_event(ev: dict[str, Any]) -> None:
            if ev["type"] == "eval":
                self.results["groups"][block.key] = {k: v for k, v in ev.items() if k not in ("type", "group")}
                self._save()
            elif ev["type"] == "cell":
                self._record(block, ev, fp)
            elif ev["type"] == "cell_start":
                self.progress({"type": "cell_start", "key": ev["key"]})

        return on_event
