"""``bertdeploy pretrain``: masked-language pretraining on a data set's own texts, then ``train --model`` on the
result (the weights carry over, the head is new), on every input layout, and its refusals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from bertdeploy.cli import cli
from bertdeploy.errors import UserError
from bertdeploy.training.pretrain import PretrainConfig, blocks, pretrain
from tests.helpers import write_csv

WEATHER = "今天天氣很好陽光明媚適合出門散步"
SPORTS = "球隊昨晚比賽獲勝球員表現出色觀眾歡呼"


def _sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """Texts whose characters follow each other in a fixed order, so the masked ones can be predicted."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        chars, label = (WEATHER, "weather") if i % 2 == 0 else (SPORTS, "sports")
        start = rng.randrange(len(chars) - 6)
        rows.append((chars[start : start + rng.randint(6, len(chars) - start)], label))
    return rows


@pytest.fixture(scope="module")
def chinese_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pretrain_chinese")
    for split, n, seed in (("train", 200, 1), ("validation", 40, 2), ("test", 40, 3)):
        write_csv(root / f"{split}.csv", _sentences(n, seed))
    (root / "labels.txt").write_text("weather\nsports\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def pretrained(chinese_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "mlm"
    cfg = PretrainConfig(model="bert-tiny", data=str(chinese_dir), output=str(out), vocab_from_data=True,
                         vocab_size=120, epochs=30, batch_size=8, lr=2e-3, max_length=16, mlm_probability=0.3,
                         seed=0)  # fmt: skip
    pretrain(cfg)
    return out


def test_the_held_out_loss_falls_and_the_folder_is_an_hf_model(pretrained):
    metrics = json.loads((pretrained / "metrics.json").read_text(encoding="utf-8"))
    losses = [row["loss"] for row in metrics["epochs"]]
    assert len(losses) == 30 and losses[-1] < losses[0] - 1.0, losses
    assert metrics["final"]["split"] == "validation" and metrics["final"]["perplexity"] > 1
    record = json.loads((pretrained / "train_config.json").read_text(encoding="utf-8"))
    assert record["task"] == "fill-mask" and record["model_info"]["vocab"]["from_data"]
    assert json.loads((pretrained / "config.json").read_text(encoding="utf-8"))["architectures"] == ["BertForMaskedLM"]
    assert "氣" in (pretrained / "vocab.txt").read_text(encoding="utf-8").split()
    assert not (pretrained / "training_args.bin").exists()
    assert not pretrained.with_name("mlm.partial").exists()


def test_train_starts_from_the_pretrained_encoder(pretrained, chinese_dir, tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM

    from bertdeploy.training import TrainConfig, train
    from bertdeploy.training.models import load_classifier

    model, tok, info = load_classifier(str(pretrained), ["weather", "sports"])
    mlm = AutoModelForMaskedLM.from_pretrained(pretrained)
    assert info["pretrained"] and len(tok) == mlm.config.vocab_size
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, mlm.bert.embeddings.word_embeddings.weight)
    assert torch.equal(model.bert.encoder.layer[1].output.dense.weight, mlm.bert.encoder.layer[1].output.dense.weight)
    out = tmp_path / "run"
    result = train(TrainConfig(model=str(pretrained), data=str(chinese_dir), output=str(out), epochs=2, lr=1e-3,
                               batch_size=16, max_length=24, report_to=["none"]))  # fmt: skip
    assert result.final["accuracy"] >= 0.9  # the two topics share no character


def test_blocks_concatenate_the_texts_and_cut_them_to_max_length(pretrained):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pretrained)
    texts = [WEATHER, SPORTS, WEATHER[:5]]
    ids = [i for t in texts for i in tok(t)["input_ids"]]
    cut = blocks(tok, texts, 16)
    assert [i for b in cut for i in b] == ids[: sum(map(len, cut))]
    assert all(len(b) == 16 for b in cut[:-1]) and 4 <= len(cut[-1]) <= 16
    assert cut[0][0] == tok.cls_token_id


