"""--engine ray on a local 2-CPU Ray: the same rows and labels as the local engine."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import tiny_texts, tiny_token_sentences

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


def test_ray_equals_local_for_a_token_bundle(tiny_token_bundle, tmp_path, local_ray):
    """Entities: the same rows, byte for byte, from raw texts (csv) and from pre-split words (jsonl)."""
    texts = [" ".join(words) for words, _ in tiny_token_sentences(120, seed=5)]
    texts[9] = " "
    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("id", "text"), *((f"d{i}", t) for i, t in enumerate(texts))])
    kw = dict(variant="fp32", threads=1, chunk_size=32, aggregation="average")
    local = predict_file(tiny_token_bundle, str(src), str(tmp_path / "local.jsonl"), **kw)
    far = predict_file(tiny_token_bundle, str(src), str(tmp_path / "ray.jsonl"), engine="ray", workers=2, **kw)
    assert (far.rows, far.skipped, far.task) == (local.rows, local.skipped, local.task)
    assert (local.rows, local.task) == (119, "token-classification")
    assert (local.skipped_lines, far.skipped_lines) == ([11], [10])  # line 11 of the csv (a header), its row 10
    assert (tmp_path / "local.jsonl").read_text() == (tmp_path / "ray.jsonl").read_text()
    rows = _jsonl(tmp_path / "ray.jsonl")
    assert rows[0]["id"] == "d0" and sum(len(r["entities"]) for r in rows) > 100

    words = tmp_path / "words.jsonl"
    words.write_text("".join(json.dumps({"text": w}) + "\n" for w, _ in tiny_token_sentences(40, seed=6)), "utf-8")
    kw = dict(variant="fp32", threads=1, aggregation="none", ignore_labels=[])
    predict_file(tiny_token_bundle, str(words), str(tmp_path / "l.csv"), **kw)
    predict_file(tiny_token_bundle, str(words), str(tmp_path / "r.csv"), engine="ray", **kw)
    assert (tmp_path / "l.csv").read_text() == (tmp_path / "r.csv").read_text()
    assert (tmp_path / "l.csv").read_text().count("\n") == 41
