"""Distillation: the loss against a hand computation, that it uses the teacher's logits, a run end to end (teacher as
a bundle and as a run folder, with a different tokenizer than the student's), the logits cache and resume, bad
inputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import REPO, build_tiny_model

from bertdeploy.errors import UserError
from bertdeploy.training import DistillConfig, distill
from bertdeploy.training.distill import distillation_loss, init_embeddings, truncate_layers
from bertdeploy.training.teacher import label_order

STUDENT = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]])
TEACHER = np.array([[1.0, 0.0, -1.0], [3.0, -2.0, 0.5], [0.0, 0.0, 2.0]])
LABELS = [0, 2, -100]  # the last row is an unlabelled transfer text


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _by_hand(temperature: float, alpha: float) -> float:
    log_s, log_t = _log_softmax(STUDENT / temperature), _log_softmax(TEACHER / temperature)
    kl_rows = (np.exp(log_t) * (log_t - log_s)).sum(axis=1)  # KL(p_teacher || p_student) per row, all 3 rows
    ce_rows = [-_log_softmax(STUDENT)[i, y] for i, y in enumerate(LABELS) if y >= 0]  # labelled rows only
    return alpha * temperature**2 * kl_rows.mean() + (1 - alpha) * float(np.mean(ce_rows))


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (2.0, 0.5), (4.0, 0.9), (2.0, 0.0), (3.0, 1.0)])
def test_loss_matches_a_hand_computation(temperature, alpha):
    loss = distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS), temperature, alpha)
    assert loss.item() == pytest.approx(_by_hand(temperature, alpha), rel=1e-6)


def test_loss_of_a_student_equal_to_its_teacher_is_the_cross_entropy_share():
    s = torch.tensor(STUDENT)
    loss = distillation_loss(s, s.clone(), torch.tensor(LABELS), 2.0, 0.5)
    ce = np.mean([-_log_softmax(STUDENT)[i, y] for i, y in enumerate(LABELS) if y >= 0])
    assert loss.item() == pytest.approx(0.5 * ce, rel=1e-6)


def test_a_batch_of_unlabelled_texts_has_only_the_soft_loss():
    labels = torch.tensor([-100, -100, -100])
    loss = distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), labels, 2.0, 0.5)
    assert math.isfinite(loss.item()) and loss.item() > 0
    assert distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), labels, 2.0, 0.0).item() == 0.0


def test_the_gradients_follow_the_teachers_logits(tiny_model_dir):
    """Through the Trainer's compute_loss on a real model: other teacher logits, other parameter gradients; with
    alpha=0 the teacher does not matter."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from bertdeploy.training.distill import _trainer_class

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    batch = dict(tok(["good day", "bad time", "the movie"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([2, 0, 1])

    def grads(teacher, alpha):
        args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
        trainer = _trainer_class()(model=model, args=args, temperature=2.0, alpha=alpha)
        model.zero_grad()
        trainer.compute_loss(model, {**batch, "teacher_logits": torch.tensor(teacher, dtype=torch.float32)}).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()

    a, b = grads(TEACHER, 0.5), grads(-TEACHER, 0.5)
    assert not torch.allclose(a, b), "the teacher's logits change the gradients"
    assert torch.allclose(grads(TEACHER, 0.0), grads(-TEACHER, 0.0)), "alpha=0 ignores the teacher"


def test_label_order_reorders_and_refuses_other_label_sets():
    assert label_order(["b", "c", "a"], ["a", "b", "c"]) == [2, 0, 1]
    with pytest.raises(UserError, match="teacher only \\['d'\\], data only \\['c'\\]"):
        label_order(["a", "b", "d"], ["a", "b", "c"])


def test_truncating_the_student_keeps_its_first_layers(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    first = model.bert.encoder.layer[0]
    truncate_layers(model, 1)
    assert len(model.bert.encoder.layer) == 1 and model.bert.encoder.layer[0] is first
    assert model.config.num_hidden_layers == 1
    with pytest.raises(UserError, match="only 1 layers"):
        truncate_layers(model, 2)


def test_student_embeddings_are_the_pretrained_ones_on_their_principal_axes(tiny_model_dir):
    """A narrower student (hidden 16) gets the tiny model's (hidden 32) embeddings projected onto their top 16
    principal components (compared as Gram matrices: the sign of a principal axis is arbitrary)."""
    from transformers import AutoModel, BertConfig, BertForSequenceClassification

    source = AutoModel.from_pretrained(tiny_model_dir)

    def student(vocab_size):
        return BertForSequenceClassification(BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                                                        num_attention_heads=2, intermediate_size=32))  # fmt: skip

    narrow = student(source.config.vocab_size)
    assert init_embeddings(narrow, str(tiny_model_dir))["projected"] == "32 -> 16 (PCA)"
    words = source.embeddings.word_embeddings.weight.detach()
    centered = words - words.mean(0, keepdim=True)
    expected = centered @ torch.linalg.svd(centered, full_matrices=False).Vh[:16].T
    got = narrow.bert.embeddings.word_embeddings.weight.detach()
    assert torch.allclose(got @ got.T, expected @ expected.T, atol=1e-4)
    with pytest.raises(UserError, match="another vocabulary size"):
        init_embeddings(student(50), str(tiny_model_dir))


def _cfg(teacher, data, out, **kw) -> DistillConfig:
    base = dict(teacher=str(teacher), model="bert-tiny", data=str(data), output=str(out), epochs=1, batch_size=16,
                lr=1e-3, max_length=32, report_to=["none"], logging_steps=2)  # fmt: skip
    return DistillConfig(**{**base, **kw})


def test_distill_from_a_bundle_writes_a_run(tiny_bundle, tiny_data_dir, tmp_path):
    """bert-tiny (the MiniLM vocabulary) learns from a bundle whose tokenizer is another: each model reads the
    texts with its own tokenizer. Unlabelled texts widen the transfer set."""
    extra = tmp_path / "more.txt"
    extra.write_text("good good day\n\nbad slow app\nthe book\n", encoding="utf-8")
    rows = []
    r = distill(_cfg(tiny_bundle, tiny_data_dir, tmp_path / "run", unlabelled=str(extra)), on_epoch=rows.append)
    out = tmp_path / "run"
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (tmp_path / "run.partial").exists()
    assert rows and rows[0]["epoch"] == 1.0
    assert r.speed["train_rows"] == 120 + 3, "train split plus the 3 non-empty unlabelled texts"
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["teacher"] == str(tiny_bundle) and saved["alpha"] == 0.5
    info = saved["distill"]["teacher"]
    assert info["kind"] == "bundle" and info["variant"] == "fp32" and info["cache"] == "computed"
    assert info["scored_texts"] == 120 + 3 + 30 and info["unlabelled_texts"] == 3
    assert 0 <= info["eval"]["accuracy"] <= 1 and r.teacher == info
    vocab = json.loads((out / "config.json").read_text())["vocab_size"]
    assert vocab == 30522, "the student keeps its own (MiniLM) vocabulary"
    assert json.loads((out / "metrics.json").read_text())["final"]["n"] == 30


def test_killed_run_resumes_with_the_cached_teacher_logits(tiny_model_dir, tiny_data_dir, tmp_path):
    """A run folder teacher (scored with PyTorch), killed after epoch 1: the logits cache is in OUTPUT.partial and
    ``resume`` uses it instead of scoring again."""

    class Kill(Exception):
        pass

    def die_at_epoch_2(row):
        if row["epoch"] >= 2:
            raise Kill

    cfg = _cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", epochs=2, model=str(tiny_model_dir), student_layers=1)
    with pytest.raises(Kill):
        distill(cfg, on_epoch=die_at_epoch_2)
    assert not (tmp_path / "run").exists()
    cached = list((tmp_path / "run.partial").glob("teacher_logits-*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (150, 3)
    r = distill(_cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", epochs=2, model=str(tiny_model_dir),
                     student_layers=1, resume=True))  # fmt: skip
    assert r.teacher["cache"] == "hit" and r.teacher["kind"] == "run"
    # epoch 1 is not trained again, and the history keeps it (read back from the checkpoint's trainer state)
    assert [e["epoch"] for e in r.history] == [1.0, 2.0] and r.history[0].get("from_checkpoint")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["num_hidden_layers"] == 1


def test_a_restarted_run_keeps_the_teacher_logits_but_not_the_checkpoints(tiny_model_dir, tiny_data_dir, tmp_path):
    class Kill(Exception):
        pass

    def die(row):
        if row["epoch"] >= 2:  # epoch 1's checkpoint is saved after its evaluation: kill during epoch 2's
            raise Kill

    cfg = _cfg(tiny_model_dir, tiny_data_dir, tmp_path / "run", epochs=2, train_size=30)
    with pytest.raises(Kill):
        distill(cfg, on_epoch=die)
    stale = tmp_path / "run.partial"
    assert list(stale.glob("checkpoint-*")) and list(stale.glob("teacher_logits-*.npy"))
    r = distill(cfg)  # no resume: starts over from epoch 1, yet does not score the texts again
    assert r.teacher["cache"] == "hit" and [e["epoch"] for e in r.history] == [1.0, 2.0]


def test_a_teacher_with_other_labels_is_refused_before_training(tiny_data_dir, tmp_path):
    teacher = build_tiny_model(tmp_path / "teacher4", num_labels=4)
    with pytest.raises(UserError, match="teacher's labels differ from the data's"):
        distill(_cfg(teacher, tiny_data_dir, tmp_path / "run"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


@pytest.mark.parametrize(
    "teacher, message",
    [("", "a teacher is required"), ("/nonexistent/teacher", "teacher not found"), ("EMPTY", "neither a bundle")],
)
def test_bad_teachers(tiny_data_dir, tmp_path, teacher, message):
    if teacher == "EMPTY":
        teacher = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=message):
        distill(_cfg(teacher, tiny_data_dir, tmp_path / "run"))


@pytest.mark.parametrize(
    "field, value", [("temperature", 0.0), ("alpha", 1.5), ("student_layers", 0), ("label_smoothing", 1.0)]
)
def test_config_validation(field, value):
    with pytest.raises(UserError, match=field):
        DistillConfig(teacher="t", **{field: value})


def test_cli_bad_input_is_one_line_exit_2(tiny_data_dir, tmp_path):
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "distill", "--teacher", str(tmp_path / "none"),
           "--student", "bert-tiny", "--data", str(tiny_data_dir), "-o", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: teacher not found")
    assert len(proc.stderr.strip().splitlines()) == 1
    recipe = REPO / "recipes" / "distill_emotion.yaml"
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "train", "--recipe", str(recipe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "is a distill recipe: run it with `bertdeploy distill" in proc.stderr


def _bench_row(target, variant, accuracy, p50_ms):
    return {"target": target, "backend": "bertdeploy", "variant": variant, "padding": "bucketed", "batch_size": 32,
            "status": "ok", "accuracy": accuracy, "f1_macro": accuracy, "e2e_p50_ms": p50_ms,
            "e2e_seq_per_s": 32000 / p50_ms}  # fmt: skip


def test_bench_pick_can_choose_a_student_over_its_teacher():
    """Teacher and students benched together are one frontier: within the budget, the fastest student wins."""
    from bertdeploy.benchmark.pick import pick
    from bertdeploy.variants import BASE, auto_order

    int8 = auto_order("cpu")[0]
    rows = [_bench_row("teacher", BASE, 0.930, 80.0), _bench_row("teacher", int8, 0.927, 50.0),
            _bench_row("student", BASE, 0.922, 25.0), _bench_row("student", int8, 0.921, 12.0)]  # fmt: skip
    assert (pick(rows, 1.0)["target"], pick(rows, 1.0)["variant"]) == ("student", int8)
    assert pick(rows, 0.5)["target"] == "teacher" and pick(rows, 0.5)["reference"]["target"] == "teacher"
