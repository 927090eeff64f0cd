"""Issue 25 in the Python API and the CLI: thread and stream counts bounded by the CPUs, inputs whose iteration
would not give the texts (mappings, data frames) refused or read by their text column."""

from __future__ import annotations

import warnings

import pytest
from click.testing import CliRunner

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
