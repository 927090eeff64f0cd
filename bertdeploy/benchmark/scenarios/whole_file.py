"""The ``whole-file`` scenario: every engine over a whole file of texts, end to end (raw strings in, labels out),
each in its own process, timed in interleaved rounds.

All workers are started and loaded first (idle ones blocked on stdin), then timed engine A, B, C, ..., A, B, C, ...
so that a burst of outside load hits every engine alike; each keeps its best round (texts/s) and the median. An
optional batch-1 pass times the first N texts one call each (percentiles: :func:`bertdeploy.benchmark.timing.
percentiles`, the one definition of every bench result). Engines are bench backends
(:mod:`bertdeploy.benchmark.backends`) written ``BACKEND:VARIANT[:PADDING]``: ``bertdeploy:qint8``,
``bertdeploy:fp32:static``, ``ortmodel:fp32`` (or ``ortmodel:qint8``: ORTModel on that bundle variant's file),
``torch:int8``, ``pipeline:fp32``, ``openvino:fp32`` / ``openvino:bf16`` / ``openvino:nncf``. ``data``
``synthetic:L[:N]`` times N texts of L/2..L tokens glued from ``source`` (the sequence-length rows; the bundle needs
``max_length`` >= L).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.benchmark.contract import RUNTIME_DEFAULT
from bertdeploy.benchmark.scenarios.common import data_file, read_texts, write_results
from bertdeploy.benchmark.timing import percentiles
from bertdeploy.errors import UserError
from bertdeploy.machine import load_average, machine_info, versions


@dataclass
class WholeFileConfig:
    """One whole-file run."""

    bundle: str
    data: str
    """A text file (csv / tsv / jsonl / parquet) or dataset folder (its test split), or ``synthetic:L[:N]``."""
    output: str
    engines: list[str] = field(default_factory=lambda: ["ortmodel:fp32", "bertdeploy:fp32"])
    hf: str | None = None
    """The training run (PyTorch model) for the torch / pipeline engines; default: the bundle's recorded source."""
    source: str | None = None
    """Texts glued into ``synthetic:L`` ones (default: ``data``'s folder test split is not known: required)."""
    threads: int = 2
    repeats: int = 3
    min_seconds: float = 2.0
    """Each round passes over the file as many times as take at least this long (0: once)."""
    latency: int = 0
    """Batch-1 pass over the first N texts (0: none)."""
    texts: int | None = None
    text_column: str = "text"
    label_column: str = "label"
    calibration: int = 300
    """Training rows NNCF may calibrate on (``openvino:nncf``)."""
    max_tokens: int | None = None
    """Token budget of a model call of the self-batching engines (bertdeploy, openvino); None: what ``load(bundle)``
    uses for each bertdeploy engine, and its budget on ONNX Runtime's CPU EP for OpenVINO."""
    command: str | None = None

    def __post_init__(self) -> None:
        if not self.engines or self.repeats < 1 or self.latency < 0 or self.min_seconds < 0:
            raise UserError("whole-file needs at least one engine, repeats >= 1, latency >= 0 and min_seconds >= 0")
        from bertdeploy.benchmark.scenarios.whole_file_worker import parse_engine

        for engine in self.engines:
            parse_engine(engine)  # a malformed spec fails here, before any worker starts


