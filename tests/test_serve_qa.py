"""`serve` for question answering and multiple choice on a real socket: huggingface_hub's ``InferenceClient``
(unmodified) asks ``question_answering`` and gets the runtime Reader's answers (top_k, impossible answers, Chinese
offsets), multiple choice answers ``{label, score}`` in the same style, questions of concurrent requests share one
dynamic batch and decode with their own parameters, and every bad request is a 4xx JSON error naming its problem."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import HTTP_CLIENT, SlowClassifier, tiny_mc_records, tiny_qa_records

httpx = pytest.importorskip(HTTP_CLIENT)
pytest.importorskip("uvicorn")
huggingface_hub = pytest.importorskip("huggingface_hub")

from huggingface_hub.errors import HfHubHTTPError as HTTPError  # noqa: E402
from test_serve_server import _metric, in_one_batch, running  # noqa: E402

from bertdeploy.runtime import LoadOptions  # noqa: E402
from bertdeploy.serve import ServeOptions, app  # noqa: E402
from bertdeploy.serve.asgi import _build  # noqa: E402

QA = tiny_qa_records(8, seed=41)
MC = tiny_mc_records(6, seed=42)
CHINESE = "在歐洲，梵語的學術研究由德國學者開創。movie at night 後來威廉發現印歐語系。" * 2


@pytest.fixture(scope="module")
def qa_url(tiny_qa_bundle):
    with running(app(tiny_qa_bundle, LoadOptions(variant="fp32", threads=1), ServeOptions(max_request_texts=4))) as u:
        yield u


@pytest.fixture(scope="module")
def mc_url(tiny_mc_bundle):
    with running(app(tiny_mc_bundle, LoadOptions(variant="fp32", threads=1))) as u:
        yield u


def _client(url: str):
    return huggingface_hub.InferenceClient(url, timeout=60)


def _same(got: dict, answer) -> None:
    assert (got["answer"], got["start"], got["end"]) == (answer.answer, answer.start, answer.end)
    assert got["score"] == pytest.approx(answer.score, abs=1e-6)


def test_inference_client_question_answering(qa_url, qa_reader):
    for record in [*QA, {"question": "誰開創了研究？", "context": CHINESE}]:
        got = _client(qa_url).question_answering(question=record["question"], context=record["context"])
        [expected] = qa_reader.predict([record])
        _same(dict(got), expected)
        assert got.answer == record["context"][got.start : got.end] and got.answer


@pytest.mark.parametrize("params", [{"top_k": 3}, {"top_k": 2, "handle_impossible_answer": True, "max_answer_len": 3}])
def test_inference_client_top_k_is_a_list(qa_url, qa_reader, params):
    record = QA[1]
    got = _client(qa_url).question_answering(question=record["question"], context=record["context"], **params)
    [expected] = qa_reader.predict([record], **params)
    assert isinstance(got, list) and len(got) == len(expected) == params["top_k"]
    for element, answer in zip(got, expected, strict=True):
        _same(dict(element), answer)


def test_a_list_of_questions_answers_in_order(qa_url, qa_reader):
    inputs = [{"question": r["question"], "context": r["context"]} for r in QA[:4]]
    r = httpx.post(qa_url, json={"inputs": inputs, "parameters": {"doc_stride": qa_reader.doc_stride}}, timeout=60)
    assert r.status_code == 200, r.text
    for got, expected in zip(r.json(), qa_reader.predict(inputs), strict=True):
        _same(got, expected)


def test_multiple_choice_in_the_same_style(mc_url, mc_chooser):
    one = {"question": MC[0]["question"], "choices": MC[0]["choices"]}
    r = httpx.post(mc_url, json={"inputs": one}, timeout=60)
    [expected] = mc_chooser.predict([one])
    assert r.status_code == 200 and r.json()["label"] == expected.label
    assert r.json()["score"] == pytest.approx(expected.score, abs=1e-6)
    many = [{"question": m["question"], "choices": m["choices"]} for m in MC]
    r = httpx.post(mc_url, json={"inputs": many}, timeout=60)
    assert [g["label"] for g in r.json()] == [c.label for c in mc_chooser.predict(many)]
    assert httpx.get(f"{mc_url}/info").json()["task"] == "multiple-choice"


BAD_QA = [
    ({"inputs": {"question": "where?"}}, "'inputs'.context is missing"),
    ({"inputs": {"question": "where?", "context": "  "}}, "'inputs'.context is an empty string"),
    ({"inputs": "where is the food?"}, "'inputs' must be an object"),
    ({"inputs": [{"question": "a", "context": "b"}] * 5}, "at most 4 are accepted"),
    ({"inputs": {"question": "a", "context": "b", "extra": 1}}, "unknown field(s) 'extra'"),
    ({"inputs": {"question": "a", "context": "b"}, "parameters": {"top_k": 0}}, "'top_k' must be an integer >= 1"),
    ({"inputs": {"question": "a", "context": "b"}, "parameters": {"doc_stride": 3.5}}, "'doc_stride' must be an int"),
    ({"inputs": {"question": "a", "context": "b"}, "parameters": {"doc_stride": 29}}, "doc_stride must be < 29"),
    ({"inputs": {"question": "a", "context": "b"}, "parameters": {"max_seq_len": 64}}, "'max_seq_len' is fixed"),
    ({"inputs": {"question": "a", "context": "b"}, "parameters": {"max_question_len": 8}}, "never truncated"),
    ({"inputs": {"question": "a", "context": "b"}, "parameters": {"stride": 8}}, "unknown parameter(s) 'stride'"),
    ({"inputs": {"question": "where is " * 20, "context": "b"}}, "leaves no room for the context"),
]


@pytest.mark.parametrize(("body", "said"), BAD_QA, ids=range(len(BAD_QA)))
def test_bad_question_requests_are_422_json(qa_url, body, said):
    r = httpx.post(qa_url, json=body, timeout=60)
    assert 400 <= r.status_code < 500 and said in r.json()["error"], r.text
    assert r.json()["error_type"] == "validation"


def test_bad_requests_through_the_client_and_predict(qa_url, mc_url):
    with pytest.raises(HTTPError, match="context is an empty string"):
        _client(qa_url).question_answering(question="where?", context=" ")
    r = httpx.post(f"{qa_url}/predict", json={"inputs": "where?"}, timeout=60)
    assert r.status_code == 422 and "no question-answering; POST / with" in r.json()["error"]
    odd = [{"question": "a", "choices": ["x", "y"]}, {"question": "b", "choices": ["x", "y", "z"]}]
    r = httpx.post(mc_url, json={"inputs": odd}, timeout=60)
    assert r.status_code == 422 and "as many choices" in r.json()["error"]
    r = httpx.post(mc_url, json={"inputs": {"question": "a", "choices": ["x"]}}, timeout=60)
    assert r.status_code == 422 and "at least 2 strings" in r.json()["error"]


def _held_batch(qa_reader, plans: list[dict]) -> int:
    """Hold the server's model on one request, queue a request of two questions per plan (its parameters) behind it,
    release: check every answer against ``qa_reader.predict`` with that plan; return the model batches counted."""
    release = threading.Event()
    asgi = _build(lambda: SlowClassifier(qa_reader, release), "slow", ServeOptions(max_wait_ms=0), False)

    def post(url: str, i: int) -> httpx.Response:
        inputs = [{"question": r["question"], "context": r["context"]} for r in QA[i : i + 2]]
        return httpx.post(url, json={"inputs": inputs, "parameters": plans[i]}, timeout=60)

    try:
        with running(asgi) as url, ThreadPoolExecutor(len(plans) + 1) as pool:
            hold = lambda: httpx.post(url, json={"inputs": {"question": "a", "context": "b c"}}, timeout=60)  # noqa: E731
            held = lambda: asgi.state.batcher.classifier.calls == 2  # noqa: E731
            sends = [lambda i=i: post(url, i) for i in range(len(plans))]
            answers = in_one_batch(url, pool, release, held, hold, sends)
            metrics = httpx.get(f"{url}/metrics").text
    finally:
        release.set()
    for i, (r, params) in enumerate(zip(answers, plans, strict=True)):
        assert r.status_code == 200, r.text
        expected = qa_reader.predict(QA[i : i + 2], **params)
        for got, want in zip(r.json(), expected, strict=True):
            for g, w in zip(*((got, want) if isinstance(got, list) else ([got], [want])), strict=True):
                _same(g, w)
    return _metric(metrics, "bertdeploy_batch_size_count")


def test_concurrent_questions_share_one_batch_and_decode_with_their_own_parameters(qa_reader):
    plans = [{}, {"top_k": 2}, {"max_answer_len": 2}, {"top_k": 3, "handle_impossible_answer": True}, {"top_k": 1}]
    assert _held_batch(qa_reader, plans) == 2  # the held request, then all five together


def test_requests_with_their_own_doc_stride_run_as_their_own_batch(qa_reader, qa_url):
    """``doc_stride`` per request, as the pipeline takes it: queued requests with the bundle's stride share one model
    batch, those with another stride get one of their own; each answers as ``predict(..., doc_stride=...)``."""
    got = _client(qa_url).question_answering(question=QA[0]["question"], context=QA[0]["context"], doc_stride=6)
    _same(dict(got), qa_reader.predict([QA[0]], doc_stride=6)[0])
    plans = [{}, {"doc_stride": 6}, {"doc_stride": 6, "top_k": 2}, {}]
    assert _held_batch(qa_reader, plans) == 3  # the held request, then one batch per stride
    assert qa_reader.predict(QA[:4], doc_stride=6) != qa_reader.predict(QA[:4])  # the stride changes answers here
