"""Helpers shared by the tests (imported as ``from helpers import ...``): tiny labelled texts, csv writing, a
tiny BERT classifier built from a config, and where the real ../shared datasets live."""

from __future__ import annotations

import csv
import os
import random
import time
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
VOCAB = ASSETS / "vocab.txt"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("BERTDEPLOY_SHARED", REPO.parent / "shared")) / "datasets"
TINY_LABELS = ["negative", "neutral", "positive"]

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


class SlowClassifier:
    """Wraps a runtime ``Classifier`` so that every model call after the first (the server's warm-up) first waits
    for ``release`` (a ``threading.Event``) or ``delay`` seconds: a server test can then hold requests in flight."""

    def __init__(self, classifier, release=None, delay: float = 0.0) -> None:
        self._clf, self._release, self._delay, self.calls = classifier, release, delay, 0

    def logits_encoded(self, encoded):
        self.calls += 1
        if self.calls > 1:
            if self._release is not None:
                self._release.wait(30)
            time.sleep(self._delay)
        return self._clf.logits_encoded(encoded)

    def __getattr__(self, name: str):
        return getattr(self._clf, name)
