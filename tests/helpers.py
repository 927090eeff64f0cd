"""Helpers shared by the tests (imported as ``from helpers import ...``): tiny labelled texts, csv writing, a
tiny BERT classifier built from a config, and where the real ../shared datasets live."""

from __future__ import annotations

import csv
import os
import random
import sys
import time
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
VOCAB = ASSETS / "vocab.txt"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("BERTDEPLOY_SHARED", REPO.parent / "shared")) / "datasets"
TINY_LABELS = ["negative", "neutral", "positive"]
# the HTTP client the serve tests use, and the one Starlette's TestClient prefers: httpx2 (Python >= 3.11);
# plain httpx, deprecated there, only where httpx2 does not install
HTTP_CLIENT = "httpx2" if sys.version_info >= (3, 11) else "httpx"

_WORDS = {
    "negative": ["bad", "terrible", "hate", "sad", "angry", "slow", "late"],
    "neutral": ["the", "movie", "book", "food", "app", "day", "time", "work"],
    "positive": ["good", "great", "love", "happy", "joy", "fast", "thanks"],
}


def tiny_texts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (text, label) pairs whose label is predictable from the words (so a tiny model can learn it)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = TINY_LABELS[i % len(TINY_LABELS)]
        k = rng.randint(2, 12)
        words = [rng.choice(_WORDS[label]) if rng.random() < 0.6 else rng.choice(_WORDS["neutral"]) for _ in range(k)]
        rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def build_tiny_model(path: Path, num_labels: int = 3, seed: int = 0, **config_overrides) -> Path:
    """Save a 2-layer, hidden-32 BertForSequenceClassification + fast tokenizer to ``path``
    (``config_overrides`` go to BertConfig, e.g. ``initializer_range``)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    labels = TINY_LABELS if num_labels == 3 else [f"label_{i}" for i in range(num_labels)]
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True, model_max_length=128)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        **config_overrides,
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


TINY_TAGS = ["O", "B-ITEM", "I-ITEM", "B-TIME", "I-TIME"]
_ENTITIES = {"ITEM": [["movie"], ["food", "service"], ["book"], ["app", "login"], ["film"]], "TIME": [["today"],
             ["night"], ["this", "day"], ["work", "time"]]}  # fmt: skip
_FILLER = ["i", "love", "the", "my", "hate", "was", "good", "bad", "at", "for", "it", "is", "so", "very", "and"]


def tiny_token_sentences(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """``n`` (tokens, BIO tags) sentences whose tags follow from the words (a tiny model can learn them); every
    sentence holds at least one entity."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tokens: list[str] = []
        tags: list[str] = []
        for _ in range(rng.randint(1, 3)):
            for _ in range(rng.randint(0, 3)):
                tokens.append(rng.choice(_FILLER))
                tags.append("O")
            kind = rng.choice(sorted(_ENTITIES))
            words = rng.choice(_ENTITIES[kind])
            tokens.extend(words)
            tags.extend([f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1))
        out.append((tokens, tags))
    return out


def write_token_jsonl(path: Path, sentences: list[tuple[list[str], list[str]]]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for tokens, tags in sentences:
            f.write(json.dumps({"tokens": tokens, "tags": tags}) + "\n")
    return path


def build_tiny_tagger(path: Path, labels: list[str] | None = None, seed: int = 0, **config_overrides) -> Path:
    """Save a 2-layer, hidden-32 BertForTokenClassification (tags ``labels``, default :data:`TINY_TAGS`) + fast
    tokenizer to ``path``; ``config_overrides`` go to BertConfig (e.g. ``initializer_range=0.5`` for predictions
    that vary from token to token)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    torch.manual_seed(seed)
    labels = labels or TINY_TAGS
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True, model_max_length=128)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        **config_overrides,
    )
    BertForTokenClassification(config).eval().save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


_QA_WORDS = ["movie", "book", "food", "app", "film", "service", "delivery", "account", "price", "friend", "home"]


def tiny_qa_records(n: int, seed: int = 0) -> list[dict]:
    """``n`` flattened SQuAD rows over the tiny vocabulary: the answer is the word the question names after
    "where is" (a copy task a tiny model can learn); every answer offset is right."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(_FILLER) for _ in range(rng.randint(4, 30))]
        target = rng.choice(_QA_WORDS)
        pos = rng.randrange(len(words) + 1)
        words.insert(pos, target)
        context = " ".join(words)
        start = len(" ".join(words[:pos])) + (1 if pos else 0)
        assert context[start : start + len(target)] == target
        rows.append({"id": f"q{seed}-{i}", "question": f"where is the {target}?", "context": context,
                     "answers": {"text": [target], "answer_start": [start]}})  # fmt: skip
    return rows


def tiny_mc_records(n: int, seed: int = 0, choices: int = 3) -> list[dict]:
    """``n`` multiple-choice rows: the right choice repeats the question's topic word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic, *others = rng.sample(_QA_WORDS, choices)
        options = [f"{rng.choice(_FILLER)} {w} {rng.choice(_FILLER)}" for w in [topic, *others]]
        order = list(range(choices))
        rng.shuffle(order)
        rows.append({"id": f"m{seed}-{i}", "question": f"i love the {topic}", "choices": [options[j] for j in order],
                     "label": order.index(0)})  # fmt: skip
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def build_tiny_reader(path: Path, seed: int = 0, task: str = "question-answering", **config_overrides) -> Path:
    """Save a 2-layer, hidden-32 BertForQuestionAnswering (``task="multiple-choice"``: BertForMultipleChoice) +
    fast tokenizer to ``path``."""
    import torch
    from transformers import BertConfig, BertForMultipleChoice, BertForQuestionAnswering, BertTokenizerFast

    torch.manual_seed(seed)
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True, model_max_length=128)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, **config_overrides)  # fmt: skip
    cls = BertForMultipleChoice if task == "multiple-choice" else BertForQuestionAnswering
    cls(config).eval().save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


class SlowClassifier:
    """Wraps a runtime ``Classifier`` so that every model call after the first (the server's warm-up) first waits
    for ``release`` (a ``threading.Event``) or ``delay`` seconds: a server test can then hold requests in flight."""

    def __init__(self, classifier, release=None, delay: float = 0.0) -> None:
        self._clf, self._release, self._delay, self.calls = classifier, release, delay, 0

    def forward(self, encoded):
        self.calls += 1
        if self.calls > 1:
            if self._release is not None:
                self._release.wait(30)
            time.sleep(self._delay)
        return self._clf.forward(encoded)

    def __getattr__(self, name: str):
        return getattr(self._clf, name)


def bert_feed(rows: int = 3, length: int = 9, seed: int = 0) -> dict:
    """Inputs for a tiny BERT's ONNX graph: random ids, the second row padded from position 5."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mask = np.ones((rows, length), np.int64)
    mask[1, 5:] = 0
    ids = rng.integers(5, 90, (rows, length))
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
