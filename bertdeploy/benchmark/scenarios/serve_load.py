"""The ``serve`` scenario: ``bertdeploy serve`` under load on loopback, beside offline ``predict`` on the same texts.

Each server (dynamic batching on and/or off) runs as a ``bertdeploy serve`` subprocess; each client is a thread
with its own keep-alive ``http.client`` connection sending one text per request, back to back (closed loop); every
text is sent once per cell. Rounds are interleaved (offline, then each server at each client count, then again) so
that a burst of outside load hits every cell alike; each cell keeps its best round and the median. Latency
percentiles are per request, as the client sees them (:func:`bertdeploy.benchmark.timing.percentiles`). Server CPU
per text is read from ``/proc/PID/stat`` (user + system), the client's and offline ``predict``'s from
:func:`os.times`: they do not depend on how busy the machine is.

Standard library + numpy + the runtime (no torch): it runs with the ``[serve]`` extra alone.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertdeploy.benchmark.scenarios.common import read_texts, write_results
from bertdeploy.benchmark.timing import percentiles
from bertdeploy.errors import UserError
from bertdeploy.machine import load_average, machine_info, versions

VERSIONS = ("onnxruntime", "tokenizers", "numpy", "starlette", "uvicorn", "orjson", "prometheus-client")


@dataclass
class ServeLoadConfig:
    """One serve load test."""

    bundle: str
    data: str
    """A csv / tsv / jsonl file (or a dataset folder: its test split) with a ``text`` column; each row is sent once."""
    output: str
    variant: str = "auto"
    """A bundle variant, or auto (what `serve` picks: int8 on a CPU)."""
    threads: int = 2
    clients: list[int] = field(default_factory=lambda: [1, 8, 32])
    modes: list[str] = field(default_factory=lambda: ["on", "off"])
    """Dynamic batching ``on`` and/or ``off`` (``--no-batching``): one server each."""
    repeats: int = 3
    texts: int | None = None
    """Only the first N texts."""
    max_wait_ms: float = 5.0
    serve_args: list[str] = field(default_factory=list)
    """More ``bertdeploy serve`` options, e.g. ``["--streams", "1"]``."""
    offline: bool = True
    """Also time offline ``predict`` (one stream, and one single-threaded stream per thread)."""
    text_column: str = "text"
    command: str | None = None

    def __post_init__(self) -> None:
        if not self.clients or min(self.clients) < 1 or self.repeats < 1:
            raise UserError("clients must be positive integers and repeats >= 1")
        if set(self.modes) - {"on", "off"} or not self.modes:
            raise UserError(f"batching modes are 'on' and/or 'off', got {self.modes}")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``) or, without it, of this process."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


@contextmanager
def server(cfg: ServeLoadConfig, batching: bool, ready_s: float = 120.0) -> Iterator[tuple[int, int]]:
    """A ``bertdeploy serve`` subprocess on a free loopback port; yields ``(pid, port)`` once ``/health`` is 200."""
    port = _free_port()
    cmd = [sys.executable, "-m", "bertdeploy", "serve", cfg.bundle, "--port", str(port), "--variant", cfg.variant]
    cmd += ["--threads", str(cfg.threads), "--max-wait-ms", str(cfg.max_wait_ms), "--max-queue", "1024"]
    cmd += ([] if batching else ["--no-batching"]) + list(cfg.serve_args)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                raise UserError(f"bertdeploy serve exited ({proc.returncode}): {proc.stderr.read()[-800:]}")
            try:
                if _get(port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise UserError(f"bertdeploy serve was not ready within {ready_s:g} s")
            time.sleep(0.1)
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def batch_stats(port: int) -> tuple[float, float]:
    """(texts, batches) the server has run so far, from its ``/metrics``."""
    text = _get(port, "/metrics")[1]
    total = re.search(r"^bertdeploy_batch_size_sum (\S+)$", text, re.M)
    count = re.search(r"^bertdeploy_batch_size_count (\S+)$", text, re.M)
    return (float(total.group(1)), float(count.group(1))) if total and count else (0.0, 0.0)


def load_run(port: int, pid: int, texts: list[str], clients: int) -> dict[str, Any]:
    """Each text once, by ``clients`` closed-loop clients: texts/s, latency percentiles (ms), mean batch size and
    the CPU the server and this (client) process spent per text."""
    lock, cursor, latencies, errors = threading.Lock(), iter(range(len(texts))), [], []
    headers = {"Content-Type": "application/json"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                body = json.dumps({"inputs": texts[i], "top_k": 1})
                start = time.perf_counter()
                conn.request("POST", "/predict", body, headers)
                r = conn.getresponse()
                answer = r.read()
                took = time.perf_counter() - start
                with lock:
                    (latencies if r.status == 200 else errors).append(took if r.status == 200 else answer)
        finally:
            conn.close()

    before = batch_stats(port)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    server_cpu, client_cpu, start = cpu_seconds(pid), cpu_seconds(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    server_cpu, client_cpu = cpu_seconds(pid) - server_cpu, cpu_seconds() - client_cpu
    after = batch_stats(port)
    if errors:
        raise UserError(f"{len(errors)} of {len(texts)} requests failed, e.g. {errors[0][:300]!r}")
    batches = after[1] - before[1]
    return {
        "texts_per_s": len(texts) / wall,
        **{f"{k}_ms": v * 1e3 for k, v in percentiles(latencies).items()},
        "mean_batch": (after[0] - before[0]) / batches if batches else None,
        "server_cpu_ms_per_text": 1e3 * server_cpu / len(texts),
        "client_cpu_ms_per_text": 1e3 * client_cpu / len(texts),
        "seconds": wall,
    }


def offline_run(predict: Callable[[list[str]], Any], texts: list[str]) -> dict[str, Any]:
    """One ``predict`` call over every text: texts/s and CPU ms per text of this process."""
    cpu, start = cpu_seconds(), time.perf_counter()
    predict(texts)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"texts_per_s": len(texts) / wall, "cpu_ms_per_text": 1e3 * cpu / len(texts), "seconds": wall}


def _offline_heads(cfg: ServeLoadConfig) -> dict[str, Any]:
    from bertdeploy.runtime import load

    if not cfg.offline:
        return {}
    return {  # the runtime's default (one stream with every thread) and the serve default's streams
        "offline": load(cfg.bundle, variant=cfg.variant, threads=cfg.threads),
        "offline_streams": load(cfg.bundle, variant=cfg.variant, threads=cfg.threads, streams=cfg.threads),
    }


def measure(cfg: ServeLoadConfig, texts: list[str], log: Callable[[str], None] = lambda _: None) -> dict:
    """Every cell's rounds: ``{"offline": [...], "on:32": [...], ...}``."""
    from contextlib import ExitStack

    cells: dict[str, list[dict]] = {}
    heads = _offline_heads(cfg)
    with ExitStack() as stack:
        for clf in heads.values():
            stack.callback(clf.close)
        servers = {m: stack.enter_context(server(cfg, m == "on")) for m in cfg.modes}
        for clf in heads.values():
            clf.predict(texts[:64])  # warm up
        for pid, port in servers.values():
            load_run(port, pid, texts[:64], 8)
        for round_ in range(cfg.repeats):
            for name, clf in heads.items():
                cells.setdefault(name, []).append({**offline_run(clf.predict, texts), "load": load_average()})
            for clients in cfg.clients:
                for mode, (pid, port) in servers.items():
                    cell = {**load_run(port, pid, texts, clients), "load": load_average()}
                    cells.setdefault(f"{mode}:{clients}", []).append(cell)
                    log(f"round {round_ + 1} batching {mode} x {clients}: {cell['texts_per_s']:.0f} texts/s")
    return cells


