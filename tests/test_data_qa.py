"""Question-answering and multiple-choice data: the four layouts, task detection, checked offsets, and one error
line naming the record for each bad input; the QA metrics against the official scripts' rules."""

from __future__ import annotations

import json

import pytest
from helpers import write_jsonl

from bertdeploy.data import DataSpec, detect_tasks, load_data
from bertdeploy.errors import UserError
from bertdeploy.metrics_qa import answer_scores, cmrc_segments, qa_metrics, squad_normalize

SQUAD = {
    "version": "1.1",
    "data": [{"title": "t", "paragraphs": [{"context": "The cat sat on the mat.", "qas": [
        {"id": "a", "question": "Where did the cat sit?", "answers": [{"text": "the mat", "answer_start": 15}]},
        {"id": "b", "question": "Who sat?", "answers": [{"text": "cat", "answer_start": 4}]},
    ]}]}],
}  # fmt: skip


def _squad(path, doc=SQUAD):
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_squad_json_flattened_jsonl_and_multiple_choice_jsonl(tmp_path, tiny_qa_dir, tiny_mc_dir):
    _squad(tmp_path / "train.json")
    data = load_data(DataSpec(str(tmp_path)))
    assert data.task == "question-answering" and data.labels == []
    rows = {k: v for k, v in data.splits["train"].items()}
    rows_v = data.splits["validation"]
    assert sorted(rows["id"] + rows_v["id"]) == ["a", "b"]
    qa = load_data(DataSpec(str(tiny_qa_dir)))
    assert qa.task == "question-answering" and qa.rows("test") == 20
    assert qa.splits["test"]["answers"][0]["text"][0] in qa.splits["test"]["context"][0]
    mc = load_data(DataSpec(str(tiny_mc_dir)))
    assert mc.task == "multiple-choice" and len(mc.splits["train"]["choices"][0]) == 3


def test_the_paragraph_id_layout_serves_both_tasks(tmp_path):
    contexts = ["p zero", "the answer is here", "p two"]
    (tmp_path / "context.json").write_text(json.dumps(contexts), encoding="utf-8")
    rows = [{"id": "q1", "question": "where?", "paragraphs": [0, 1, 2], "relevant": 1,
             "answer": {"text": "here", "start": 14}}]  # fmt: skip
    (tmp_path / "train.json").write_text(json.dumps(rows * 2), encoding="utf-8")
    assert detect_tasks(str(tmp_path)) == ["multiple-choice", "question-answering"]
    with pytest.raises(UserError, match="serves multiple-choice and question-answering: pass --task"):
        load_data(DataSpec(str(tmp_path)))
    mc = load_data(DataSpec(str(tmp_path), task="multiple-choice", val_ratio=0.5))
    assert mc.splits["train"]["choices"][0] == contexts and mc.splits["train"]["label"] == [1]
    qa = load_data(DataSpec(str(tmp_path), task="question-answering", val_ratio=0.5))
    assert qa.splits["train"]["context"] == ["the answer is here"]
    with pytest.raises(UserError, match="holds multiple-choice data, but the task is token-classification"):
        load_data(DataSpec(str(tmp_path), task="token-classification"))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "x", "question": "q", "context": "abc", "answers": {"text": ["b"], "answer_start": [0]}},
         r"question 'x'\): the answer 'b' is not at 0 of its context \(found 'a'\)"),
        ({"id": "x", "question": "q", "context": "", "answers": {"text": [], "answer_start": []}},
         r"question 'x'\): 'context' is empty"),
        ({"id": "x", "context": "abc", "answers": {"text": [], "answer_start": []}}, r"question 'x'\): no field"),
        ({"id": "x", "question": "q", "context": "abc", "answers": {"text": ["a"], "answer_start": []}},
         "1 answer texts but 0 answer starts"),
    ],
)  # fmt: skip
def test_bad_qa_records_name_the_question(tmp_path, record, message):
    write_jsonl(tmp_path / "train.jsonl", [record])
    with pytest.raises(UserError, match=message):
        load_data(DataSpec(str(tmp_path), task="question-answering"))


def test_a_wrong_squad_offset_names_the_question(tmp_path):
    doc = json.loads(json.dumps(SQUAD))
    doc["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 5
    _squad(tmp_path / "train.json", doc)
    with pytest.raises(UserError, match=r"question 'b': the answer 'cat' is not at 5"):
        load_data(DataSpec(str(tmp_path)))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": 1, "question": "q", "choices": ["a", "b"], "label": 0},
          {"id": 2, "question": "q", "choices": ["a", "b", "c"], "label": 0}], "3 choices, but the first record has 2"),
        ([{"id": 1, "question": "q", "choices": ["a", "b"], "label": 2}], "'label' must be a choice index in"),
        ([{"id": 1, "question": "q", "choices": ["a", ""], "label": 0}], "at least 2 non-empty strings"),
    ],
)  # fmt: skip
def test_bad_choice_records_name_the_question(tmp_path, rows, message):
    write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(UserError, match=message):
        load_data(DataSpec(str(tmp_path)))


def test_squad_rules_for_english():
    assert squad_normalize("The  Eiffel-Tower!") == "eiffeltower"
    assert answer_scores("the Eiffel Tower", ["Eiffel Tower", "Paris"]) == (1.0, 1.0)
    em, f1 = answer_scores("Eiffel Tower in Paris", ["the Eiffel Tower"])
    assert em == 0.0 and f1 == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))
    assert qa_metrics(["a", "cat"], [["dog"], ["the cat"]]) == {"exact_match": 0.5, "f1": 0.5, "n": 2}


def test_cmrc_rules_for_chinese():
    assert cmrc_segments("1786年2月2日，abc-def") == ["1786", "年", "2", "月", "2", "日", "abcdef"]
    assert answer_scores("歐洲。", ["歐洲"]) == (1.0, 1.0)  # punctuation removed before comparing
    em, f1 = answer_scores("在歐洲", ["歐洲", "亞洲"])
    assert em == 0.0 and f1 == pytest.approx(0.8)  # longest common run 2 of 3 predicted, 2 of 2 reference
    assert answer_scores("德國", ["法國人"]) == (0.0, pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3)))


@pytest.mark.integration
def test_the_shared_qa_sets_load_with_their_published_counts(shared_datasets):
    drcd = load_data(DataSpec(str(shared_datasets / "drcd")))
    assert drcd.task == "question-answering"
    assert [drcd.rows(s) for s in ("train", "validation", "test")] == [3524, 1516, 1977]
    select = load_data(DataSpec(str(shared_datasets / "drcd_select"), task="multiple-choice"))
    assert [select.rows(s) for s in ("train", "validation", "test")] == [3524, 1516, 1977]
    assert {len(c) for c in select.splits["test"]["choices"]} == {4}
    assert select.splits["test"]["label"].count(0) == 495
