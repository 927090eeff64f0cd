"""Shared fixtures: a tiny BERT classifier built from config (no network), tiny datasets, and the
location of the real ../shared datasets (tests that need them are marked ``integration`` and skip)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import (
    SHARED_DATASETS,
    TINY_LABELS,
    TINY_TAGS,
    build_tiny_model,
    build_tiny_reader,
    build_tiny_tagger,
    tiny_mc_records,
    tiny_qa_records,
    tiny_texts,
    tiny_token_sentences,
    write_csv,
    write_jsonl,
    write_token_jsonl,
)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A folder with train/validation/test csv (text,label) and labels.txt; 3 labels."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_csv(root / "train.csv", tiny_texts(120, seed=1))
    write_csv(root / "validation.csv", tiny_texts(30, seed=2))
    write_csv(root / "test.csv", tiny_texts(30, seed=3))
    (root / "labels.txt").write_text("\n".join(TINY_LABELS) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_token_dir(tmp_path_factory) -> Path:
    """A folder with train/validation/test token JSONL ({"tokens", "tags"}) and labels.txt (:data:`TINY_TAGS`)."""
    root = tmp_path_factory.mktemp("tiny_tokens")
    for split, n, seed in (("train", 120, 1), ("validation", 30, 2), ("test", 30, 3)):
        write_token_jsonl(root / f"{split}.jsonl", tiny_token_sentences(n, seed=seed))
    (root / "labels.txt").write_text("\n".join(TINY_TAGS) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_tagger_dir(tmp_path_factory) -> Path:
    """A tiny random-weight BERT token classifier (:data:`TINY_TAGS`, initializer_range 0.5 so that its tags vary
    from token to token) saved as an HF folder, with the tag transition counts that training writes (those of
    ``tiny_token_dir``'s training sentences), so every token test decodes as a trained run's bundle does."""
    from bertdeploy.runtime.entities import count_transitions

    path = build_tiny_tagger(tmp_path_factory.mktemp("tiny_tagger"), initializer_range=0.5)
    index = {tag: i for i, tag in enumerate(TINY_TAGS)}
    tags = [[index[t] for t in sentence_tags] for _, sentence_tags in tiny_token_sentences(120, seed=1)]
    (path / "tag_transitions.json").write_text(json.dumps(count_transitions(tags, len(TINY_TAGS))), encoding="utf-8")
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


@pytest.fixture(scope="session")
def tiny_token_bundle(tmp_path_factory, tiny_tagger_dir, tiny_token_dir) -> Path:
    """``tiny_tagger_dir`` exported with variants fp32, O2 and qint8, validated on ``tiny_token_dir`` (random
    weights: the int8 budget is relaxed; the token gate itself is tested in tests/test_export_tokens.py)."""
    from bertdeploy.exporter import ExportConfig, export

    out = tmp_path_factory.mktemp("tiny_token_bundle") / "bundle"
    export(
        ExportConfig(
            run_dir=str(tiny_tagger_dir),
            output=str(out),
            data=str(tiny_token_dir),
            variants=["fp32", "O2", "qint8"],
            max_accuracy_drop=100.0,
        )
    )
    return out


@pytest.fixture(scope="session")
def tiny_qa_dir(tmp_path_factory) -> Path:
    """Flattened SQuAD JSONL train/validation/test (60/20/20 questions) over the tiny vocabulary."""
    root = tmp_path_factory.mktemp("tiny_qa")
    for split, n, seed in (("train", 60, 1), ("validation", 20, 2), ("test", 20, 3)):
        write_jsonl(root / f"{split}.jsonl", tiny_qa_records(n, seed))
    return root


@pytest.fixture(scope="session")
def tiny_mc_dir(tmp_path_factory) -> Path:
    """Multiple-choice JSONL train/validation/test (60/20/20 questions, 3 choices each)."""
    root = tmp_path_factory.mktemp("tiny_mc")
    for split, n, seed in (("train", 60, 1), ("validation", 20, 2), ("test", 20, 3)):
        write_jsonl(root / f"{split}.jsonl", tiny_mc_records(n, seed))
    return root


@pytest.fixture(scope="session")
def tiny_reader_dir(tmp_path_factory) -> Path:
    """A tiny random BertForQuestionAnswering (initializer_range 0.5: answers vary from question to question)."""
    return build_tiny_reader(tmp_path_factory.mktemp("tiny_reader"), initializer_range=0.5)


@pytest.fixture(scope="session")
def tiny_chooser_dir(tmp_path_factory) -> Path:
    """A tiny random BertForMultipleChoice (initializer_range 0.5)."""
    return build_tiny_reader(tmp_path_factory.mktemp("tiny_chooser"), task="multiple-choice", initializer_range=0.5)


def _export_tiny(tmp_path_factory, name: str, model: Path, data: Path, **kw) -> Path:
    from bertdeploy.exporter import ExportConfig, export

    out = tmp_path_factory.mktemp(name) / "bundle"
    export(ExportConfig(run_dir=str(model), output=str(out), data=str(data), max_accuracy_drop=100.0, **kw))
    return out


@pytest.fixture(scope="session")
def tiny_qa_bundle(tmp_path_factory, tiny_reader_dir, tiny_qa_dir) -> Path:
    """``tiny_reader_dir`` exported (fp32, qint8) with max_length 32: contexts of the tiny data need windows."""
    return _export_tiny(tmp_path_factory, "tiny_qa_bundle", tiny_reader_dir, tiny_qa_dir, variants=["qint8"],
                        max_length=32)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_mc_bundle(tmp_path_factory, tiny_chooser_dir, tiny_mc_dir) -> Path:
    """``tiny_chooser_dir`` exported (fp32, qint8) with max_length 32."""
    return _export_tiny(tmp_path_factory, "tiny_mc_bundle", tiny_chooser_dir, tiny_mc_dir, variants=["qint8"],
                        max_length=32)  # fmt: skip


@pytest.fixture(scope="session")
def qa_reader(tiny_qa_bundle):
    """``tiny_qa_bundle`` loaded (fp32, one thread): the Reader the file, server and package tests compare with."""
    from bertdeploy.runtime import load

    with load(tiny_qa_bundle, variant="fp32", threads=1) as reader:
        yield reader


@pytest.fixture(scope="session")
def mc_chooser(tiny_mc_bundle):
    """``tiny_mc_bundle`` loaded (fp32, one thread)."""
    from bertdeploy.runtime import load

    with load(tiny_mc_bundle, variant="fp32", threads=1) as chooser:
        yield chooser
