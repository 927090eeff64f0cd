"""--engine ray on a local 2-CPU Ray: the same rows and labels as the local engine."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import tiny_texts

from bertdeploy.runtime import predict_file

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_ray_equals_local(varied_bundle, tmp_path, local_ray):
    texts = [t for t, _ in tiny_texts(300, seed=5)]
    texts[17] = ""  # an empty record: skipped by both engines
    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([(f"d{i}", t) for i, t in enumerate(texts)])
    kw = dict(variant="fp32", threads=1, chunk_size=64)
    local = predict_file(varied_bundle, str(src), str(tmp_path / "local.jsonl"), **kw)
    far = predict_file(varied_bundle, str(src), str(tmp_path / "ray.jsonl"), engine="ray", workers=2, **kw)
    assert (far.rows, far.skipped, far.skipped_lines) == (local.rows, local.skipped, [18]) == (299, 1, [18])
    a, b = _jsonl(tmp_path / "local.jsonl"), _jsonl(tmp_path / "ray.jsonl")
    assert [(r["id"], r["label"]) for r in a] == [(r["id"], r["label"]) for r in b]
    assert max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) < 1e-4
    assert len({r["label"] for r in a}) == 3

    txt = tmp_path / "in.txt"
    txt.write_text("".join(t + "\n" for t in texts[:50]), encoding="utf-8")
    predict_file(varied_bundle, str(txt), str(tmp_path / "l.csv"), **kw)
    predict_file(varied_bundle, str(txt), str(tmp_path / "r.csv"), engine="ray", **kw)
    assert (tmp_path / "l.csv").read_text() == (tmp_path / "r.csv").read_text()


def test_more_workers_than_the_cluster_has_cpus_are_refused(varied_bundle, tmp_path, local_ray):
    from bertdeploy.errors import UserError

    src = tmp_path / "in.txt"
    src.write_text("good day\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"workers must be <= 2 \(the CPUs of the Ray cluster\), got 3"):
        predict_file(varied_bundle, str(src), str(tmp_path / "o.jsonl"), engine="ray", workers=3, threads=1)
    assert not (tmp_path / "o.jsonl").exists()
