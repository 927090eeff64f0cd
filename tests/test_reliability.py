"""Issue 25 in the Python API and the CLI: thread and stream counts bounded by the CPUs, inputs whose iteration
would not give the texts (mappings, data frames) refused or read by their text column."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import warnings

import pytest
from click.testing import CliRunner
from helpers import REPO

import bertdeploy
from bertdeploy.cli import cli
from bertdeploy.runtime import LoadOptions
from bertdeploy.runtime import options as options_module


@pytest.fixture
def one_cpu(monkeypatch):
    """This process may use one CPU (what the bound is measured against)."""
    monkeypatch.setattr(options_module, "usable_cpus", lambda: 1)


def test_threads_and_streams_beyond_the_cpus_are_clamped_with_a_warning(one_cpu, tiny_bundle):
    with pytest.warns(RuntimeWarning, match="threads=3 is more than the 1 CPUs this process may use; using 1"):
        assert LoadOptions(threads=3).threads == 1
    with pytest.warns(RuntimeWarning, match="streams=1000000 is more than the 1 CPUs") as seen:
        clf = bertdeploy.load(tiny_bundle, variant="fp32", threads=1, streams=10**6)
    assert clf.streams == 1 and clf.predict(["good"])
    assert seen[0].filename == __file__, "the warning points at the caller, not at bertdeploy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert LoadOptions(threads=1, streams=1).threads == 1  # within the bound: silent


def test_cli_clamps_threads_with_one_warning_line(one_cpu, tiny_bundle, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("good day\n", encoding="utf-8")
    r = CliRunner().invoke(cli, ["predict", str(tiny_bundle), "-i", str(src), "-o", "-", "-q", "--threads", "3"])
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines() == ["warning: threads=3 is more than the 1 CPUs this process may use; using 1"]
    assert '"label"' in r.stdout


def test_a_frame_is_read_by_its_text_column(tiny_bundle):
    pd = pytest.importorskip("pandas")
    clf = bertdeploy.load(tiny_bundle, variant="fp32", threads=1)
    texts = ["good day", "bad day", "the movie"]
    frame = pd.DataFrame({"id": [7, 8, 9], "text": texts}, index=[5, 3, 1])
    assert clf.predict(frame) == clf.predict(texts)
    assert list(clf.predict_iter(frame, chunk_size=2)) == clf.predict(texts)


def test_the_tagger_reads_its_inputs_by_the_same_rule():
    """The token-classification head's input check (no exporter writes its bundles yet: checked directly)."""
    pd = pytest.importorskip("pandas")
    from bertdeploy.errors import UserError
    from bertdeploy.runtime.tagger import as_inputs

    with pytest.raises(UserError, match="got dict"):
        as_inputs({"my movie": 1})
    with pytest.raises(UserError, match="DataFrame without a 'text' column"):
        as_inputs(pd.DataFrame({"sentence": ["my movie"]}))
    with pytest.raises(UserError, match="text #1 holds a lone surrogate U\\+D800"):
        as_inputs(["fine", "my \ud800 movie"])
    assert as_inputs(pd.DataFrame({"text": ["my movie today"]})) == ["my movie today"]
    assert as_inputs([["my", "movie"]]) == ["my movie"]


def _copy(bundle, dest):
    import shutil

    shutil.copytree(bundle, dest)
    return dest


def _seven_word_tokenizer(path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "day"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))


def test_every_file_besides_the_variants_has_its_sha256_in_the_manifest(tiny_bundle):
    from pathlib import Path

    from bertdeploy.bundle import MANIFEST_NAME, read_manifest, sha256_file

    manifest = read_manifest(tiny_bundle)
    root = Path(tiny_bundle)
    others = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    others -= {MANIFEST_NAME, *(v.file for v in manifest.variants)}
    assert {"tokenizer.json", "config.json", "tokenizer_config.json"} <= others == set(manifest.files)
    assert all(sha256_file(root / rel) == digest for rel, digest in manifest.files.items())


@pytest.mark.parametrize("name", ["tokenizer.json", "config.json", "vocab.txt"])
def test_a_swapped_tokenizer_or_config_is_refused_on_load_and_by_package(tiny_bundle, tmp_path, name):
    from bertdeploy.errors import UserError
    from bertdeploy.package import triton_repository
    from bertdeploy.package.wheel import build_wheel

    b = _copy(tiny_bundle, tmp_path / "b")
    if name == "tokenizer.json":
        _seven_word_tokenizer(b / name)  # loads fine, and would label every text alike
    else:
        (b / name).write_text((b / name).read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"sha256 mismatch for {name} "):
        bertdeploy.load(b, variant="fp32")
    with pytest.raises(UserError, match=f"sha256 mismatch for {name} "):
        triton_repository(b, tmp_path / "repo", variant="fp32", kind="cpu")
    with pytest.raises(UserError, match=f"sha256 mismatch for {name} "):
        build_wheel(b, "x", tmp_path / "dist")
    (b / name).unlink()
    with pytest.raises(UserError, match=f"file missing: {name}|no tokenizer file"):
        bertdeploy.load(b, variant="fp32")
    assert not (tmp_path / "repo").exists() and list((tmp_path / "dist").iterdir()) == []