def test_a_text_file_and_question_answering_data_are_read(tiny_qa_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in _sentences(100, 5)) + "\n\n", encoding="utf-8")
    out = pretrain(PretrainConfig(model="bert-tiny", data=str(corpus), output=str(tmp_path / "a"),
                                  vocab_from_data=True, vocab_size=100, epochs=1, max_length=16))  # fmt: skip
    assert out.texts["train_texts"] == 95 and out.texts["held_out_blocks"] > 0
    qa = pretrain(PretrainConfig(model="bert-tiny", data=str(tiny_qa_dir), output=str(tmp_path / "b"),
                                 vocab_from_data=True, vocab_size=100, epochs=1, max_length=32))  # fmt: skip
    # the questions and each distinct context once
    assert 60 < qa.texts["train_texts"] <= 120 and qa.final["split"] == "validation"


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(max_length=8), "max_length must be within"),
        (dict(mlm_probability=1.0), "mlm_probability must be within"),
        (dict(epochs=0), "epochs must be > 0"),
    ],
)
def test_config_refusals(kw, match):
    with pytest.raises(UserError, match=match):
        PretrainConfig(model="bert-tiny", data="d", output="o", **kw)


def test_a_folder_model_keeps_its_vocabulary(tiny_model_dir, chinese_dir, tmp_path):
    with pytest.raises(UserError, match="a folder model keeps its own vocabulary"):
        pretrain(PretrainConfig(model=str(tiny_model_dir), data=str(chinese_dir), output=str(tmp_path / "o"),
                                vocab_from_data=True))  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_a_vocabulary_that_does_not_cover_the_texts_is_refused(tiny_model_dir, chinese_dir, tmp_path):
    with pytest.raises(UserError, match="are \\[UNK\\] with the"):
        pretrain(PretrainConfig(model="bert-tiny", tokenizer=str(tiny_model_dir), data=str(chinese_dir),
                                output=str(tmp_path / "o")))  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(chinese_dir, tmp_path):
    r = CliRunner().invoke(cli, ["pretrain", "--model", "bert-tiny", "--data", str(tmp_path / "nope"), "-o",
                                 str(tmp_path / "out")])  # fmt: skip
    assert r.exit_code == 2 and r.stderr.startswith("error: data path not found") and len(r.stderr.splitlines()) == 1
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep", encoding="utf-8")
    r = CliRunner().invoke(cli, ["pretrain", "--model", "bert-tiny", "--data", str(chinese_dir), "-o", str(taken),
                                 "--overwrite"])  # fmt: skip
    assert r.exit_code == 2 and r.stderr.startswith("error:") and len(r.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (taken / "mine.txt").read_text(encoding="utf-8") == "keep"


def test_a_killed_run_resumes_from_its_last_checkpoint(chinese_dir, tmp_path):
    out = tmp_path / "mlm"
    cfg = dict(model="bert-tiny", data=str(chinese_dir), output=str(out), vocab_from_data=True, vocab_size=120,
               epochs=3, batch_size=16, max_length=16, seed=0)  # fmt: skip

    def kill_in_epoch_two(row):
        if row["epoch"] >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(PretrainConfig(**cfg), on_epoch=kill_in_epoch_two)
    work = tmp_path / "mlm.partial"
    assert not out.exists() and [p.name for p in work.glob("checkpoint-*")]
    vocab_before = (next(work.glob("checkpoint-*")) / "vocab.txt").read_text(encoding="utf-8")
    result = pretrain(PretrainConfig(**cfg, resume=True))
    assert result.speed["resumed_from"].startswith("checkpoint-")
    assert [row["epoch"] for row in result.history] == [1.0, 2.0, 3.0]
    assert (out / "vocab.txt").read_text(encoding="utf-8") == vocab_before and not work.exists()
    with pytest.raises(UserError, match="no complete checkpoint to resume from"):
        pretrain(PretrainConfig(**{**cfg, "output": str(tmp_path / "other")}, resume=True))


def test_a_hub_model_offline_is_one_line_naming_the_hub(chinese_dir, tmp_path, monkeypatch):
    from bertdeploy import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    r = CliRunner().invoke(cli, ["pretrain", "--model", "bert-base-chinese", "--data", str(chinese_dir), "-o",
                                 str(tmp_path / "out")])  # fmt: skip
    assert r.exit_code == 2 and r.stderr.startswith("error: cannot reach the Hugging Face Hub to fetch model")
    assert list(tmp_path.iterdir()) == []
