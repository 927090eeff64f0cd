"""Question answering and multiple choice training on tiny models: windows with a stride, answers scored end to
end (EM / F1) per epoch and on test, choices scored on accuracy, the run folders, the export → runtime path, and
what is refused."""

from __future__ import annotations

import json

import pytest

from bertdeploy.errors import UserError
from bertdeploy.training import TrainConfig, train
from tests.helpers import build_tiny_reader


def _cfg(model, data, out, **kw) -> TrainConfig:
    base = dict(model=str(model), data=str(data), output=str(out), epochs=1, batch_size=8, lr=5e-3,
                max_length=32, report_to=["none"], logging_steps=2)  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def qa_run(tiny_qa_dir, tmp_path_factory):
    model = build_tiny_reader(tmp_path_factory.mktemp("trainable_reader"))
    rows: list[dict] = []
    out = tmp_path_factory.mktemp("qa_run") / "run"
    r = train(_cfg(model, tiny_qa_dir, out, epochs=8, doc_stride=8), on_epoch=rows.append)
    return r, rows


def test_qa_run_scores_answers_end_to_end(qa_run):
    r, rows = qa_run
    assert r.task == "question-answering" and r.eval_split == "test"
    assert len(rows) == 8 and all({"exact_match", "f1"} <= set(row) for row in rows)
    assert r.final["n"] == 20 and 0.0 <= r.final["exact_match"] <= r.final["f1"] <= 1.0
    # a copy task: the answer is the word after "where is"; a model that learned finds most of them
    assert r.final["f1"] > 0.5, (r.final, rows)


def test_qa_run_folder_and_runtime(qa_run, tmp_path):
    from bertdeploy import export, load
    from bertdeploy.exporter import ExportConfig

    r, _ = qa_run
    config = json.loads((r.output / "config.json").read_text())
    assert config["architectures"][0].endswith("ForQuestionAnswering")
    tc = json.loads((r.output / "train_config.json").read_text())
    assert tc["task"] == "question-answering" and tc["metric"] == "f1" and tc["doc_stride"] == 8
    bundle = tmp_path / "bundle"
    export(ExportConfig(run_dir=str(r.output), output=str(bundle), variants=["fp32"]))
    context = "i love the food at work so very good and the movie was bad"
    answer = load(bundle, variant="fp32").predict([{"question": "where is movie", "context": context}])[0]
    assert context[answer.start : answer.end] == answer.answer


def test_windows_label_the_answer_or_cls(tiny_qa_dir):
    from transformers import BertTokenizerFast

    from bertdeploy.data import DataSpec, load_data
    from bertdeploy.training.task_qa import encode_qa
    from tests.helpers import VOCAB

    data = load_data(DataSpec(str(tiny_qa_dir)))
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True)
    feats = encode_qa(data, tok, 32, "static", TrainConfig(doc_stride=8))
    val = feats["validation"]
    assert len(val) > data.rows("validation")  # long contexts became several windows
    for row in val:
        s, e = row["start_positions"], row["end_positions"]
        if s:
            q = row["example"]
            gold = data.splits["validation"]["answers"][q]["text"][0]
            context = data.splits["validation"]["context"][q]
            assert context[row["offsets"][s][0] : row["offsets"][e][1]] == gold
        else:
            assert e == 0
    assert "example" not in feats["train"].column_names


@pytest.mark.parametrize("padding", ["static", "dynamic"])
def test_training_windows_pad_as_asked_evaluation_windows_to_max_length(tiny_qa_dir, padding):
    from transformers import BertTokenizerFast

    from bertdeploy.data import DataSpec, load_data
    from bertdeploy.training.task_qa import encode_qa
    from bertdeploy.training.task_setup import REGISTRY
    from tests.helpers import VOCAB

    data = load_data(DataSpec(str(tiny_qa_dir)))
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True)
    feats = encode_qa(data, tok, 32, padding, TrainConfig(doc_stride=8))
    train_lengths = {len(ids) for ids in feats["train"]["input_ids"]}
    assert {len(ids) for ids in feats["validation"]["input_ids"]} == {32}  # the span search lines windows up
    assert train_lengths == {32} if padding == "static" else (max(train_lengths) <= 32 and len(train_lengths) > 1)
    rows = [feats["train"][i] for i in range(4)]
    batch = REGISTRY["question-answering"].collator(tok)(rows)
    longest = max(len(r["input_ids"]) for r in rows)
    assert tuple(batch["input_ids"].shape) == (4, longest)
    assert batch["start_positions"].tolist() == [r["start_positions"] for r in rows]


