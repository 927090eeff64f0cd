"""`bertdeploy package wheel`: a model wheel built by setuptools, installed into a fresh venv with
``pip install --no-index --find-links``, predicts what ``bertdeploy.load(BUNDLE)`` predicts."""

from __future__ import annotations

import email
import importlib.metadata
import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from helpers import REPO

from bertdeploy import load
from bertdeploy.bundle import read_manifest
from bertdeploy.errors import UserError
from bertdeploy.package.wheel import build_wheel

#: what ``bertdeploy.load`` needs in the venv (the light runtime of issue 10), taken from a local wheelhouse
RUNTIME_DEPS = ("onnxruntime", "numpy", "tokenizers", "click", "rich", "pyyaml")
WHEELHOUSE = Path(os.environ.get("BERTDEPLOY_WHEELHOUSE", Path.home() / ".cache" / "bertdeploy" / "test-wheelhouse"))
CONSTRAINTS = ("-c", str(REPO / "constraints.txt"))
TEXTS = ["good day", "the movie was terrible and slow", "love it " * 20, "app", "thanks for the fast help", "sad"]


def _metadata(whl: Path) -> email.message.Message:
    with zipfile.ZipFile(whl) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_string(zf.read(name).decode("utf-8"))


@pytest.fixture(scope="module")
def model_wheel(varied_bundle, tmp_path_factory):
    return build_wheel(varied_bundle, "emotion-classifier", tmp_path_factory.mktemp("dist"), variants=["fp32", "qint8"])


def test_wheel_holds_the_chosen_variants_and_depends_on_the_light_runtime(model_wheel, varied_bundle):
    assert model_wheel.path.name == "emotion_classifier-1.0.0-py3-none-any.whl"
    meta = _metadata(model_wheel.path)
    assert (meta["Name"], meta["Version"]) == ("emotion-classifier", "1.0.0")
    assert meta.get_all("Requires-Dist") == ["bertdeploy[cpu]>=0.1.0"]
    with zipfile.ZipFile(model_wheel.path) as zf:
        files = set(zf.namelist())
        manifest = json.loads(zf.read("emotion_classifier/bundle/bertdeploy.json"))
        wheel_info = zf.read("emotion_classifier-1.0.0.dist-info/WHEEL").decode()
    source = read_manifest(varied_bundle)
    assert "Tag: py3-none-any" in wheel_info and "Root-Is-Purelib: true" in wheel_info
    assert [v["name"] for v in manifest["variants"]] == ["fp32", "qint8"] == model_wheel.variants
    assert [v["sha256"] for v in manifest["variants"]] == [source.variant(n).sha256 for n in model_wheel.variants]
    left_out = source.variant("O2").file
    assert f"emotion_classifier/bundle/{left_out}" not in files
    for name in ("__init__.py", "bundle/tokenizer.json", "bundle/config.json", "bundle/onnx/model.onnx"):
        assert f"emotion_classifier/{name}" in files


def test_gpu_wheel_depends_on_the_gpu_runtime_and_existing_wheels_are_kept(varied_bundle, tmp_path):
    first = build_wheel(varied_bundle, "Emo.Classifier", tmp_path, version="2.1rc1", variants=["fp32"], gpu=True)
    assert first.path.name == "emo_classifier-2.1rc1-py3-none-any.whl" and first.package == "emo_classifier"
    assert _metadata(first.path).get_all("Requires-Dist") == ["bertdeploy[gpu]>=0.1.0"]
    before = first.path.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        build_wheel(varied_bundle, "emo-classifier", tmp_path, version="2.1rc1")
    assert first.path.read_bytes() == before
    again = build_wheel(varied_bundle, "emo-classifier", tmp_path, version="2.1rc1", overwrite=True)
    assert again.variants == [v.name for v in read_manifest(varied_bundle).variants]
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.path.name]  # no staging folder left


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "-bad"}, "package name"),
        ({"name": "class"}, "cannot import"),
        ({"version": "one"}, "PEP 440"),
        ({"variants": ["O3"]}, "not in the bundle"),
    ],
)
def test_bad_options_write_nothing(varied_bundle, tmp_path, kwargs, match):
    args = {"name": "emotion-classifier", **kwargs}
    with pytest.raises(UserError, match=match):
        build_wheel(varied_bundle, args.pop("name"), tmp_path / "dist", **args)
    assert not (tmp_path / "dist").exists()


