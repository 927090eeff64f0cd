"""Token-classification data: token JSONL and CoNLL, tag maps, task detection, and one error line per bad input."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_TAGS

from bertdeploy.data import DataSpec, check_trainable, detect_task, load_data
from bertdeploy.errors import UserError


def _conll(path, sentences):
    path.write_text("".join("".join(f"{t}\t{g}\n" for t, g in zip(*s)) + "\n" for s in sentences), encoding="utf-8")
    return path


def test_token_jsonl_folder_is_detected_and_mapped_to_labels_txt(tiny_token_dir):
    data = load_data(DataSpec(str(tiny_token_dir)))
    assert data.task == "token-classification" and data.labels == TINY_TAGS
    assert set(data.splits) == {"train", "validation", "test"} and data.rows("train") == 120
    first = json.loads((tiny_token_dir / "train.jsonl").read_text().splitlines()[0])
    assert data.splits["train"]["tokens"][0] == first["tokens"]
    assert [TINY_TAGS[i] for i in data.splits["train"]["tags"][0]] == first["tags"]
    assert check_trainable(data) is data


def test_conll_with_extra_columns_docstart_and_no_trailing_blank_line(tmp_path):
    text = "-DOCSTART- -X- O O\n\nJohn NNP B-NP B-PER\nlives VBZ B-VP O\n\nParis NNP B-NP B-LOC"
    (tmp_path / "train.conll").write_text(text, encoding="utf-8")
    data = load_data(DataSpec(str(tmp_path)))
    assert data.task == "token-classification"
    assert data.labels == ["O", "B-LOC", "B-PER"]  # no labels.txt: O first, then sorted
    tokens = data.splits["train"]["tokens"] + data.splits["validation"]["tokens"]
    assert sorted(map(tuple, tokens)) == [("John", "lives"), ("Paris",)]


def test_a_table_is_still_text_classification(tiny_data_dir):
    assert detect_task(str(tiny_data_dir)) == "text-classification"
    with pytest.raises(UserError, match="holds text-classification data, but the task is token-classification"):
        load_data(DataSpec(str(tiny_data_dir), task="token-classification"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"tokens": ["a", "b"], "tags": ["O"]}\n', r"train.jsonl:1: 2 tokens but 1 tags"),
        ('{"tokens": ["a"], "tags": ["O"]}\n{"tokens": [], "tags": []}\n', r"train.jsonl:2: empty sentence"),
        ('{"tokens": ["a"], "tags": ["PER"]}\n', r"train.jsonl:1: tag 'PER' is not a BIO tag"),
        ('{"tokens": ["a"], "tags": ["B-ZZZ"]}\n', r"train.jsonl:1: tag 'B-ZZZ' is not one of the tags in labels.txt"),
        ('{"tokens": ["a"], "tags": ["O"]}\n{"words": ["a"]}\n', r"train.jsonl:2: no field 'tokens'"),
        ('{"tokens": ["a", " "], "tags": ["O", "O"]}\n', r"train.jsonl:1: empty token"),
        ('{"tokens": ["a"], "tags": ["O"]}\nnot json\n', r"train.jsonl:2: not valid JSON"),
    ],
)
def test_bad_token_files_are_one_error_naming_file_and_line(tmp_path, content, message):
    (tmp_path / "train.jsonl").write_text(content, encoding="utf-8")
    (tmp_path / "labels.txt").write_text("O\nB-PER\nI-PER\n", encoding="utf-8")
    with pytest.raises(UserError, match=message):
        load_data(DataSpec(str(tmp_path), task="token-classification"))


def test_unseen_tags_follow_unseen_labels(tmp_path):
    _conll(tmp_path / "train.conll", [(["a", "b"], ["B-X", "O"])] * 4)
    _conll(tmp_path / "validation.conll", [(["a"], ["B-X"]), (["c"], ["B-Y"])])
    with pytest.raises(UserError, match=r"validation.conll:3: tag 'B-Y' never appears in training.*--unseen-labels"):
        load_data(DataSpec(str(tmp_path)))
    dropped = load_data(DataSpec(str(tmp_path), unseen_labels="drop"))
    assert dropped.splits["validation"]["tokens"] == [["a"]] and "dropped 1 sentence" in dropped.notes[0]
    kept = load_data(DataSpec(str(tmp_path), unseen_labels="keep"))
    assert kept.labels == ["O", "B-X", "B-Y"] and kept.rows("validation") == 2


def test_a_training_set_without_entities_is_refused(tmp_path):
    _conll(tmp_path / "train.conll", [(["a", "b"], ["O", "O"])] * 3)
    with pytest.raises(UserError, match="no entity tag"):
        check_trainable(load_data(DataSpec(str(tmp_path))))


def test_train_size_and_carved_validation_are_seeded(tmp_path):
    _conll(tmp_path / "train.conll", [([f"w{i}"], ["B-X"]) for i in range(50)])
    a = load_data(DataSpec(str(tmp_path), train_size=20, seed=3))
    b = load_data(DataSpec(str(tmp_path), train_size=20, seed=3))
    assert a.rows("train") == 20 and a.rows("validation") == 5
    assert a.splits == b.splits


@pytest.mark.integration
def test_the_shared_token_sets_load_with_their_published_counts(shared_datasets):
    snips = load_data(DataSpec(str(shared_datasets / "snips_slots")))
    assert snips.task == "token-classification" and len(snips.labels) == 72
    assert [snips.rows(s) for s in ("train", "validation", "test")] == [13084, 700, 700]
    weibo = load_data(DataSpec(str(shared_datasets / "weibo_ner")))
    assert len(weibo.labels) == 17 and weibo.labels[0] == "O"
    assert [weibo.rows(s) for s in ("train", "validation", "test")] == [1350, 270, 270]
    assert sum(len(t) for t in weibo.splits["train"]["tokens"]) == 73778
