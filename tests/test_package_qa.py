"""`bertdeploy package` for question answering and multiple choice: the Triton repository's model has the task
table's dims (two ``[-1]`` outputs for QA, a choices axis for MC), its configs parse into Triton's ModelConfig, and
the model fed as the config declares gives the runtime's answers (the answers step beside it:
test_package_triton_answers.py); the CLI says what the step needs; the model wheel's ``load().predict`` answers
questions and picks choices like the bundle."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import tiny_mc_records, tiny_qa_records
from test_package_triton import _parse, model_config_pb2
from test_package_wheel import _install, _metadata, runtime_venv  # noqa: F401 - the venv fixture

from bertdeploy.cli import cli
from bertdeploy.package import triton_repository
from bertdeploy.package.wheel import build_wheel
from bertdeploy.runtime import load
from bertdeploy.runtime.batching import make_feed
from bertdeploy.runtime.chooser import choice_feed
from bertdeploy.runtime.reader import span_logits

QA = tiny_qa_records(16, seed=51)
MC = tiny_mc_records(5, seed=52)


def _types(config) -> list[tuple[str, str, list[int]]]:
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config]


def test_qa_repository_is_the_model_with_two_outputs(tiny_qa_bundle, tmp_path):
    repo = triton_repository(tiny_qa_bundle, tmp_path / "repo", name="qa", variant="fp32", kind="cpu")
    assert sorted(p.name for p in repo.repository.iterdir()) == ["qa", "qa_reader"]  # the answers step beside it
    assert (repo.repository / "qa/1/model.onnx").is_file() and (repo.repository / "qa/tokenizer.json").is_file()
    config = _parse(repo.repository / "qa/config.pbtxt")
    assert config.backend == "onnxruntime" and config.max_batch_size == 32
    assert _types(config.output) == [("start_logits", "TYPE_FP32", [-1]), ("end_logits", "TYPE_FP32", [-1])]
    assert all(dims == [-1] for _, _, dims in _types(config.input)) and len(config.input) >= 2
    assert [o.name for o in repo.outputs] == ["start_logits", "end_logits"] and repo.answers == "qa_reader"
    assert "pip install bertdeploy" in repo.limitation
    assert not any(o.label_filename for o in config.output)


def test_the_qa_model_as_triton_feeds_it_gives_the_runtime_answers(tiny_qa_bundle, tmp_path):
    """A client's work, done here with ONNX Runtime on the repository's model: window the pairs with the bundle's
    tokenizer, run ``[batch, sequence]`` as the config declares, search the spans: the Reader's answers."""
    import onnxruntime as ort

    repo = triton_repository(tiny_qa_bundle, tmp_path / "repo", name="qa", variant="fp32", kind="cpu")
    session = ort.InferenceSession(str(repo.repository / "qa/1/model.onnx"), providers=["CPUExecutionProvider"])
    with load(tiny_qa_bundle, variant="fp32", threads=1) as reader:
        encoded = reader.encode(QA)
        assert encoded.truncated > 0  # some contexts need several windows
        rows = np.arange(len(encoded.lengths))
        feed = make_feed(encoded, rows, int(encoded.lengths.max()), reader._specs, reader._encoder.pad_id)
        start, end = session.run(["start_logits", "end_logits"], feed)
        flat = np.concatenate([np.stack([start[r, :n], end[r, :n]], axis=1) for r, n in enumerate(encoded.lengths)])
        found = reader.decode(span_logits(encoded, flat.astype(np.float32)), top_k=2)
        assert found == reader.predict(QA, top_k=2)


def test_mc_repository_has_the_choices_axis(tiny_mc_bundle, tmp_path):
    import onnxruntime as ort

    repo = triton_repository(tiny_mc_bundle, tmp_path / "repo", name="mc", variant="fp32", kind="cpu")
    config = _parse(repo.repository / "mc/config.pbtxt")
    assert _types(config.output) == [("logits", "TYPE_FP32", [-1])]
    assert all(dims == [-1, -1] for _, _, dims in _types(config.input))
    session = ort.InferenceSession(str(repo.repository / "mc/1/model.onnx"), providers=["CPUExecutionProvider"])
    with load(tiny_mc_bundle, variant="fp32", threads=1) as chooser:
        encoded = chooser.encode(MC)
        index = np.arange(len(MC))
        feed = choice_feed(encoded.pairs, index, encoded.width, int(encoded.lengths.max()), chooser._specs, 0)
        (logits,) = session.run(["logits"], feed)
        assert logits.shape == (len(MC), 3)
        assert logits.argmax(axis=1).tolist() == [c.label for c in chooser.predict(MC)]


def test_cli_says_what_the_answers_step_needs(tiny_qa_bundle, tmp_path):
    args = ["package", "triton", str(tiny_qa_bundle), "-o", str(tmp_path / "repo"), "--kind", "cpu", "--name", "qa"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert "start_logits TYPE_FP32 [-1], end_logits TYPE_FP32 [-1]" in done.output
    assert "qa_reader: QUESTION, CONTEXT" in done.output and "pip install bertdeploy" in done.output
    bad = CliRunner().invoke(cli, [*args[:-2], "--name", "qa2", "--aggregation", "simple"])
    assert bad.exit_code == 2 and "apply to token-classification" in bad.output


CHECK = """
import importlib.util, json, sys
import importlib
m = importlib.import_module(sys.argv[1])
head = m.load(variant="fp32", threads=1)
found = head.predict(json.loads(sys.argv[2]))
print(json.dumps({"head": type(head).__name__, "task": m.manifest["task"], "found": [f.to_dict() for f in found],
    "heavy": [n for n in ("torch", "transformers", "optimum") if importlib.util.find_spec(n) is not None]}))
"""


@pytest.mark.parametrize(("task", "records"), [("qa", QA), ("mc", MC)])
def test_the_wheel_answers_questions(tiny_qa_bundle, tiny_mc_bundle, runtime_venv, tmp_path, task, records):  # noqa: F811
    bundle = tiny_qa_bundle if task == "qa" else tiny_mc_bundle
    name = f"tiny-{task}-model"
    wheel = build_wheel(bundle, name, tmp_path / "dist", variants=["fp32"])
    assert _metadata(wheel.path)["Summary"].endswith("model packaged by bertdeploy")
    _install(runtime_venv, wheel.path, name)
    run = subprocess.run([str(runtime_venv), "-c", CHECK, name.replace("-", "_"), json.dumps(records)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    with load(bundle, variant="fp32", threads=1) as head:
        expected = [f.to_dict() for f in head.predict(records)]
    assert (got["head"], got["heavy"]) == ({"qa": "Reader", "mc": "Chooser"}[task], [])
    assert [{**f, "score": 0} for f in got["found"]] == [{**f, "score": 0} for f in expected]
    assert [f["score"] for f in got["found"]] == pytest.approx([f["score"] for f in expected], abs=1e-6)
