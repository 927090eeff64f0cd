"""The checked variant (``qint8_checked``, issue 24): dynamic int8 whose near ties run again in fp32.

The margin is calibrated at export on the even evaluation rows and recorded with the odd rows' agreement; the
runtime re-runs exactly the texts whose top-two probability gap under int8 is below it, so a margin of 1 gives
fp32's logits and a margin near 0 gives int8's; bundles with a malformed record fail at load; Triton, which serves
one model file, packages the int8 file; tasks without one label per text skip the variant.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bertdeploy import bundle, variants
from bertdeploy.errors import UserError
from bertdeploy.exporter import checked
from bertdeploy.runtime.checked import top_gap

TEXTS = ["a good day", "a bad day", "nothing much happened today at all", "good", "bad bad bad", "so so"]


def test_top_gap():
    assert np.allclose(top_gap(np.array([[0.0, 0.0], [10.0, 0.0]])), [0.0, 1.0], atol=1e-4)
    p = np.exp([1.0, 2.0, 0.5]) / np.exp([1.0, 2.0, 0.5]).sum()
    assert np.isclose(top_gap(np.array([[1.0, 2.0, 0.5]]))[0], p[1] - p[0])
    assert top_gap(np.zeros((3, 1))).tolist() == [1.0, 1.0, 1.0]


def test_calibrate_picks_the_smallest_margin_that_reaches_the_target_on_the_even_rows():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 3)) * 3
    slow = ref + 1e-4  # the fp32 file: the reference's labels
    fast = ref.copy()
    # int8 flips four even rows (calibration) whose fast top gap is ~0.12, and two odd rows (held out) at gap ~0.04
    for row, gap in ((0, 0.12), (2, 0.12), (4, 0.12), (6, 0.12), (1, 0.04), (3, 0.04)):
        best, second = np.argsort(-ref[row])[:2]
        logit = np.log((1 + gap) / (1 - gap))  # two labels dominating: p1 - p2 ~= gap
        fast[row] = -20.0
        fast[row, second], fast[row, best] = logit, 0.0
    logits, record = checked.calibrate(fast, slow, ref)
    assert record["margin"] == 0.15  # 0.1 leaves four of 200 calibration rows flipped: 98 % < 99.5 %
    assert record["calibration_agreement"] == 1.0 and record["held_out_agreement"] == 1.0
    assert record["fast_agreement"] == pytest.approx(394 / 400)
    rerun = top_gap(fast) < 0.15
    assert np.array_equal(logits[rerun], slow[rerun]) and np.array_equal(logits[~rerun], fast[~rerun])
    assert record["rerun_fraction"] == pytest.approx(rerun.mean(), abs=1e-4)
    # a target out of reach within the grid: the largest margin, and the gate judges what that gives
    hopeless = checked.calibrate(-ref, -ref, ref)[1]
    assert hopeless["margin"] == checked.MARGINS[-1] and hopeless["calibration_agreement"] < 0.5


@pytest.fixture(scope="module")
def checked_bundle(tmp_path_factory, tiny_model_dir, tiny_data_dir) -> Path:
    from bertdeploy.exporter import ExportConfig, export

    out = tmp_path_factory.mktemp("checked") / "bundle"
    result = export(ExportConfig(run_dir=str(tiny_model_dir), output=str(out), data=str(tiny_data_dir),
                                 variants=["qint8_checked"], max_accuracy_drop=100.0))  # fmt: skip
    assert [r["name"] for r in result.rows] == ["fp32", "qint8", "qint8_checked"]
    return out


def _with_margin(src: Path, dest: Path, margin: object) -> Path:
    shutil.copytree(src, dest)
    path = dest / bundle.MANIFEST_NAME
    raw = json.loads(path.read_text())
    entry = next(v for v in raw["variants"] if v["name"] == "qint8_checked")
    entry["check"] = {**entry["check"], "margin": margin}
    path.write_text(json.dumps(raw))
    return dest


def test_exported_gated_and_recorded(checked_bundle):
    raw = json.loads((checked_bundle / bundle.MANIFEST_NAME).read_text())
    entry = next(v for v in raw["variants"] if v["name"] == "qint8_checked")
    assert entry["file"] == variants.get("qint8").file and entry["runs"] == "qint8"
    assert entry["check"]["variant"] == "fp32" and entry["check"]["margin"] in checked.MARGINS
    assert {"rerun_fraction", "held_out_agreement", "calibration_agreement", "target"} <= set(entry["check"])
    assert entry["parity"]["agreement"] >= 0.99


def test_the_runtime_reruns_exactly_the_near_ties(checked_bundle, tmp_path):
    from bertdeploy.runtime import load

    fp32 = load(checked_bundle, variant="fp32", threads=1).logits(TEXTS)
    int8 = load(checked_bundle, variant="qint8", threads=1).logits(TEXTS)
    assert not np.allclose(fp32, int8)  # the two files differ, so the test can tell which one answered
    every = load(_with_margin(checked_bundle, tmp_path / "all", 1.0), threads=1)
    assert every.variant.name == "qint8_checked" and every.check.variant.name == "fp32"  # what auto picks
    assert np.allclose(every.logits(TEXTS), fp32, atol=1e-5)  # fp32 in other batches: equal to float noise
    none = load(_with_margin(checked_bundle, tmp_path / "none", 1e-12), variant="qint8_checked", threads=1)
    assert np.array_equal(none.logits(TEXTS), int8)
    some = float(np.sort(top_gap(int8))[2]) + 1e-9  # the three nearest ties under int8
    part = load(_with_margin(checked_bundle, tmp_path / "some", some), variant="qint8_checked", threads=1)
    got, rerun = part.logits(TEXTS), top_gap(int8) < some
    assert rerun.sum() == 3
    assert np.allclose(got[rerun], fp32[rerun], atol=1e-5) and np.array_equal(got[~rerun], int8[~rerun])
    assert [p.label for p in part.predict(TEXTS)] == [part.labels[i] for i in got.argmax(1)]


@pytest.mark.parametrize("margin", [0, 1.5, "0.1", True, None])
def test_a_malformed_check_record_is_one_error_at_load(checked_bundle, tmp_path, margin):
    from bertdeploy.runtime import load

    with pytest.raises(UserError, match="malformed manifest: variant 'qint8_checked' has check"):
        load(_with_margin(checked_bundle, tmp_path / "bad", margin), variant="qint8_checked")


def test_triton_packages_one_file(checked_bundle):
    from bertdeploy.package.triton import TritonOptions, choose_variant

    manifest = bundle.read_manifest(checked_bundle)
    assert choose_variant(manifest, TritonOptions(name="m", kind="cpu")).name == "qint8"
    with pytest.raises(UserError, match="runs two model files.*package 'qint8'"):
        choose_variant(manifest, TritonOptions(name="m", kind="cpu", variant="qint8_checked"))


def test_tasks_without_one_label_per_text_skip_it(tmp_path, tiny_tagger_dir, tiny_token_dir):
    from bertdeploy.exporter import ExportConfig, export

    result = export(ExportConfig(run_dir=str(tiny_tagger_dir), output=str(tmp_path / "b"), data=str(tiny_token_dir),
                                 variants=["qint8_checked"], max_accuracy_drop=100.0))  # fmt: skip
    row = next(r for r in result.rows if r["name"] == "qint8_checked")
    assert row["skipped"] and "text-classification" in row["reason"] and result.failed_required == []
    assert "qint8_checked" not in [v["name"] for v in result.manifest["variants"]]


def test_the_bench_times_the_reruns_too(checked_bundle, tmp_path):
    """The bench's model-only timing of a checked variant runs its re-runs (not the int8 file alone)."""
    from bertdeploy.benchmark.backends import BackendContext, make_backend
    from bertdeploy.runtime import load

    root = _with_margin(checked_bundle, tmp_path / "all", 1.0)
    labels = bundle.read_manifest(root).labels
    backend = make_backend("bertdeploy", BackendContext(None, root, labels, 32, "qint8_checked", 1, "cpu", 8, []))
    backend.load()
    out = backend.run(backend.prepare(TEXTS, "bucketed"))
    assert np.allclose(out, load(root, variant="fp32", threads=1).logits(TEXTS), atol=1e-5)
