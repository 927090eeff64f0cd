"""``distill`` for token classification: the teacher's per-word logits (PyTorch and the ONNX runtime agree), their
alignment onto another tokenization of the same words, the KL term masked to the tokens with a soft label, the
augmented sentences, a run end to end (it exports), and what is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import TINY_TAGS, VOCAB

from bertdeploy.errors import UserError
from bertdeploy.runtime.tagger import first_sub_tokens
from bertdeploy.training import DistillConfig, distill
from bertdeploy.training import augment as aug
from bertdeploy.training.augment import split_words
from bertdeploy.training.distill_tokens import (
    NO_SOFT,
    SoftCollator,
    TokenSoftLoss,
    inside_matrix,
    soft_refs,
)
from bertdeploy.training.models import minilm_path
from bertdeploy.training.teacher import resolve_teacher, score

WORDS = [["playing", "spotify", "tomorrow", "login"], ["unbelievable", "food", "xylophones"]]


def _tokenizers():
    """Two tokenizations of the same words: the tiny test vocabulary (mostly single characters) and MiniLM's."""
    from transformers import AutoTokenizer, BertTokenizerFast

    return BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True), AutoTokenizer.from_pretrained(minilm_path())


def test_alignment_puts_each_words_teacher_row_on_the_students_first_sub_token():
    """A fake teacher whose logits at a token are (its word, its position): after the word rows are picked from
    the teacher's tokenization and placed by the student's, every student first sub-token holds its own word and
    that word's FIRST teacher position; later sub-tokens and special tokens hold nothing (or, with
    label_all_tokens, the same row marked as a later sub-token); words the teacher's truncation cut hold nothing."""
    teacher_tok, student_tok = _tokenizers()
    t_enc = teacher_tok(WORDS, is_split_into_words=True, truncation=True, max_length=16)
    s_enc = student_tok(WORDS, is_split_into_words=True)
    starts = np.cumsum([0, *(len(s) for s in WORDS)])
    table = np.full((starts[-1], 2), np.nan)
    for i in range(len(WORDS)):
        ids = np.array([-1 if w is None else w for w in t_enc.word_ids(i)])
        logits = np.stack([ids, np.arange(len(ids))], axis=1).astype(float)  # (word, position) per token
        positions, rows = first_sub_tokens(ids, np.full(len(ids), i), starts)
        table[rows] = logits[positions]
    valid = ~np.isnan(table).any(axis=1)
    assert valid.tolist() == [True, True, False, False, True, True, True], "14 tokens: 'tomorrow' and 'login' cut"
    for i, s in enumerate(WORDS):
        t_ids, s_ids = t_enc.word_ids(i), s_enc.word_ids(i)
        assert t_ids != s_ids, "the two tokenizations differ"
        refs = soft_refs([-1 if w is None else w for w in s_ids], int(starts[i]), valid)
        for pos, (w, ref) in enumerate(zip(s_ids, refs, strict=True)):
            first = w is not None and (pos == 0 or s_ids[pos - 1] != w)
            if first and valid[starts[i] + w]:
                assert table[ref].tolist() == [w, t_ids.index(w)]
            else:
                assert ref == NO_SOFT
        all_refs = soft_refs([-1 if w is None else w for w in s_ids], int(starts[i]), valid, label_all=True)
        later = [r for r in all_refs if r < NO_SOFT]
        assert later and all(valid[-2 - r] for r in later), "later sub-tokens point at their (reached) word"


def _hand_kl(student, target, temperature):
    log_s = torch.log_softmax(student / temperature, -1)
    return float((torch.xlogy(target, target) - target * log_s).sum(-1).mean())  # 0 log 0 = 0


