"""Load test of `bertdeploy serve` on loopback beside offline `predict` on the same texts. One command runs it all
and rewrites the table in benchmarks/serve/README.md:

    python benchmarks/serve/bench_serve.py --bundle models/minilm-emotion \
        --data ../shared/datasets/emotion/test.csv --threads 2 --repeats 3

Two servers (dynamic batching on / off) run as `bertdeploy serve` subprocesses; each client is a thread with its
own `httpx.Client` sending one text per request, back to back (closed loop); every text of the file is sent once
per cell. Rounds are interleaved (offline, on x 1 / 8 / 32 clients, off x 1 / 8 / 32, then again) so that a burst
of outside load hits every cell alike; each cell keeps its best round (texts/s) and the median. Latency p50 / p99
are of that best round, per request, as the client sees it. The client shares the machine's cores with the server:
on a small machine its own CPU time is part of what is measured (as for any loopback test).
"""

from __future__ import annotations

import argparse
import csv
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
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from bertdeploy.machine import load_average, machine_info, versions  # noqa: E402
from bertdeploy.runtime import load  # noqa: E402


def read_texts(path: Path, limit: int | None) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    return texts[:limit] if limit else texts


def start_server(
    bundle: str, variant: str, threads: int, batching: bool, max_wait_ms: float, extra: list[str] = ()
) -> tuple:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "serve", bundle, "--port", str(port)]
    cmd += ["--variant", variant, "--threads", str(threads), "--max-wait-ms", str(max_wait_ms)]
    cmd += ["--max-queue", "1024"] + ([] if batching else ["--no-batching"]) + list(extra)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()}")
        time.sleep(0.1)
    raise SystemExit("server never became ready")


def batch_stats(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics").text
    total = float(re.search(r"^bertdeploy_batch_size_sum (\S+)$", text, re.M).group(1))
    count = float(re.search(r"^bertdeploy_batch_size_count (\S+)$", text, re.M).group(1))
    return total, count


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (Linux /proc) or, without ``pid``, of this one."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Session:
    """One client's keep-alive connection: ``httpx.Client``, or the standard library's ``http.client`` (a fraction
    of httpx's CPU per request, which matters when the client shares the server's cores)."""

    def __init__(self, url: str, kind: str) -> None:
        self.url, self.kind = url, kind

    def __enter__(self) -> Session:
        if self.kind == "httpx":
            self.http = httpx.Client(base_url=self.url, timeout=120)
        else:
            host, port = self.url.rsplit("/", 1)[1].split(":")
            self.http = http.client.HTTPConnection(host, int(port), timeout=120)
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def predict(self, text: str) -> tuple[int, str]:
        body = json.dumps({"inputs": text, "top_k": 1})
        if self.kind == "httpx":
            r = self.http.post("/predict", content=body, headers={"Content-Type": "application/json"})
            return r.status_code, r.text
        self.http.request("POST", "/predict", body, {"Content-Type": "application/json"})
        r = self.http.getresponse()
        return r.status, r.read().decode()


def load_run(url: str, pid: int, texts: list[str], clients: int, kind: str = "httpx") -> dict:
    """Each text once, by ``clients`` closed-loop clients; texts/s, latency percentiles, mean batch size, and the
    CPU time the server and the client spent per text (independent of how busy the machine is)."""
    lock, cursor, latencies, errors = threading.Lock(), iter(range(len(texts))), [], []

    def client() -> None:
        with Session(url, kind) as http:
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                start = time.perf_counter()
                status, body = http.predict(texts[i])
                took = time.perf_counter() - start
                with lock:
                    (latencies if status == 200 else errors).append(took if status == 200 else body)

    before = batch_stats(url)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    server_cpu, client_cpu = cpu_seconds(pid), cpu_seconds()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    server_cpu, client_cpu = cpu_seconds(pid) - server_cpu, cpu_seconds() - client_cpu
    after = batch_stats(url)
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    lat = np.array(latencies) * 1000
    batches = after[1] - before[1]
    return {
        "texts_per_s": len(texts) / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_batch": (after[0] - before[0]) / batches if batches else None,
        "server_cpu_ms_per_text": 1000 * server_cpu / len(texts),
        "client_cpu_ms_per_text": 1000 * client_cpu / len(texts),
        "seconds": wall,
    }


def offline_run(clf, texts: list[str]) -> dict:
    cpu, start = cpu_seconds(), time.perf_counter()
    clf.predict(texts)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"texts_per_s": len(texts) / wall, "cpu_ms_per_text": 1000 * cpu / len(texts), "seconds": wall}


