"""bertdeploy.runtime: loading, batching, order, padding modes, streaming, threads, bad input."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import tiny_texts

from bertdeploy.errors import UserError
from bertdeploy.runtime import BatchPolicy, Prediction, load
from bertdeploy.runtime.batching import PADDING_FLOOR, plan


def _texts(n: int = 150, seed: int = 7) -> list[str]:
    """Short and long texts in random order (lengths 3..40 words; some exceed max_length 24)."""
    rng = random.Random(seed)
    base = [t for t, _ in tiny_texts(n, seed=seed)]
    return [" ".join([t] * rng.choice([1, 1, 1, 2, 4])) for t in base]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _texts()


@pytest.fixture(scope="module")
def reference(varied_bundle, texts) -> np.ndarray:
    """Logits computed one text at a time: no padding, no batching, no reordering."""
    clf = load(varied_bundle, variant="fp32", threads=1, batch_size=1)
    return np.concatenate([clf.logits([t]) for t in texts])


def test_import_needs_no_torch(tiny_bundle):
    """The runtime imports and predicts with torch / transformers / optimum made unimportable."""
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "optimum"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import bertdeploy, bertdeploy.runtime
        clf = bertdeploy.load({str(tiny_bundle)!r}, threads=1)
        print(clf.predict(["i love this"])[0].label)
        heavy = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() in ("negative", "neutral", "positive")


def test_load_auto_and_api(tiny_bundle):
    clf = load(tiny_bundle, threads=1)
    assert clf.variant.name == "qint8"  # auto on CPU: int8 first
    assert clf.providers == ["CPUExecutionProvider"]
    assert clf.labels == ["negative", "neutral", "positive"]
    assert clf.max_length == 128
    preds = clf.predict(["good great", "bad", "meh"])
    assert len(preds) == 3 and all(isinstance(p, Prediction) for p in preds)
    with pytest.raises(UserError, match="text #2 is empty or blank"):  # the one rule for texts (README)
        clf.predict(["good great", "bad", ""])
    proba = clf.predict_proba(["good great", "bad"])
    assert proba.shape == (2, 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert [p.label for p in preds[:2]] == [clf.labels[i] for i in proba.argmax(axis=1)]
    assert clf.predict("one string") == clf.predict(["one string"])
    assert clf.predict([]) == []


def test_order_restored_after_bucketing(varied_bundle, texts, reference):
    labels = reference.argmax(axis=1)
    assert len(set(labels.tolist())) == 3  # the fixture's predictions really vary with the text
    clf = load(varied_bundle, variant="fp32", threads=1, batch_size=8, max_tokens=128)
    enc = clf.encode(texts)
    batches = clf.plan_batches(enc)
    assert len(batches) > 5
    assert sorted(np.concatenate([b.index for b in batches]).tolist()) == list(range(len(texts)))
    np.testing.assert_allclose(clf.logits(texts), reference, atol=1e-4)


@pytest.mark.parametrize("variant", ["fp32", "O2"])
def test_padding_modes_identical(varied_bundle, texts, reference, variant):
    outs = {}
    for padding in ("bucketed", "dynamic", "static"):
        clf = load(varied_bundle, variant=variant, threads=1, padding=padding, batch_size=16, max_tokens=256)
        outs[padding] = clf.logits(texts)
        assert outs[padding].argmax(axis=1).tolist() == reference.argmax(axis=1).tolist(), padding
    np.testing.assert_allclose(outs["bucketed"], outs["static"], atol=1e-4)
    np.testing.assert_allclose(outs["dynamic"], outs["static"], atol=1e-4)


def test_qint8_agrees_with_fp32(varied_bundle, texts, reference):
    """Dynamic int8 scales activations per batch, so batch composition may move a near-tied argmax;
    the large majority of labels must still agree with fp32."""
    clf = load(varied_bundle, variant="qint8", threads=1)
    agree = (clf.logits(texts).argmax(axis=1) == reference.argmax(axis=1)).mean()
    assert agree >= 0.9


def test_plan_respects_budget_and_modes():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=500)
    for padding in ("bucketed", "dynamic", "static"):
        policy = BatchPolicy(padding=padding, batch_size=32, max_tokens=700)
        groups = plan(lengths, policy, max_length=64)
        index = np.concatenate([g for g, _ in groups])
        assert sorted(index.tolist()) == list(range(500))
        for g, padded in groups:
            assert len(g) <= 32
            assert len(g) == 1 or len(g) * padded <= 700
            assert padded == (64 if padding == "static" else lengths[g].max())
        if padding == "bucketed":
            assert np.all(np.diff(lengths[index]) >= 0)
        else:
            assert index.tolist() == list(range(500))
    bucketed = plan(lengths, BatchPolicy("bucketed", 32, 700), 64)
    dynamic = plan(lengths, BatchPolicy("dynamic", 32, 700), 64)
    assert sum(len(g) * p for g, p in bucketed) < 0.7 * sum(len(g) * p for g, p in dynamic)
    # one row longer than the budget still runs (alone)
    assert plan(np.array([5, 900, 5]), BatchPolicy("dynamic", 8, 100), 1024)[1][0].tolist() == [1]


def test_bucketed_batches_bound_their_padding():
    """A row that would make padding more than max_padding of a batch's tokens (and PADDING_FLOOR tokens) starts the
    next batch: a reader question's short last window is not padded to its full windows' length."""
    policy = BatchPolicy(max_tokens=1024)
    assert [(g.tolist(), p) for g, p in plan(np.array([384, 200, 384]), policy, 384)] == [([1], 200), ([0, 2], 384)]
    loose = BatchPolicy(max_tokens=1024, max_padding=1.0)  # the bound off: one batch of two padded windows
    assert [(g.tolist(), p) for g, p in plan(np.array([384, 200]), loose, 384)] == [([1, 0], 384)]
    dense = np.array([22] * 40 + [23] * 4)  # a token more for a few rows: 40 tokens of padding, one batch
    assert len(plan(dense, policy, 128)) == 1
    rng = np.random.default_rng(3)
    lengths = np.concatenate([rng.integers(5, 40, 300), rng.integers(100, 384, 40)])
    groups = plan(lengths, BatchPolicy(batch_size=64, max_tokens=4096), 384)
    assert sorted(np.concatenate([g for g, _ in groups]).tolist()) == list(range(len(lengths)))
    for g, padded in groups:
        tokens = len(g) * padded
        assert tokens - lengths[g].sum() <= max(PADDING_FLOOR, 0.1 * tokens)
    assert len(groups) < len(plan(lengths, BatchPolicy(batch_size=64, max_tokens=4096, max_padding=0.0), 384))
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(UserError, match="max_padding"):
            BatchPolicy(max_padding=bad)


def test_feed_has_only_graph_inputs(tiny_bundle):
    clf = load(tiny_bundle, variant="fp32", threads=1, batch_size=4)
    feed = clf.plan_batches(clf.encode(["a b c", "good", "x y"]))[0].feed
    assert set(feed) == set(clf.input_names) == {"input_ids", "attention_mask", "token_type_ids"}
    assert feed["input_ids"].shape == feed["attention_mask"].shape
    assert feed["attention_mask"].sum(axis=1).tolist() == sorted(feed["attention_mask"].sum(axis=1).tolist())
    logits = clf.run_feed(feed)
    assert logits.shape == (3, 3) and logits.dtype == np.float32


def test_truncation_is_counted(varied_bundle):
    clf = load(varied_bundle, variant="fp32", threads=1)
    enc = clf.encode(["good " * 100, "bad", "the movie " * 11 + "day"])
    assert enc.truncated == 2
    assert enc.lengths.tolist()[0] == 24 and enc.lengths.tolist()[2] == 24
    assert enc.row(1).tolist()[0] == enc.row(0).tolist()[0]  # both start with [CLS]
    assert len(clf.predict(["good " * 100])) == 1


def test_fast_encoding_equals_the_full_one(varied_bundle, texts):
    # TextEncoder uses tokenizers' encode_batch_fast (no character offsets): ids, lengths and truncation must be
    # exactly what encode_batch gives
    from tokenizers import Tokenizer

    from bertdeploy.bundle import read_manifest

    clf = load(varied_bundle, variant="fp32", threads=1)
    batch = [*texts[:50], "good " * 100, "héllo wörld, naïve café"]
    tok = Tokenizer.from_file(str(varied_bundle / read_manifest(varied_bundle).tokenizer_file))
    tok.no_padding()
    tok.enable_truncation(clf.max_length)
    full = tok.encode_batch(batch)
    enc = clf.encode(batch)
    assert [enc.row(i).tolist() for i in range(len(batch))] == [e.ids for e in full]
    assert enc.truncated == sum(1 for e in full if e.overflowing) >= 1


def test_top_k(varied_bundle, texts):
    clf = load(varied_bundle, variant="fp32", threads=1)
    top1 = clf.predict(texts[:20])
    top2 = clf.predict(texts[:20], top_k=2)
    for a, b in zip(top1, top2):
        assert len(b) == 2 and b[0] == a and b[0].score >= b[1].score and b[0].label != b[1].label
    assert len(clf.predict(texts[:1], top_k=10)[0]) == 3
    with pytest.raises(UserError, match="top_k"):
        clf.predict(texts[:1], top_k=0)


def test_predict_iter_streams(varied_bundle, texts):
    clf = load(varied_bundle, variant="fp32", threads=1)
    streamed = list(clf.predict_iter((t for t in texts), chunk_size=7))
    assert [p.label for p in streamed] == [p.label for p in clf.predict(texts)]


@pytest.mark.parametrize("threads, streams", [(1, None), (2, None), (2, 2)])
def test_concurrent_callers(varied_bundle, texts, reference, threads, streams):
    """Six caller threads share one classifier (with 1 or 2 concurrent batch streams of its own)."""
    with load(varied_bundle, variant="fp32", threads=threads, streams=streams, batch_size=8) as clf:
        assert clf.streams == (streams or 1)
        parts = [texts[i::6] for i in range(6)]
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(clf.logits, parts * 3))
        for i, out in enumerate(results):
            np.testing.assert_allclose(out, reference[i % 6 :: 6], atol=1e-4)
        np.testing.assert_allclose(clf.logits(texts[:3]), reference[:3], atol=1e-4)  # split over 2 streams


def test_bad_inputs(tiny_bundle, tmp_path):
    with pytest.raises(UserError, match="bundle not found"):
        load(tmp_path / "nope")
    with pytest.raises(UserError, match="not in the bundle"):
        load(tiny_bundle, variant="O3")
    with pytest.raises(UserError, match="unknown device"):
        load(tiny_bundle, device="tpu")
    with pytest.raises(UserError, match="padding"):
        load(tiny_bundle, padding="ragged")
    with pytest.raises(UserError, match="max_tokens"):
        load(tiny_bundle, max_tokens=0)
    with pytest.raises(UserError, match="not str"):
        load(tiny_bundle, variant="fp32", threads=1).predict(["ok", None])  # type: ignore[list-item]


def test_the_token_budget_defaults_by_device(tiny_bundle):
    from bertdeploy.runtime.options import CPU_MAX_TOKENS, GPU_MAX_TOKENS, LoadOptions

    with load(tiny_bundle, variant="fp32", threads=1) as clf:
        assert clf.policy.max_tokens == CPU_MAX_TOKENS == 1024
    with load(tiny_bundle, variant="fp32", threads=1, max_tokens=300) as clf:
        assert clf.policy.max_tokens == 300
    assert LoadOptions().policy_for(cpu_ep=False).max_tokens == GPU_MAX_TOKENS > CPU_MAX_TOKENS
    assert LoadOptions(max_tokens=5).policy_for(cpu_ep=False).max_tokens == 5


def test_the_padding_bound_is_the_cpu_eps():
    """Measured on ONNX Runtime's CPU EP; a GPU / the OpenVINO EP (kernels per input shape) cut on rows and tokens."""
    from bertdeploy.runtime.options import LoadOptions

    assert LoadOptions().policy_for(cpu_ep=True).max_padding == 0.1
    assert LoadOptions().policy_for(cpu_ep=False).max_padding == 1.0
    # the bench's planned engines (OpenVINO, PyTorch in the runtime's head) get the runtime's rule on their device
    from bertdeploy.benchmark.contract import RUNTIME_DEFAULT, BackendContext

    for device, share, budget in (("cpu", 0.1, 1024), ("cuda", 1.0, 8192)):
        ctx = BackendContext(None, None, ["a"], 32, "fp32", 1, device, 8, max_tokens=RUNTIME_DEFAULT)
        policy = ctx.policy("bucketed")
        assert (policy.max_padding, policy.max_tokens, policy.batch_size) == (share, budget, 8)


