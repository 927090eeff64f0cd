"""The two-stage reader: the selection bundle picks a paragraph, the QA bundle answers in it; evaluated like the
course report (selection accuracy, QA on gold paragraphs, end to end)."""

from __future__ import annotations

import json
import random

import pytest
from helpers import tiny_qa_records

from bertdeploy.errors import UserError
from bertdeploy.runtime import load
from bertdeploy.runtime.two_stage import TwoStageReader, evaluate


@pytest.fixture(scope="module")
def paragraph_ids(tmp_path_factory):
    """The paragraph-id layout over tiny QA records: each question, its paragraph and two others."""
    root = tmp_path_factory.mktemp("paragraph_ids")
    records = tiny_qa_records(12, seed=4)
    contexts = [r["context"] for r in records]
    rng = random.Random(0)
    rows = []
    for i, r in enumerate(records):
        ids = [i, *rng.sample([j for j in range(len(records)) if j != i], 2)]
        rng.shuffle(ids)
        answer = {"text": r["answers"]["text"][0], "start": r["answers"]["answer_start"][0]}
        rows.append({"id": r["id"], "question": r["question"], "paragraphs": ids, "relevant": i, "answer": answer})
    (root / "context.json").write_text(json.dumps(contexts), encoding="utf-8")
    for split in ("train", "test"):
        (root / f"{split}.json").write_text(json.dumps(rows), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def two_stage(tiny_mc_bundle, tiny_qa_bundle):
    reader = TwoStageReader(load(tiny_mc_bundle, variant="fp32"), load(tiny_qa_bundle, variant="fp32"))
    yield reader
    reader.close()


def test_the_answer_comes_from_the_selected_paragraph(two_stage):
    others = ["i love the movie", "the food was bad at night"]
    records = [{"question": r["question"], "paragraphs": [r["context"], *others]} for r in tiny_qa_records(6, seed=8)]
    found = two_stage.predict(records)
    for record, f in zip(records, found, strict=True):
        paragraph = record["paragraphs"][f.paragraph]
        assert f.answer == paragraph[f.start : f.end] and 0 < f.paragraph_score <= 1
        [alone] = two_stage.reader.predict([(record["question"], paragraph)])
        assert (alone.answer, alone.start) == (f.answer, f.start)
    assert set(found[0].to_dict()) == {"answer", "score", "start", "end", "paragraph", "paragraph_score"}


def test_evaluate_reports_selection_qa_alone_and_end_to_end(two_stage, paragraph_ids):
    report = evaluate(two_stage, paragraph_ids)
    assert report["questions"] == 12 and 0 <= report["selection_accuracy"] <= 1
    assert report["qa_on_gold_paragraphs"]["n"] == report["end_to_end"]["n"] == 12
    if report["selection_accuracy"] == 1.0:
        assert report["end_to_end"] == report["qa_on_gold_paragraphs"]


def test_the_heads_must_be_of_the_right_tasks(tiny_mc_bundle, tiny_token_bundle):
    with load(tiny_mc_bundle) as select, load(tiny_token_bundle) as tagger:
        with pytest.raises(UserError, match="the answer model must be a question-answering bundle, got token-"):
            TwoStageReader(select, tagger)
        with pytest.raises(UserError, match="the selection model must be a multiple-choice bundle"):
            TwoStageReader(tagger, select)


def test_the_overlap_selector_picks_the_paragraph_holding_the_question_s_bigrams():
    from bertdeploy.runtime.two_stage import OverlapSelector

    question = "台北市的人口有多少？"
    choices = ["高雄市位於台灣南部。", "台北市的人口約為二百五十萬人。", "台中市的天氣很好。"]
    [choice] = OverlapSelector().predict([{"question": question, "choices": choices}])
    assert choice.label == 1 and 0.5 < choice.score <= 1
    english = OverlapSelector().predict([("Who WROTE the play?", ["The play was written by Ann.", "Rain fell."])])
    assert english[0].label == 0  # case-folded
    nothing = OverlapSelector().predict([("xyz", ["abc", "def"])])
    assert (nothing[0].label, nothing[0].score) == (0, 0.0)  # a tie: the first


def test_the_overlap_selector_stands_for_a_selection_bundle(tiny_qa_bundle, paragraph_ids, tmp_path):
    from bertdeploy.cli import cli
    from bertdeploy.runtime import predict_file
    from bertdeploy.runtime.two_stage import OverlapSelector

    with load(tiny_qa_bundle, variant="fp32") as qa:
        reader = TwoStageReader(OverlapSelector(), qa)
        report = evaluate(reader, paragraph_ids)
    assert report["selection_accuracy"] > 0.5  # chance: 1/3
    out = tmp_path / "e2e.jsonl"
    res = predict_file("overlap", str(paragraph_ids / "test.json"), str(out), then=tiny_qa_bundle, variant="fp32")
    assert res.metrics["selection_accuracy"] == report["selection_accuracy"]
    assert res.metrics["exact_match"] == report["end_to_end"]["exact_match"] and res.variant == "fp32"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12 and {"paragraph", "paragraph_score", "paragraph_id"} <= set(rows[0])
    contexts = json.loads((paragraph_ids / "context.json").read_text(encoding="utf-8"))
    questions = json.loads((paragraph_ids / "test.json").read_text(encoding="utf-8"))
    chosen = OverlapSelector().predict([(q["question"], [contexts[j] for j in q["paragraphs"]]) for q in questions])
    assert [r["paragraph"] for r in rows] == [c.label for c in chosen]
    args = ["predict", "overlap", "--then", str(tiny_qa_bundle), "-i", str(paragraph_ids / "test.json"), "-o",
            str(tmp_path / "cli.jsonl"), "--variant", "fp32"]  # fmt: skip
    from click.testing import CliRunner

    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "selection accuracy" in r.output, r.output
    r = CliRunner().invoke(cli, ["predict", "overlap", "-i", str(paragraph_ids / "test.json"), "-o", str(out)])
    assert r.exit_code == 2 and r.stderr.startswith("error: overlap is a selection stage without a model")


def test_ray_actors_get_the_overlap_word_and_absolute_bundle_paths(tmp_path, monkeypatch):
    from bertdeploy.runtime.qa_files import QAJob
    from bertdeploy.runtime.qa_ray import _absolute
    from bertdeploy.runtime.qa_records import SELECT

    monkeypatch.chdir(tmp_path)
    job = _absolute(QAJob("overlap", "in.json", "out.jsonl", "json", "jsonl", SELECT, then="models/qa"))
    assert (job.bundle, job.then) == ("overlap", str(tmp_path / "models" / "qa"))
    job = _absolute(QAJob("overlap", "in.json", "out.jsonl", "json", "jsonl", "multiple-choice"))
    assert job.bundle == str(tmp_path / "overlap")  # without a QA bundle after it, a path like any other
