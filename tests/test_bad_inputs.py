"""Bad inputs, table-driven: every case of the CLI is exit code 2 with exactly one ``error:`` line naming the
problem, no traceback and nothing written or changed anywhere; every case of the Python API is a ``UserError``.

The tables hold the audit of issue 14 (data loss by --overwrite / --force, values that crashed or were accepted,
bundle escapes) and the neighbours found while fixing it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bertdeploy
from bertdeploy.cli import cli
from bertdeploy.errors import UserError


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model_dir, tiny_data_dir, tiny_bundle) -> dict[str, str]:
    """A workspace of things in the way: a folder of someone's notes, a file, a (fake) training run, inputs."""
    w = tmp_path_factory.mktemp("bad_inputs")
    (w / "notes").mkdir()
    (w / "notes" / "notes.txt").write_text("mine", encoding="utf-8")
    (w / "afile").write_text("x", encoding="utf-8")
    run = w / "run"  # what `bertdeploy train` leaves (enough of it to be recognised)
    shutil.copytree(tiny_model_dir, run)
    (run / "train_config.json").write_text(json.dumps({"labels": ["a"], "model_info": {}}), encoding="utf-8")
    files = {
        "in.csv": "text,label\nhello,positive\nworld,neutral\n",
        "alien.csv": "text,label\nhello,joy\n",
        "nums.jsonl": '{"text": "fine"}\n{"text": 123}\n',
        "list.jsonl": '{"text": ["a", "b"]}\n',
        "obj.jsonl": '{"text": {"a": 1}}\n',
        "bool.jsonl": '{"text": true}\n',
        "bad.jsonl": '{"text": "a"\n',
        "array.jsonl": '["not", "an", "object"]\n',
        "empty.csv": "",
        "blank.csv": 'text\n""\n" "\n',
        "header_only.csv": "text\n",
        "surrogate.jsonl": '{"text": "fine"}\n{"text": "lone \\ud800 here"}\n',
        "open_quote.csv": 'text\n"hello\nworld\n',
        "after_quote.csv": 'text,label\n"a"b,c\n',
        "extra_field.csv": "text,label\nhello,positive\nworld,neutral,extra\n",
        "long_id.jsonl": '{"id": ' + "1" * 5001 + ', "text": "fine"}\n',
        "deep.jsonl": '{"text": "fine", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
        "surrogate_id.jsonl": '{"id": "a\\udc00", "text": "fine"}\n',
    }
    for name, text in files.items():
        (w / name).write_text(text, encoding="utf-8")
    (w / "latin1.csv").write_bytes("text\ncaf\xe9\n".encode("latin-1"))
    (w / "recipe.yaml").write_text("model: minilm-l6\nlearning_rate: 3\n", encoding="utf-8")
    (w / "notyaml.yaml").write_text("a: [1\n", encoding="utf-8")
    (w / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    return {"w": str(w), "model": str(tiny_model_dir), "data": str(tiny_data_dir), "bundle": str(tiny_bundle),
            "run": str(run), "notes": str(w / "notes"), "afile": str(w / "afile"), "o": str(w / "o")}  # fmt: skip


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch, tmp_path):
    """An unreachable Hub and an empty cache, decided without touching the network."""
    from bertdeploy import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hub.hub_reachable.cache_clear()
    yield
    hub.hub_reachable.cache_clear()


def _snapshot(*roots: str) -> dict[str, tuple[int, int]]:
    """Every path under ``roots`` with its size and mtime (folders: presence only; a temporary file made and
    removed again changes a folder's mtime but leaves nothing)."""
    out = {}
    for root in roots:
        for p in [Path(root), *Path(root).rglob("*")]:
            st = p.lstat()
            out[str(p)] = (st.st_size, st.st_mtime_ns) if not p.is_dir() else (0, 0)
    return out


TRAIN = ["train", "--model", "{model}", "--data", "{data}", "-o", "{o}"]
EXPORT = ["export", "{model}", "-o", "{o}"]
PREDICT = ["predict", "{bundle}", "-i", "{w}/in.csv", "-o", "{w}/p.jsonl"]
BENCH = ["bench", "{bundle}", "-o", "{o}"]