def test_the_bench_runs_the_runtime_with_its_default_budget_or_a_given_one(tiny_bundle):
    from bertdeploy.benchmark.contract import RUNTIME_DEFAULT, BackendContext
    from bertdeploy.benchmark.head_backends import RuntimeBackend
    from bertdeploy.runtime.options import CPU_MAX_TOKENS, GPU_MAX_TOKENS

    def ctx(max_tokens, device="cpu"):
        return BackendContext(None, tiny_bundle, ["a", "b", "c"], 32, "fp32", 1, device, 8, max_tokens=max_tokens)

    assert ctx(RUNTIME_DEFAULT).token_budget == CPU_MAX_TOKENS and ctx(None).token_budget == 8 * 32
    assert ctx(RUNTIME_DEFAULT, "cuda:0").token_budget == GPU_MAX_TOKENS  # the peers get the device's budget
    with RuntimeBackend(ctx(RUNTIME_DEFAULT)).build("bucketed") as clf:  # what load(bundle) does
        assert clf.policy.max_tokens == CPU_MAX_TOKENS
    with RuntimeBackend(ctx(None)).build("bucketed") as clf:  # a call holds the largest batch
        assert clf.policy.max_tokens == 8 * 32
    with RuntimeBackend(ctx(300)).build("bucketed") as clf:
        assert clf.policy.max_tokens == 300


def test_tampered_variant(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    model = copy / "onnx" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256 mismatch"):
        load(copy, variant="fp32")
    load(copy, variant="O2", threads=1)  # the untouched variants still load
    (copy / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="tokenizer"):
        load(copy, variant="O2")