def synthetic_texts(bundle: str, source: list[str], length: int, n: int | None = None, seed: int = 0) -> list[str]:
    """``n`` texts (default 32768 // length) of length/2..length tokens each, ``source`` texts glued together."""
    import random

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    rng, out = random.Random(seed), []
    for _ in range(n or max(16, 32768 // length)):
        want, words = rng.randint(length // 2, length), []
        while len(tok.encode(" ".join(words)).ids) < want:
            words += (rng.choice(source) + " .").split()
        while len(tok.encode(" ".join(words)).ids) > want:
            words.pop()
        out.append(" ".join(words))
    return out


def load_data(cfg: WholeFileConfig) -> tuple[list[str], list[str]]:
    """(texts, gold labels; empty for synthetic texts or a file without the label column)."""
    if cfg.data.startswith("synthetic:"):
        _, length, *n = cfg.data.split(":")
        if not cfg.source:
            raise UserError("synthetic data needs a source file of texts to glue (--data synthetic:L with source=...)")
        return synthetic_texts(cfg.bundle, read_texts(cfg.source), int(length), int(n[0]) if n else None), []
    texts = read_texts(cfg.data, cfg.text_column, cfg.texts)
    try:
        gold = read_texts(cfg.data, cfg.label_column, cfg.texts)
    except UserError:
        gold = []
    return texts, gold


def _jobs(cfg: WholeFileConfig, work: Path, texts: list[str], gold: list[str]) -> list[Path]:
    from bertdeploy.benchmark.targets import resolve_target

    target = resolve_target(cfg.bundle)
    labels = target.labels
    gold = [labels[int(g)] if g.isdigit() and g not in labels else g for g in gold]
    (work / "data.json").write_text(json.dumps({"texts": texts, "gold": gold}), encoding="utf-8")
    train = Path(data_file(cfg.source or cfg.data)).with_name("train.csv")
    calibration = read_texts(str(train), cfg.text_column, cfg.calibration) if train.is_file() else texts[:300]
    hf = cfg.hf or (str(target.hf_dir) if target.hf_dir else None)
    files = []
    for i, engine in enumerate(cfg.engines):
        job = {"engine": engine, "bundle": str(target.bundle), "hf": hf, "labels": labels, "threads": cfg.threads}
        job |= {"max_length": target.max_length, "data_file": str(work / "data.json")}
        job["max_tokens"] = RUNTIME_DEFAULT if cfg.max_tokens is None else cfg.max_tokens
        job["calibration"] = calibration if engine.startswith("openvino:nncf") else []
        files.append(work / f"job_{i}.json")
        files[-1].write_text(json.dumps(job), encoding="utf-8")
    return files


class _Worker:
    def __init__(self, engine: str, job: Path, log: Path) -> None:
        module = "bertdeploy.benchmark.scenarios.whole_file_worker"
        self.engine, self.log = engine, open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, str(job)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True,
        )  # fmt: skip
        hello = self.read()
        self.skip: str | None = hello.get("skip")
        if self.skip is not None:
            self.close()
            return
        if not hello.get("ready"):
            self.close()
            tail = log.read_text(encoding="utf-8", errors="replace")[-800:]
            raise UserError(f"{engine}: the worker failed to start; the end of its log:\n{tail}")
        self.info = hello.get("info", {})

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        return json.loads(self.proc.stdout.readline() or "{}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


def measure(cfg: WholeFileConfig, work: Path, log: Callable[[str], None]) -> tuple[list[dict], list, list[dict]]:
    """Start every worker, time interleaved rounds and the batch-1 pass; one result dict per engine, the 1-minute
    load average before and after each round, and the engines that cannot run here with the reason."""
    texts, gold = load_data(cfg)
    jobs = _jobs(cfg, work, texts, gold)
    workers: list[_Worker] = []
    skipped: list[dict] = []
    try:
        for i, (engine, job) in enumerate(zip(cfg.engines, jobs, strict=True)):
            worker = _Worker(engine, job, work / f"log_{i}.txt")
            if worker.skip is not None:
                log(f"{engine} skipped: {worker.skip}")
                skipped.append({"engine": engine, "reason": worker.skip})
                continue
            workers.append(worker)
        if not workers:
            raise UserError("no engine can run here: " + "; ".join(f"{s['engine']}: {s['reason']}" for s in skipped))
        rounds: dict[str, list[dict]] = {w.engine: [] for w in workers}
        loads = [load_average()]
        for r in range(cfg.repeats):
            for w in workers:
                time.sleep(0.5)  # let the previous engine's threads stop spinning
                rounds[w.engine].append(w.ask(f"run {cfg.min_seconds}"))
            loads.append(load_average())
            log(f"round {r + 1}/{cfg.repeats} done, load {loads[-1]}")
        lat = {w.engine: w.ask(f"lat {cfg.latency}")["latencies_ms"] for w in workers if cfg.latency}
        return [_result(w, rounds[w.engine], w.ask("done"), lat.get(w.engine)) for w in workers], loads, skipped
    finally:
        for w in workers:
            w.close()


def _result(w: _Worker, rounds: list[dict], final: dict, latencies: list[float] | None) -> dict[str, Any]:
    rates = [final["texts"] * r["passes"] / r["seconds"] for r in rounds]
    res = {"engine": w.engine, "info": w.info, "rounds": rounds, **final}
    res["texts_per_s"] = max(rates)
    res["texts_per_s_median"] = statistics.median(rates)
    res["load_at_best"] = rounds[rates.index(max(rates))]["load_1m"]
    if latencies:
        res["batch1"] = {f"{k}_ms": v for k, v in percentiles(latencies).items()} | {"n": len(latencies)}
    return res


def run_whole_file(cfg: WholeFileConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run the scenario; write ``results.json`` and ``report.md`` into ``cfg.output`` (and the results block of a
    ``README.md`` there); return the results."""
    out = Path(cfg.output)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    with tempfile.TemporaryDirectory(prefix="bertdeploy-whole-file-") as work:  # the texts and the workers' logs
        runs, loads, skipped = measure(cfg, Path(work), log)
    results = {
        "scenario": "whole-file",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "config": asdict(cfg),
        "machine": machine_info(cfg.threads),
        "versions": versions(),
        "loads": loads,
        "runs": runs,
        "skipped": skipped,
    }
    write_results(results, out, report(results))
    return results


def report(res: dict[str, Any]) -> str:
    """The Markdown table of a whole-file run (x ORTModel = against ``ortmodel`` on the same precision)."""
    cfg, m, runs = res["config"], res["machine"], res["runs"]
    ref = runs[0]
    by = {r["engine"]: r for r in runs}
    head = (
        f"Measured {res['date']} on {m['cpu']} ({m['usable_cpus']} usable CPUs), {cfg['threads']} threads, "
        f"{ref['texts']} texts of `{cfg['data']}`, bundle `{cfg['bundle']}`, best / median of {cfg['repeats']} "
        f"interleaved rounds of at least {cfg.get('min_seconds', 0)} s (whole passes over the file), each engine in "
        f"its own process; 1-minute load before and after each round: "
        f"{[x[0] if x else None for x in res['loads']]}. Command: `{cfg.get('command') or 'run_whole_file(...)'}`"
    )
    rows = [
        f"| engine | texts/s best | median | x ORTModel | batch-1 p50 / p90 ms | accuracy | same label as "
        f"`{ref['engine']}` | load 1m at best |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        precision = (r["info"] or {}).get("precision", "fp32")
        peer = next((p for e, p in by.items() if e.startswith("ortmodel:") and _precision(p) == precision), None)
        same = label_agreement(r, ref)
        b1 = r.get("batch1")
        resolved = (r["info"] or {}).get("variant")  # what `auto` chose on this machine
        cells = [
            f"`{r['engine']}`" + (f" ({resolved})" if resolved and r["engine"].split(":")[1] == "auto" else ""),
            f"{r['texts_per_s']:.1f}",
            f"{r['texts_per_s_median']:.1f}",
            f"{r['texts_per_s'] / peer['texts_per_s']:.2f}" if peer and peer is not r else "–",
            f"{b1['p50_ms']:.2f} / {b1['p90_ms']:.2f}" if b1 else "–",
            f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "–",
            f"{same:.2%}",
            f"{r['load_at_best']:.2f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    skips = [f"`{s['engine']}` skipped: {s['reason']}" for s in res.get("skipped", [])]
    return head + "\n\n" + "\n".join(rows) + ("\n\n" + "\n".join(f"- {s}" for s in skips) if skips else "")


def label_agreement(run: dict[str, Any], ref: dict[str, Any]) -> float:
    """The share of texts whose label in ``run`` equals the one in ``ref`` (two runs of one whole-file result)."""
    return sum(a == b for a, b in zip(run["labels"], ref["labels"], strict=True)) / max(1, len(run["labels"]))


def _precision(run: dict[str, Any]) -> str:
    return (run.get("info") or {}).get("precision", "fp32")
