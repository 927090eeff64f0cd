"""`bertdeploy.serve.app`: every endpoint, the TEI request/response shapes, each bad input with its status code
(in process, through Starlette's TestClient: no socket)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from helpers import HTTP_CLIENT

pytest.importorskip("starlette")
pytest.importorskip(HTTP_CLIENT)

from starlette.testclient import TestClient  # noqa: E402

from bertdeploy.errors import UserError  # noqa: E402
from bertdeploy.runtime import LoadOptions, load  # noqa: E402
from bertdeploy.serve import ServeOptions, app  # noqa: E402
from bertdeploy.serve import asgi as app_module  # noqa: E402

TEXTS = ["good great love", "bad terrible hate", "the movie was long", "happy joy thanks", "slow late angry sad"]


@pytest.fixture(scope="module")
def fp32(varied_bundle):
    """The fp32 variant: its scores do not depend on batch-mates (dynamic int8 scales per batch)."""
    with load(varied_bundle, variant="fp32", threads=1) as clf:
        yield clf


def _client(asgi) -> TestClient:
    client = TestClient(asgi)
    client.__enter__()  # runs the lifespan: the batcher thread loads and warms the model
    for _ in range(200):
        if client.get("/health").status_code == 200:
            return client
        threading.Event().wait(0.05)
    raise AssertionError("the server never became ready")


@pytest.fixture(scope="module")
def client(varied_bundle):
    c = _client(app(varied_bundle, LoadOptions(variant="fp32", threads=1), ServeOptions(max_request_texts=8)))
    yield c
    c.__exit__(None, None, None)


def _post(client, body, **kw):
    return client.post("/predict", content=json.dumps(body), headers={"Content-Type": "application/json"}, **kw)


def test_single_text_answers_teis_shape_every_label_best_first(client, fp32):
    r = _post(client, {"inputs": TEXTS[0]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert [set(p) for p in body] == [{"label", "score"}] * 3
    scores = [p["score"] for p in body]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    proba = fp32.predict_proba([TEXTS[0]])[0]
    assert {p["label"]: p["score"] for p in body} == pytest.approx(dict(zip(fp32.labels, proba.tolist())), abs=1e-5)


def test_a_list_answers_one_list_per_text_in_order(client, fp32):
    body = _post(client, {"inputs": TEXTS, "top_k": 1}).json()
    expected = fp32.predict(TEXTS)
    assert len({p.label for p in expected}) > 1  # the bundle's answers differ from text to text
    assert [b[0]["label"] for b in body] == [p.label for p in expected]
    assert [b[0]["score"] for b in body] == pytest.approx([p.score for p in expected], abs=1e-5)


def test_teis_batch_form_top_k_and_raw_scores(client, fp32):
    plain = _post(client, {"inputs": TEXTS[:2]}).json()
    tei = _post(client, {"inputs": [[TEXTS[0]], [TEXTS[1]]]}).json()
    top2 = _post(client, {"inputs": TEXTS[:2], "top_k": 2, "truncate": True}).json()
    assert [len(row) for row in plain] == [3, 3] and [len(row) for row in top2] == [2, 2]
    for other in (tei, top2):
        for mine, theirs in zip(plain, other, strict=True):
            assert [p["label"] for p in theirs] == [p["label"] for p in mine[: len(theirs)]]
            assert [p["score"] for p in theirs] == pytest.approx([p["score"] for p in mine[: len(theirs)]], abs=1e-5)
    raw = _post(client, {"inputs": TEXTS[1], "raw_scores": True, "top_k": 99}).json()
    logits = fp32.logits([TEXTS[1]])[0]
    assert {p["label"]: p["score"] for p in raw} == pytest.approx(dict(zip(fp32.labels, logits.tolist())), abs=1e-4)


def test_health_info_metrics(client):
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ready"
    info = client.get("/info").json()
    assert info["variant"] == "fp32" and info["labels"] == ["negative", "neutral", "positive"]
    assert info["providers"] == ["CPUExecutionProvider"] and info["max_client_batch_size"] == 8
    assert {"onnxruntime", "tokenizers", "starlette"} <= set(info["versions"])
    _post(client, {"inputs": ["a b", "c d"]})
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in ("bertdeploy_requests_total", "bertdeploy_errors_total", "bertdeploy_texts_total"):
        assert name in text
    for name in ("bertdeploy_batch_size", "bertdeploy_queue_wait_seconds", "bertdeploy_inference_seconds"):
        assert f"{name}_bucket" in text and f"{name}_count" in text
    assert 'bertdeploy_requests_total{code="200",endpoint="predict"}' in text


BAD = [
    ("text/plain", b'{"inputs": "a"}', 415, "Content-Type"),
    (None, b'{"inputs": "a"}', 415, "Content-Type"),
    ("application/json", b"", 400, "empty"),
    ("application/json", b'{"inputs": "a"', 400, "not valid JSON"),
    ("application/json", b"\xff\xfe\x00garbage", 400, "not valid JSON"),
    ("application/json", b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
    ("application/json", b'["a"]', 422, "JSON object"),
    ("application/json", b'{"inputs": "a", "normalize": true}', 422, "'normalize'"),
    ("application/json", b'{"text": "a"}', 422, "'text'"),
    ("application/json", b"{}", 422, "'inputs' is required"),
    ("application/json", b'{"inputs": 3}', 422, "'inputs' is int"),
    ("application/json", b'{"inputs": null}', 422, "'inputs' is null"),
    ("application/json", b'{"inputs": []}', 422, "empty list"),
    ("application/json", b'{"inputs": ""}', 422, "empty string"),
    ("application/json", b'{"inputs": ["ok", "  "]}', 422, "inputs[1] is an empty string"),
    ("application/json", b'{"inputs": ["ok", 3]}', 422, "inputs[1] is int"),
    ("application/json", b'{"inputs": ["ok", {"a": 1}]}', 422, "inputs[1] is an object"),
    ("application/json", b'{"inputs": [["a", "b"]]}', 422, "pairs are not supported"),
    ("application/json", json.dumps({"inputs": ["x"] * 9}).encode(), 413, "at most 8"),
    ("application/json", b'{"inputs": "a", "top_k": 0}', 422, "top_k"),
    ("application/json", b'{"inputs": "a", "top_k": "2"}', 422, "top_k"),
    ("application/json", b'{"inputs": "a", "top_k": true}', 422, "top_k"),
    ("application/json", b'{"inputs": "a", "raw_scores": "yes"}', 422, "raw_scores"),
    ("application/json; charset=utf-8", b'{"inputs": "a", "truncate": 1}', 422, "truncate"),
]


@pytest.mark.parametrize(("content_type", "body", "status", "needle"), BAD, ids=[f"{b[2]}-{b[3]}" for b in BAD])
def test_bad_input_is_a_4xx_naming_the_problem_and_the_server_keeps_serving(client, content_type, body, status, needle):
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == status, r.text
    error = r.json()
    assert needle in error["error"] and error["error_type"] == "validation"
    assert _post(client, {"inputs": "still fine"}).status_code == 200


def test_body_limit_unknown_routes_and_methods(varied_bundle):
    c = _client(app(varied_bundle, LoadOptions(variant="fp32", threads=1), ServeOptions(max_body_bytes=100)))
    try:
        r = _post(c, {"inputs": "x" * 200})
        assert r.status_code == 413 and "at most 100" in r.json()["error"]
        assert c.get("/nope").status_code == 404 and "Not Found" in c.get("/nope").json()["error"]
        r = c.get("/predict")
        assert r.status_code == 405 and r.json()["error_type"] == "validation" and "POST" in r.headers["allow"]
        metrics = c.get("/metrics").text
        assert 'bertdeploy_requests_total{code="413",endpoint="predict"} 1.0' in metrics
        assert 'bertdeploy_errors_total{error_type="validation"} 1.0' in metrics
    finally:
        c.__exit__(None, None, None)


def test_health_is_503_until_the_model_is_loaded_and_warm(varied_bundle, monkeypatch):
    release = threading.Event()
    real = app_module.load_with

    def slow_load(bundle, options):
        release.wait(10)
        return real(bundle, options)

    monkeypatch.setattr(app_module, "load_with", slow_load)
    with TestClient(app(varied_bundle, LoadOptions(variant="fp32", threads=1))) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["error_type"] == "unhealthy" and r.headers["retry-after"] == "1"
        r = _post(c, {"inputs": "too early"})
        assert r.status_code == 503 and "not ready" in r.json()["error"]
        assert c.get("/info").json()["state"] == "loading"
        release.set()
        for _ in range(200):
            if c.get("/health").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert _post(c, {"inputs": "now"}).status_code == 200


def test_a_model_that_fails_to_load_is_reported_by_health(varied_bundle):
    with TestClient(app(varied_bundle, LoadOptions(variant="no_such_variant"))) as c:
        for _ in range(200):
            if c.get("/info").json()["state"] == "failed":
                break
            threading.Event().wait(0.05)
        r = c.get("/health")
        assert r.status_code == 503 and "no_such_variant" in r.json()["error"]


def test_an_app_over_a_loaded_classifier_leaves_it_open(fp32):
    c = _client(app(fp32))
    try:
        assert _post(c, {"inputs": TEXTS[2], "top_k": 1}).json()[0]["label"] == fp32.predict(TEXTS[2:3])[0].label
    finally:
        c.__exit__(None, None, None)
    assert fp32.predict(TEXTS[:1])  # still usable after the app stopped


def test_serve_options_are_validated():
    for bad in ({"max_wait_ms": -1}, {"max_queue": 0}, {"max_request_texts": True}, {"max_body_bytes": 1.5}):
        with pytest.raises(UserError):
            ServeOptions(**bad)
    assert np.isclose(ServeOptions(max_wait_ms=0).max_wait_ms, 0.0)


def test_mounted_in_another_app_it_starts_on_its_first_request(varied_bundle):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/clf", app=app(varied_bundle, LoadOptions(variant="fp32", threads=1)))])
    with TestClient(outer) as c:  # runs the outer lifespan only
        for _ in range(200):
            if c.get("/clf/health").status_code == 200:
                break
            threading.Event().wait(0.05)
        r = c.post("/clf/predict", json={"inputs": "mounted", "top_k": 1})
        assert r.status_code == 200 and len(r.json()) == 1
