"""Vocabulary coverage and a vocabulary from the data: the [UNK] rate ``train`` refuses above ``--max-unk-rate``
and ``data stats`` reports, and ``--from-scratch --vocab-from-data`` (WordPiece trained on the training texts, CJK
one character a token) through train → export → runtime."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bertdeploy.errors import UserError
from bertdeploy.training import TrainConfig, train
from bertdeploy.training.vocab import build_vocab_tokenizer, check_unk, texts_of, unk_rate
from tests.helpers import write_csv

WEATHER = "今天天氣很好陽光明媚適合出門散步"
SPORTS = "球隊昨晚比賽獲勝球員表現出色觀眾歡呼"


def _chinese_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        chars = WEATHER if label == 0 else SPORTS
        rows.append({"text": "".join(rng.choice(chars) for _ in range(rng.randint(6, 14))), "label": label})
    return rows


@pytest.fixture(scope="module")
def chinese_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chinese")
    for split, n, seed in (("train", 80, 1), ("validation", 20, 2), ("test", 20, 3)):
        write_csv(
            root / f"{split}.csv", [(r["text"], ("weather", "sports")[r["label"]]) for r in _chinese_rows(n, seed)]
        )
    (root / "labels.txt").write_text("weather\nsports\n", encoding="utf-8")
    return root


def test_a_vocabulary_from_the_data_is_deterministic_and_keeps_cjk_characters_whole():
    texts = [r["text"] for r in _chinese_rows(50, 1)]
    a, b = build_vocab_tokenizer(texts, 200), build_vocab_tokenizer(texts, 200)  # CJK: no merges that could tie
    assert a.get_vocab() == b.get_vocab()
    assert list(a.get_vocab().items())[:0] == [] and a.convert_ids_to_tokens([0, 1, 2, 3, 4]) == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]
    assert a.tokenize("今天天氣") == ["今", "天", "天", "氣"]
    assert unk_rate(a, texts) == 0.0
    assert a("今天")["input_ids"][0] == a.cls_token_id and a("今天")["input_ids"][-1] == a.sep_token_id
    assert unk_rate(a, ["鼎鼐"]) == 1.0  # characters the data never had


def test_texts_of_every_task_layout():
    assert texts_of({"text": ["a b"], "label": [0]}) == ["a b"]
    assert texts_of({"tokens": [["a", "b"]], "tags": [[0, 0]]}) == ["a b"]
    qa = {"question": ["q1", "q2"], "context": ["c", "c"], "answers": [{}, {}]}
    assert texts_of(qa) == ["q1", "q2", "c"]
    assert texts_of({"question": ["q"], "choices": [["x", "y"]], "label": [0]}) == ["q", "x", "y"]


def test_the_english_test_vocabulary_is_refused_on_chinese_text(tiny_model_dir, chinese_dir, tmp_path):
    from transformers import AutoTokenizer

    rate = unk_rate(AutoTokenizer.from_pretrained(tiny_model_dir), [r["text"] for r in _chinese_rows(20, 1)])
    assert rate > 0.5
    with pytest.raises(UserError, match=r"\[UNK\].*--vocab-from-data"):
        check_unk(rate, 0.05, "tiny")
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"% of the training tokens are \[UNK\]"):
        train(TrainConfig(model=str(tiny_model_dir), data=str(chinese_dir), output=str(out), report_to=["none"]))
    assert not out.exists()


def test_the_cli_refusal_is_one_line_and_exit_2(tiny_model_dir, chinese_dir, tmp_path):
    cmd = [sys.executable, "-m", "bertdeploy", "train", "--model", str(tiny_model_dir), "--data", str(chinese_dir),
           "--output", str(tmp_path / "run"), "report_to=none"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "[UNK]" in lines[-1] and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(model="some/folder", vocab_from_data=True), "needs --from-scratch"),
        (dict(model="bert-tiny", vocab_from_data=True, tokenizer="minilm-l6"), "does not combine with --tokenizer"),
        (dict(model="bert-tiny", vocab_from_data=True, vocab_size=10), "vocab_size must be at least 100"),
        (dict(max_unk_rate=1.5), "max_unk_rate must be in"),
    ],
)
def test_config_refusals(kw, match):
    with pytest.raises(UserError, match=match):
        TrainConfig(**kw)


@pytest.mark.parametrize("kw", [dict(student_init="minilm-l6"), dict(student_embeddings="minilm-l6")])
def test_distill_refuses_a_data_vocabulary_with_copied_embeddings(kw):
    from bertdeploy.training.config import DistillConfig

    with pytest.raises(UserError, match="does not combine with --student-init or --student-embeddings"):
        DistillConfig(model="bert-mini", teacher="t", vocab_from_data=True, **kw)


def test_from_scratch_with_a_data_vocabulary_trains_exports_and_predicts(tiny_model_dir, chinese_dir, tmp_path):
    from bertdeploy.exporter import ExportConfig, export
    from bertdeploy.runtime import load

    out = tmp_path / "run"
    cfg = TrainConfig(model=str(tiny_model_dir), data=str(chinese_dir), output=str(out), from_scratch=True,
                      vocab_from_data=True, vocab_size=120, epochs=3, batch_size=16, lr=5e-3, max_length=24,
                      report_to=["none"], logging_steps=2)  # fmt: skip
    train(cfg)
    saved = json.loads((out / "train_config.json").read_text(encoding="utf-8"))
    assert saved["model_info"]["unk_rate"] == 0.0 and saved["model_info"]["vocab"]["from_data"]
    size = saved["model_info"]["vocab"]["size"]
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["vocab_size"] == size
    assert "氣" in (out / "vocab.txt").read_text(encoding="utf-8").split()
    bundle = tmp_path / "bundle"
    export(ExportConfig(run_dir=str(out), output=str(bundle), data=str(chinese_dir), max_accuracy_drop=100.0))
    labels = [p.label for p in load(bundle).predict(["今天天氣很好", "球隊比賽獲勝"])]
    assert set(labels) <= {"weather", "sports"} and len(labels) == 2


def test_a_resumed_run_takes_the_vocabulary_of_its_checkpoint(tmp_path):
    from bertdeploy.training.vocab import run_tokenizer

    first = build_vocab_tokenizer([r["text"] for r in _chinese_rows(50, 1)], 200)
    first.save_pretrained(tmp_path / "checkpoint-4")
    other_texts = ["鼎鼐調和", "今天"]
    resumed = run_tokenizer(other_texts, 200, tmp_path / "checkpoint-4")
    assert resumed.get_vocab() == first.get_vocab(), "the ids the checkpoint's embeddings learnt"
    assert "鼎" in run_tokenizer(other_texts, 200, tmp_path / "no-checkpoint").get_vocab()
    assert "鼎" in run_tokenizer(other_texts, 200, None).get_vocab()


def test_a_token_classifier_from_scratch_on_a_data_vocabulary(tiny_tagger_dir, tiny_token_dir, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(model=str(tiny_tagger_dir), data=str(tiny_token_dir), output=str(out), from_scratch=True,
                      vocab_from_data=True, vocab_size=150, epochs=1, batch_size=32, max_length=24,
                      report_to=["none"])  # fmt: skip
    train(cfg)
    saved = json.loads((out / "train_config.json").read_text(encoding="utf-8"))
    assert saved["model_info"]["unk_rate"] == 0.0, "the words' own vocabulary covers them"
    assert (
        json.loads((out / "config.json").read_text(encoding="utf-8"))["vocab_size"]
        == saved["model_info"]["vocab"]["size"]
    )


@pytest.mark.parametrize("fixture", ["tiny_token_dir", "tiny_qa_dir", "tiny_mc_dir", "chinese_dir"])
def test_data_stats_reads_every_task_and_reports_the_unk_rate(fixture, tiny_model_dir, request):
    from bertdeploy.training.data_stats import data_stats

    stats = data_stats(str(request.getfixturevalue(fixture)), str(tiny_model_dir))
    assert stats.rows["train"] > 0 and stats.length_percentiles["p100"] > 2
    if fixture == "chinese_dir":
        assert stats.unk_rate > 0.5 and stats.task == "text-classification"
    else:
        assert stats.unk_rate == 0.0, "the tiny English data is in the tiny vocabulary"
    if fixture == "tiny_token_dir":
        assert stats.task == "token-classification"
        assert sum(stats.label_counts["train"].values()) > stats.rows["train"], "tokens per tag, not rows"


def test_data_stats_cli_on_token_data_names_tags_and_the_unk_rate(tiny_model_dir, tiny_token_dir, tmp_path):
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    args = [
        "data",
        "stats",
        "--data",
        str(tiny_token_dir),
        "--model",
        str(tiny_model_dir),
        "--plot",
        str(tmp_path / "h.png"),
    ]
    r = CliRunner().invoke(cli, [*args, "--task", "token-classification"])
    assert r.exit_code == 0, r.output
    assert "tokens per tag" in r.output and "[UNK] tokens with the" in r.output and "0.00%" in r.output
