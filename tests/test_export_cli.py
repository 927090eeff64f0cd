"""`bertdeploy export` through the CLI: bad input is one line + exit 2 with nothing written; flag → variant mapping;
exit 1 when an explicitly requested variant is rejected."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TINY_LABELS, write_csv

from bertdeploy.cli import cli

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _run(args: list[str]):
    return CliRunner().invoke(cli, ["export", *map(str, args)])


def _assert_user_error(result, match: str, out: Path) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stderr.startswith("error: ") and match in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()


def _copy(src: Path, dest: Path, skip: tuple[str, ...] = ()) -> Path:
    shutil.copytree(src, dest, ignore=lambda _d, names: [n for n in names if n in skip])
    return dest


def test_missing_and_non_folder_run_dir(tmp_path):
    out = tmp_path / "out"
    _assert_user_error(_run([tmp_path / "nope", "-o", out]), "run folder not found", out)
    f = tmp_path / "file.txt"
    f.write_text("x", encoding="utf-8")
    _assert_user_error(_run([f, "-o", out]), "not a folder", out)
    _assert_user_error(_run([tmp_path, "-o", out]), "no config.json", out)


def test_not_a_model_of_a_supported_task(tiny_model_dir, tmp_path):
    from transformers import BertConfig, BertModel

    d = tmp_path / "encoder"
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(cfg).save_pretrained(d)
    for f in TOKENIZER_FILES:
        shutil.copy(tiny_model_dir / f, d / f)
    out = tmp_path / "out"
    _assert_user_error(
        _run([d, "-o", out]),
        "is not a model of a supported task (architectures: BertModel;",
        out,
    )


def test_unsupported_architecture(tiny_model_dir, tmp_path):
    from transformers import FNetConfig, FNetForSequenceClassification

    d = tmp_path / "fnet"
    FNetForSequenceClassification(FNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1)).save_pretrained(d)
    for f in TOKENIZER_FILES:
        shutil.copy(tiny_model_dir / f, d / f)
    out = tmp_path / "out"
    _assert_user_error(_run([d, "-o", out]), "'fnet' is not supported", out)


def test_missing_tokenizer(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m", skip=TOKENIZER_FILES)
    out = tmp_path / "out"
    _assert_user_error(_run([d, "-o", out]), "no tokenizer", out)


def test_corrupt_weights(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    (d / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    out = tmp_path / "out"
    _assert_user_error(_run([d, "-o", out]), "cannot load the weights", out)


def test_pickle_weights_are_refused(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m", skip=("model.safetensors",))
    (d / "pytorch_model.bin").write_bytes(b"not unpickled")
    out = tmp_path / "out"
    _assert_user_error(_run([d, "-o", out]), "safetensors weights only", out)


def test_output_is_a_file(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    out.write_text("x", encoding="utf-8")
    result = _run([tiny_model_dir, "-o", out])
    assert result.exit_code == 2 and "is a file" in result.stderr
    assert out.read_text(encoding="utf-8") == "x"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder(tiny_model_dir, tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        _assert_user_error(_run([tiny_model_dir, "-o", parent / "out"]), "permission denied", parent / "out")
    finally:
        parent.chmod(0o755)


def test_eval_labels_do_not_match_the_model(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    write_csv(data / "test.csv", [("good", "positive"), ("meh", "banana")])
    (data / "labels.txt").write_text("\n".join(TINY_LABELS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    _assert_user_error(_run([tiny_model_dir, "-o", out, "--data", data]), "banana", out)


@pytest.mark.parametrize(
    ("args", "match"),
    [(["--opset", "5"], "opset"), (["--calibration-size", "0"], "calibration"), (["--max-length", "4"], "max_length")],
)
def test_bad_options(tiny_model_dir, tmp_path, args, match):
    out = tmp_path / "out"
    _assert_user_error(_run([tiny_model_dir, "-o", out, *args]), match, out)


class _FakeResult:
    def __init__(self, config):
        self.config = config


def test_flags_map_to_variants_and_required(monkeypatch, tmp_path):
    import bertdeploy.exporter as exporter
    from bertdeploy import variants

    seen = []

    def fake_export(config, progress=None):
        seen.append(config)
        raise exporter.UserError("stop here")

    monkeypatch.setattr(exporter, "export", fake_export)
    _run(["r", "-o", tmp_path / "o", "--optimize", "O2", "--optimize", "O3", "--int8"])
    _run(["r", "-o", tmp_path / "o", "--all", "--fp16"])
    assert seen[0].variants == ["fp32", "O2", "O3", "qint8"] and seen[0].required == ["fp32", "O2", "O3", "qint8"]
    assert seen[1].variants == list(variants.NAMES) and seen[1].required == ["fp32", "fp16"]


def test_explicit_rejection_exits_1_and_keeps_the_rest(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    force_o2_to_fail = "min_agreement={O2: 1.01}"  # a key=value override of ExportConfig
    result = _run([tiny_model_dir, "-o", out, "--data", tiny_data_dir, "--optimize", "O2", "--int8", force_o2_to_fail])
    assert result.exit_code == 1, result.output
    assert "requested variant(s) rejected: O2" in result.stderr
    assert "REJECTED" in result.stdout and "accepted" in result.stdout and "pytorch" in result.stdout
    assert (out / "onnx/model_quantized.onnx").is_file() and not (out / "onnx/model_O2.onnx").exists()


def test_sigterm_becomes_an_interrupt_in_every_command():
    import signal

    from bertdeploy.cli.signals import Terminated, sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert issubclass(Terminated, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) == before
