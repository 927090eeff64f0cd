"""`bertdeploy serve` on a real socket (loopback only): dynamic batching across concurrent clients gives the
answers of ``Classifier.predict``, a full queue is a 503 with Retry-After, SIGTERM drains, bad options exit 2."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import HTTP_CLIENT, SlowClassifier, tiny_texts

httpx = pytest.importorskip(HTTP_CLIENT)
uvicorn = pytest.importorskip("uvicorn")

from bertdeploy.runtime import LoadOptions, load  # noqa: E402
from bertdeploy.serve import ServeOptions, app  # noqa: E402
from bertdeploy.serve.asgi import _build  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running(asgi):
    """Serve ``asgi`` with uvicorn on 127.0.0.1 (an ephemeral port) in a thread; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        _wait_ready(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{url} never became ready")


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_32_concurrent_clients_get_predict_answers_and_the_server_batches_across_them(varied_bundle):
    texts = [t for t, _ in tiny_texts(640, seed=11)]
    with load(varied_bundle, variant="fp32", threads=1) as clf:
        expected = clf.predict(texts)
    assert len({p.label for p in expected}) > 1
    options = ServeOptions(max_wait_ms=20)
    with running(app(varied_bundle, LoadOptions(variant="fp32", threads=1), options)) as url:

        def client(worker: int) -> list[tuple[int, str, float]]:
            out = []
            with httpx.Client(base_url=url, timeout=60) as http:
                for i in range(worker, len(texts), 32):  # 20 one-text requests per client
                    r = http.post("/predict", json={"inputs": texts[i], "top_k": 1})
                    assert r.status_code == 200, r.text
                    out.append((i, r.json()[0]["label"], r.json()[0]["score"]))
            return out

        with ThreadPoolExecutor(32) as pool:
            answers = sorted(a for part in pool.map(client, range(32)) for a in part)
        metrics = httpx.get(f"{url}/metrics").text
    assert [i for i, _, _ in answers] == list(range(640))
    assert [label for _, label, _ in answers] == [p.label for p in expected]
    assert [s for _, _, s in answers] == pytest.approx([p.score for p in expected], abs=1e-5)
    assert _metric(metrics, "bertdeploy_texts_total") == 640
    batches = _metric(metrics, "bertdeploy_batch_size_count")
    singles = _metric(metrics, 'bertdeploy_batch_size_bucket{le="1.0"}')
    assert batches < 640 and singles < batches, "no batch held more than one request"
    assert _metric(metrics, 'bertdeploy_requests_total{code="200",endpoint="predict"}') == 640


def test_without_batching_every_request_runs_alone(varied_bundle):
    options = ServeOptions(batching=False, max_wait_ms=50)
    with running(app(varied_bundle, LoadOptions(variant="fp32", threads=1), options)) as url:
        with ThreadPoolExecutor(8) as pool:
            codes = list(
                pool.map(lambda i: httpx.post(f"{url}/predict", json={"inputs": f"text {i}"}).status_code, range(24))
            )
        metrics = httpx.get(f"{url}/metrics").text
    assert codes == [200] * 24
    assert (
        _metric(metrics, 'bertdeploy_batch_size_bucket{le="1.0"}')
        == _metric(metrics, "bertdeploy_batch_size_count")
        == 24
    )


def test_a_full_queue_answers_503_with_retry_after(varied_bundle):
    release = threading.Event()
    clf = load(varied_bundle, variant="fp32", threads=1)
    asgi = _build(lambda: SlowClassifier(clf, release), "slow", ServeOptions(max_queue=1, max_wait_ms=0), False)
    post = functools.partial(httpx.post, timeout=30)
    try:
        with running(asgi) as url, ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, f"{url}/predict", json={"inputs": "runs (and blocks) first"})
            _wait_metric(url, "bertdeploy_queue_depth", 0, lambda: asgi.state.batcher.classifier.calls == 2)
            second = pool.submit(post, f"{url}/predict", json={"inputs": "waits in the queue"})
            _wait_metric(url, "bertdeploy_queue_depth", 1)
            third = post(f"{url}/predict", json={"inputs": "one too many"})
            assert third.status_code == 503 and third.headers["retry-after"] == "1"
            assert third.json()["error_type"] == "overloaded" and "--max-queue 1" in third.json()["error"]
            release.set()
            assert first.result().status_code == 200 and second.result().status_code == 200
            assert post(f"{url}/predict", json={"inputs": "room again"}).status_code == 200
    finally:
        release.set()
        clf.close()


def in_one_batch(url: str, pool, release, held, hold, sends) -> list:
    """Send ``hold()`` (a request whose model call waits for ``release``); once ``held()``, send each of ``sends``
    (they queue up behind it), then release: their results in order (the queued requests share one dynamic batch)."""
    first = pool.submit(hold)
    _wait_metric(url, "bertdeploy_queue_depth", 0, held)
    futures = [pool.submit(send) for send in sends]
    _wait_metric(url, "bertdeploy_queue_depth", len(sends))
    release.set()
    answers = [f.result() for f in futures]
    assert first.result().status_code == 200
    return answers


