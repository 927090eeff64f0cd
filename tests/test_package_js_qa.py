"""transformers.js's ``question-answering`` pipeline on a bertdeploy QA bundle folder as it is (Node, tests/js):
it loads and answers, and where a context fits one window its answer is the runtime's (as text: transformers.js
decodes the answer's tokens, so an uncased tokenizer's answer is lower-cased and re-spaced, and it returns no
``start`` / ``end``). What differs, checked: transformers.js has no ``max_answer_len`` (any span length; compared
here with ``max_answer_len=max_length``) and no ``doc_stride`` windows, so a context longer than ``max_length`` is
cut and its answer can only come from the first window, where bertdeploy searches every window.
Skips without ``node`` or without ``npm ci --ignore-scripts --prefix tests/js``."""

from __future__ import annotations

import re

import pytest
from helpers import tiny_qa_records
from test_package_js import _run_script

from bertdeploy import load

RECORDS = [{"question": r["question"], "context": r["context"]} for r in tiny_qa_records(40, seed=61)]


def _norm(text: str) -> str:
    """An answer as transformers.js spells it: lower case, tokens decoded with single spaces (none around the
    punctuation the BERT decoder joins)."""
    return re.sub(r"\s+", " ", text.lower()).strip()


def test_transformers_js_answers_like_the_runtime_within_one_window(tiny_qa_bundle, tmp_path):
    js = _run_script("answer.mjs", tiny_qa_bundle, "fp32", RECORDS, tmp_path, "1")
    with load(tiny_qa_bundle, variant="fp32", threads=1) as reader:
        ours = reader.predict(RECORDS, max_answer_len=reader.max_length)  # transformers.js has no length limit
        windows = [reader.encode([r]).truncated for r in RECORDS]
    assert len(js) == len(RECORDS) and all(set(a) == {"answer", "score"} for a in js)  # no start / end
    one = [i for i, w in enumerate(windows) if w == 0]
    several = [i for i, w in enumerate(windows) if w > 0]
    assert len(one) >= 10 and len(several) >= 5
    assert [_norm(js[i]["answer"]) for i in one] == [_norm(ours[i].answer) for i in one]
    assert [js[i]["score"] for i in one] == pytest.approx([ours[i].score for i in one], abs=1e-4)
    # a long context: transformers.js reads its first window only, bertdeploy every window
    first_window_only = [i for i in several if ours[i].start >= 0 and _norm(js[i]["answer"]) != _norm(ours[i].answer)]
    assert all(_norm(js[i]["answer"]) in _norm(RECORDS[i]["context"]) for i in several)
    assert first_window_only  # the windows bertdeploy searches change some answers
