"""Exporting a token classifier: Optimum's token-classification export, no [CLS]-only pruning, the gate on real
tokens (fp32 agreement) and on entity F1 (int8), and a manifest that says what was measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY_TAGS, build_tiny_tagger

from bertdeploy.errors import UserError
from bertdeploy.exporter import ExportConfig, export, gate


def test_the_manifest_records_the_task_its_metric_and_every_position(tiny_token_bundle):
    manifest = json.loads((tiny_token_bundle / "bertdeploy.json").read_text())
    assert manifest["task"] == "token-classification" and manifest["metric"] == "f1"
    assert manifest["labels"] == TINY_TAGS and manifest["graph"]["last_layer"] == "all positions"
    assert {"f1", "precision", "recall", "token_accuracy", "per_type"} <= set(manifest["eval"]["pytorch"])
    by_name = {v["name"]: v for v in manifest["variants"]}
    assert set(by_name) == {"fp32", "O2", "qint8"}
    assert by_name["fp32"]["parity"]["agreement"] == 1.0 and by_name["fp32"]["parity"]["max_abs_diff"] < 1e-4
    assert set(by_name["qint8"]["metrics"]["per_type"]) == {"ITEM", "TIME"}
    config = json.loads((tiny_token_bundle / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]


def test_parity_counts_real_tokens_only(tiny_tagger_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tagger_dir)
    batches = gate.make_token_batches(tok, [["movie", "at", "night"], ["book"]], max_length=16)
    ref = np.zeros((len(batches.tokens.ids), 2), dtype=np.float32)
    ref[:, 0] = 1.0
    got = ref.copy()
    special = np.flatnonzero(batches.tokens.words < 0)
    got[special] = [0.0, 5.0]  # disagreeing [CLS] / [SEP] logits do not count
    assert gate.parity(ref, got, rows=2, batches=batches)["agreement"] == 1.0
    real = np.flatnonzero(batches.tokens.words >= 0)
    got[real[0]] = [0.0, 5.0]
    par = gate.parity(ref, got, rows=2, batches=batches)
    assert par["agreement"] == pytest.approx(3 / 4) and par["max_abs_diff"] == 5.0


def test_a_word_takes_its_first_sub_tokens_tag_and_a_cut_word_is_a_miss(tiny_tagger_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tagger_dir)
    words = [["movies", "at", "night"], ["i", "love", "the", "book", "today"]]
    batches = gate.make_token_batches(tok, words, max_length=5)  # row 2 keeps "i love the" only
    enc = batches.tokens
    assert enc.words[: enc.lengths[0]].tolist() == [-1, 0, 0, 1, -1]  # "movie" "##s" "at", "night" cut
    logits = np.zeros((len(enc.ids), len(TINY_TAGS)), dtype=np.float32)
    logits[:, 0] = 1.0  # O everywhere...
    logits[1] = np.eye(len(TINY_TAGS))[1] * 5  # ...but "movie" (first piece of "movies") says B-ITEM
    logits[2] = np.eye(len(TINY_TAGS))[3] * 5  # and its "##s" says B-TIME, which must not count
    gold = [[1, 0, 3], [0, 0, 0, 1, 3]]
    scores = gate.scores(logits, gold, TINY_TAGS, batches)
    assert scores["per_type"]["ITEM"]["recall"] == 0.5  # "movies" found, "book" cut by max_length: a miss
    assert scores["per_type"]["TIME"]["recall"] == 0.0 and scores["precision"] == 1.0


def test_int8_is_judged_on_the_entity_f1_drop():
    par = {"agreement": 0.9, "finite": True}
    ok = gate.judge("qint8", par, {"f1": 0.895}, {"f1": 0.9}, 1.0, metric="f1")
    assert ok.accepted and ok.checks == {"f1_drop_points": 0.5, "max_accuracy_drop": 1.0, "metric": "f1"}
    bad = gate.judge("qint8", par, {"f1": 0.85, "accuracy": 0.99}, {"f1": 0.9, "accuracy": 0.99}, 1.0, metric="f1")
    assert not bad.accepted and bad.reason == "f1 drop 5.00 points > 1"


def test_without_labelled_data_int8_needs_token_agreement(tmp_path, tiny_tagger_dir):
    out = tmp_path / "bundle"
    result = export(
        ExportConfig(run_dir=str(tiny_tagger_dir), output=str(out), variants=["qint8"], max_accuracy_drop=0.01)
    )
    rows = {r["name"]: r for r in result.rows}
    assert rows["fp32"]["accepted"] and rows["fp32"]["agreement"] == 1.0
    assert not rows["qint8"]["accepted"] and "(no labelled data)" in rows["qint8"]["reason"]
    assert json.loads((out / "bertdeploy.json").read_text())["eval"]["labelled"] is False


def test_the_cli_shows_entity_f1(tmp_path, tiny_tagger_dir, tiny_token_dir):
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    out = tmp_path / "bundle"
    args = ["export", str(tiny_tagger_dir), "-o", str(out), "--data", str(tiny_token_dir), "--int8",
            "max_accuracy_drop=100"]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "entity F1" in result.output and "token acc" in result.output and "accuracy" not in result.output


def test_a_model_of_an_unsupported_task_is_one_error(tmp_path):
    from helpers import VOCAB
    from transformers import BertConfig, BertForQuestionAnswering, BertTokenizerFast

    folder = tmp_path / "qa"
    config = BertConfig(vocab_size=183, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)  # fmt: skip
    BertForQuestionAnswering(config).save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(VOCAB)).save_pretrained(folder)
    with pytest.raises(UserError, match="task 'question-answering' is not supported in export yet"):
        export(ExportConfig(run_dir=str(folder), output=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()


def test_token_data_for_a_text_classifier_is_refused(tmp_path, tiny_model_dir, tiny_token_dir):
    with pytest.raises(UserError, match="holds token-classification data, but the task is text-classification"):
        export(ExportConfig(run_dir=str(tiny_model_dir), output=str(tmp_path / "b"), data=str(tiny_token_dir)))


def test_other_tags_than_the_models_are_refused(tmp_path, tiny_token_dir):
    model = build_tiny_tagger(tmp_path / "m", labels=["O", "B-PER", "I-PER"])
    with pytest.raises(UserError, match="tag 'B-TIME' is not one of the tags"):
        export(ExportConfig(run_dir=str(model), output=str(tmp_path / "b"), data=str(tiny_token_dir)))
