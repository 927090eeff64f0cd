"""Shared fixtures: a tiny BERT classifier built from config (no network), tiny datasets, and the
location of the real ../shared datasets (tests that need them are marked ``integration`` and skip)."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A folder with train/validation/test csv (text,label) and labels.txt; 3 labels."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_csv(root / "train.csv", tiny_texts(120, seed=1))
    write_csv(root / "validation.csv", tiny_texts(30, seed=2))
    write_csv(root / "test.csv", tiny_texts(30, seed=3))
    (root / "labels.txt").write_text("\n".join(TINY_LABELS) + "\n", encoding="utf-8")
    return root


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight BERT sequence classifier (3 labels) saved as an HF folder."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not present at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_model_dir, tiny_data_dir) -> Path:
    """``tiny_model_dir`` exported with variants fp32, O2, fp16 and qint8, validated on ``tiny_data_dir``.

    The tiny model has random weights (near-tied logits), so the gate thresholds are relaxed here: this fixture
    provides a loadable bundle; the gate itself is tested in tests/test_export_gate.py.
    """
    from bertdeploy.exporter import ExportConfig, export

    out = tmp_path_factory.mktemp("tiny_bundle") / "bundle"
    export(
        ExportConfig(
            run_dir=str(tiny_model_dir),
            output=str(out),
            data=str(tiny_data_dir),
            variants=["fp32", "O2", "fp16", "qint8"],
            max_accuracy_drop=100.0,
            min_agreement={"fp32": 0.0, "O2": 0.0, "fp16": 0.0},
        )
    )
    return out


@pytest.fixture(scope="session")
def varied_bundle(tmp_path_factory, tiny_data_dir) -> Path:
    """Like ``tiny_bundle`` (fp32, O2, qint8), but from a tiny BERT initialised with std 0.5 instead of 0.02,
    so that its predictions differ from text to text (all three labels occur, top-2 margins >= 0.03): tests of
    order restoration and of padding-mode equivalence can then fail. ``max_length`` is 24 (truncation tests).
    Its huge weights saturate AVX2's signed-int8 kernel, so its qint8 uses uint8 weights (``int8_weights``).
    """
    from bertdeploy.exporter import ExportConfig, export

    model_dir = build_tiny_model(tmp_path_factory.mktemp("varied_model"), initializer_range=0.5)
    out = tmp_path_factory.mktemp("varied_bundle") / "bundle"
    export(
        ExportConfig(
            run_dir=str(model_dir),
            output=str(out),
            data=str(tiny_data_dir),
            variants=["fp32", "O2", "qint8"],
            max_length=24,
            int8_weights="uint8",
            max_accuracy_drop=100.0,
            min_agreement={"fp32": 0.0, "O2": 0.0},
        )
    )
    return out