def measure(args: argparse.Namespace, texts: list[str]) -> dict:
    servers = {
        mode: start_server(
            args.bundle, args.variant, args.threads, mode == "on", args.max_wait_ms, args.serve_args.split()
        )
        for mode in ("on", "off")
    }
    cells: dict[str, list[dict]] = {}
    offline = {  # the runtime's default (one call at a time, every thread) and the serve default's streams
        "offline": load(args.bundle, variant=args.variant, threads=args.threads),
        "offline_streams": load(args.bundle, variant=args.variant, threads=args.threads, streams=args.threads),
    }
    try:
        for clf in offline.values():
            clf.predict(texts[:64])  # warm up
        for proc, url in servers.values():
            load_run(url, proc.pid, texts[:64], 8, args.client)
        for round_ in range(args.repeats):
            for name, clf in offline.items():
                cells.setdefault(name, []).append({**offline_run(clf, texts), "load": load_average()})
            for clients in args.clients:
                for mode, (proc, url) in servers.items():
                    cell = {**load_run(url, proc.pid, texts, clients, args.client), "load": load_average()}
                    cells.setdefault(f"{mode}:{clients}", []).append(cell)
                    print(
                        f"round {round_ + 1} batching {mode} x {clients}: {cell['texts_per_s']:.0f} texts/s", flush=True
                    )
    finally:
        for clf in offline.values():
            clf.close()
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    return cells


def summarize(cells: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for name, runs in cells.items():
        best = max(runs, key=lambda r: r["texts_per_s"])
        out[name] = {
            **best,
            "median_texts_per_s": statistics.median(r["texts_per_s"] for r in runs),
            "rounds": len(runs),
        }
    return out


def table(results: dict) -> str:
    s, threads = results["summary"], results["config"]["threads"]
    offline = max(s["offline"]["texts_per_s"], s["offline_streams"]["texts_per_s"])
    rows = [
        "| mode | clients | texts/s (best) | median | % of best offline | p50 ms | p99 ms | mean batch "
        "| server CPU ms/text | client CPU ms/text | load 1m |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, desc in (("offline", "default: 1 stream"), ("offline_streams", f"streams={threads}")):
        o = s[name]
        rows.append(
            f"| offline `predict` ({results['config']['texts']} texts, one call, {desc}) | – | "
            f"{o['texts_per_s']:.0f} | {o['median_texts_per_s']:.0f} | {100 * o['texts_per_s'] / offline:.0f} % "
            f"| – | – | – | {o['cpu_ms_per_text']:.2f} | – | {o['load'][0]:.2f} |"
        )
    for mode in ("on", "off"):
        for clients in results["config"]["clients"]:
            c = s[f"{mode}:{clients}"]
            batch = f"{c['mean_batch']:.1f}" if c["mean_batch"] else "–"
            rows.append(
                f"| serve, batching {mode} | {clients} | {c['texts_per_s']:.0f} | {c['median_texts_per_s']:.0f} | "
                f"{100 * c['texts_per_s'] / offline:.0f} % | {c['p50_ms']:.1f} | {c['p99_ms']:.1f} | {batch} | "
                f"{c['server_cpu_ms_per_text']:.2f} | {c['client_cpu_ms_per_text']:.2f} | {c['load'][0]:.2f} |"
            )
    return "\n".join(rows)


def write_readme(results: dict) -> None:
    readme = HERE / "README.md"
    m, cfg = results["machine"], results["config"]
    extra = f" (serve {cfg['serve_args']})" if cfg.get("serve_args") else ""
    head = (
        f"Measured {results['date']} on {m['cpu']} ({m['usable_cpus']} usable CPUs), {results['config']['threads']} "
        f"threads, variant {results['config']['variant']}, bundle `{results['config']['bundle']}`, client "
        f"`{cfg['client']}`{extra}, "
        f"load average before / after: {results['load_before']} / {results['load_after']}; "
        f"onnxruntime {results['versions'].get('onnxruntime')}, uvicorn {results['versions'].get('uvicorn')}."
    )
    block = f"<!-- results -->\n{head}\n\n{table(results)}\n<!-- /results -->"
    text = readme.read_text(encoding="utf-8") if readme.exists() else "<!-- results -->\n<!-- /results -->\n"
    readme.write_text(
        re.sub(r"<!-- results -->.*<!-- /results -->", lambda _: block, text, flags=re.S), encoding="utf-8"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle")
    ap.add_argument("--data", type=Path, help="csv with a text column (every row is sent once)")
    ap.add_argument("--report", type=Path, help="only rewrite the README table from this results.json")
    ap.add_argument("--variant", default="qint8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--texts", type=int, default=None, help="only the first N texts")
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--client", choices=["http.client", "httpx"], default="http.client", help="see Session")
    ap.add_argument("--serve-args", default="", help="more `bertdeploy serve` options, e.g. '--streams 1'")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()
    if args.report:
        write_readme(json.loads(args.report.read_text(encoding="utf-8")))
        return
    if not args.bundle or not args.data:
        ap.error("--bundle and --data are required")
    args.clients = [int(c) for c in args.clients.split(",")]
    texts = read_texts(args.data, args.texts)
    load_before = load_average()
    cells = measure(args, texts)
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"texts": len(texts)},
        "machine": machine_info(args.threads),
        "versions": versions(
            ("onnxruntime", "tokenizers", "numpy", "starlette", "uvicorn", "httpx", "prometheus-client")
        ),
        "load_before": load_before,
        "load_after": load_average(),
        "summary": summarize(cells),
        "rounds": cells,
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_readme(results)
    print(table(results))


if __name__ == "__main__":
    main()