def test_an_older_bundle_without_file_checksums_loads_with_one_warning(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path / "old")
    manifest = json.loads((b / "bertdeploy.json").read_text(encoding="utf-8"))
    del manifest["files"]
    (b / "bertdeploy.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.warns(UserWarning, match="has no sha256 for its tokenizer and config") as seen:
        assert bertdeploy.load(b, variant="fp32").predict(["good"])
    assert len(seen) == 1 and seen[0].filename == __file__
    src = tmp_path / "in.txt"
    src.write_text("good day\n", encoding="utf-8")
    r = CliRunner().invoke(cli, ["predict", str(b), "-i", str(src), "-o", "-", "-q", "--variant", "fp32"])
    assert r.exit_code == 0 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("warning: bundle ") and "re-export it to have them checked" in r.stderr


def _cli_shell(command: str, tmp_path) -> subprocess.CompletedProcess:
    """``bertdeploy`` run by a shell (for redirections such as ``<&-`` and ``<(...)``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bd = f"{sys.executable} -m bertdeploy.cli.__main__"
    return subprocess.run(["bash", "-c", command.replace("bertdeploy", bd)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)  # fmt: skip


def test_closed_stdin_and_stdout_are_one_error_line(tiny_bundle, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("good day\n", encoding="utf-8")
    for command, message in [
        (f"bertdeploy predict {tiny_bundle} -i - -o out.jsonl <&-", "error: stdin is closed"),
        (f"bertdeploy predict {tiny_bundle} -i {src} -o - >&-", "error: stdout is closed"),
    ]:
        r = _cli_shell(command, tmp_path)
        assert r.returncode == 2 and r.stderr.startswith(message) and len(r.stderr.splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_pipes_and_devices_are_read_and_written_in_place(tiny_bundle, tmp_path):
    """A FIFO output is written into (not replaced by a regular file); a FIFO, ``<(...)`` or ``/dev/null`` input is
    read, not "not found"; an output without a known suffix that is a pipe or a device gets jsonl."""
    clf = bertdeploy.load(tiny_bundle)
    fifo = tmp_path / "preds.jsonl"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(fifo.read_text(encoding="utf-8").splitlines()), daemon=True)
    reader.start()
    r = _cli_shell(f"bertdeploy predict {tiny_bundle} -i <(printf 'good day\\nbad day\\n') -o {fifo} -q", tmp_path)
    reader.join(60)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode), "the FIFO is still a FIFO"
    assert [json.loads(line)["label"] for line in got] == [p.label for p in clf.predict(["good day", "bad day"])]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl"], "no temporary sibling left"

    r = _cli_shell(f"bertdeploy predict {tiny_bundle} -i <(printf 'good day\\n') -o /dev/null -q", tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = _cli_shell(f"bertdeploy predict {tiny_bundle} -i /dev/null -o - -q", tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines() == ["error: input is empty (no records): /dev/null"], r.stderr
    source = tmp_path / "in.fifo"
    os.mkfifo(source)
    writer = threading.Thread(target=lambda: source.write_text("text\ngood day\n", encoding="utf-8"), daemon=True)
    writer.start()
    r = _cli_shell(f"bertdeploy predict {tiny_bundle} -i {source} --input-format csv -o - -q", tmp_path)
    writer.join(60)
    assert r.returncode == 0 and json.loads(r.stdout)["label"] == clf.predict(["good day"])[0].label, r.stderr


def _restamped(bundle, dest, edit):
    """A copy of ``bundle`` changed by ``edit(folder)``, its manifest's sha256 recomputed (as if exported so)."""
    from bertdeploy.bundle import file_digests, read_manifest

    b = _copy(bundle, dest)
    edit(b)
    manifest = json.loads((b / "bertdeploy.json").read_text(encoding="utf-8"))
    manifest["files"] = file_digests(b, [v.file for v in read_manifest(b).variants])
    (b / "bertdeploy.json").write_text(json.dumps(manifest), encoding="utf-8")
    return b


def test_a_model_smaller_than_the_tokenizer_or_max_length_fails_at_load(tiny_bundle, tmp_path):
    from bertdeploy.errors import UserError

    def more_words(b) -> None:
        tok = json.loads((b / "tokenizer.json").read_text(encoding="utf-8"))
        first = len(tok["model"]["vocab"])
        tok["model"]["vocab"].update({f"extra{i}": first + i for i in range(400)})
        (b / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")

    def longer(b) -> None:
        manifest = json.loads((b / "bertdeploy.json").read_text(encoding="utf-8"))
        manifest["max_length"] = 200  # the tiny model has 128 positions
        (b / "bertdeploy.json").write_text(json.dumps(manifest), encoding="utf-8")

    vocab = _restamped(tiny_bundle, tmp_path / "vocab", more_words)
    length = _restamped(tiny_bundle, tmp_path / "length", longer)
    for variant in ("fp32", "qint8"):
        with pytest.raises(UserError, match=r"vocabulary \(\d+ ids\) is more than the model takes \(indices element"):
            bertdeploy.load(vocab, variant=variant)
        with pytest.raises(UserError, match=r"max_length 200 is more than the model takes \(.*128 by 200\)"):
            bertdeploy.load(length, variant=variant)
