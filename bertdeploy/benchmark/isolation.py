"""Run one block in a worker subprocess (``python -m bertdeploy.benchmark.worker JOB EVENTS``): its events are read
as they are appended; if the worker dies, the cell it was on is recorded as failed and a new worker takes the rest."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_block_subprocess(
    job: dict[str, Any], tdir: Path, handler: Callable[[dict[str, Any]], None], max_seconds: float
) -> None:
    """Run the block in a worker process; if it dies, fail the cell it was on and start a new one for the rest."""
    slug = job["group"].replace("|", "_")
    job_file, events, log = tdir / f"job_{slug}.json", tdir / f"events_{slug}.jsonl", tdir / f"log_{slug}.txt"
    remaining = [c["key"] for c in job["cells"]]
    per_cell = (2 if job["settings"]["model_only"] else 1) * (2 * max_seconds + 60)
    while remaining:
        job["cells"] = [c for c in job["cells"] if c["key"] in remaining]
        job_file.write_text(json.dumps(job), encoding="utf-8")
        events.write_text("", encoding="utf-8")
        seen: set[str] = set()

        def on_event(ev: dict[str, Any]) -> None:
            if ev["type"] == "cell":
                seen.add(ev["key"])
                if ev["key"] in remaining:
                    remaining.remove(ev["key"])
            handler(ev)

        rc, reason = _spawn(job_file, events, log, on_event, timeout=600 + per_cell * len(remaining))
        job["settings"]["eval"] = False
        if not remaining:
            break
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:] if log.is_file() else ""
        error = f"worker {reason} (exit code {rc}) before the cell finished\n{tail}"
        victims = remaining[:1] if seen else list(remaining)
        for key in victims:
            c = next(c for c in job["cells"] if c["key"] == key)
            on_event({"type": "cell", **c, "status": "failed", "error": error})


def _spawn(job_file: Path, events: Path, log: Path, on_event, timeout: float) -> tuple[int | None, str]:
    cmd = [sys.executable, "-m", "bertdeploy.benchmark.worker", str(job_file), str(events)]
    with open(log, "w", encoding="utf-8") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        pos, start, reason = 0, time.monotonic(), "exited"
        try:
            while True:
                rc = proc.poll()
                pos = _drain(events, pos, on_event)
                if rc is not None:
                    _drain(events, pos, on_event)
                    return rc, "crashed" if rc else "exited"
                if time.monotonic() - start > timeout:
                    proc.kill()
                    proc.wait()
                    reason = f"timed out after {timeout:.0f} s"
                    _drain(events, pos, on_event)
                    return proc.returncode, reason
                time.sleep(0.2)
        except BaseException:
            proc.kill()
            proc.wait()
            raise


def _drain(path: Path, pos: int, on_event) -> int:
    """Hand every complete JSON line after byte ``pos`` to ``on_event``; return the new position."""
    if not path.is_file():
        return pos
    with open(path, "rb") as f:
        f.seek(pos)
        data = f.read()
    end = data.rfind(b"\n")
    if end < 0:
        return pos
    for line in data[: end + 1].splitlines():
        if line.strip():
            on_event(json.loads(line))
    return pos + end + 1
