"""predict_file and `bertdeploy predict` on question-answering and multiple-choice bundles and on the two-stage
reader: the rows equal the runtime heads' answers, every data layout is read (SQuAD JSON, flattened JSONL, MC JSONL,
the paragraph-id layout, csv), offsets point into the context (Chinese too), gold answers are scored, and each bad
record is one `error:` line naming it, nothing written."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from helpers import tiny_mc_records, tiny_qa_records, write_jsonl

from bertdeploy.cli import cli
from bertdeploy.errors import UserError
from bertdeploy.metrics_qa import qa_metrics
from bertdeploy.runtime import load, predict_file
from bertdeploy.runtime.qa_files import QuestionOptions
from bertdeploy.runtime.two_stage import TwoStageReader

QA_ROWS = tiny_qa_records(14, seed=11)
MC_ROWS = tiny_mc_records(10, seed=12)
CHINESE = "在歐洲，梵語的學術研究由德國學者開創。movie at night 後來威廉發現印歐語系。" * 2


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _run(bundle, src, out, **kw):
    return predict_file(bundle, str(src), str(out), variant="fp32", threads=1, **kw)


def _answers(found) -> list[dict]:
    return [{**a.to_dict(), "score": round(a.score, 6)} for a in found]


def test_qa_rows_equal_the_reader_and_gold_answers_are_scored(tiny_qa_bundle, qa_reader, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", QA_ROWS)
    res = _run(tiny_qa_bundle, src, tmp_path / "out.jsonl", chunk_size=4)
    got = _jsonl(tmp_path / "out.jsonl")
    expected = qa_reader.predict(QA_ROWS)
    assert [{k: r[k] for k in ("answer", "score", "start", "end")} for r in got] == _answers(expected)
    assert [(r["row"], r["id"]) for r in got] == [(i, q["id"]) for i, q in enumerate(QA_ROWS, 1)]
    assert all(r["answer"] == q["context"][r["start"] : r["end"]] for r, q in zip(got, QA_ROWS))
    gold = qa_metrics([a.answer for a in expected], [q["answers"]["text"] for q in QA_ROWS])
    assert res.metrics == {"exact_match": gold["exact_match"], "f1": gold["f1"], "answered": len(QA_ROWS)}
    assert (res.rows, res.task) == (len(QA_ROWS), "question-answering") and res.truncated >= 1  # windows ran


def test_top_k_writes_ranked_rows_and_csv_works(tiny_qa_bundle, qa_reader, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", QA_ROWS[:5])
    _run(tiny_qa_bundle, src, tmp_path / "out.csv", questions=QuestionOptions(top_k=3, max_answer_len=4))
    with open(tmp_path / "out.csv", encoding="utf-8", newline="") as f:
        got = list(csv.DictReader(f))
    expected = qa_reader.predict(QA_ROWS[:5], top_k=3, max_answer_len=4)
    assert [r["answer"] for r in got] == [a.answer for found in expected for a in found]
    assert [int(r["rank"]) for r in got] == [i for found in expected for i in range(1, len(found) + 1)]
    assert len(got) == 15 and list(got[0]) == ["row", "id", "rank", "answer", "score", "start", "end"]


def test_doc_stride_windows_like_the_transformers_pipeline(tiny_qa_bundle, tiny_reader_dir, tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    model = AutoModelForQuestionAnswering.from_pretrained(tiny_reader_dir)
    pipe = pipeline("question-answering", model=model, tokenizer=AutoTokenizer.from_pretrained(tiny_reader_dir))
    rows = QA_ROWS[:8]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    _run(tiny_qa_bundle, src, tmp_path / "out.jsonl", questions=QuestionOptions(doc_stride=6))
    got = _jsonl(tmp_path / "out.jsonl")
    theirs = [pipe(question=r["question"], context=r["context"], max_seq_len=32, doc_stride=6) for r in rows]
    assert [(r["answer"], r["start"], r["end"]) for r in got] == [(t["answer"], t["start"], t["end"]) for t in theirs]
    _run(tiny_qa_bundle, src, tmp_path / "default.jsonl")
    assert _jsonl(tmp_path / "default.jsonl") != got  # the stride changed the windows, so some answer
    with load(tiny_qa_bundle, variant="fp32", threads=1) as qa_reader:
        assert [(a.answer, a.start) for a in qa_reader.predict(rows, doc_stride=6)] == [
            (r["answer"], r["start"]) for r in got
        ]
        with pytest.raises(UserError, match="doc_stride must be < 29"):
            qa_reader.predict(rows, doc_stride=29)
        with pytest.raises(UserError, match=r"record #0: the question \(\d+ tokens\) leaves \d+ tokens of the 32-token "
                           "window for the context, not more than doc_stride 20"):  # fmt: skip
            qa_reader.predict([("where is the " + "very " * 10 + "food?", rows[0]["context"])], doc_stride=20)


def test_a_question_too_long_for_the_window_is_one_error_naming_it(tiny_qa_bundle, tmp_path, monkeypatch, capfd):
    """A question that leaves its context no room (or no more than the stride) in a window: the API names its place in
    the call (across the encoder's chunks), a file job its record and id, the CLI one line and exit 2, nothing
    written, and tokenizers never panics onto stderr (the question is measured before encoding)."""
    from bertdeploy.errors import RecordError
    from bertdeploy.runtime import reader as reader_module

    long = {"id": "long", "question": "where is the " + "very " * 40 + "food?", "context": QA_ROWS[0]["context"]}
    monkeypatch.setattr(reader_module, "SORT_WINDOW", 2)  # the long question in the second chunk of the call
    with load(tiny_qa_bundle, variant="fp32", threads=1) as qa_reader:
        with pytest.raises(RecordError, match="record #2: the question .* leaves no room for the context") as e:
            qa_reader.predict([*QA_ROWS[:2], long, QA_ROWS[2]])
        assert e.value.index == 2
        assert qa_reader.predict([QA_ROWS[0]])[0].end > 0  # the reader goes on
    src = write_jsonl(tmp_path / "in.jsonl", [*QA_ROWS[:2], long])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(cli, ["predict", str(tiny_qa_bundle), "-i", str(src), "-o", str(out), "-q"])
    assert res.exit_code == 2 and not out.exists()
    assert res.output.strip().splitlines() == [
        f"error: {src}: record 3 (id 'long'): the question (45 tokens) leaves no room for the context in a window of "
        "32 tokens: shorten it"]  # fmt: skip
    assert "panicked" not in capfd.readouterr().err


def test_squad_json_with_chinese_contexts(tiny_qa_bundle, qa_reader, tmp_path):
    start = CHINESE.index("德國學者")
    doc = {"data": [{"paragraphs": [
        {"context": CHINESE, "qas": [{"id": "z1", "question": "誰開創了研究？",
                                      "answers": [{"text": "德國學者", "answer_start": start}]}]},
        {"context": QA_ROWS[0]["context"], "qas": [{"id": "e1", "question": QA_ROWS[0]["question"], "answers": []}]},
    ]}]}  # fmt: skip
    src = tmp_path / "squad.json"
    src.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    res = _run(tiny_qa_bundle, src, tmp_path / "out.jsonl", questions=QuestionOptions(top_k=2))
    got = _jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in got] == ["z1", "z1", "e1", "e1"]
    assert all(r["answer"] == CHINESE[r["start"] : r["end"]] and r["answer"] for r in got[:2])
    expected = qa_reader.predict([("誰開創了研究？", CHINESE)], top_k=2)[0]
    assert [r["answer"] for r in got[:2]] == [a.answer for a in expected]
    assert res.metrics["answered"] == 1  # only the question with gold answers is scored


def test_mc_rows_equal_the_chooser(tiny_mc_bundle, mc_chooser, tmp_path):
    src = write_jsonl(tmp_path / "mc.jsonl", MC_ROWS)
    res = _run(tiny_mc_bundle, src, tmp_path / "out.jsonl")
    got = _jsonl(tmp_path / "out.jsonl")
    expected = mc_chooser.predict(MC_ROWS)
    assert [(r["label"], r["score"]) for r in got] == [(c.label, round(c.score, 6)) for c in expected]
    assert list(got[0]) == ["row", "id", "label", "score"]
    right = sum(c.label == r["label"] for c, r in zip(expected, MC_ROWS))
    assert res.metrics == {"accuracy": right / len(MC_ROWS), "labelled": len(MC_ROWS)}


def _layout(tmp_path, n: int = 9):
    """The paragraph-id layout over tiny QA records: 3 candidates each, the relevant one at a varying place."""
    rows = tiny_qa_records(n * 3, seed=21)
    contexts = [r["context"] for r in rows]
    questions = []
    for i in range(n):
        ids = [3 * i, 3 * i + 1, 3 * i + 2]
        relevant = ids[i % 3]
        answer = rows[relevant]["answers"]
        questions.append({"id": f"p{i}", "question": rows[relevant]["question"], "paragraphs": ids,
                          "relevant": relevant, "answer": {"text": answer["text"][0],
                                                           "start": answer["answer_start"][0]}})  # fmt: skip
    root = tmp_path / "select"
    root.mkdir()
    (root / "context.json").write_text(json.dumps(contexts), encoding="utf-8")
    (root / "test.json").write_text(json.dumps(questions), encoding="utf-8")
    return root / "test.json", questions, contexts


def test_paragraph_id_layout_serves_each_bundle(tiny_qa_bundle, tiny_mc_bundle, qa_reader, mc_chooser, tmp_path):
    src, questions, contexts = _layout(tmp_path)
    _run(tiny_qa_bundle, src, tmp_path / "qa.jsonl")
    relevant = [(q["question"], contexts[q["relevant"]]) for q in questions]
    assert [r["answer"] for r in _jsonl(tmp_path / "qa.jsonl")] == [a.answer for a in qa_reader.predict(relevant)]
    _run(tiny_mc_bundle, src, tmp_path / "mc.jsonl")
    records = [(q["question"], [contexts[j] for j in q["paragraphs"]]) for q in questions]
    assert [r["label"] for r in _jsonl(tmp_path / "mc.jsonl")] == [c.label for c in mc_chooser.predict(records)]


def test_two_stage_rows_and_scores(tiny_qa_bundle, tiny_mc_bundle, qa_reader, mc_chooser, tmp_path):
    src, questions, contexts = _layout(tmp_path)
    res = _run(tiny_mc_bundle, src, tmp_path / "out.jsonl", then=tiny_qa_bundle)
    got = _jsonl(tmp_path / "out.jsonl")
    found = TwoStageReader(mc_chooser, qa_reader).predict(
        [{"question": q["question"], "paragraphs": [contexts[j] for j in q["paragraphs"]]} for q in questions]
    )
    assert [(r["answer"], r["start"], r["paragraph"]) for r in got] == [(f.answer, f.start, f.paragraph) for f in found]
    assert [r["paragraph_id"] for r in got] == [q["paragraphs"][f.paragraph] for q, f in zip(questions, found)]
    selected = sum(f.paragraph == q["paragraphs"].index(q["relevant"]) for f, q in zip(found, questions))
    e2e = qa_metrics([f.answer for f in found], [[q["answer"]["text"]] for q in questions])
    assert res.metrics["selection_accuracy"] == selected / len(questions)
    assert (res.metrics["exact_match"], res.metrics["f1"]) == (e2e["exact_match"], e2e["f1"])


def test_cli_two_stage_prints_the_scores(tiny_qa_bundle, tiny_mc_bundle, tmp_path):
    src, _, _ = _layout(tmp_path)
    out = tmp_path / "out.jsonl"
    args = ["predict", str(tiny_mc_bundle), "--then", str(tiny_qa_bundle), "-i", str(src), "-o", str(out),
            "--variant", "fp32", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "selection accuracy" in result.output and "exact match" in result.output and "F1" in result.output
    assert len(_jsonl(out)) == 9


def test_cli_qa_options_and_csv_columns(tiny_qa_bundle, tmp_path):
    src = tmp_path / "in.csv"
    with open(src, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "context"])
        w.writerows([(q["id"], q["question"], q["context"]) for q in QA_ROWS[:4]])
    out = tmp_path / "out.jsonl"
    args = ["predict", str(tiny_qa_bundle), "-i", str(src), "-o", str(out), "--variant", "fp32", "--top-k", "2",
            "--max-answer-len", "3", "--doc-stride", "8", "--handle-impossible-answer", "-q"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    got = _jsonl(out)
    assert {r["id"] for r in got} == {q["id"] for q in QA_ROWS[:4]} and all(r["rank"] in (1, 2) for r in got)


BAD = {
    "missing-context": ({"id": "b1", "question": "where?"}, "no field 'context'"),
    "empty-context": ({"id": "b2", "question": "where?", "context": "  "}, "the context is empty"),
    "answer-outside": ({"id": "b3", "question": "where?", "context": "the food at home",
                        "answers": {"text": ["food"], "answer_start": [9]}}, "not at 9 of its context"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_qa_record_is_one_error_line_nothing_written(tiny_qa_bundle, tmp_path, case):
    record, said = BAD[case]
    src = write_jsonl(tmp_path / "in.jsonl", [*QA_ROWS[:3], record])
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["predict", str(tiny_qa_bundle), "-i", str(src), "-o", str(out)])
    assert result.exit_code == 2
    [line] = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith("error:") and "in.jsonl:4" in line and record["id"] in line and said in line, line
    assert not out.exists()


def test_varying_choice_count_is_refused(tiny_mc_bundle, tmp_path):
    rows = [*MC_ROWS[:2], {"id": "odd", "question": "which?", "choices": ["a b", "c d"], "label": 0}]
    src = write_jsonl(tmp_path / "mc.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["predict", str(tiny_mc_bundle), "-i", str(src), "-o", str(out)])
    assert result.exit_code == 2 and "mc.jsonl:3 (id 'odd'): 2 choices, the first record has 3" in result.output
    assert not out.exists()


def test_options_of_another_task_are_refused(tiny_qa_bundle, tiny_mc_bundle, tiny_bundle, tmp_path):
    qa = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS[:2])
    with pytest.raises(UserError, match="aggregation do not apply to question-answering"):
        _run(tiny_qa_bundle, qa, tmp_path / "o.jsonl", aggregation="simple")
    with pytest.raises(UserError, match="apply to question answering; .* multiple-choice"):
        _run(tiny_mc_bundle, qa, tmp_path / "o.jsonl", questions=QuestionOptions(top_k=2))
    with pytest.raises(UserError, match="the two-stage reader answers one span per question"):
        _run(tiny_mc_bundle, qa, tmp_path / "o.jsonl", then=tiny_qa_bundle, questions=QuestionOptions(top_k=2))
    with pytest.raises(UserError, match="--then needs a question-answering bundle"):
        _run(tiny_mc_bundle, qa, tmp_path / "o.jsonl", then=tiny_mc_bundle)
    with pytest.raises(UserError, match="question options apply to"):
        _run(tiny_bundle, qa, tmp_path / "o.jsonl", questions=QuestionOptions())
    with pytest.raises(UserError, match="SQuAD JSON .* needs choices"):
        src = tmp_path / "s.json"
        src.write_text(json.dumps({"data": []}), encoding="utf-8")
        _run(tiny_mc_bundle, src, tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()
