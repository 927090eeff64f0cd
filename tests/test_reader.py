"""The question-answering and multiple-choice heads: answers equal to the transformers pipeline's (windows and
n-best included), offsets into the context, choices equal to PyTorch's, and one clear error per bad record."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_mc_records, tiny_qa_records

from bertdeploy.errors import UserError
from bertdeploy.runtime import load
from bertdeploy.runtime.chooser import Choice, Chooser
from bertdeploy.runtime.reader import Reader, SpanLogits

RECORDS = tiny_qa_records(24, seed=7)


@pytest.fixture(scope="module")
def reader(tiny_qa_bundle) -> Reader:
    with load(tiny_qa_bundle, variant="fp32", threads=1) as r:
        yield r


@pytest.fixture(scope="module")
def chooser(tiny_mc_bundle) -> Chooser:
    with load(tiny_mc_bundle, variant="fp32", threads=1) as c:
        yield c


@pytest.mark.parametrize(
    "params",
    [{}, {"top_k": 3}, {"top_k": 2, "handle_impossible_answer": True}, {"max_answer_len": 2}],
    ids=["best", "top3", "impossible", "short"],
)
def test_answers_equal_the_transformers_pipeline(tiny_reader_dir, reader, params):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    model = AutoModelForQuestionAnswering.from_pretrained(tiny_reader_dir)
    pipe = pipeline("question-answering", model=model, tokenizer=AutoTokenizer.from_pretrained(tiny_reader_dir))
    assert reader.encode(RECORDS).truncated > 5  # many contexts need several windows
    ours = reader.predict(RECORDS, **params)
    for record, mine in zip(RECORDS, ours, strict=True):
        theirs = pipe(question=record["question"], context=record["context"], max_seq_len=32, doc_stride=16, **params)
        theirs, mine = (theirs if isinstance(theirs, list) else [theirs]), (mine if isinstance(mine, list) else [mine])
        assert [(d["answer"], d["start"], d["end"]) for d in theirs] == [(a.answer, a.start, a.end) for a in mine]
        np.testing.assert_allclose([d["score"] for d in theirs], [a.score for a in mine], rtol=1e-4, atol=1e-6)
        assert all(a.answer == record["context"][a.start : a.end] for a in mine)


def test_chinese_answers_are_slices_of_the_context(reader):
    context = "在歐洲，梵語的學術研究由德國學者開創。movie at night 後來威廉發現印歐語系。" * 3
    [found] = reader.predict({"question": "誰開創了研究？", "context": context}, top_k=5)
    assert len(found) == 5 and all(a.answer == context[a.start : a.end] and a.answer for a in found)


def test_records_may_be_pairs_and_slices_decode_like_the_whole(reader):
    pairs = [(r["question"], r["context"]) for r in RECORDS[:6]]
    assert reader.predict(pairs) == reader.predict(RECORDS[:6])
    logits = reader.logits(RECORDS[:6])
    parts = [logits[0:2], logits[2:3], logits[3:6]]
    assert [a for p in parts for a in reader.decode(p)] == reader.decode(logits)
    assert reader.decode(SpanLogits.concat(parts)) == reader.decode(logits)
    assert reader.predict(RECORDS[0])[0].to_dict().keys() == {"answer", "score", "start", "end"}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"question": "where?"}, "record #0 has no 'context'"),
        ([{"question": "where?", "context": "  "}], "record #0: the context is empty"),
        ([("where?", 3)], "record #0: the context is int"),
        ("where is it", "records must be"),
        ([["a", "b", "c"]], "record #0 must be"),
    ],
)
def test_bad_qa_records_are_one_user_error(reader, records, message):
    with pytest.raises(UserError, match=message):
        reader.predict(records)


def test_bad_qa_parameters_are_one_user_error(reader):
    with pytest.raises(UserError, match="top_k must be an integer >= 1"):
        reader.predict(RECORDS[:1], top_k=0)
    with pytest.raises(UserError, match="max_answer_len must be an integer >= 1"):
        reader.predict(RECORDS[:1], max_answer_len=1.5)


def test_choices_equal_pytorch(tiny_chooser_dir, chooser):
    import torch
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    records = tiny_mc_records(16, seed=5)
    model = AutoModelForMultipleChoice.from_pretrained(tiny_chooser_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_chooser_dir)
    firsts = [r["question"] for r in records for _ in r["choices"]]
    seconds = [c for r in records for c in r["choices"]]
    enc = tok(firsts, seconds, truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**{k: v.view(len(records), 3, -1) for k, v in enc.items()}).logits.numpy()
    proba = np.exp(logits - logits.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    ours = chooser.predict(records)
    assert [c.label for c in ours] == proba.argmax(1).tolist()
    np.testing.assert_allclose([c.score for c in ours], proba.max(1), atol=1e-5)
    assert len(set(c.label for c in ours)) > 1  # the comparison compared something
    assert chooser.predict(("i love the movie", ["a movie", "a book"])) == chooser.predict(
        [{"question": "i love the movie", "choices": ["a movie", "a book"]}]
    )
    assert Choice(1, 0.5).to_dict() == {"label": 1, "score": 0.5}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"question": "q", "choices": ["a", "b"]}, {"question": "q", "choices": ["a", "b", "c"]}],
         "record #1 has 3 choices, record #0 has 2"),
        ([{"question": "q", "choices": ["a"]}], "at least 2 strings"),
        ([{"question": "q", "choices": ["a", ""]}], "every choice must be a non-empty string"),
        ([{"question": "", "choices": ["a", "b"]}], "the question must be a non-empty string"),
        ([{"choices": ["a", "b"]}], "needs 'question' and 'choices'"),
    ],
)  # fmt: skip
def test_bad_choice_records_are_one_user_error(chooser, records, message):
    with pytest.raises(UserError, match=message):
        chooser.predict(records)
