"""The answer cap a QA bundle records: picked at export on half of the evaluation questions, judged by the gate
with it, and the runtime's default where a call does not say ``max_answer_len``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertdeploy.errors import UserError
from bertdeploy.exporter import ExportConfig, export
from bertdeploy.exporter.gate_qa import ANSWER_CAPS, MIN_CALIBRATION, make_span_batches, pick_answer_len
from bertdeploy.runtime import load
from bertdeploy.runtime.spans import MAX_ANSWER_LEN
from tests.helpers import tiny_qa_records, write_jsonl


def _decoy_logits(records: list[dict], batches) -> tuple[np.ndarray, int]:
    """Logits whose best span is the gold word under a short cap, and a span ending 9 tokens after it (10 tokens
    long) under a cap of 10 or more, for every question where the context is long enough; and how many those are."""
    enc = batches.tokens
    logits = np.zeros((len(enc.ids), 2), dtype=np.float32)
    decoys = 0
    for r, record in enumerate(records):  # one window a question at max_length 96
        rows = slice(int(enc.offsets[r]), int(enc.offsets[r] + enc.lengths[r]))
        context = np.flatnonzero(enc.sequence[rows] == 1) + rows.start
        a = record["answers"]["answer_start"][0]
        b = a + len(record["answers"]["text"][0])
        gold = [t for t in context if a <= enc.spans[t, 0] and enc.spans[t, 1] <= b]
        logits[gold[0], 0], logits[gold[-1], 1] = 10.0, 8.0
        if gold[-1] + 9 <= context[-1]:
            logits[gold[-1] + 9, 1] = 10.0
            decoys += 1
    return logits, decoys


def test_the_cap_with_the_best_calibration_em_is_picked_and_both_halves_recorded(tiny_reader_dir):
    from transformers import AutoTokenizer

    records = tiny_qa_records(2 * MIN_CALIBRATION + 10, seed=5)
    tok = AutoTokenizer.from_pretrained(tiny_reader_dir)
    batches = make_span_batches(tok, [(r["question"], r["context"]) for r in records], 96)
    assert len(batches.tokens.lengths) == len(records)  # one window each
    logits, decoys = _decoy_logits(records, batches)
    assert decoys > 20
    cap, record = pick_answer_len(logits, [r["answers"] for r in records], batches)
    assert cap == 8 and record["max_answer_len"] == 8 and record["picked"]  # 4, 6, 8 tie: the nearest 15
    grid = record["grid"]
    assert set(grid) == {str(c) for c in ANSWER_CAPS}
    for half in ("calibration", "held_out"):
        assert grid["8"][half]["exact_match"] == 1.0
        assert grid["15"][half]["exact_match"] < 0.95  # the decoys win there
    assert grid["30"]["calibration"] == grid["15"]["calibration"]


def test_too_few_questions_keep_the_pipelines_cap(tiny_reader_dir):
    from transformers import AutoTokenizer

    records = tiny_qa_records(2 * MIN_CALIBRATION - 1, seed=5)
    tok = AutoTokenizer.from_pretrained(tiny_reader_dir)
    batches = make_span_batches(tok, [(r["question"], r["context"]) for r in records], 96)
    logits, _ = _decoy_logits(records, batches)
    cap, record = pick_answer_len(logits, [r["answers"] for r in records], batches)
    assert cap == MAX_ANSWER_LEN and not record["picked"] and "fewer than" in record["reason"]


@pytest.fixture(scope="module")
def capped_bundle(tmp_path_factory, tiny_reader_dir):
    """The tiny reader exported on 2 * MIN_CALIBRATION test questions: the export picks a cap."""
    data = tmp_path_factory.mktemp("capped_data")
    write_jsonl(data / "train.jsonl", tiny_qa_records(20, 1))
    write_jsonl(data / "test.jsonl", tiny_qa_records(2 * MIN_CALIBRATION, 7))
    out = tmp_path_factory.mktemp("capped") / "bundle"
    export(ExportConfig(run_dir=str(tiny_reader_dir), output=str(out), data=str(data), variants=[], max_length=32,
                        max_accuracy_drop=100.0))  # fmt: skip
    return out


def test_the_bundle_records_the_cap_the_gate_judged_with(capped_bundle):
    manifest = json.loads((capped_bundle / "bertdeploy.json").read_text())
    record = manifest["answers"]
    cap = record["max_answer_len"]
    assert record["picked"] and cap in ANSWER_CAPS
    calib = {int(c): (s["calibration"]["exact_match"], s["calibration"]["f1"]) for c, s in record["grid"].items()}
    assert calib[cap] == max(calib.values())
    both = record["grid"][str(cap)]
    em = (both["calibration"]["exact_match"] + both["held_out"]["exact_match"]) / 2  # equal halves
    assert manifest["eval"]["pytorch"]["exact_match"] == pytest.approx(em, abs=1e-3)


def test_the_reader_answers_with_the_bundles_cap_unless_told(capped_bundle, tmp_path):
    cap = json.loads((capped_bundle / "bertdeploy.json").read_text())["answers"]["max_answer_len"]
    records = [{"question": r["question"], "context": r["context"]} for r in tiny_qa_records(40, 11)]
    with load(capped_bundle, variant="fp32", threads=1) as reader:
        assert reader.max_answer_len == cap
        assert reader.predict(records) == reader.predict(records, max_answer_len=cap)
    bundle = tmp_path / "one"
    shutil.copytree(capped_bundle, bundle)
    manifest = json.loads((bundle / "bertdeploy.json").read_text())
    manifest["answers"]["max_answer_len"] = 1
    (bundle / "bertdeploy.json").write_text(json.dumps(manifest))
    with load(bundle, variant="fp32", threads=1) as reader:
        one = reader.predict(records)
        assert all(len(a.answer.split()) <= 1 for a in one)
        assert one != reader.predict(records, max_answer_len=30)
    manifest["answers"]["max_answer_len"] = "8"
    (bundle / "bertdeploy.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="answers.max_answer_len must be an integer"):
        load(bundle, variant="fp32", threads=1)


def test_the_server_defaults_to_the_bundles_cap():
    from types import SimpleNamespace

    from bertdeploy.serve.qa_api import _qa_params

    reader = SimpleNamespace(doc_stride=16, max_length=32, max_answer_len=6)
    assert _qa_params({}, reader)["max_answer_len"] == 6
    assert _qa_params({"max_answer_len": 20}, reader)["max_answer_len"] == 20


def test_every_bench_engine_answers_with_the_bundles_cap(capped_bundle, tmp_path):
    from dataclasses import replace

    from bertdeploy.benchmark.contract import BackendContext
    from bertdeploy.benchmark.head_backends import TorchHeadBackend
    from bertdeploy.benchmark.pipeline_backends import answer_cap

    bundle = tmp_path / "three"
    shutil.copytree(capped_bundle, bundle)
    manifest = json.loads((bundle / "bertdeploy.json").read_text())
    manifest["answers"]["max_answer_len"] = 3
    (bundle / "bertdeploy.json").write_text(json.dumps(manifest))
    ctx = BackendContext(hf_dir=None, bundle=bundle, labels=[], max_length=32, variant="fp32", threads=1,
                         device="cpu", max_batch_size=8, task="question-answering")  # fmt: skip
    assert answer_cap(ctx) == 3  # the transformers pipeline's max_answer_len
    assert TorchHeadBackend(ctx)._decoding(bundle)["answers"]["max_answer_len"] == 3  # PyTorch in the runtime's head
    assert answer_cap(replace(ctx, bundle=None)) == MAX_ANSWER_LEN