def _pip(*args: str, python: Path | None = None) -> subprocess.CompletedProcess:
    target = ["--python", str(python)] if python else []
    cmd = [sys.executable, "-m", "pip", *target, *args, "--disable-pip-version-check", "-q"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _wheelhouse() -> Path:
    """The runtime's dependencies (pinned to the versions installed here) as wheels, downloaded once."""
    pins = [f"{dep}=={importlib.metadata.version(dep)}" for dep in RUNTIME_DEPS]
    local = _pip("download", *CONSTRAINTS, "--no-index", "--find-links", str(WHEELHOUSE), "-d", str(WHEELHOUSE), *pins)
    if local.returncode != 0:
        fetched = _pip("download", *CONSTRAINTS, "--only-binary=:all:", "-d", str(WHEELHOUSE), *pins)
        if fetched.returncode != 0:
            why = f"cannot download the runtime's wheels: {fetched.stderr.strip().splitlines()[-1:]}"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
    return WHEELHOUSE


CHECK = """
import importlib.util, json, sys
import emotion_classifier as m
clf = m.load(threads=1)
preds = clf.predict(json.loads(sys.argv[1]))
print(json.dumps({"labels": m.labels, "variants": m.variants, "version": m.__version__, "variant": clf.variant.name,
    "manifest_labels": m.manifest["labels"], "bundle": str(m.BUNDLE), "preds": [[p.label, p.score] for p in preds],
    "heavy": [n for n in ("torch", "transformers", "optimum") if importlib.util.find_spec(n) is not None]}))
if len(sys.argv) > 2:  # bertdeploy.package runs on the light runtime too
    from bertdeploy.package import triton_repository
    triton_repository(m.BUNDLE, sys.argv[2], name="emo", kind="cpu")
"""


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """A fresh venv holding bertdeploy and the light runtime only; returns its python (the model wheels of the tests
    are installed into it)."""
    house = _wheelhouse()
    tmp_path = tmp_path_factory.mktemp("runtime_venv")
    own = _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "own"), str(REPO))
    assert own.returncode == 0, own.stderr
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # bertdeploy itself without its dependencies (its base still lists the training stack until the light
    # runtime extra lands), then the runtime's dependencies from the wheelhouse
    steps = [
        ("install", "--no-index", "--no-deps", *map(str, (tmp_path / "own").glob("bertdeploy-*.whl"))),
        ("install", *CONSTRAINTS, "--no-index", "--find-links", str(house), *RUNTIME_DEPS),
    ]
    for step in steps:
        done = _pip(*step, python=python)
        assert done.returncode == 0, f"pip {' '.join(step)}: {done.stderr}"
    return python


def _install(python: Path, wheel: Path, name: str) -> None:
    step = ("install", "--no-index", "--no-deps", "--find-links", str(wheel.parent), name)
    done = _pip(*step, python=python)
    assert done.returncode == 0, f"pip {' '.join(step)}: {done.stderr}"