def test_the_kl_term_counts_only_the_tokens_with_a_soft_label():
    torch.manual_seed(0)
    table = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    student = torch.randn(2, 6, 5)
    refs = torch.tensor([[NO_SOFT, 0, NO_SOFT, 1, NO_SOFT, NO_SOFT], [NO_SOFT, 2, 3, NO_SOFT, NO_SOFT, NO_SOFT]])
    labels = torch.full((2, 6), -100)
    loss = TokenSoftLoss(table, temperature=2.0, alpha=1.0)
    got = loss(student, refs, labels).item()
    keep = refs != NO_SOFT
    target = torch.softmax(torch.from_numpy(table)[refs[keep]] / 2.0, -1)
    assert got == pytest.approx(4.0 * _hand_kl(student[keep], target, 2.0), rel=1e-5)
    moved = student.clone()
    moved[~keep] += 10 * torch.randn_like(moved[~keep])
    assert loss(moved, refs, labels).item() == pytest.approx(got, rel=1e-6), "padding / unlabelled tokens ignored"
    moved = student.clone()
    moved[0, 1, 0] += 3.0  # one logit: another distribution
    assert loss(moved, refs, labels).item() != pytest.approx(got, rel=1e-3), "a soft-labelled token counts"


def test_hard_labels_and_the_later_sub_tokens_of_label_all_tokens():
    """alpha weighs the CE over labelled tokens; a later sub-token's target moves the B- share onto I-."""
    table = np.log(np.array([[0.1, 0.6, 0.1, 0.1, 0.1]], dtype=np.float32))  # O, B-ITEM, I-ITEM, B-TIME, I-TIME
    inside = inside_matrix(TINY_TAGS)
    loss = TokenSoftLoss(table, temperature=1.0, alpha=0.5, inside=inside)
    target = loss.targets(torch.tensor([-2]))
    assert torch.allclose(target, torch.tensor([[0.1, 0.0, 0.7, 0.0, 0.2]]), atol=1e-6)
    student = torch.randn(1, 3, 5)
    labels = torch.tensor([[-100, 1, 2]])
    refs = torch.tensor([[NO_SOFT, 0, -2]])
    ce = torch.nn.functional.cross_entropy(student[0, 1:], labels[0, 1:]).item()
    kl = _hand_kl(student[0, 1:], torch.cat([loss.targets(torch.tensor([0])), target]), 1.0)
    assert loss(student, refs, labels).item() == pytest.approx(0.5 * ce + 0.5 * kl, rel=1e-5)


def test_the_trainer_computes_the_token_loss_from_the_teacher_rows(tiny_tagger_dir):
    """Through the Trainer's compute_loss on a real token classifier: other teacher rows, other gradients."""
    from transformers import AutoModelForTokenClassification, TrainingArguments

    from bertdeploy.training.distill import _trainer_class

    model = AutoModelForTokenClassification.from_pretrained(tiny_tagger_dir)
    none = NO_SOFT
    batch = {"input_ids": torch.tensor([[2, 40, 41, 3], [2, 42, 3, 0]]), "attention_mask": torch.tensor([[1] * 4,
             [1, 1, 1, 0]]), "labels": torch.tensor([[-100, 1, -100, -100], [-100, -100, -100, -100]]),
             "teacher_logits": torch.tensor([[none, 0, none, none], [none, 1, none, none]])}  # fmt: skip
    table = np.random.default_rng(0).normal(size=(2, len(TINY_TAGS))).astype(np.float32)

    def grads(rows):
        args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
        soft = TokenSoftLoss(rows, temperature=2.0, alpha=0.5)
        trainer = _trainer_class()(model=model, args=args, temperature=2.0, alpha=0.5, soft_loss=soft)
        model.zero_grad()
        trainer.compute_loss(model, dict(batch)).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()

    assert not torch.allclose(grads(table), grads(-table)), "the teacher's rows change the gradients"
    evaluation = {k: v for k, v in batch.items() if k != "teacher_logits"}
    args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
    trainer = _trainer_class()(model=model, args=args, temperature=2.0, alpha=0.5)
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(model(**{k: v for k, v in evaluation.items() if k != "labels"})
                                                 .logits[0, 1:2], torch.tensor([1]))  # fmt: skip
        assert trainer.compute_loss(model, evaluation).item() == pytest.approx(want.item(), rel=1e-5)


