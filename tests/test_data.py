"""data.py: loading, label mapping, carve-outs, subsets and every bad input as a UserError."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_LABELS, tiny_texts, write_csv

from bertdeploy.data import DataSpec, check_trainable, load_data, load_eval_split, subset
from bertdeploy.errors import UserError
from bertdeploy.training.data_stats import padding_waste


def test_folder_with_labels_txt_keeps_its_order(tiny_data_dir):
    d = load_data(DataSpec(str(tiny_data_dir)))
    assert d.labels == TINY_LABELS
    assert set(d.splits) == {"train", "validation", "test"}
    assert d.eval_split == "test"
    texts, labels = d.splits["train"]["text"], d.splits["train"]["label"]
    assert len(texts) == len(labels) == 120
    assert set(labels) == {0, 1, 2}


def test_single_file_is_split_stratified_and_seeded(tmp_path):
    f = write_csv(tmp_path / "all.csv", tiny_texts(200, seed=5))
    a = load_data(DataSpec(str(f), test_ratio=0.2, val_ratio=0.1, seed=3))
    b = load_data(DataSpec(str(f), test_ratio=0.2, val_ratio=0.1, seed=3))
    assert a.splits == b.splits
    assert len(a.splits["test"]["label"]) == 40
    assert len(a.splits["validation"]["label"]) == 16
    assert sorted(set(a.splits["test"]["label"])) == [0, 1, 2]
    assert a.labels == sorted(TINY_LABELS)  # no labels.txt: sorted names


def test_integer_labels_and_other_formats(tmp_path):
    import pandas as pd

    rows = [(t, str(TINY_LABELS.index(lab))) for t, lab in tiny_texts(60)]
    pd.DataFrame(rows, columns=["sentence", "y"]).to_parquet(tmp_path / "train.parquet")
    with open(tmp_path / "test.jsonl", "w", encoding="utf-8") as f:
        for t, y in rows[:10]:
            f.write(json.dumps({"sentence": t, "y": int(y)}) + "\n")
    d = load_data(DataSpec(str(tmp_path), text_column="sentence", label_column="y"))
    assert d.labels == ["0", "1", "2"]
    assert d.splits["test"]["label"] == [int(y) for _, y in rows[:10]]
    assert "validation" in d.splits and d.notes


def test_train_size_subset_is_stratified():
    split = {"text": [str(i) for i in range(300)], "label": [i % 3 for i in range(300)]}
    sub = subset(split, 30, seed=1)
    assert len(sub["label"]) == 30
    assert [sub["label"].count(k) for k in range(3)] == [10, 10, 10]
    assert subset(split, 30, seed=1) == sub


def test_eval_split_maps_onto_model_labels(tiny_data_dir):
    texts, ids, name = load_eval_split(str(tiny_data_dir), ["positive", "neutral", "negative"])
    assert name == "test" and len(texts) == 30
    raw = [line.split(",")[-1] for line in (tiny_data_dir / "test.csv").read_text().splitlines()[1:]]
    assert [["positive", "neutral", "negative"][i] for i in ids] == raw


@pytest.mark.parametrize(
    "content, message",
    [
        ("text,label\nhello,a\n,b\n", "empty or missing text in row 2"),
        ("txt,label\nhello,a\n", "no column 'text'"),
        ("text,label\nhello,a\nworld,a\n", "single class"),
    ],
)
def test_bad_files(tmp_path, content, message):
    (tmp_path / "train.csv").write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        check_trainable(load_data(DataSpec(str(tmp_path))))


def test_non_utf8_file(tmp_path):
    (tmp_path / "train.csv").write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(UserError, match="not valid UTF-8"):
        load_data(DataSpec(str(tmp_path)))


def test_unseen_validation_label(tmp_path):
    write_csv(tmp_path / "train.csv", [("good", "pos"), ("bad", "neg")] * 5)
    write_csv(tmp_path / "validation.csv", [("meh", "neutral")])
    (tmp_path / "labels.txt").write_text("neg\nneutral\npos\n")
    with pytest.raises(UserError, match="never appear in training"):
        check_trainable(load_data(DataSpec(str(tmp_path))))


def test_label_not_in_labels_txt(tmp_path):
    write_csv(tmp_path / "train.csv", [("good", "pos"), ("bad", "typo")])
    (tmp_path / "labels.txt").write_text("neg\npos\n")
    with pytest.raises(UserError, match="'typo'"):
        load_data(DataSpec(str(tmp_path)))


def test_missing_path_and_empty_split(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_data(DataSpec(str(tmp_path / "nope")))
    (tmp_path / "train.csv").write_text("text,label\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty"):
        load_data(DataSpec(str(tmp_path)))


def test_hub_id_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from bertdeploy.hub import hub_reachable

    hub_reachable.cache_clear()
    with pytest.raises(UserError, match="cannot reach the Hugging Face Hub"):
        load_data(DataSpec("someone/some-dataset-that-is-not-cached"))
    hub_reachable.cache_clear()


def test_padding_waste():
    assert padding_waste([10, 10], 20) == pytest.approx(0.5)
    assert padding_waste([10, 10, 10], None, batch_size=2) == pytest.approx(0.0)
    assert padding_waste([5, 10], None, batch_size=2) == pytest.approx(0.25)


def test_unseen_labels_without_labels_txt(tmp_path):
    """Without labels.txt the label space is train's (error / drop) or every split's (keep)."""
    write_csv(tmp_path / "train.csv", [("good", "pos"), ("bad", "neg")] * 5)
    write_csv(tmp_path / "validation.csv", [("good", "pos"), ("meh", "mid"), ("bad", "neg")])
    with pytest.raises(UserError, match="'mid' .* never appears in training.*--unseen-labels keep"):
        load_data(DataSpec(str(tmp_path)))
    kept = load_data(DataSpec(str(tmp_path), unseen_labels="keep"))
    assert kept.labels == ["mid", "neg", "pos"] and len(kept.splits["validation"]["label"]) == 3
    check_trainable(kept, "keep")
    assert any("kept 1 row(s) with label(s) ['mid']" in n for n in kept.notes)
    dropped = load_data(DataSpec(str(tmp_path), unseen_labels="drop"))
    assert dropped.labels == ["neg", "pos"] and dropped.splits["validation"]["text"] == ["good", "bad"]
    assert any("dropped 1 row(s)" in n for n in dropped.notes)
    with pytest.raises(UserError, match="never appear in training"):
        check_trainable(kept)  # the default is still to refuse