def test_multiple_choice_trains_on_accuracy(tiny_mc_dir, tmp_path):
    model = build_tiny_reader(tmp_path / "chooser", task="multiple-choice")
    rows: list[dict] = []
    r = train(_cfg(model, tiny_mc_dir, tmp_path / "run", epochs=2), on_epoch=rows.append)
    assert r.task == "multiple-choice" and "accuracy" in rows[-1] and r.final["n"] == 20
    config = json.loads((r.output / "config.json").read_text())
    assert config["architectures"][0].endswith("ForMultipleChoice")


def test_bad_stride_and_metric_are_refused(tiny_qa_dir, tiny_reader_dir, tmp_path):
    with pytest.raises(UserError, match="doc-stride"):
        train(_cfg(tiny_reader_dir, tiny_qa_dir, tmp_path / "a", doc_stride=20))
    with pytest.raises(UserError, match="not a question-answering metric"):
        train(_cfg(tiny_reader_dir, tiny_qa_dir, tmp_path / "b", metric="accuracy"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_question_too_long_for_the_window_is_refused_naming_it(tiny_qa_dir, tmp_path):
    """Before any window is cut: a question that leaves its context no more than the stride names its split and id
    (tokenizers would otherwise fail with a truncation error)."""
    import json
    import shutil

    from transformers import BertTokenizerFast

    from bertdeploy.data import DataSpec, load_data
    from bertdeploy.training.task_qa import encode_qa
    from tests.helpers import VOCAB

    data_dir = tmp_path / "qa"
    shutil.copytree(tiny_qa_dir, data_dir)
    rows = [json.loads(line) for line in (data_dir / "validation.jsonl").read_text().splitlines()]
    rows[1]["question"] = "where is the " + "very " * 30 + "food?"
    (data_dir / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True)
    with pytest.raises(UserError, match=rf"validation question {rows[1]['id']}: the question \(\d+ tokens\) leaves no "
                       "room for the context in a window of 32 tokens"):  # fmt: skip
        encode_qa(load_data(DataSpec(str(data_dir))), tok, 32, "static", TrainConfig(doc_stride=8))
    encode_qa(load_data(DataSpec(str(tiny_qa_dir))), tok, 32, "static", TrainConfig(doc_stride=8))  # the others pass


def test_training_scores_answers_as_the_runtime_does(tiny_qa_dir):
    """Per-epoch and test scores come from the runtime's span search with its defaults (answers of at most 15
    tokens, the pipeline's), so a run's numbers are the export gate's for the same weights."""
    import numpy as np
    from transformers import BertTokenizerFast

    from bertdeploy.data import DataSpec, load_data
    from bertdeploy.metrics_qa import qa_metrics
    from bertdeploy.runtime.spans import Window, answers
    from bertdeploy.training.task_qa import encode_qa, qa_scorer
    from tests.helpers import VOCAB

    data = load_data(DataSpec(str(tiny_qa_dir)))
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True)
    feats = encode_qa(data, tok, 64, "static", TrainConfig(doc_stride=16))
    val, rows = feats["validation"], data.splits["validation"]
    start, end = np.random.default_rng(0).normal(size=(2, len(val), 64)).astype(np.float32)

    def expected(**kw) -> dict:
        found = []
        for q in range(len(rows["question"])):
            ws = [Window(start[i], end[i], np.asarray(val["context_mask"][i], bool),
                         np.asarray(val["offsets"][i], np.int64), np.asarray(val["words"][i], np.int64))
                  for i, owner in enumerate(val["example"]) if owner == q]  # fmt: skip
            best = answers(rows["context"][q], ws, **kw)
            found.append(best[0].answer if best else "")
        return qa_metrics(found, [a["text"] for a in rows["answers"]])

    scored = qa_scorer(data, feats, "validation")((start, end))
    assert scored == expected()
    assert expected(max_answer_len=40) != scored  # the span cap matters on these logits: the test can tell