def summarize(cells: dict[str, list[dict]]) -> dict[str, dict]:
    """Per cell: its best round (texts/s), with the median texts/s and the number of rounds."""
    out = {}
    for name, runs in cells.items():
        best = max(runs, key=lambda r: r["texts_per_s"])
        out[name] = {**best, "median_texts_per_s": statistics.median(r["texts_per_s"] for r in runs)}
        out[name]["rounds"] = len(runs)
    return out


def run_serve_load(cfg: ServeLoadConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run the load test; write ``results.json`` and ``report.md`` into ``cfg.output`` (and the table between
    ``<!-- results -->`` markers of a ``README.md`` there); return the results."""
    texts = read_texts(cfg.data, cfg.text_column, cfg.texts)
    load_before = load_average()
    cells = measure(cfg, texts, log)
    results = {
        "scenario": "serve",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "config": {**asdict(cfg), "n_texts": len(texts)},
        "machine": machine_info(cfg.threads),
        "versions": versions(VERSIONS),
        "load_before": load_before,
        "load_after": load_average(),
        "summary": summarize(cells),
        "rounds": cells,
    }
    write_results(results, Path(cfg.output), report(results))
    return results


def report(results: dict[str, Any]) -> str:
    """The Markdown of a serve load test: one line on how and where, then the table."""
    s, cfg, m = results["summary"], results["config"], results["machine"]
    offline = max((s[k]["texts_per_s"] for k in ("offline", "offline_streams") if k in s), default=None)
    head = (
        f"Measured {results['date']} on {m['cpu']} ({m['usable_cpus']} usable CPUs), {cfg['threads']} threads, "
        f"variant {cfg['variant']}, bundle `{cfg['bundle']}`, {cfg['n_texts']} texts per cell, best of "
        f"{cfg['repeats']} interleaved rounds, load average before / after: {results['load_before']} / "
        f"{results['load_after']}; onnxruntime {results['versions'].get('onnxruntime')}, uvicorn "
        f"{results['versions'].get('uvicorn')}. Command: `{cfg.get('command') or 'run_serve_load(...)'}`"
    )
    rows = [
        "| mode | clients | texts/s (best) | median | % of best offline | p50 ms | p90 ms | p99 ms | mean batch "
        "| server CPU ms/text | client CPU ms/text | load 1m |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    share = lambda c: f"{100 * c['texts_per_s'] / offline:.0f} %" if offline else "–"  # noqa: E731
    for name, desc in (("offline", "default: 1 stream"), ("offline_streams", f"streams={cfg['threads']}")):
        if o := s.get(name):
            rows.append(
                f"| offline `predict` ({cfg['n_texts']} texts, one call, {desc}) | – | {o['texts_per_s']:.0f} | "
                f"{o['median_texts_per_s']:.0f} | {share(o)} | – | – | – | – | {o['cpu_ms_per_text']:.2f} | – | "
                f"{_load(o)} |"
            )
    for mode in cfg["modes"]:
        for clients in cfg["clients"]:
            c = s[f"{mode}:{clients}"]
            batch = f"{c['mean_batch']:.1f}" if c["mean_batch"] else "–"
            rows.append(
                f"| serve, batching {mode} | {clients} | {c['texts_per_s']:.0f} | {c['median_texts_per_s']:.0f} | "
                f"{share(c)} | {c['p50_ms']:.1f} | {c['p90_ms']:.1f} | {c['p99_ms']:.1f} | {batch} | "
                f"{c['server_cpu_ms_per_text']:.2f} | {c['client_cpu_ms_per_text']:.2f} | {_load(c)} |"
            )
    return head + "\n\n" + "\n".join(rows)


def _load(cell: dict[str, Any]) -> str:
    return f"{cell['load'][0]:.2f}" if cell.get("load") else "–"
