"""``distill --student-init SOURCE``: the student starts as SOURCE pruned to its shape. Pruned to its own shape the
source computes the same logits (every slice lands in place, the head reordered to the data's labels); a smaller
shape keeps the most active channels, heads and neurons; a run end to end; bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import TINY_LABELS, VOCAB

from bertdeploy.errors import UserError
from bertdeploy.training import DistillConfig, distill
from bertdeploy.training.prune import importance, prune_into

TEXTS = ["good movie , great fun", "bad slow app", "the book was fine", "a terrible , boring day", "nice"] * 8


def _source(path, layers=2, hidden=32, heads=2, inter=64, labels=TINY_LABELS, seed=0):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True, model_max_length=128)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=inter, max_position_embeddings=128,
                        num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={n: i for i, n in enumerate(labels)}, initializer_range=0.2)  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return model, tok


def _student(tok, layers, hidden, heads, inter, labels=TINY_LABELS):
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden,
                                                    num_hidden_layers=layers, num_attention_heads=heads,
                                                    intermediate_size=inter, num_labels=len(labels)))  # fmt: skip


def test_pruned_to_its_own_shape_the_source_gives_the_same_logits(tmp_path):
    """Nothing is dropped, so every weight must land where it was; the data lists the labels in another order,
    and the head's rows follow it."""
    source, tok = _source(tmp_path / "src")
    labels = list(reversed(TINY_LABELS))
    pruned, info = prune_into(_student(tok, 2, 32, 2, 64), tok, str(tmp_path / "src"), labels, TEXTS, 32)
    enc = tok(TEXTS[:5], padding=True, return_tensors="pt")
    with torch.no_grad():
        want, got = source(**enc).logits, pruned.eval()(**enc).logits
    assert torch.allclose(got, want.flip(-1), atol=1e-5)
    assert info["head"] is True and info["shape"] == info["source_shape"] == [2, 32, 2, 64]


def test_a_smaller_shape_keeps_the_most_active_heads_neurons_and_channels(tmp_path):
    """Head 0 and FFN neuron 5 of layer 0 are silenced in the source: the student (1 layer, 16 wide: one 16-dim
    head) keeps head 1 and not neuron 5; its embeddings are the source's most active columns, in order."""
    source, tok = _source(tmp_path / "src")
    layer = source.bert.encoder.layer[0]
    with torch.no_grad():
        layer.attention.self.value.weight[:16] = 0
        layer.attention.self.value.bias[:16] = 0
        layer.intermediate.dense.weight[5] = 0
        layer.intermediate.dense.bias[5] = -10  # GELU(-10) ~ 0
    source.save_pretrained(tmp_path / "src", safe_serialization=True)
    pruned, info = prune_into(_student(tok, 1, 16, 4, 32), tok, str(tmp_path / "src"), TINY_LABELS, TEXTS, 32)
    assert info["shape"] == [1, 16, 1, 32], "heads keep the source's size (16): 16 channels hold one head"
    batches = [dict(tok(TEXTS, padding=True, return_tensors="pt"))]
    scores = importance(source.bert, batches, 1)
    assert scores["heads"][0][0] == 0 and scores["neurons"][0][5] < 1e-3
    ch = torch.sort(torch.topk(scores["hidden"], 16).indices).values
    emb = pruned.bert.embeddings.word_embeddings.weight
    assert torch.equal(emb, source.bert.embeddings.word_embeddings.weight[:, ch])
    value = pruned.bert.encoder.layer[0].attention.self.value
    assert torch.equal(value.weight, layer.attention.self.value.weight[16:][:, ch])
    kept = torch.sort(torch.topk(scores["neurons"][0], 32).indices).values
    assert 5 not in kept.tolist()
    assert torch.equal(pruned.bert.encoder.layer[0].intermediate.dense.bias, layer.intermediate.dense.bias[kept])


def test_a_token_classifier_pruned_to_its_own_shape_gives_the_same_logits(tmp_path):
    """Token classification: the student is a token classifier, and a token-classifier source gives its head (its
    rows in the data's tag order)."""
    from helpers import TINY_TAGS, build_tiny_tagger
    from transformers import BertForTokenClassification, BertTokenizerFast

    build_tiny_tagger(tmp_path / "src", initializer_range=0.2)
    source = BertForTokenClassification.from_pretrained(tmp_path / "src").eval()
    tok = BertTokenizerFast.from_pretrained(tmp_path / "src")
    tags = list(reversed(TINY_TAGS))
    student = BertForTokenClassification(source.config)
    pruned, info = prune_into(student, tok, str(tmp_path / "src"), tags, TEXTS, 32, "token-classification")
    assert isinstance(pruned, BertForTokenClassification) and info["head"] is True
    enc = tok(TEXTS[:5], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(**enc).logits, source(**enc).logits.flip(-1), atol=1e-5)


