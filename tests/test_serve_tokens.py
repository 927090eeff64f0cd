"""`serve` for both tasks through real clients on a real socket: huggingface_hub's ``InferenceClient`` (unmodified,
pointed at the server's URL) on ``POST /`` for a text- and a token-classification bundle, ``/predict``'s entity
shape, each bad request a 4xx JSON error the client surfaces, and concurrent requests with different aggregation
strategies sharing one dynamic batch, each decoded with its own parameters."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import HTTP_CLIENT, SlowClassifier

httpx = pytest.importorskip(HTTP_CLIENT)
pytest.importorskip("uvicorn")
huggingface_hub = pytest.importorskip("huggingface_hub")

from test_serve_server import _metric, in_one_batch, running  # noqa: E402

from bertdeploy.runtime import LoadOptions, load  # noqa: E402
from bertdeploy.runtime.classifier import softmax  # noqa: E402
from bertdeploy.serve import ServeOptions, app  # noqa: E402
from bertdeploy.serve.asgi import _build  # noqa: E402

TEXTS = [
    "i love the movie at night",
    "The Food Service was good today, thanks!",
    "my app login was so slow at work time",
    "今天的food service很好",
]
from huggingface_hub.errors import HfHubHTTPError as HTTPError  # noqa: E402


@pytest.fixture(scope="module")
def tagger(tiny_token_bundle):
    with load(tiny_token_bundle, variant="fp32", threads=1) as t:
        yield t


@pytest.fixture(scope="module")
def token_url(tiny_token_bundle):
    with running(
        app(tiny_token_bundle, LoadOptions(variant="fp32", threads=1), ServeOptions(max_request_texts=8))
    ) as u:
        yield u


@pytest.fixture(scope="module")
def text_url(varied_bundle):
    with running(app(varied_bundle, LoadOptions(variant="fp32", threads=1))) as url:
        yield url


def _client(url: str):
    return huggingface_hub.InferenceClient(url, timeout=60)


def _dicts(entities) -> list[dict]:
    return [e.to_dict() for e in entities]


def _same(got: list[dict], expected: list[dict]) -> None:
    """Equal entity dicts, scores within float32 rounding of the JSON round trip."""
    assert [{**d, "score": 0} for d in got] == [{**d, "score": 0} for d in expected]
    np.testing.assert_allclose([d["score"] for d in got], [d["score"] for d in expected], atol=1e-6)


@pytest.mark.parametrize("aggregation", [None, "none", "simple", "first", "average", "max"])
def test_inference_client_token_classification(token_url, tagger, aggregation):
    for text in TEXTS:
        got = _client(token_url).token_classification(text, aggregation_strategy=aggregation)
        expected = tagger.predict([text], aggregation=aggregation or "simple")[0]
        assert len(got) == len(expected) > 0
        for element, entity in zip(got, expected, strict=True):
            assert (element.word, element.start, element.end) == (entity.word, entity.start, entity.end)
            assert element.word == text[element.start : element.end]
            assert element.score == pytest.approx(entity.score, abs=1e-6)
            if aggregation == "none":  # the pipeline's per-token keys
                assert (element.entity, element.entity_group, element.index) == (
                    entity.entity_group,
                    None,
                    entity.index,
                )
            else:
                assert (element.entity_group, element.entity) == (entity.entity_group, None)


def test_inference_client_token_ignore_labels_and_errors(token_url, tagger):
    client = _client(token_url)
    every = client.token_classification(TEXTS[0], aggregation_strategy="none", ignore_labels=[])
    assert [e.entity for e in every] == [e.entity_group for e in tagger.predict(TEXTS[0], "none", None)[0]]
    assert [e.word for e in every] == TEXTS[0].split()
    tags = sorted({e.entity for e in every})
    kept = client.token_classification(TEXTS[0], aggregation_strategy="none", ignore_labels=tags[:1])
    assert [e.entity for e in kept] == [e.entity for e in every if e.entity != tags[0]]
    assert len(client.token_classification(TEXTS[0], stride=tagger.stride)) > 0  # the bundle's own stride is fine
    for kw, message in (
        ({"aggregation_strategy": "longest"}, "'aggregation_strategy' must be one of none, simple"),
        ({"stride": 3}, f"windowed with {tagger.stride} tokens of overlap; got 3"),
    ):
        with pytest.raises(HTTPError, match=message) as err:
            client.token_classification(TEXTS[0], **kw)
        assert err.value.response.status_code == 422
        assert err.value.response.json()["error_type"] == "validation"
    with pytest.raises(HTTPError, match="'inputs' is an empty string"):
        client.token_classification("  ")


def test_inference_client_text_classification(text_url, varied_bundle):
    client = _client(text_url)
    with load(varied_bundle, variant="fp32", threads=1) as clf:
        for text in ("good great love", "bad terrible hate", "the movie was long"):
            two = client.text_classification(text, top_k=2)
            expected = clf.predict([text], top_k=2)[0]
            assert [e.label for e in two] == [p.label for p in expected] and len(two) == 2
            assert [e.score for e in two] == pytest.approx([p.score for p in expected], abs=1e-6)
            every = client.text_classification(text)  # every label, best first (the API's default)
            assert sorted(e.label for e in every) == sorted(clf.labels)
            logits = clf.logits([text])[0]
            sigmoid = client.text_classification(text, function_to_apply="sigmoid")
            assert [e.score for e in sigmoid] == pytest.approx(sorted(1 / (1 + np.exp(-logits)), reverse=True))
            raw = client.text_classification(text, function_to_apply="none", top_k=1)
            assert raw[0].score == pytest.approx(float(logits.max()), abs=1e-5)
            assert raw[0].label == clf.labels[int(logits.argmax())] == every[0].label
    with pytest.raises(HTTPError, match="'top_k' must be an integer >= 1, got 0"):
        client.text_classification("fine", top_k=0)


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"inputs": ["a", "b"], "parameters": {"top_k": 1}}, 200, None),
        ({"inputs": ["good day"] * 12}, 200, None),  # more than INLINE_DECODE_TEXTS: decoded on a worker thread
        ({"inputs": "x", "parameters": {"aggregation_strategy": "simple"}}, 422, "unknown parameter(s) 'agg"),
        ({"inputs": "x", "parameters": {"function_to_apply": "relu"}}, 422, "'function_to_apply' must be one of"),
        ({"inputs": "x", "parameters": [1]}, 422, "'parameters' must be an object"),
        ({"inputs": "x", "options": {"wait_for_model": True}}, 200, None),
        ({"input": "x"}, 422, "unknown field(s) 'input'; accepted: inputs, parameters, options"),
        ({"inputs": []}, 422, "'inputs' is an empty list"),
        (["x"], 422, "must be a JSON object"),
    ],
)
def test_inference_api_shapes_for_text_classification(text_url, body, status, message):
    r = httpx.post(text_url, json=body, timeout=30)
    assert r.status_code == status, r.text
    if message is None:
        answer = r.json()
        assert isinstance(answer, list) and all(isinstance(x, list) for x in answer)  # one list per input
        assert len(answer) == (len(body["inputs"]) if isinstance(body["inputs"], list) else 1)
    else:
        assert message in r.json()["error"] and r.json()["error_type"] == "validation"


def test_predict_and_inference_routes_of_a_token_bundle(token_url, tagger):
    r = httpx.post(f"{token_url}/predict", json={"inputs": TEXTS, "aggregation_strategy": "first"}, timeout=30)
    assert r.status_code == 200, r.text
    for got, expected in zip(r.json(), tagger.predict(TEXTS, aggregation="first"), strict=True):
        _same(got, _dicts(expected))
    one = httpx.post(f"{token_url}/predict", json={"inputs": TEXTS[1], "ignore_labels": []}, timeout=30).json()
    _same(one, _dicts(tagger.predict(TEXTS[1], ignore_labels=None)[0]))  # one string: one flat list
    r = httpx.post(token_url, json={"inputs": TEXTS[:2], "parameters": {"aggregation_strategy": "max"}}, timeout=30)
    for got, expected in zip(r.json(), tagger.predict(TEXTS[:2], aggregation="max"), strict=True):
        _same(got, _dicts(expected))
    bad = [
        (f"{token_url}/predict", {"inputs": "x", "top_k": 1}, 422, "unknown field(s) 'top_k'; accepted: inputs, agg"),
        (f"{token_url}/predict", {"inputs": "x", "ignore_labels": "O"}, 422, "'ignore_labels' must be a list"),
        (token_url, {"inputs": "x", "parameters": {"top_k": 2}}, 422, "unknown parameter(s) 'top_k'; accepted: agg"),
        (token_url, {"inputs": ["x"] * 9}, 413, "9 texts in one request; at most 8"),
    ]
    for url, body, status, message in bad:
        r = httpx.post(url, json=body, timeout=30)
        assert r.status_code == status and message in r.json()["error"], r.text
    info = httpx.get(f"{token_url}/info").json()
    assert info["task"] == "token-classification" and info["labels"] == tagger.labels
    metrics = httpx.get(f"{token_url}/metrics").text
    assert _metric(metrics, 'bertdeploy_requests_total{code="200",endpoint="inference"}') >= 1


def test_info_reports_the_text_task(text_url):
    assert httpx.get(f"{text_url}/info").json()["task"] == "text-classification"


def test_concurrent_requests_share_one_batch_and_each_decodes_with_its_own_parameters(tagger):
    """The worker is held on a first request while eight others queue up (both routes, five aggregations,
    different ignore_labels); released, they run as ONE model batch, and each answer is its own decode."""
    release = threading.Event()
    asgi = _build(lambda: SlowClassifier(tagger, release), "slow", ServeOptions(max_wait_ms=0), False)
    plans = [
        ("/", {"aggregation_strategy": "none"}, "none", ("O",)),
        ("/", {"aggregation_strategy": "simple", "ignore_labels": []}, "simple", None),
        ("/", {"aggregation_strategy": "first"}, "first", ("O",)),
        ("/", {"aggregation_strategy": "average", "ignore_labels": ["ITEM"]}, "average", ("ITEM",)),
        ("/predict", {"aggregation_strategy": "max"}, "max", ("O",)),
        ("/predict", {"aggregation_strategy": "none", "ignore_labels": []}, "none", None),
        ("/predict", {}, "simple", ("O",)),
        ("/", {"aggregation_strategy": "SIMPLE", "ignore_labels": ["TIME"]}, "simple", ("TIME",)),
    ]

    def post(url: str, i: int) -> httpx.Response:
        route, params, _, _ = plans[i]
        texts = [TEXTS[i % len(TEXTS)], TEXTS[(i + 1) % len(TEXTS)]]
        body = {"inputs": texts, "parameters": params} if route == "/" else {"inputs": texts, **params}
        return httpx.post(f"{url}{route}", json=body, timeout=60)

    try:
        with running(asgi) as url, ThreadPoolExecutor(len(plans) + 1) as pool:
            hold = lambda: httpx.post(f"{url}/predict", json={"inputs": "holds the worker"}, timeout=60)  # noqa: E731
            held = lambda: asgi.state.batcher.classifier.calls == 2  # noqa: E731
            sends = [lambda i=i: post(url, i) for i in range(len(plans))]
            answers = in_one_batch(url, pool, release, held, hold, sends)
            metrics = httpx.get(f"{url}/metrics").text
    finally:
        release.set()
    assert _metric(metrics, "bertdeploy_batch_size_count") == 2  # the held request, then all eight together
    assert _metric(metrics, "bertdeploy_batch_size_sum") == 1 + 2 * len(plans)
    distinct = set()
    for i, (r, (_, _, aggregation, ignore)) in enumerate(zip(answers, plans, strict=True)):
        assert r.status_code == 200, r.text
        texts = [TEXTS[i % len(TEXTS)], TEXTS[(i + 1) % len(TEXTS)]]
        expected = tagger.predict(texts, aggregation=aggregation, ignore_labels=ignore)
        for got, want in zip(r.json(), expected, strict=True):
            _same(got, _dicts(want))
        distinct.add(str([[sorted(d) for d in x] for x in r.json()]) + str(len(r.json()[0])))
    assert len(distinct) > 2  # the decodes really differed


def test_softmax_scores_of_the_text_route_match_predict(text_url, varied_bundle):
    with load(varied_bundle, variant="fp32", threads=1) as clf:
        logits = clf.logits(["bad terrible hate"])
    answer = httpx.post(text_url, json={"inputs": "bad terrible hate"}, timeout=30).json()
    assert [d["score"] for d in answer[0]] == pytest.approx(sorted(softmax(logits)[0], reverse=True), abs=1e-6)
