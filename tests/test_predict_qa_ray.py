"""--engine ray for questions on a local 2-CPU Ray: the same rows (and scores) as the local engine, for a QA bundle
with top_k, a multiple-choice bundle and the two-stage reader."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_mc_records, tiny_qa_records, write_jsonl

from bertdeploy.runtime import predict_file
from bertdeploy.runtime.qa_files import QuestionOptions

pytest.importorskip("ray")
from test_runtime_ray import local_ray  # noqa: E402, F401 - the module's 2-CPU Ray


def _both(bundle, src, tmp_path, **kw):
    kw = {"variant": "fp32", "threads": 1, "chunk_size": 5, **kw}
    near = predict_file(bundle, str(src), str(tmp_path / "local.jsonl"), **kw)
    far = predict_file(bundle, str(src), str(tmp_path / "ray.jsonl"), engine="ray", workers=2, **kw)
    assert (tmp_path / "local.jsonl").read_text() == (tmp_path / "ray.jsonl").read_text()
    assert (far.rows, far.metrics, far.truncated, far.engine) == (near.rows, near.metrics, near.truncated, "ray")
    return [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_ray_equals_local_for_questions(tiny_qa_bundle, tiny_mc_bundle, tmp_path):
    qa = write_jsonl(tmp_path / "qa.jsonl", tiny_qa_records(23, seed=31))
    rows = _both(tiny_qa_bundle, qa, tmp_path, questions=QuestionOptions(top_k=2))
    assert {r["row"] for r in rows} == set(range(1, 24)) and {r["rank"] for r in rows} == {1, 2}
    mc = write_jsonl(tmp_path / "mc.jsonl", tiny_mc_records(17, seed=32))
    assert len(_both(tiny_mc_bundle, mc, tmp_path)) == 17
    select = [{"id": f"s{i}", "question": r["question"], "choices": r["choices"], "label": r["label"]}
              for i, r in enumerate(tiny_mc_records(11, seed=33))]  # fmt: skip
    src = write_jsonl(tmp_path / "select.jsonl", select)
    rows = _both(tiny_mc_bundle, src, tmp_path, then=tiny_qa_bundle)
    assert len(rows) == 11 and all(r["answer"] == select[i]["choices"][r["paragraph"]][r["start"] : r["end"]]
                                   for i, r in enumerate(rows))  # fmt: skip
    rows = _both("overlap", src, tmp_path, then=tiny_qa_bundle)  # the selector without a model, in each actor
    assert len(rows) == 11 and all(r["answer"] == select[i]["choices"][r["paragraph"]][r["start"] : r["end"]]
                                   for i, r in enumerate(rows))  # fmt: skip