CLI_CASES = {
    # ---- data loss: --overwrite / --force replace only what is ours, never an input
    "train --overwrite onto its own data": (
        ["train", "--model", "{model}", "--data", "{data}", "-o", "{data}", "--overwrite"],
        "is the input",
    ),  # fmt: skip
    "train output inside the data": (
        ["train", "--model", "{model}", "--data", "{data}", "-o", "{data}/run"],
        "lies inside the input",
    ),  # fmt: skip
    "train output contains the data": ([*TRAIN[:-1], "{data}/..", "--overwrite"], "contains the input"),
    "train --overwrite onto the model": ([*TRAIN[:-1], "{model}", "--overwrite"], "is the input"),
    "train --overwrite onto notes": ([*TRAIN[:-1], "{notes}", "--overwrite"], "not a bertdeploy training run"),
    "train --overwrite onto a bundle": ([*TRAIN[:-1], "{bundle}", "--overwrite"], "it is a bertdeploy bundle"),
    "train onto a non-empty folder": ([*TRAIN[:-1], "{notes}"], "already exists and is not empty"),
    "train output is a file": ([*TRAIN[:-1], "{afile}"], "exists and is a file"),
    "export --force onto notes": ([*EXPORT[:-1], "{notes}", "--force"], "not a bertdeploy bundle (it holds notes"),
    "export --force onto a run": ([*EXPORT[:-1], "{run}", "--force"], "it is a bertdeploy training run"),
    "export onto its own run": (["export", "{run}", "-o", "{run}", "--force"], "is the input"),
    "export inside its run": (["export", "{run}", "-o", "{run}/bundle"], "lies inside the input"),
    "export containing its run": (["export", "{run}", "-o", "{w}", "--force"], "contains the input"),
    "export onto its data": ([*EXPORT[:-1], "{data}", "--data", "{data}", "--force"], "is the input"),
    "export output is a file": ([*EXPORT[:-1], "{afile}"], "exists and is a file"),
    "bench --overwrite onto a run": ([*BENCH[:-1], "{run}", "--overwrite"], "it is a bertdeploy training run"),
    "bench onto its target": (["bench", "{run}", "-o", "{run}", "--overwrite"], "is the input"),
    "bench inside a bundle": ([*BENCH[:-1], "{bundle}/bench"], "lies inside the input"),
    "bench onto notes with results.csv": ([*BENCH[:-1], "{bundle}/..", "--overwrite"], "contains the input"),
    "bench --pick-output not empty": ([*BENCH, "--pick", "--pick-output", "{notes}"], "already exists"),
    "bench --pick-output onto notes": (
        [*BENCH, "--pick", "--pick-output", "{notes}", "--overwrite"],
        "not a bertdeploy bundle",
    ),  # fmt: skip
    "bench --pick-output = output": ([*BENCH, "--pick", "--pick-output", "{o}"], "would replace the bench output"),
    "bench output is a file": ([*BENCH[:-1], "{afile}"], "exists and is a file"),
    "predict onto its input": ([*PREDICT[:-1], "{w}/in.csv"], "would overwrite the input"),
    "predict into the bundle": ([*PREDICT[:-1], "{bundle}/preds.jsonl"], "lies inside the input"),
    "predict onto the manifest": ([*PREDICT[:-1], "{bundle}/bertdeploy.json"], "lies inside the input"),
    # ---- train options
    "train --epochs nan": ([*TRAIN, "--epochs", "nan"], "epochs must be a finite number"),
    "train --epochs inf": ([*TRAIN, "--epochs", "inf"], "epochs must be a finite number"),
    "train --epochs -1": ([*TRAIN, "--epochs", "-1"], "must be positive"),
    "train --lr 0": ([*TRAIN, "--lr", "0"], "must be positive"),
    "train --lr inf": ([*TRAIN, "--lr", "inf"], "lr must be a finite number"),
    "train --batch-size 0": ([*TRAIN, "--batch-size", "0"], "must be positive"),
    "train --batch-size a": ([*TRAIN, "--batch-size", "a"], "'a' is not a valid integer"),
    "train --seed -1": ([*TRAIN, "--seed", "-1"], "seed must be in [0, 4294967295]"),
    "train --seed 2**40": ([*TRAIN, "--seed", str(2**40)], "seed must be in"),
    "train val_ratio=0": ([*TRAIN, "val_ratio=0"], "val_ratio must be in (0, 1)"),
    "train val_ratio=1.5": ([*TRAIN, "val_ratio=1.5"], "val_ratio must be in (0, 1)"),
    "train test_ratio=1": ([*TRAIN, "test_ratio=1"], "test_ratio must be in [0, 1)"),
    "train val+test >= 1": ([*TRAIN, "val_ratio=0.5", "test_ratio=0.5"], "val_ratio + test_ratio"),
    "train --warmup-ratio 1": ([*TRAIN, "--warmup-ratio", "1"], "warmup_ratio must be in [0, 1)"),
    "train --weight-decay -1": ([*TRAIN, "--weight-decay", "-1"], "weight_decay must be >= 0"),
    "train adam_beta1=1": ([*TRAIN, "adam_beta1=1"], "adam_beta1 must be in [0, 1)"),
    "train --max-length 4": ([*TRAIN, "--max-length", "4"], "max_length must be in [8, 512]"),
    "train --max-length 100000": ([*TRAIN, "--max-length", "100000"], "max_length must be in [8, 512]"),
    "train --early-stopping -1": ([*TRAIN, "--early-stopping", "-1"], "early_stopping must be >= 1"),
    "train --early-stopping 0": ([*TRAIN, "--early-stopping", "0"], "early_stopping must be >= 1"),
    "train --train-size 1": ([*TRAIN, "--train-size", "1"], "train_size must be at least 2"),
    "train --padding ragged": ([*TRAIN, "--padding", "ragged"], "'ragged' is not one of"),
    "train --unseen-labels bogus": ([*TRAIN, "--unseen-labels", "bogus"], "'bogus' is not one of"),
    "train unseen_labels=bogus": ([*TRAIN, "unseen_labels=bogus"], "unseen_labels must be one of"),
    "train --metric bogus": ([*TRAIN, "--metric", "bogus"], "metric must be one of"),
    "train logging_steps=0": ([*TRAIN, "logging_steps=0"], "logging_steps must be >= 1"),
    "train no --output": (TRAIN[:-2], "an output folder is required"),
    "train no --data": (["train", "--model", "{model}", "-o", "{o}"], "a dataset is required"),
    "train --resume without checkpoint": ([*TRAIN, "--resume"], "no complete checkpoint"),
    "train override without =": ([*TRAIN, "epochs"], "is not key=value"),
    "train unknown key": ([*TRAIN, "learning_rate=3"], "unknown TrainConfig key"),
    "train epochs=abc": ([*TRAIN, "epochs=abc"], "bad value for epochs"),
    "train unknown preset": ([*TRAIN[:2], "bert-colossal", *TRAIN[3:]], "unknown model preset"),
    "train Hub model offline": ([*TRAIN[:2], "bert-base-uncased", *TRAIN[3:]], "cannot reach the Hugging Face Hub"),
    "train Hub dataset offline": ([*TRAIN[:4], "dair-ai/emotion", *TRAIN[5:]], "cannot reach the Hugging Face Hub"),
    "train missing data": ([*TRAIN[:4], "{w}/nope.csv", *TRAIN[5:]], "data path not found"),
    "train bad text column": ([*TRAIN, "--text-column", "sentence"], "no column 'sentence'"),
    "train recipe missing": (["train", "--recipe", "{w}/nope.yaml"], "recipe not found"),
    "train recipe unknown key": (["train", "--recipe", "{w}/recipe.yaml"], "unknown recipe keys"),
    "train recipe not YAML": (["train", "--recipe", "{w}/notyaml.yaml"], "is not valid YAML"),
    "train recipe not a mapping": (["train", "--recipe", "{w}/list.yaml"], "must hold a mapping"),
    # ---- export options
    "export missing run": (["export", "{w}/nope", "-o", "{o}"], "run folder not found"),
    "export run is a file": (["export", "{afile}", "-o", "{o}"], "run folder is not a folder"),
    "export not a model folder": (["export", "{notes}", "-o", "{o}"], "no config.json"),
    "export no --output": (EXPORT[:-2], "an output bundle folder (--output) are required"),
    "export --opset 5": ([*EXPORT, "--opset", "5"], "opset must be in [11, 21]"),
    "export --calibration-size 0": ([*EXPORT, "--calibration-size", "0"], "calibration size must be positive"),
    "export --max-accuracy-drop -1": ([*EXPORT, "--max-accuracy-drop", "-1"], "must be >= 0 points"),
    "export --max-accuracy-drop abc": ([*EXPORT, "--max-accuracy-drop", "abc"], "a number of points"),
    "export --max-accuracy-drop nan": ([*EXPORT, "--max-accuracy-drop", "nan"], "must be >= 0 points"),
    "export --parity-rows 0": ([*EXPORT, "--parity-rows", "0"], "parity_rows and batch_size must be positive"),
    "export --max-length 2": ([*EXPORT, "--max-length", "2"], "max_length must be in [8, 512]"),
    "export --isa bogus": ([*EXPORT, "--isa", "bogus"], "'bogus' is not one of"),
    "export variants=[bogus]": ([*EXPORT, "variants=[bogus]"], "unknown variant 'bogus'"),
    "export missing --data": ([*EXPORT, "--data", "{w}/nodata"], "data path not found"),
    "export missing --config": ([*EXPORT, "--config", "{w}/nope.yaml"], "file not found"),
    # ---- predict options and inputs
    "predict missing bundle": (["predict", "{w}/nob", *PREDICT[2:]], "bundle not found"),
    "predict not a bundle": (["predict", "{model}", *PREDICT[2:]], "not a bertdeploy bundle"),
    "predict missing input": ([*PREDICT[:3], "{w}/none.csv", *PREDICT[4:]], "input not found"),
    "predict output is a folder": ([*PREDICT[:-1], "{notes}"], "cannot tell the output format"),
    "predict output suffix": ([*PREDICT[:-1], "{w}/p.xml"], "cannot tell the output format"),
    "predict output folder missing": ([*PREDICT[:-1], "{w}/no/dir/p.jsonl"], "output folder does not exist"),
    "predict bad text column": ([*PREDICT, "--text-column", "x"], "text column 'x' not found"),
    "predict bad id column": ([*PREDICT, "--id-column", "x"], "id column 'x' not found"),
    "predict unknown variant": ([*PREDICT, "--variant", "bogus"], "variant 'bogus' is not in the bundle"),
    "predict --device tpu": ([*PREDICT, "--device", "tpu"], "unknown device 'tpu'"),
    "predict --threads 0": ([*PREDICT, "--threads", "0"], "threads must be >= 1"),
    "predict --batch-size 0": ([*PREDICT, "--batch-size", "0"], "batch_size must be >= 1"),
    "predict --max-tokens 0": ([*PREDICT, "--max-tokens", "0"], "max_tokens must be >= 1"),
    "predict --chunk-size 0": ([*PREDICT, "--chunk-size", "0"], "chunk_size must be >= 1"),
    "predict --workers 0": ([*PREDICT, "--engine", "ray", "--workers", "0"], "workers must be >= 1"),
    "predict --input-format xml": ([*PREDICT, "--input-format", "xml"], "'xml' is not one of"),
    "predict parquet from stdin": (
        [*PREDICT[:3], "-", *PREDICT[4:], "--input-format", "parquet"],
        "parquet cannot be read from stdin",
    ),  # fmt: skip
    "predict JSONL number": ([*PREDICT[:3], "{w}/nums.jsonl", *PREDICT[4:]], "line 2 is a number (123), not a str"),
    "predict JSONL list": ([*PREDICT[:3], "{w}/list.jsonl", *PREDICT[4:]], "is a list (['a', 'b']), not a string"),
    "predict JSONL object": ([*PREDICT[:3], "{w}/obj.jsonl", *PREDICT[4:]], "is a object"),
    "predict JSONL boolean": ([*PREDICT[:3], "{w}/bool.jsonl", *PREDICT[4:]], "is a boolean (True)"),
    "predict JSONL malformed": ([*PREDICT[:3], "{w}/bad.jsonl", *PREDICT[4:]], "invalid JSON"),
    "predict JSONL not objects": ([*PREDICT[:3], "{w}/array.jsonl", *PREDICT[4:]], "expected a JSON object"),
    "predict empty file": ([*PREDICT[:3], "{w}/empty.csv", *PREDICT[4:]], "input is empty"),
    "predict header only": ([*PREDICT[:3], "{w}/header_only.csv", *PREDICT[4:]], "input is empty"),
    "predict only blank texts": ([*PREDICT[:3], "{w}/blank.csv", *PREDICT[4:]], "no non-empty text"),
    "predict not UTF-8": ([*PREDICT[:3], "{w}/latin1.csv", *PREDICT[4:]], "is not UTF-8 text"),
    "predict no arguments": (["predict"], "Missing argument 'BUNDLE'"),
    # ---- issue 25: no input is silently misread
    "predict JSONL lone surrogate": (
        [*PREDICT[:3], "{w}/surrogate.jsonl", *PREDICT[4:]],
        "the text at line 2 holds a lone surrogate U+D800 at character 5",
    ),  # fmt: skip
    "predict CSV quote never closed": (
        [*PREDICT[:3], "{w}/open_quote.csv", *PREDICT[4:]],
        "malformed csv at line 3: unexpected end of data (a quote that is never closed)",
    ),  # fmt: skip
    "predict CSV text after a quote": ([*PREDICT[:3], "{w}/after_quote.csv", *PREDICT[4:]], "',' expected after"),
    "predict CSV more fields than the header": (
        [*PREDICT[:3], "{w}/extra_field.csv", *PREDICT[4:]],
        "record 2 (ending on line 3) has 3 fields, the header 2",
    ),  # fmt: skip
    "predict JSONL 5001-digit id": ([*PREDICT[:3], "{w}/long_id.jsonl", *PREDICT[4:]], ":1: unreadable JSON (Exceeds"),
    "predict JSONL nested 100k deep": ([*PREDICT[:3], "{w}/deep.jsonl", *PREDICT[4:]], ":1: JSON nested too deeply"),
    "predict input is a folder": ([*PREDICT[:3], "{notes}", *PREDICT[4:]], "input is a folder, not a file"),
    "predict JSONL id lone surrogate": (
        [*PREDICT[:3], "{w}/surrogate_id.jsonl", *PREDICT[4:]],
        "the id at line 1 holds a lone surrogate U+DC00 at character 1",
    ),  # fmt: skip
    # ---- bench options
    "bench --batch-sizes a": ([*BENCH, "--batch-sizes", "a"], "bad value for batch_sizes"),
    "bench --batch-sizes 0": ([*BENCH, "--batch-sizes", "0"], "batch sizes must be positive"),
    "bench --eval-limit -1": ([*BENCH, "--eval-limit", "-1", "--data", "{data}"], "eval_limit must be >= 1"),
    "bench --min-seconds nan": ([*BENCH, "--min-seconds", "nan"], "min_seconds must be a finite number"),
    "bench --max-seconds 0": ([*BENCH, "--max-seconds", "0"], "max_seconds > 0"),
    "bench --threads 0": ([*BENCH, "--threads", "0"], "threads must be >= 1"),
    "bench --threads 1000000": ([*BENCH, "--threads", "1000000"], "(the CPUs this process may use), got 1000000"),
    "bench --seed -1": ([*BENCH, "--seed", "-1"], "seed must be >= 0"),
    "bench --backends onnx": ([*BENCH, "--backends", "onnx"], "unknown backend 'onnx'"),
    "bench --variants bogus": ([*BENCH, "--variants", "bogus"], "unknown variant 'bogus'"),
    "bench --max-length 2": ([*BENCH, "--max-length", "2"], "max_length must be between 8 and 8192"),
    "bench --device tpu": ([*BENCH, "--device", "tpu"], "'tpu' is not one of"),
    "bench no --output": (BENCH[:-2], "an output folder is required"),
    "bench missing target": (["bench", "{w}/nope", "-o", "{o}"], "is not a bundle, a training run or a model"),
    "bench labels not the model's": ([*BENCH, "--data", "{w}/alien.csv"], "'joy' (row 1) is not one of the labels"),
    "bench compare missing": (["bench", "compare", "{w}/x", "{w}/y"], "no bertdeploy bench results"),
    # ---- data stats
    "data stats missing": (["data", "stats", "--data", "{w}/nope"], "data path not found"),
    "data stats Hub dataset offline": (["data", "stats", "--data", "dair-ai/emotion"], "cannot reach the Hugging"),
    "data stats Hub model offline": (
        ["data", "stats", "--data", "{data}", "--model", "bert-base-uncased"],
        "cannot reach the Hugging Face Hub",
    ),  # fmt: skip
    "data stats bad column": (["data", "stats", "--data", "{data}", "--text-column", "x"], "no column 'x'"),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_bad_input_is_one_line_exit_2_and_changes_nothing(ws, name):
    template, message = CLI_CASES[name]
    args = [a.format(**ws) for a in template]
    before = _snapshot(ws["w"], ws["bundle"], ws["data"], ws["model"])
    r = CliRunner().invoke(cli, args)
    err = r.stderr
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2, (r.exit_code, err[-2000:], r.exception)
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    assert "Traceback" not in err and r.exception is None or isinstance(r.exception, SystemExit)
    assert _snapshot(ws["w"], ws["bundle"], ws["data"], ws["model"]) == before, "something was written or changed"


# ---------------------------------------------------------------- the Python API


def _api_cases(bundle: str) -> dict:
    import pandas as pd

    from bertdeploy.benchmark import BenchConfig
    from bertdeploy.exporter import ExportConfig
    from bertdeploy.runtime import LoadOptions, load_with, predict_file
    from bertdeploy.training import TrainConfig

    clf = bertdeploy.load(bundle, variant="fp32", threads=1)
    good = Path(bundle).parent / "in.txt"
    good.write_text("hello\n", encoding="utf-8")
    out = str(Path(bundle).parent / "out.jsonl")
    return {
        "load(None)": (lambda: bertdeploy.load(None), "a bundle is a folder path"),
        "load(5)": (lambda: bertdeploy.load(5), "a bundle is a folder path"),
        "load('')": (lambda: bertdeploy.load(""), "a bundle is a folder path"),
        "load(batch_size='8')": (lambda: bertdeploy.load(bundle, batch_size="8"), "batch_size must be >= 1"),
        "load(batch_size=True)": (lambda: bertdeploy.load(bundle, batch_size=True), "batch_size must be >= 1"),
        "load(threads=0)": (lambda: bertdeploy.load(bundle, threads=0), "threads must be >= 1"),
        "load(streams=2.5)": (lambda: bertdeploy.load(bundle, streams=2.5), "streams must be >= 1"),
        "load(max_tokens=nan)": (lambda: bertdeploy.load(bundle, max_tokens=math.nan), "max_tokens must be >= 1"),
        "load(padding='x')": (lambda: bertdeploy.load(bundle, padding="x"), "padding must be one of"),
        "load(variant=5)": (lambda: bertdeploy.load(bundle, variant=5), "variant must be a variant name"),
        "load(variant='bogus')": (lambda: bertdeploy.load(bundle, variant="bogus"), "is not in the bundle"),
        "load(device=5)": (lambda: bertdeploy.load(bundle, device=5), "unknown device 5"),
        "load(a file)": (lambda: bertdeploy.load(good), "not a bertdeploy bundle"),
        "load_with(options={})": (lambda: load_with(bundle, {}), "options must be a LoadOptions"),
        "LoadOptions(batch_size=0)": (lambda: LoadOptions(batch_size=0), "batch_size must be >= 1"),
        "predict(None)": (lambda: clf.predict(None), "texts must be a string or a sequence of strings"),
        "predict(5)": (lambda: clf.predict(5), "texts must be a string or a sequence"),
        "predict(b'bytes')": (lambda: clf.predict(b"abc"), "texts must be a string or a sequence"),
        "predict([1])": (lambda: clf.predict([1]), "text #0 is int, not str"),
        "predict(['a', None])": (lambda: clf.predict(["a", None]), "text #1 is NoneType, not str"),
        "predict([''])": (lambda: clf.predict([""]), "text #0 is empty or blank"),
        "predict(['a', '  '])": (lambda: clf.predict(["a", " \t"]), "text #1 is empty or blank"),
        "predict(np.array(['a', '']))": (lambda: clf.predict(np.array(["a", ""])), "text #1 is empty"),
        "predict(top_k=0)": (lambda: clf.predict(["a"], top_k=0), "top_k must be an integer >= 1"),
        "predict(top_k=True)": (lambda: clf.predict(["a"], top_k=True), "top_k must be an integer >= 1"),
        "predict(top_k=1.5)": (lambda: clf.predict(["a"], top_k=1.5), "top_k must be an integer >= 1"),
        "predict_proba(None)": (lambda: clf.predict_proba(None), "texts must be a string or a sequence"),
        "logits([1.0])": (lambda: clf.logits([1.0]), "text #0 is float, not str"),
        "predict_iter(None)": (lambda: list(clf.predict_iter(None)), "texts must be an iterable of strings"),
        "predict_iter(chunk_size=0)": (lambda: list(clf.predict_iter(["a"], chunk_size=0)), "chunk_size must be"),
        "predict_iter([1])": (lambda: list(clf.predict_iter(iter([1]))), "text #0 is int"),
        "predict(lone surrogate)": (lambda: clf.predict(["ok", "a\ud800"]), "text #1 holds a lone surrogate U+D800"),
        "predict_proba(lone surrogate)": (lambda: clf.predict_proba("\udfff"), "text #0 holds a lone surrogate"),
        "predict_iter(lone surrogate)": (lambda: list(clf.predict_iter(["\ud83d"])), "holds a lone surrogate"),
        "predict(dict)": (lambda: clf.predict({"good": 1}), "texts is a dict (a mapping): its keys or its values?"),
        "predict_iter(dict)": (lambda: list(clf.predict_iter({"good": 1})), "(a mapping)"),
        "predict(DataFrame)": (lambda: clf.predict(pd.DataFrame({"x": ["a"]})), "DataFrame without a 'text' column"),
        "predict_file(None, ...)": (lambda: predict_file(None, str(good), out), "bundle must be a path"),
        "predict_file(input=5)": (lambda: predict_file(bundle, 5, out), "input must be a path"),
        "predict_file(chunk_size=True)": (lambda: predict_file(bundle, str(good), out, chunk_size=True), "chunk_size"),
        "predict_file(workers=0)": (lambda: predict_file(bundle, str(good), out, workers=0), "workers must be >= 1"),
        "predict_file(text_column=5)": (lambda: predict_file(bundle, str(good), out, text_column=5), "a column name"),
        "predict_file(engine='spark')": (lambda: predict_file(bundle, str(good), out, engine="spark"), "engine must"),
        "predict_file(colour='red')": (lambda: predict_file(bundle, str(good), out, colour="red"), "unknown predict"),
        "predict_file(output in bundle)": (lambda: predict_file(bundle, str(good), f"{bundle}/x.jsonl"), "lies inside"),
        "TrainConfig(epochs=nan)": (lambda: TrainConfig(epochs=math.nan), "epochs must be a finite number"),
        "TrainConfig(seed=-1)": (lambda: TrainConfig(seed=-1), "seed must be in"),
        "TrainConfig(val_ratio=0)": (lambda: TrainConfig(val_ratio=0.0), "val_ratio must be in (0, 1)"),
        "TrainConfig(early_stopping=-1)": (lambda: TrainConfig(early_stopping=-1), "early_stopping must be >= 1"),
        "TrainConfig(unseen_labels='x')": (lambda: TrainConfig(unseen_labels="x"), "unseen_labels must be one of"),
        "ExportConfig(opset=5)": (lambda: ExportConfig(run_dir="r", output="o", opset=5), "opset must be in"),
        "BenchConfig(eval_limit=-1)": (lambda: BenchConfig(output="o", eval_limit=-1), "eval_limit must be >= 1"),
        "BenchConfig(batch_sizes=['a'])": (lambda: BenchConfig(output="o", batch_sizes=["a"]), "batch sizes must be"),
        "BenchConfig(min_seconds=nan)": (lambda: BenchConfig(output="o", min_seconds=math.nan), "finite number"),
    }


def test_api_bad_input_is_a_user_error(tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    cases = _api_cases(str(bundle))
    failures = []
    for name, (call, message) in cases.items():
        try:
            call()
        except UserError as e:
            if message not in str(e):
                failures.append(f"{name}: UserError without {message!r}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - exactly what this test catches
            failures.append(f"{name}: {type(e).__name__}: {e}")
            continue
        failures.append(f"{name}: accepted")
    assert not failures, "\n".join(failures)
    assert len(cases) >= 45
    assert not (bundle / "x.jsonl").exists() and not (tmp_path / "out.jsonl").exists()


def test_str_subclasses_are_text(tiny_bundle):
    """np.str_ (what a numpy array of strings yields) and other str subclasses are accepted as text."""

    class Text(str):
        pass

    clf = bertdeploy.load(tiny_bundle, variant="fp32", threads=1)
    plain = clf.predict(["good day", "bad day"])
    assert clf.predict(np.array(["good day", "bad day"])) == plain
    assert list(clf.predict_iter(np.array(["good day", "bad day"]), chunk_size=1)) == plain
    assert clf.predict([Text("good day"), "bad day"]) == plain
    assert clf.predict(("good day", "bad day")) == plain and clf.predict("good day") == plain[:1]
    assert clf.predict([]) == [] and clf.predict(["good day"], top_k=np.int64(2))[0][0] == plain[0]


def test_manifest_escapes_are_refused(tiny_bundle, tmp_path):
    """Every path the manifest names must resolve, symlinks followed, inside the bundle folder: the sha256 lives in
    the same manifest, so it proves integrity, not origin."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(Path(tiny_bundle) / "onnx" / "model.onnx", outside / "model.onnx")
    shutil.copy(Path(tiny_bundle) / "tokenizer.json", outside / "tokenizer.json")

    def variant(bundle: Path, name: str) -> dict:
        m = json.loads((bundle / "bertdeploy.json").read_text(encoding="utf-8"))
        return next(v for v in m["variants"] if v["name"] == name), m

    cases = {
        "absolute file": ("file", str(outside / "model.onnx"), "is an absolute path"),
        "../ file": ("file", "../outside/model.onnx", "outside the bundle"),
        "absolute tokenizer": ("tokenizer", str(outside / "tokenizer.json"), "is an absolute path"),
        "../ tokenizer": ("tokenizer", "../outside/tokenizer.json", "outside the bundle"),
        "symlinked file": ("link-file", "onnx/model.onnx", "outside the bundle"),
        "symlinked folder": ("link-dir", "onnx/model.onnx", "outside the bundle"),
        "symlinked tokenizer": ("link-tokenizer", "tokenizer.json", "outside the bundle"),
    }
    for name, (how, value, message) in cases.items():
        b = tmp_path / name.replace(" ", "_").replace("/", "")
        shutil.copytree(tiny_bundle, b, symlinks=True)
        entry, m = variant(b, "fp32")
        if how == "file":
            entry["file"] = value
        elif how == "tokenizer":
            m["tokenizer"]["file"] = value
        elif how == "link-file":
            (b / "onnx" / "model.onnx").unlink()
            (b / "onnx" / "model.onnx").symlink_to(outside / "model.onnx")
        elif how == "link-dir":
            shutil.rmtree(b / "onnx")
            (b / "onnx").symlink_to(outside)
        else:
            (b / "tokenizer.json").unlink()
            (b / "tokenizer.json").symlink_to(outside / "tokenizer.json")
        (b / "bertdeploy.json").write_text(json.dumps(m), encoding="utf-8")
        with pytest.raises(UserError, match=message):
            bertdeploy.load(b, variant="fp32")
    inside = tmp_path / "inside"  # a symlink that stays inside the bundle is fine
    shutil.copytree(tiny_bundle, inside)
    (inside / "onnx" / "model.onnx").rename(inside / "real.onnx")
    (inside / "onnx" / "model.onnx").symlink_to(inside / "real.onnx")
    assert bertdeploy.load(inside, variant="fp32").predict(["good"])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": "x"}, "format_version must be an integer"),
        ({"format_version": 99}, "upgrade bertdeploy"),
        ({"max_length": -1}, "max_length must be an integer in [1,"),
        ({"max_length": 1.5}, "max_length must be an integer"),
        ({"labels": "abc"}, "labels must be a non-empty list of strings"),
        ({"labels": [1, 2, 3]}, "labels must be a non-empty list of strings"),
        ({"labels": ["a", "a", "b"]}, "lists a label twice"),
        ({"variants": "x"}, "variants must be a list"),
        ({"variants": [1]}, "a variant entry must be an object"),
        ({"tokenizer": {"file": 5}}, "tokenizer file must be a relative path"),
        ({"tokenizer": "tokenizer.json"}, "tokenizer must be an object"),
        ({"model_inputs": 5}, "model_inputs must be a non-empty list of strings"),
        ({"rejected": 5}, "rejected must be a list of objects"),
        ({"files": 5}, "files must map file names to sha256 hex digests"),
        ({"files": {"config.json": "abc"}}, "files must map file names to sha256 hex digests"),
        ({"files": {"../outside.json": "0" * 64}}, "file '../outside.json' resolves to"),
        ({"v:file": 5}, "file must be str"),
        ({"v:sha256": 5}, "sha256 must be str"),
        ({"v:bytes": "1"}, "bytes must be int"),
        ({"v:name": ""}, "name must be str"),
        ({"v:opset": "17"}, "opset must be int or NoneType"),
        ({"v:notes": "x"}, "notes must be list"),
    ],
)
def test_manifest_field_types(tiny_bundle, tmp_path, change, message):
    from bertdeploy.bundle import read_manifest

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    m = json.loads((b / "bertdeploy.json").read_text(encoding="utf-8"))
    for key, value in change.items():
        if key.startswith("v:"):
            m["variants"][0][key[2:]] = value
        else:
            m[key] = value
    (b / "bertdeploy.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        read_manifest(b)