def test_wheel_installs_into_a_fresh_venv_and_predicts_like_the_bundle(model_wheel, varied_bundle, runtime_venv,
                                                                       tmp_path):  # fmt: skip
    python = runtime_venv
    env_dir = python.parent.parent
    _install(python, model_wheel.path, "emotion-classifier")
    repo = tmp_path / "repo"
    run = subprocess.run(
        [str(python), "-c", CHECK, json.dumps(TEXTS), str(repo)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert (repo / "emo/1/model.onnx").is_file() and (repo / "emo_ensemble/config.pbtxt").is_file()
    got = json.loads(run.stdout)
    ref = load(varied_bundle, threads=1)
    assert got["heavy"] == []  # the wheel's runtime needs none of the training stack
    assert got["labels"] == got["manifest_labels"] == ref.labels and got["version"] == "1.0.0"
    assert got["variants"] == ["fp32", "qint8"] and got["variant"] == ref.variant.name
    assert Path(got["bundle"]).is_relative_to(env_dir)
    assert [p[0] for p in got["preds"]] == [p.label for p in ref.predict(TEXTS)]
    assert [p[1] for p in got["preds"]] == pytest.approx([p.score for p in ref.predict(TEXTS)], abs=1e-5)
    onnx = Path(got["bundle"]) / read_manifest(varied_bundle).variant(got["variant"]).file
    onnx.write_bytes(onnx.read_bytes() + b"\0")  # the installed file no longer matches the manifest
    tampered = subprocess.run([str(python), "-c", CHECK, "[]"], capture_output=True, text=True, check=False)
    assert tampered.returncode != 0 and "sha256 mismatch" in tampered.stderr


def test_cli_builds_the_wheel(varied_bundle, tmp_path):
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    args = ["package", "wheel", str(varied_bundle), "--name", "emotion-classifier", "-o", str(tmp_path)]
    done = CliRunner().invoke(cli, [*args, "--variants", "qint8", "--version", "0.3.0"])
    assert done.exit_code == 0, done.output
    whl = tmp_path / "emotion_classifier-0.3.0-py3-none-any.whl"
    assert str(whl) in done.stdout and "bertdeploy[cpu]" in done.stdout
    with zipfile.ZipFile(whl) as zf:
        assert [v["name"] for v in json.loads(zf.read("emotion_classifier/bundle/bertdeploy.json"))["variants"]] == [
            "qint8"
        ]
    bad = CliRunner().invoke(cli, [*args, "--version", "latest"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1


TAGGER_CHECK = """
import importlib.util, json, sys
import slot_tagger as m
tagger = m.load(variant="fp32", threads=1)
found = tagger.predict(json.loads(sys.argv[1]), aggregation=sys.argv[2])
print(json.dumps({"head": type(tagger).__name__, "task": m.manifest["task"], "labels": m.labels,
    "entities": [[e.to_dict() for e in text] for text in found],
    "heavy": [n for n in ("torch", "transformers", "optimum") if importlib.util.find_spec(n) is not None]}))
"""


def test_a_token_bundle_wheel_predicts_entities(tiny_token_bundle, runtime_venv, tmp_path):
    """A token-classification bundle's wheel: its load() is a Tagger whose entities are the bundle's."""
    texts = ["i love the movie at night", "The Food Service was good today, thanks!", "今天的food service很好"]
    wheel = build_wheel(tiny_token_bundle, "slot-tagger", tmp_path / "dist", variants=["fp32"])
    assert "token-classification" in _metadata(wheel.path)["Summary"]
    _install(runtime_venv, wheel.path, "slot-tagger")
    ref = load(tiny_token_bundle, variant="fp32", threads=1)
    for aggregation in ("simple", "none"):
        run = subprocess.run([str(runtime_venv), "-c", TAGGER_CHECK, json.dumps(texts), aggregation],
                             capture_output=True, text=True, check=False)  # fmt: skip
        assert run.returncode == 0, run.stderr
        got = json.loads(run.stdout)
        assert (got["head"], got["task"], got["heavy"]) == ("Tagger", "token-classification", [])
        assert got["labels"] == ref.labels
        expected = [[e.to_dict() for e in text] for text in ref.predict(texts, aggregation=aggregation)]
        assert [[{**d, "score": 0} for d in t] for t in got["entities"]] == [
            [{**d, "score": 0} for d in t] for t in expected
        ]
        scores = [d["score"] for t in got["entities"] for d in t]
        assert scores == pytest.approx([d["score"] for t in expected for d in t], abs=1e-6) and len(scores) > 3