def _wait_metric(url: str, name: str, value: float, also=lambda: True) -> None:
    deadline = time.monotonic() + 30
    while _metric(httpx.get(f"{url}/metrics").text, name) != value or not also():
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "serve", *args]
    # its own process group: a server that does not stop is killed with its workers, which hold the pipes open
    kw.setdefault("start_new_session", True)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the server's process group (workers included); reap the server if it was still running."""
    running = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if running:
            proc.kill()
    if running:
        proc.communicate(timeout=30)


def _sigterm(proc: subprocess.Popen, url: str, before) -> str:
    """Wait until the server is ready, run ``before()``, send SIGTERM; the server must exit cleanly: its stderr."""
    try:
        _wait_ready(url)
        before()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        _kill_group(proc)  # a server that did not stop, or workers it left behind
    # uvicorn (0.54 here) re-raises the signal once drained: exit status "killed by SIGTERM", as systemd expects;
    # older releases exit 0.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    return err


_SLOW_SERVER = """
import sys
sys.path.insert(0, {tests!r})
import uvicorn
from helpers import SlowClassifier
from bertdeploy.runtime import load
from bertdeploy.serve import ServeOptions, asgi
clf = load({bundle!r}, variant="fp32", threads=1)
app = asgi._build(lambda: SlowClassifier(clf, delay={delay}), "slow", ServeOptions(), True)
uvicorn.run(app, host="127.0.0.1", port={port}, timeout_graceful_shutdown={drain})
"""


def sigterm_in_flight(bundle, delay: float, drain: float) -> tuple[httpx.Response, str]:
    """uvicorn as ``bertdeploy serve`` runs it (``serve()`` calls ``uvicorn.run(app(...))``), over a model whose
    calls take ``delay`` s, so that SIGTERM arrives while a request is in flight: its answer and the server's
    stderr."""
    port = _free_port()
    script = _SLOW_SERVER.format(tests=str(REPO / "tests"), bundle=str(bundle), port=port, delay=delay, drain=drain)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    with ThreadPoolExecutor(1) as pool:
        pending = None

        def in_flight() -> None:
            nonlocal pending
            pending = pool.submit(httpx.post, f"{url}/predict", json={"inputs": ["in flight", "too"]}, timeout=30)
            _wait_metric(url, "bertdeploy_queue_wait_seconds_count", 1)  # its model call has begun

        err = _sigterm(proc, url, before=in_flight)
        response = pending.result()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)
    return response, err


def test_sigterm_finishes_the_requests_in_flight_then_exits(varied_bundle):
    response, err = sigterm_in_flight(varied_bundle, delay=1.5, drain=30)
    assert response.status_code == 200 and len(response.json()) == 2
    assert "Waiting for connections to close" in err


def test_bertdeploy_serve_stops_on_sigterm(varied_bundle):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _cli(str(varied_bundle), "--port", str(port), "--threads", "1")

    def one_request() -> None:
        assert httpx.post(f"{url}/predict", json={"inputs": "hello"}).status_code == 200

    assert "Application shutdown complete" in _sigterm(proc, url, before=one_request)
    assert proc.returncode == 0, "a drained server stopped as asked: exit 0 (README: serve and SIGTERM)"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["/nonexistent/bundle"], "bundle not found"),
        (["{bundle}", "--variant", "no_such_variant"], "not in the bundle"),
        (["{bundle}", "--max-queue", "0"], "max_queue"),
        (["{bundle}", "--workers", "0"], "workers"),
        (["{bundle}", "--device", "tpu"], "unknown device"),
        (["{bundle}", "--port", "{busy}"], "cannot listen"),
    ],
)
def test_bad_serve_options_are_one_line_and_exit_2(varied_bundle, args, needle):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        values = {"bundle": str(varied_bundle), "busy": str(busy.getsockname()[1])}
        proc = _cli(*[a.format(**values) for a in args])
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1


def test_workers_share_the_port_and_metrics_add_up(varied_bundle):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _cli(str(varied_bundle), "--port", str(port), "--workers", "2", "--threads", "2", "--variant", "fp32")
    seen: set[int] = set()
    sent = 0

    def until_both_workers_answered() -> None:
        nonlocal sent
        _wait_ready(url)
        for _ in range(200):
            r = httpx.post(f"{url}/predict", json={"inputs": ["a", "b"]})
            if r.status_code == 503:  # the other worker is still loading its model (a busy machine): not counted
                time.sleep(0.2)
                continue
            assert r.status_code == 200
            sent += 1
            seen.add(httpx.get(f"{url}/info").json()["pid"])
            if len(seen) == 2:
                break
        assert len(seen) == 2, "one worker answered every request"
        assert _metric(httpx.get(f"{url}/metrics").text, "bertdeploy_texts_total") == 2 * sent

    _sigterm(proc, url, before=until_both_workers_answered)