def test_the_collator_pads_the_teacher_rows_like_the_tokens():
    from transformers import DataCollatorForTokenClassification

    teacher_tok, _ = _tokenizers()
    features = [{"input_ids": [2, 10, 3], "labels": [-100, 1, -100], "teacher_logits": [NO_SOFT, 0, NO_SOFT]},
                {"input_ids": [2, 3], "labels": [-100, -100], "teacher_logits": [NO_SOFT, NO_SOFT]}]  # fmt: skip
    batch = SoftCollator(DataCollatorForTokenClassification(teacher_tok))(features)
    assert batch["teacher_logits"].tolist() == [[-1, 0, -1], [-1, -1, -1]]
    assert batch["labels"].shape == batch["input_ids"].shape == (2, 3)


def test_per_word_logits_of_a_run_and_of_its_bundle_agree(tiny_tagger_dir, tiny_token_bundle):
    """The PyTorch teacher and the ONNX runtime's tagger give the same logits per word, those of each word's first
    sub-token (checked against the model itself)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    sentences = [["i", "love", "the", "movie", "tonight"], ["food", "service", "was", "bad"], ["xylophones"]]
    run, bundle = resolve_teacher(str(tiny_tagger_dir), "fp32"), resolve_teacher(str(tiny_token_bundle), "fp32")
    assert run.task == bundle.task == "token-classification"
    a, b = score(run, sentences, batch_size=2), score(bundle, sentences, batch_size=2)
    assert a.shape == (10, len(TINY_TAGS)) and np.allclose(a, b, atol=1e-4)
    tok = AutoTokenizer.from_pretrained(tiny_tagger_dir)
    enc = tok(sentences[2], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        logits = AutoModelForTokenClassification.from_pretrained(tiny_tagger_dir)(**enc).logits[0]
    assert enc.word_ids()[1] == 0 and len(enc.word_ids()) > 3
    assert np.allclose(a[-1], logits[1].numpy(), atol=1e-5)
    cut = score(replace(run, max_length=6), sentences)  # 4 word pieces a sentence: "tonight" is cut off
    assert np.isnan(cut).all(axis=1).tolist() == [False] * 4 + [True] + [False] * 4 + [False]


def test_augmented_sentences_are_seeded_and_cached(tiny_tagger_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BERTDEPLOY_CACHE", str(tmp_path / "cache"))
    teacher = resolve_teacher(str(tiny_tagger_dir), "fp32")
    sentences = [["i", "love", "the", "movie", "at", "night"], ["food", "service", "today"], ["my", "app", "login"]]
    first, logits, info = aug.transfer_logits(teacher, sentences, 4, seed=3)
    again, cached, info2 = aug.transfer_logits(teacher, sentences, 4, seed=3)
    assert info["cache"] == "computed" and info2["cache"] == "hit"
    assert first == again and np.array_equal(logits, cached)
    assert logits.shape == (sum(len(s) for s in first), len(TINY_TAGS))
    copies = {tuple(s) for s in first}
    assert len(copies) == len(first) and not copies & {tuple(s) for s in sentences}, "deduplicated"
    assert aug.transfer_logits(teacher, sentences, 4, seed=4)[0] != first


def _cfg(teacher, data, out, **kw) -> DistillConfig:
    base = dict(teacher=str(teacher), model="bert-tiny", data=str(data), output=str(out), epochs=2, batch_size=16,
                lr=2e-3, max_length=32, report_to=["none"], logging_steps=5)  # fmt: skip
    return DistillConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def token_teacher(tmp_path_factory, tiny_token_dir):
    """A tiny tagger trained for 3 epochs (entity F1 > 0.9 on the tiny test split): a real teacher run folder."""
    from helpers import build_tiny_tagger

    from bertdeploy.training import TrainConfig, train

    init = build_tiny_tagger(tmp_path_factory.mktemp("teacher_init"))
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(TrainConfig(model=str(init), data=str(tiny_token_dir), output=str(out), epochs=3, batch_size=8, lr=5e-3,
                      max_length=32, report_to=["none"]))  # fmt: skip
    return out


def test_a_student_with_its_own_vocabulary_learns_from_a_run_teacher_and_exports(token_teacher, tiny_token_dir,
                                                                                   tmp_path):  # fmt: skip
    """bert-tiny (MiniLM's vocabulary, from scratch) on the teacher run's per-word soft labels: entity scores per
    epoch and on test as `train` reports them, a run folder that exports and tags raw text."""
    from bertdeploy import export, load
    from bertdeploy.exporter import ExportConfig

    rows: list[dict] = []
    r = distill(_cfg(token_teacher, tiny_token_dir, tmp_path / "run", epochs=3), on_epoch=rows.append)
    assert r.task == "token-classification" and r.eval_split == "test" and r.final["n"] == 30
    assert len(rows) == 3 and all({"f1", "precision", "recall", "token_accuracy"} <= set(row) for row in rows)
    assert {"ITEM", "TIME"} == set(r.final["per_type"])
    info = r.teacher
    assert info["kind"] == "run" and info["task"] == "token-classification" and info["cache"] == "computed"
    assert info["eval"]["f1"] > 0.9 and info["train_agreement"] > 0.9 and info["words_cut"] == 0
    assert info["scored_texts"] == 150 and r.speed["train_rows"] == 120
    assert r.final["f1"] > 0.5, r.final
    saved = json.loads((r.output / "train_config.json").read_text())
    assert saved["task"] == "token-classification" and saved["distill"]["teacher"]["eval"] == info["eval"]
    bundle = tmp_path / "bundle"
    export(ExportConfig(run_dir=str(r.output), output=str(bundle), variants=["fp32"]))
    text = "i love the movie at night"
    entities = load(bundle, variant="fp32").predict([text])[0]
    assert all(text[e.start : e.end] == e.word for e in entities)


def test_a_pruned_student_from_a_bundle_teacher_with_augment(token_teacher, tiny_token_dir, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    """--student-init prunes the teacher run into a narrower token classifier (its head kept); --augment adds
    perturbed sentences that carry soft labels only; label_all_tokens places the soft labels on every sub-token;
    the hidden-state term runs the teacher run in PyTorch on the same tokens."""
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    from bertdeploy.exporter import ExportConfig, export

    monkeypatch.setenv("BERTDEPLOY_CACHE", str(tmp_path / "cache"))
    bundle = tmp_path / "teacher_bundle"
    export(ExportConfig(run_dir=str(token_teacher), output=str(bundle), variants=["fp32"]))
    small = tmp_path / "small"
    BertForTokenClassification(BertConfig(vocab_size=183, hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                                          intermediate_size=32, max_position_embeddings=128,
                                          num_labels=len(TINY_TAGS))).save_pretrained(small)  # fmt: skip
    BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True).save_pretrained(small)
    cfg = _cfg(bundle, tiny_token_dir, tmp_path / "run", model=str(small), student_init=str(token_teacher),
               augment=2, epochs=1, label_all_tokens=True, hidden_loss=0.5,
               hidden_teacher=str(token_teacher))  # fmt: skip
    r = distill(cfg)
    pruned, augmented = r.teacher, r.teacher["augment"]
    assert pruned["kind"] == "bundle" and augmented["copies"] == 2 and augmented["texts"] > 120
    assert r.speed["train_rows"] == 120 + augmented["texts"]
    init = json.loads((r.output / "train_config.json").read_text())["distill"]["student_init"]
    assert init["head"] is True and init["shape"] == [1, 16, 1, 32]
    hidden = json.loads((r.output / "train_config.json").read_text())["distill"]["hidden_loss"]
    assert hidden["weight"] == 0.5 and hidden["teacher_layers"] == [0, 2]
    assert json.loads((r.output / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]
    assert 0 <= r.final["f1"] <= 1


def test_a_killed_token_run_resumes_with_the_cached_per_word_logits(tiny_tagger_dir, tiny_token_dir, tmp_path):
    """Killed during epoch 2: the per-word teacher rows are cached in OUTPUT.partial; ``resume`` reads them back
    (no second scoring) and continues from epoch 1's checkpoint."""

    class Kill(Exception):
        pass

    def die_at_epoch_2(row):
        if row["epoch"] >= 2:
            raise Kill

    cfg = _cfg(tiny_tagger_dir, tiny_token_dir, tmp_path / "run", model=str(tiny_tagger_dir), train_size=40)
    with pytest.raises(Kill):
        distill(cfg, on_epoch=die_at_epoch_2)
    assert not (tmp_path / "run").exists()
    assert list((tmp_path / "run.partial").glob("checkpoint-*"))
    assert list((tmp_path / "run.partial").glob("teacher_logits-*"))
    r = distill(replace(cfg, resume=True))
    assert r.teacher["cache"] == "hit" and r.task == "token-classification"
    assert [e["epoch"] for e in r.history] == [1.0, 2.0] and r.history[0].get("from_checkpoint")


def test_a_teacher_of_another_task_is_refused(tiny_model_dir, tiny_token_dir, tmp_path):
    with pytest.raises(UserError, match="is a text-classification model, but the data is token-classification"):
        distill(_cfg(tiny_model_dir, tiny_token_dir, tmp_path / "run"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_unlabelled_texts_are_split_into_words_like_the_data_sets():
    texts = ["play Ölmez now", "在北京 play", "  ", ""]
    assert [w for w in map(split_words, texts) if w] == [
        ["play", "Ölmez", "now"],
        ["在", "北", "京", "play"],
    ]


def test_unlabelled_raw_texts_widen_a_token_transfer_set(tiny_tagger_dir, tiny_token_dir, tmp_path):
    """Raw texts (one per line) are split into words, scored by the teacher per word and trained on with the KL term
    only: the transfer set grows by exactly the non-empty texts."""
    extra = tmp_path / "more.txt"
    extra.write_text("i love the movie tonight\n\nplay some music at night\n", encoding="utf-8")
    cfg = _cfg(tiny_tagger_dir, tiny_token_dir, tmp_path / "run", model=str(tiny_tagger_dir), epochs=1,
               unlabelled=str(extra))  # fmt: skip
    r = distill(cfg)
    assert r.teacher["unlabelled_texts"] == 2 and r.speed["train_rows"] == 120 + 2
    assert r.teacher["scored_texts"] == 150 + 2


def test_cli_an_empty_unlabelled_file_is_one_line_exit_2(tiny_tagger_dir, tiny_token_dir, tmp_path):
    extra = tmp_path / "more.txt"
    extra.write_text("\n  \n", encoding="utf-8")
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "distill", "--teacher", str(tiny_tagger_dir),
           "--student", "bert-tiny", "--data", str(tiny_token_dir), "--unlabelled", str(extra),
           "-o", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --unlabelled")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_cli_prints_the_students_and_the_teachers_entity_scores(tiny_tagger_dir, tiny_token_dir, tmp_path):
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", "distill", "--teacher", str(tiny_tagger_dir),
           "--student", str(tiny_tagger_dir), "--data", str(tiny_token_dir), "--epochs", "1", "--max-length", "32",
           "-o", str(tmp_path / "run"), "report_to=none"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())  # rich wraps long lines
    assert "entity F1" in out and "teacher on test: entity F1" in out and "150 sentences scored (computed)" in out


def test_a_nan_row_is_a_cut_word_only_for_a_token_teacher(monkeypatch, tmp_path):
    from bertdeploy.training import teacher as teacher_mod

    nan_row = np.array([[1.0, 2.0], [np.nan, np.nan]], dtype=np.float32)
    monkeypatch.setattr(teacher_mod, "_score_run", lambda teacher, inputs, batch_size: nan_row)
    words = teacher_mod.Teacher("run", tmp_path, ["O", "B-x"], 8, "0" * 64, task="token-classification")
    assert np.isnan(teacher_mod.score(words, [["a", "b"]])[1]).all()  # a word the teacher's max_length cut off
    texts = teacher_mod.Teacher("run", tmp_path, ["neg", "pos"], 8, "0" * 64, task="text-classification")
    with pytest.raises(UserError, match="non-finite logits"):  # a text teacher's NaN row is a broken model
        teacher_mod.score(texts, ["a", "b"])