def test_a_base_model_source_gives_the_encoder_but_not_a_head(tmp_path):
    source, tok = _source(tmp_path / "src", labels=["x", "y"])  # a classifier of other labels: its head is not used
    pruned, info = prune_into(_student(tok, 1, 16, 1, 32), tok, str(tmp_path / "src"), TINY_LABELS, TEXTS, 32)
    assert info["head"] is False and pruned.classifier.out_features == 3


def test_distill_with_student_init_end_to_end(tmp_path, tiny_data_dir):
    """bert-tiny's shape (2 x 128, FFN 512) cut from a 3 x 256 source with 32-dim heads: 4 heads of 32. The run
    folder holds a plain BERT of that shape, and train_config.json says where it came from. The student reads the
    source's vocabulary without being told (the tests' vocabulary, not the default MiniLM one)."""
    _source(tmp_path / "src", layers=3, hidden=256, heads=8, inter=640)
    cfg = DistillConfig(teacher=str(tmp_path / "src"), model="bert-tiny", student_init=str(tmp_path / "src"),
                        data=str(tiny_data_dir), output=str(tmp_path / "run"), epochs=1, batch_size=16, lr=1e-3,
                        max_length=32, report_to=["none"])  # fmt: skip
    distill(cfg)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [config[k] for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")] == [
        2, 128, 4, 512]  # fmt: skip
    init = json.loads((tmp_path / "run" / "train_config.json").read_text())["distill"]["student_init"]
    assert (tmp_path / "run" / "vocab.txt").read_text() == (tmp_path / "src" / "vocab.txt").read_text()
    assert init["shape"] == [2, 128, 4, 512] and init["source_shape"] == [3, 256, 8, 640] and init["head"]


def test_student_layers_shortens_the_shape_that_student_init_cuts(tmp_path, tiny_data_dir):
    """``--student bert-tiny --student-layers 1 --student-init SRC``: bert-tiny's width, one layer, cut from SRC."""
    _source(tmp_path / "src", layers=3, hidden=256, heads=8, inter=640)
    cfg = DistillConfig(teacher=str(tmp_path / "src"), model="bert-tiny", student_layers=1,
                        student_init=str(tmp_path / "src"), data=str(tiny_data_dir), output=str(tmp_path / "run"),
                        epochs=1, batch_size=16, lr=1e-3, max_length=32, report_to=["none"])  # fmt: skip
    distill(cfg)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [config[k] for k in ("num_hidden_layers", "hidden_size", "intermediate_size")] == [1, 128, 512]
    init = json.loads((tmp_path / "run" / "train_config.json").read_text())["distill"]["student_init"]
    assert init["shape"] == [1, 128, 4, 512]


def test_bad_sources_are_refused(tmp_path, tiny_data_dir):
    source, tok = _source(tmp_path / "src")
    with pytest.raises(UserError, match="larger than the source"):
        prune_into(_student(tok, 1, 64, 4, 32), tok, str(tmp_path / "src"), TINY_LABELS, TEXTS, 32)
    from transformers import AutoTokenizer

    from bertdeploy.training.models import minilm_path

    other = AutoTokenizer.from_pretrained(minilm_path())
    with pytest.raises(UserError, match="vocabulary differs"):
        prune_into(_student(tok, 1, 16, 1, 32), other, str(tmp_path / "src"), TINY_LABELS, TEXTS, 32)
    (tmp_path / "nosafe").mkdir()
    (tmp_path / "nosafe" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="no model.safetensors"):
        prune_into(_student(tok, 1, 16, 1, 32), tok, str(tmp_path / "nosafe"), TINY_LABELS, TEXTS, 32)
    with pytest.raises(UserError, match="does not combine"):
        DistillConfig(teacher="t", student_init="minilm-l6", student_embeddings="minilm-l6")
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "distill", "--teacher", str(tmp_path / "src"),
           "--student", "bert-tiny", "--student-init", str(tmp_path / "nosafe"), "--data", str(tiny_data_dir),
           "-o", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --student-init")
    assert "no model.safetensors" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_the_output_may_not_be_the_source_or_the_teacher(tmp_path, tiny_data_dir):
    """--overwrite replaces only what is ours: never the folder the student is cut from, nor the teacher."""
    for name in ("src", "other"):
        _source(tmp_path / name, layers=3, hidden=256, heads=8, inter=640)
    before = sorted(p.name for p in (tmp_path / "src").iterdir())
    for teacher, init in (("src", "other"), ("other", "src")):
        cfg = DistillConfig(teacher=str(tmp_path / teacher), student_init=str(tmp_path / init), model="bert-tiny",
                            data=str(tiny_data_dir), output=str(tmp_path / "src"), overwrite=True, epochs=1,
                            report_to=["none"])  # fmt: skip
        with pytest.raises(UserError, match="is the input"):
            distill(cfg)
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == before
