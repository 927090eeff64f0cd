"""The server under faults (issue 25), on a real socket: one request's bad input or backend failure fails that
request alone (its batch-mates are answered), a lone surrogate is a 422, 500s are counted in /metrics, a client
that stalls or disconnects mid-body costs one log line and no connection for long, the drain timeout answers JSON.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import HTTP_CLIENT

httpx = pytest.importorskip(HTTP_CLIENT)
pytest.importorskip("uvicorn")

import test_serve_server as srv  # noqa: E402

from bertdeploy.errors import UserError  # noqa: E402
from bertdeploy.runtime import load  # noqa: E402
from bertdeploy.serve import ServeOptions  # noqa: E402
from bertdeploy.serve.asgi import _build  # noqa: E402

SURROGATE_BODY = b'{"inputs": ["fine", "lone \\ud800 here"]}'


def _raw(url: str, request: bytes, read: bool = True, timeout: float = 30) -> bytes:
    """Send ``request`` as it is on a fresh connection; the whole answer (until the server closes or answers)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        if not read:
            return b""
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _length(data: bytes) -> int:
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    return next((int(line.split(":")[1]) for line in head.splitlines() if line.startswith("content-length:")), 0)


def _post_raw(body: bytes, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    return (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {size}\r\n\r\n".encode()
        + body
    )


def _status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


class Faulty:
    """A classifier whose batch fails when it holds a text "POISON" (a backend error) or "REFUSE" (a UserError
    from the runtime's rules); the model call after warm-up waits for ``release`` (so that requests queue up and
    share one dynamic batch). ``batches`` records the texts of every batch it was asked to run."""

    def __init__(self, clf, release: threading.Event) -> None:
        self._clf, self._release, self.batches, self._bad = clf, release, [], None

    def encode(self, texts):
        self.batches.append(list(texts))
        self._bad = "POISON" if "POISON" in texts else "REFUSE" if "REFUSE" in texts else None
        return self._clf.encode(texts)

    def forward(self, encoded):
        if len(self.batches) == 2:
            self._release.wait(30)
        if self._bad == "POISON":
            raise RuntimeError("the backend failed")
        if self._bad == "REFUSE":
            raise UserError("text #0 is refused by the runtime")
        return self._clf.forward(encoded)

    def __getattr__(self, name: str):
        return getattr(self._clf, name)


def test_a_lone_surrogate_is_a_422_naming_it_and_its_position(varied_bundle):
    with load(varied_bundle, variant="fp32", threads=1) as clf, srv.running(_build(lambda: clf, "x", ServeOptions(),
                                                                                   False)) as url:  # fmt: skip
        status, body = _status_and_json(_raw(url, _post_raw(SURROGATE_BODY)))
        one = _status_and_json(_raw(url, _post_raw(b'{"inputs": "\\udfff"}')))
    assert status == 422 and body["error_type"] == "validation", body
    assert body["error"].startswith("inputs[1] holds a lone surrogate U+D800 at character 5"), body
    assert one[0] == 422 and one[1]["error"].startswith("'inputs' holds a lone surrogate U+DFFF at character 0")


def test_a_failing_request_fails_alone_and_its_batch_mates_get_their_answers(varied_bundle):
    """Ten requests share one dynamic batch; one makes the backend fail, one is refused by the runtime's rules:
    those two get a 500 / 422, the eight others their own predictions; the 500 is counted in /metrics."""
    good = [f"good text number {i}" if i % 2 else f"bad sad text {i}" for i in range(8)]
    release = threading.Event()
    clf = load(varied_bundle, variant="fp32", threads=1)
    expected = clf.predict(good)
    faulty = Faulty(clf, release)
    asgi = _build(lambda: faulty, "faulty", ServeOptions(max_wait_ms=0), False)
    post = lambda text: httpx.post(f"{url}/predict", json={"inputs": text, "top_k": 1}, timeout=60)  # noqa: E731
    try:
        with srv.running(asgi) as url, ThreadPoolExecutor(11) as pool:
            sends = [lambda t=t: post(t) for t in [*good[:4], "POISON", "REFUSE", *good[4:]]]
            held = lambda: len(faulty.batches) == 2  # noqa: E731
            results = srv.in_one_batch(url, pool, release, held, lambda: post("holds the worker"), sends)
            metrics = httpx.get(f"{url}/metrics").text
    finally:
        release.set()
        clf.close()
    assert len(faulty.batches[2]) == 10, "the ten requests shared one batch"
    codes = [r.status_code for r in results]
    assert codes == [200] * 4 + [500, 422] + [200] * 4, [r.text for r in results]
    labels = [r.json()[0]["label"] for r in results if r.status_code == 200]
    assert labels == [p.label for p in expected]
    assert results[4].json() == {"error": "internal error (RuntimeError); see the server log", "error_type": "backend"}
    assert results[5].json() == {"error": "text #0 is refused by the runtime", "error_type": "validation"}
    assert srv._metric(metrics, 'bertdeploy_requests_total{code="500",endpoint="predict"}') == 1
    assert srv._metric(metrics, 'bertdeploy_errors_total{error_type="backend"}') == 1
    assert srv._metric(metrics, 'bertdeploy_requests_total{code="422",endpoint="predict"}') == 1


def test_stalled_and_vanishing_clients_cost_one_log_line_and_no_connection_for_long(varied_bundle, caplog):
    options = ServeOptions(body_timeout_s=0.5)
    with load(varied_bundle, variant="fp32", threads=1) as clf, srv.running(_build(lambda: clf, "x", options,
                                                                                   False)) as url:  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.INFO):
            start = time.monotonic()
            status, body = _status_and_json(_raw(url, _post_raw(b'{"inputs": "ha', declared=40)))
            stalled = time.monotonic() - start
            for _ in range(5):  # each sends half a body, then goes away
                _raw(url, _post_raw(b'{"inputs": "ha', declared=40), read=False)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                metrics = httpx.get(f"{url}/metrics").text
                if 'code="499"' in metrics and srv._metric(metrics, 'bertdeploy_requests_total{code="499",'
                                                                   'endpoint="predict"}') == 5:  # fmt: skip
                    break
                time.sleep(0.05)
            ok = httpx.post(f"{url}/predict", json={"inputs": "still fine"}, timeout=30).status_code
    assert status == 408 and body["error_type"] == "timeout" and "within 0.5 s" in body["error"], body
    assert 0.4 < stalled < 5, stalled
    assert srv._metric(metrics, 'bertdeploy_requests_total{code="499",endpoint="predict"}') == 5
    assert ok == 200
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 5 and not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]


def test_serve_limits_connections_and_workers(varied_bundle, monkeypatch):
    from bertdeploy.machine import usable_cpus
    from bertdeploy.serve import server

    seen = {}
    monkeypatch.setattr(server.uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr(server, "_check_port", lambda host, port: None)
    server.serve(varied_bundle, port=1, max_connections=7)
    assert seen["limit_concurrency"] == 7
    with pytest.raises(UserError, match=r"workers must be <= \d+ \(the CPUs"):
        server.serve(varied_bundle, workers=usable_cpus() + 1)
    with pytest.raises(UserError, match="max_connections must be an integer >= 1"):
        server.serve(varied_bundle, max_connections=0)
    with pytest.raises(UserError, match="body_timeout_s must be a number > 0"):
        ServeOptions(body_timeout_s=0)


def test_a_request_cut_off_by_the_drain_timeout_gets_a_json_503(varied_bundle):
    response, err = srv.sigterm_in_flight(varied_bundle, delay=2.5, drain=0.5)
    assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
    assert response.json()["error_type"] == "shutdown" and "timeout graceful shutdown exceeded" in err
    assert "Exception in ASGI application" not in err
