"""transformers.js: the bundle folder loads as it is in ``@huggingface/transformers`` (Node, tests/js) and labels like
the Python runtime: fp32 identically, dynamic int8 (dtype q8 -> onnx/model_quantized.onnx) on >= 99 % of texts; a
token-classification bundle in its ``token-classification`` pipeline tags every token like ``aggregation="none"``.
The file-name and config checks run everywhere; the Node ones skip without ``node`` (CI has it and installs
tests/js with ``npm ci --ignore-scripts``)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_texts, tiny_token_sentences
from tokenizers import Tokenizer

from bertdeploy import load, variants
from bertdeploy.bundle import MANIFEST_NAME, read_manifest

JS_DIR = Path(__file__).parent / "js"
#: transformers.js ``dtype`` -> the suffix of the file it loads (its DEFAULT_DTYPE_SUFFIX_MAPPING)
JS_SUFFIX = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "int8": "_int8", "uint8": "_uint8"}


def _texts() -> list[str]:
    rng = random.Random(3)
    words = ["good", "bad", "the", "movie", "love", "hate", "sad", "app", "thanks", "slow"]
    long = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 40))) for _ in range(20)]
    return [t for t, _ in tiny_texts(200, seed=7)] + long


def test_variant_files_carry_the_names_transformers_js_loads():
    for spec in variants.VARIANT_TABLE:
        if spec.js_dtype:
            assert spec.file == f"onnx/model{JS_SUFFIX[spec.js_dtype]}.onnx", spec.name
    assert {v.js_dtype for v in variants.VARIANT_TABLE} >= {"fp32", "fp16", "q8"}


def test_bundle_configs_carry_what_transformers_js_reads(varied_bundle):
    manifest = read_manifest(varied_bundle)
    int8 = next(v for v in manifest.variants if variants.get(v.name).js_dtype == "q8")
    assert int8.file == "onnx/model_quantized.onnx" and (varied_bundle / int8.file).is_file()
    tokenizer_config = json.loads((varied_bundle / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["model_max_length"] == manifest.max_length == 24  # truncation where the runtime cuts
    assert tokenizer_config["tokenizer_class"] == "BertTokenizer"
    config = json.loads((varied_bundle / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "bert"
    assert [config["id2label"][str(i)] for i in range(len(manifest.labels))] == manifest.labels


def test_older_bundles_with_the_old_int8_name_keep_loading(varied_bundle, tmp_path):
    """Bundles exported before the rename hold onnx/model_qint8.onnx: the runtime reads names from the manifest."""
    old = tmp_path / "old"
    shutil.copytree(varied_bundle, old)
    raw = json.loads((old / MANIFEST_NAME).read_text(encoding="utf-8"))
    entry = next(v for v in raw["variants"] if v["file"] == "onnx/model_quantized.onnx")
    (old / entry["file"]).rename(old / "onnx/model_qint8.onnx")
    entry["file"] = "onnx/model_qint8.onnx"
    (old / MANIFEST_NAME).write_text(json.dumps(raw), encoding="utf-8")
    texts = _texts()[:20]
    clf = load(old, variant=entry["name"])
    assert clf.variant.file == "onnx/model_qint8.onnx"
    np.testing.assert_array_equal(clf.logits(texts), load(varied_bundle, variant=entry["name"]).logits(texts))


def _node(bundle: Path, dtype: str, texts: list[str], tmp_path: Path, one_by_one: bool = False) -> dict:
    return _run_script("classify.mjs", bundle, dtype, texts, tmp_path, *(["--one-by-one"] if one_by_one else []))


def _run_script(script: str, bundle: Path, dtype: str, texts: list[str], tmp_path: Path, *args: str):
    """``node tests/js/SCRIPT BUNDLE DTYPE TEXTS.json ARGS...``'s JSON answer (skipped without node)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (JS_DIR / "node_modules" / "@huggingface" / "transformers").is_dir():
        why = "tests/js has no node_modules: run `npm ci --ignore-scripts --prefix tests/js`"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    path = tmp_path / "texts.json"
    path.write_text(json.dumps(texts), encoding="utf-8")
    cmd = ["node", str(JS_DIR / script), str(bundle), dtype, str(path), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _full_lengths(bundle: Path, texts: list[str]) -> np.ndarray:
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.no_truncation()
    return np.array([len(e.ids) for e in tok.encode_batch(texts)])


def test_transformers_js_fp32_labels_equal_the_runtime(varied_bundle, tmp_path):
    """All texts in one pipeline call (padded together). transformers.js truncates after adding [CLS]/[SEP], so a
    text longer than max_length loses its [SEP] there; every other text gets exactly the runtime's ids and label."""
    texts = _texts()
    js = _node(varied_bundle, "fp32", texts, tmp_path)
    clf = load(varied_bundle, variant="fp32")
    preds, encoded = clf.predict(texts), clf.encode(texts)
    cut = _full_lengths(varied_bundle, texts) > clf.max_length
    assert 0 < cut.sum() < len(texts)
    sep = encoded.row(0)[-1]
    for i, ids in enumerate(js["input_ids"]):
        ours = encoded.row(i).tolist()
        if cut[i]:
            assert len(ids) == len(ours) == clf.max_length and ids[:-1] == ours[:-1] and ids[-1] != sep == ours[-1]
        else:
            assert ids == ours, i
    whole = np.flatnonzero(~cut)
    assert [js["labels"][i] for i in whole] == [preds[i].label for i in whole]
    np.testing.assert_allclose([js["scores"][i] for i in whole], [preds[i].score for i in whole], atol=1e-4)


def test_transformers_js_q8_agrees_with_the_runtime_int8(varied_bundle, tmp_path):
    """Dynamic int8 quantizes activations with scales computed over the whole batch, so labels near a tie depend
    on batch-mates (in our runtime too): both sides classify one text at a time, and must agree on >= 99 %."""
    texts = [t for t, n in zip(_texts(), _full_lengths(varied_bundle, _texts())) if n <= 24]
    int8 = next(s.name for s in variants.VARIANT_TABLE if s.js_dtype == "q8")
    js = _node(varied_bundle, "q8", texts, tmp_path, one_by_one=True)
    ours = load(varied_bundle, variant=int8, batch_size=1).predict(texts)
    agreement = np.mean([a == b.label for a, b in zip(js["labels"], ours)])
    assert len(texts) >= 200 and agreement >= 0.99


def _token_texts() -> list[str]:
    """Texts of in-vocabulary words (transformers.js drops ``[UNK]`` tokens: it decodes them as special tokens)."""
    return [" ".join(words) for words, _ in tiny_token_sentences(60, seed=9)] + ["The Food Service was good today"]


def test_transformers_js_token_classification_tags_like_the_runtime(tiny_token_bundle, tmp_path):
    """fp32, every label kept, all texts padded into one call: per token the runtime's tag (``aggregation="none"``)
        at the same index, scores within 1e-4; ``simple`` groups like the runtime's. transformers.js sets no
        ``start`` / ``end`` (its issues #359 / #633): only bertdeploy's entities carry offsets into the text. It chooses
    each token's tag on its own: the runtime's ``decoding="argmax"``, not its default BIO sequence decoding."""
    texts = _token_texts()
    tagger = load(tiny_token_bundle, variant="fp32", threads=1)
    tokens = _run_script("tag.mjs", tiny_token_bundle, "fp32", texts, tmp_path, "none")
    ours = tagger.predict(texts, aggregation="none", ignore_labels=None, decoding="argmax")  # transformers.js's
    assert [[(t["index"], t["entity"]) for t in js] for js in tokens] == [
        [(e.index, e.entity_group) for e in found] for found in ours
    ]
    scores = [t["score"] for js in tokens for t in js]
    np.testing.assert_allclose(scores, [e.score for found in ours for e in found], atol=1e-4)
    assert len({t["entity"] for js in tokens for t in js}) > 2 and len(scores) > 200
    assert all("start" not in t and "end" not in t for js in tokens for t in js)
    groups = _run_script("tag.mjs", tiny_token_bundle, "fp32", texts, tmp_path, "simple")
    ours = tagger.predict(texts, aggregation="simple", ignore_labels=None, decoding="argmax")
    assert [[(g["entity_group"], g["word"]) for g in js] for js in groups] == [
        [(e.entity_group, e.word.lower()) for e in found]
        for found in ours  # its words are decoded tokens
    ]
    scores = [g["score"] for js in groups for g in js]
    np.testing.assert_allclose(scores, [e.score for found in ours for e in found], atol=1e-4)
