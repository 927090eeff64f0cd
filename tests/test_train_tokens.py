"""Token classification training on the tiny tagger: labels on first sub-tokens, seqeval scores per epoch and on
test, the run folder, CoNLL input, the export → runtime path, and what is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bertdeploy.errors import UserError
from bertdeploy.training import TrainConfig, train
from bertdeploy.training.task_tokens import IGNORE, align, inside_ids
from tests.helpers import TINY_TAGS, build_tiny_tagger, tiny_token_sentences


def _cfg(model, data, out, **kw) -> TrainConfig:
    base = dict(model=str(model), data=str(data), output=str(out), epochs=1, batch_size=16, lr=1e-3,
                max_length=32, report_to=["none"], logging_steps=2)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_align_labels_first_sub_token_or_all_with_b_turned_into_i():
    inside = inside_ids(TINY_TAGS)
    assert inside == {1: 2, 3: 4}
    word_ids = [None, 0, 0, 1, 2, 2, None]
    tags = [1, 0, 3]  # B-ITEM, O, B-TIME
    assert align(word_ids, tags, False, inside) == [IGNORE, 1, IGNORE, 0, 3, IGNORE, IGNORE]
    assert align(word_ids, tags, True, inside) == [IGNORE, 1, 2, 0, 3, 4, IGNORE]


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """The tiny tagger with BERT's default initialisation (the shared fixture's 0.5 range does not train)."""
    return build_tiny_tagger(tmp_path_factory.mktemp("trainable_tagger"))


@pytest.fixture(scope="module")
def token_run(tagger, tiny_token_dir, tmp_path_factory):
    rows: list[dict] = []
    out = tmp_path_factory.mktemp("token_run") / "run"
    r = train(_cfg(tagger, tiny_token_dir, out, epochs=4, batch_size=8, lr=5e-3), on_epoch=rows.append)
    return r, rows


def test_token_run_learns_and_reports_entity_scores(token_run):
    r, rows = token_run
    assert r.task == "token-classification" and r.labels == TINY_TAGS
    assert len(rows) == 4 and all({"f1", "precision", "recall", "token_accuracy"} <= set(row) for row in rows)
    assert r.eval_split == "test" and r.final["n"] == 30
    assert set(r.final["per_type"]) == {"ITEM", "TIME"}
    # the synthetic entities are fixed words: a model that learned anything tags most of them
    assert r.final["f1"] > 0.9, r.final


def test_token_run_folder(token_run):
    r, _ = token_run
    out = r.output
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"][0].endswith("ForTokenClassification")
    assert [config["id2label"][str(i)] for i in range(len(TINY_TAGS))] == TINY_TAGS
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["split"] == "test" and "per_type" in metrics["final"]
    assert metrics["data"]["rows"] == {"train": 120, "validation": 30, "test": 30}
    tc = json.loads((out / "train_config.json").read_text())
    assert tc["task"] == "token-classification" and tc["metric"] == "f1"
    assert (out / "model.safetensors").is_file() and not (out / "training_args.bin").exists()
    counts = json.loads((out / "tag_transitions.json").read_text())  # what bio decoding adds, from the train tags
    assert sum(c for _, c in counts["start"]) == 120 and counts["weight"] == 0.5


def test_exported_run_tags_raw_text_with_offsets(token_run, tmp_path):
    from bertdeploy import export, load
    from bertdeploy.exporter import ExportConfig

    r, _ = token_run
    bundle = tmp_path / "bundle"
    export(ExportConfig(run_dir=str(r.output), output=str(bundle), variants=["fp32"]))
    text = "i love the movie at night"
    tagger = load(bundle, variant="fp32")
    entities = tagger.predict([text])[0]
    manifest = json.loads((bundle / "bertdeploy.json").read_text())
    assert manifest["tag_transitions"] == json.loads((r.output / "tag_transitions.json").read_text())
    assert tagger.prior is not None
    assert all(text[e.start : e.end] == e.word for e in entities)
    assert {e.entity_group for e in entities} <= {"ITEM", "TIME"}


def test_conll_input_is_token_classification(tagger, tmp_path):
    data = tmp_path / "conll"
    data.mkdir()
    for split, n, seed in (("train", 40, 1), ("validation", 10, 2), ("test", 10, 3)):
        blocks = ["\n".join(f"{w}\t{t}" for w, t in zip(words, tags)) for words, tags in tiny_token_sentences(n, seed)]
        (data / f"{split}.conll").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    r = train(_cfg(tagger, data, tmp_path / "run", label_all_tokens=True))
    assert r.task == "token-classification" and "f1" in r.final


def test_metric_of_another_task_is_refused(tiny_tagger_dir, tiny_token_dir, tmp_path):
    with pytest.raises(UserError, match="not a token-classification metric"):
        train(_cfg(tiny_tagger_dir, tiny_token_dir, tmp_path / "a", metric="accuracy"))
    assert not (tmp_path / "a").exists()


def test_cli_prints_the_entity_table(tiny_tagger_dir, tiny_token_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bertdeploy", "train", "--model", str(tiny_tagger_dir), "--data", str(tiny_token_dir),
           "--output", str(out), "--epochs", "1", "--max-length", "32", "--task", "token-classification",
           "report_to=none"]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "entity F1" in p.stdout and "token accuracy" in p.stdout and "TIME" in p.stdout
    bad = subprocess.run([*cmd[:-2], "--metric", "f1_weighted", "--overwrite"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
