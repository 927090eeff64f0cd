"""Property-based (hypothesis): whatever a manifest holds and whatever a caller passes, the runtime either works or
raises a UserError; never another exception (a TypeError, an OverflowError, a StopIteration ...)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bertdeploy
from bertdeploy.errors import UserError

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: a red CI is reproducible
    database=None,  # no .hypothesis/ folder in the working directory
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
#: values a careless or hostile manifest may hold where a path, a name or a number is expected
PLAUSIBLE = st.sampled_from(
    [
        "",
        ".",
        "..",
        "../x",
        "/etc/passwd",
        "onnx",
        "onnx/model.onnx",
        "tokenizer.json",
        "fp32",
        "x" * 300,
        -1,
        0,
        1,
        2**63,
        1.5,
        True,
        [],
        {},
        ["input_ids"],
        {"file": "../tokenizer.json"},
    ]  # fmt: skip
)
TOP_KEYS = ["format", "format_version", "labels", "max_length", "variants", "tokenizer", "model_inputs", "rejected",
            "task"]  # fmt: skip
VARIANT_KEYS = ["name", "file", "sha256", "bytes", "precision", "opset", "fused_nodes", "parity", "notes"]


@pytest.fixture(scope="module")
def mutable_bundle(tmp_path_factory, tiny_bundle):
    b = tmp_path_factory.mktemp("prop") / "bundle"
    shutil.copytree(tiny_bundle, b)
    return b, json.loads((b / "bertdeploy.json").read_text(encoding="utf-8"))


def _only_user_errors(call) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except UserError:
        pass


@SETTINGS
@given(
    changes=st.lists(
        st.tuples(
            st.sampled_from(TOP_KEYS + [f"variant.{k}" for k in VARIANT_KEYS] + ["tokenizer.file"]),
            st.one_of(JSON, PLAUSIBLE, st.just("<delete>")),
        ),  # fmt: skip
        min_size=1,
        max_size=3,
    ),
    variant=st.sampled_from(["auto", "fp32", "qint8"]),
)
def test_any_manifest_loads_or_is_a_user_error(mutable_bundle, changes, variant):
    bundle, original = mutable_bundle
    manifest = json.loads(json.dumps(original))
    for key, value in changes:
        where, _, name = key.rpartition(".")
        target = manifest
        if where == "variant":
            target = manifest["variants"][0] if isinstance(manifest.get("variants"), list) else {}
            target = target if isinstance(target, dict) else {}
        elif where == "tokenizer":
            target = manifest["tokenizer"] if isinstance(manifest.get("tokenizer"), dict) else {}
        if value == "<delete>":
            target.pop(name, None)
        else:
            target[name] = value
    (bundle / "bertdeploy.json").write_text(json.dumps(manifest), encoding="utf-8")

    def load_and_predict():
        clf = bertdeploy.load(bundle, variant=variant, threads=1)
        assert len(clf.predict(["good day"])) == 1

    _only_user_errors(load_and_predict)


NUMBER = st.one_of(st.integers(-3, 16), st.floats(allow_nan=True), st.none(), st.booleans(), st.text(max_size=4))
BIG = st.one_of(st.integers(-3, 10**6), NUMBER)
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(max_size=10).map(np.str_),
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=4),
    st.lists(st.text(max_size=3), max_size=2),
)


@SETTINGS
@given(
    options=st.fixed_dictionaries(
        {},
        optional={
            "batch_size": BIG,
            "max_tokens": BIG,
            "threads": NUMBER,
            "streams": NUMBER,
            "padding": st.sampled_from(["bucketed", "dynamic", "static", "ragged", "", 3]),
            "variant": st.sampled_from(["auto", "fp32", "O2", "qint8", "fp16", "bogus", "", None, 1]),
            "device": st.sampled_from(["auto", "cpu", "cuda", "cuda:0", "cuda:x", "tensorrt", "tpu", "", 5, None]),
            "allow_fallback": st.booleans(),
        },
    ),
    texts=st.one_of(st.lists(TEXT, max_size=6), TEXT, st.just(np.array(["a", "b"]))),
    top_k=st.one_of(st.integers(-2, 5), st.floats(allow_nan=True), st.none(), st.booleans(), st.just(np.int64(2))),
)
def test_any_api_arguments_work_or_are_a_user_error(tiny_bundle, options, texts, top_k):
    def call():
        clf = bertdeploy.load(tiny_bundle, **options)
        out = clf.predict(texts, top_k=top_k)
        n = 1 if isinstance(texts, str) else len(texts)
        assert len(out) == n
        assert list(clf.predict_iter(texts if not isinstance(texts, str) else [texts], chunk_size=2)) == [
            *clf.predict(texts)
        ]

    _only_user_errors(call)


def _spans_over_every_pair(window, k: int, max_answer_len: int) -> list[tuple[int, int, float]]:
    """The n-best search as the transformers pipeline writes it: the whole start x end product, then masked."""
    from bertdeploy.runtime.spans import _softmax

    allowed = window.context.copy()
    allowed[window.cls] = True
    start, end = _softmax(window.start, allowed), _softmax(window.end, allowed)
    index = np.flatnonzero(window.context)
    band = np.outer(start[index], end[index])
    gap = index[None, :] - index[:, None]
    band[(gap < 0) | (gap > max_answer_len - 1)] = 0.0
    order = sorted(((-band[r, c], index[r], index[c]) for r, c in zip(*np.nonzero(band))))
    return [(int(s), int(e), float(-score)) for score, s, e in order[:k]]


@given(
    n=st.integers(2, 60),
    seed=st.integers(0, 2**16),
    k=st.integers(1, 40),
    max_answer_len=st.integers(1, 20),
    holes=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_the_banded_n_best_search_finds_the_spans_of_the_whole_product(n, seed, k, max_answer_len, holes):
    """``window_spans`` scores only ``max_answer_len`` diagonals; its best spans are those of every (start, end)."""
    from bertdeploy.runtime.spans import Window, window_spans

    rng = np.random.default_rng(seed)
    context = np.zeros(n, dtype=bool)
    context[1 : n - 1] = True  # [CLS] ... [SEP]
    if holes:  # context tokens need not be contiguous (a question-match marker, a second [SEP])
        context &= rng.random(n) > 0.3
    spans = np.stack([np.arange(n), np.arange(n) + 1], axis=1)
    window = Window(rng.normal(0, 3, n), rng.normal(0, 3, n), context, spans, np.arange(n))
    got, _ = window_spans(window, k, max_answer_len)
    assert [x for x in got if x[2] > 0] == _spans_over_every_pair(window, k, max_answer_len)
