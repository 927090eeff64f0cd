"""Execution variants (issue 24): a variant is a file x an execution provider x a precision hint.

The table entries, ``variant="auto"``'s choice with the OpenVINO EP plugin present / absent and the CPU flags
mocked, the export's skip-with-a-note where the plugin is missing, and the loader going on to the next variant when
a provider does not attach run everywhere. ``TestOpenVINO`` runs the real plugin on a tiny model: it skips where
``onnxruntime-ep-openvino`` is not installed, and the CI job that installs it (.ci/openvino_peers.sh) fails if it
skips there — except on a CPU the plugin offers no device for (it serves Intel hardware only), where
``test_the_real_plugin_on_a_cpu_it_does_not_serve`` runs instead and TestOpenVINO skips with :data:`CPU_KIND`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bertdeploy import bundle, variants
from bertdeploy.errors import UserError
from bertdeploy.machine import Cpu
from bertdeploy.runtime import choice, plugins

AMX = frozenset({"avx512f", "avx512_vnni", "amx_bf16", "amx_int8"})
NO_AMX = frozenset({"avx2", "fma"})  # the AMD EPYC kind of CI machine
#: the start of the skip reason of the real-plugin tests that need the other kind of CPU (.ci/openvino_peers.sh
#: accepts these skips and no other)
CPU_KIND = "not on this kind of CPU"


def test_execution_variants_in_the_table():
    spec = variants.get("fp32_ov_bf16")
    assert (spec.provider, spec.hint, spec.runs, spec.source) == ("openvino", "bf16", "fp32", "fp32")
    assert spec.file == variants.get("fp32").file  # no file of its own
    assert spec.cpu_flags == ("amx_bf16",)
    assert not variants.float_reference("fp32_ov_bf16") and variants.float_reference("fp32")
    for name in variants.execution_variants():
        ex = variants.get(name)
        assert ex.build == "execute" and ex.file == variants.get(ex.runs).file and ex.provider != "cpu"
    assert variants.execution_variants("openvino") == ["fp32_ov_bf16", "qint8_static_ov"]
    # asking for an execution variant builds its file variant first
    assert variants.canonical(["qint8_static_ov"]) == ["fp32", "qint8_static", "qint8_static_ov"]
    with pytest.raises(ValueError, match="provider"):
        variants.VariantSpec("x", "onnx/x.onnx", "fp32", "execute", provider="tpu")


@pytest.mark.parametrize(
    ("providers", "flags", "first"),
    [
        (("cpu",), AMX, "qint8_checked"),  # plugin absent
        (("cpu", "openvino"), NO_AMX, "qint8_checked"),  # plugin present, no AMX-BF16: nothing changes
        (("cpu", "openvino"), AMX, "fp32_ov_bf16"),
    ],
)
def test_auto_candidates(providers, flags, first):
    order = variants.auto_candidates("cpu", providers, flags)
    assert order[0] == first
    assert order[-1] == "fp32"
    assert "fp32_ov_bf16" not in variants.auto_candidates("cuda", providers, flags)


def _manifest(names: list[str]) -> bundle.Manifest:
    entries = []
    for name in names:
        spec = variants.get(name)
        entries.append(bundle.Variant(name, spec.file, "0" * 64, 1, spec.precision, provider=spec.provider,
                                      hint=spec.hint))  # fmt: skip
    return bundle.Manifest(labels=["a", "b"], max_length=16, variants=entries)


def _machine(monkeypatch, providers: tuple[str, ...], flags: frozenset[str]) -> None:
    monkeypatch.setattr(choice, "installed_providers", lambda: providers)
    monkeypatch.setattr(choice, "cpu", lambda: Cpu("test cpu", flags))


@pytest.mark.parametrize(
    ("providers", "flags", "expected"),
    [
        (("cpu",), AMX, ["qint8", "fp32"]),
        (("cpu", "openvino"), NO_AMX, ["qint8", "fp32"]),
        (("cpu", "openvino"), AMX, ["fp32_ov_bf16", "qint8", "fp32"]),
    ],
)
def test_load_auto_choice(monkeypatch, providers, flags, expected):
    _machine(monkeypatch, providers, flags)
    manifest = _manifest(["fp32", "qint8", "fp32_ov_bf16"])
    tries, go_on = choice.candidates(manifest, "auto", "auto", gpu=False)
    assert [v.name for v in tries] == expected and go_on
    # provider="cpu" never leaves ORT's CPU EP; the GPU path never takes a plugin variant
    assert [v.name for v in choice.candidates(manifest, "auto", "cpu", gpu=False)[0]] == ["qint8"]
    assert choice.candidates(manifest, "auto", "auto", gpu=True)[0][0].provider == "cpu"
    # a bundle exported without the plugin: auto is what it was
    assert choice.candidates(_manifest(["fp32", "qint8"]), "auto", "auto", gpu=False)[0][0].name == "qint8"


def test_explicit_provider_choice(monkeypatch):
    _machine(monkeypatch, ("cpu",), NO_AMX)
    manifest = _manifest(["fp32", "qint8", "fp32_ov_bf16"])
    assert choice.candidates(manifest, "fp32", "openvino", False)[0][0].name == "fp32_ov_bf16"
    assert choice.candidates(manifest, "auto", "openvino", False)[0][0].name == "fp32_ov_bf16"
    assert choice.candidates(manifest, "fp32_ov_bf16", "auto", False) == ([manifest.variant("fp32_ov_bf16")], False)
    with pytest.raises(UserError, match="no variant of the bundle runs 'qint8' on the openvino provider"):
        choice.candidates(manifest, "qint8", "openvino", False)
    with pytest.raises(UserError, match="load variant 'fp32'"):
        choice.candidates(manifest, "fp32_ov_bf16", "cpu", False)
    with pytest.raises(UserError, match="no variant of the bundle was gated on the openvino provider"):
        choice.candidates(_manifest(["fp32"]), "auto", "openvino", False)
    with pytest.raises(UserError, match="device='cpu'"):
        choice.candidates(manifest, "auto", "openvino", True)


def test_load_options_validate_provider():
    from bertdeploy.runtime import LoadOptions

    assert LoadOptions(provider="openvino").provider == "openvino"
    with pytest.raises(UserError, match="unknown provider 'tpu'"):
        LoadOptions(provider="tpu")


def test_pad_multiple_rounds_batch_lengths():
    import numpy as np

    from bertdeploy.runtime.batching import BatchPolicy, plan

    lengths = np.array([3, 9, 10, 17, 28, 30])
    groups = plan(lengths, BatchPolicy(batch_size=2, max_tokens=10_000, pad_multiple=8), max_length=30)
    assert [padded for _, padded in groups] == [16, 24, 30]  # multiples of 8, capped at max_length
    assert sorted(np.concatenate([idx for idx, _ in groups]).tolist()) == list(range(6))
    plain = plan(lengths, BatchPolicy(batch_size=2, max_tokens=10_000), max_length=30)
    assert [padded for _, padded in plain] == [9, 17, 30]
    # the token budget counts the rounded lengths
    tight = plan(np.array([9, 9]), BatchPolicy(max_tokens=20, pad_multiple=8), max_length=64)
    assert [(len(idx), padded) for idx, padded in tight] == [(1, 16), (1, 16)]
    with pytest.raises(UserError, match="pad_multiple"):
        BatchPolicy(pad_multiple=0)


def _with_ov_entry(src: Path, dest: Path) -> Path:
    """A copy of a bundle whose manifest also lists fp32_ov_bf16 (as an export with the plugin would)."""
    shutil.copytree(src, dest)
    path = dest / bundle.MANIFEST_NAME
    raw = json.loads(path.read_text())
    fp32 = next(v for v in raw["variants"] if v["name"] == "fp32")
    raw["variants"].append({**fp32, "name": "fp32_ov_bf16", "provider": "openvino", "hint": "bf16", "runs": "fp32"})
    path.write_text(json.dumps(raw))
    return dest


def test_auto_goes_on_when_the_provider_does_not_attach(monkeypatch, tiny_bundle, tmp_path):
    from bertdeploy.runtime import load, session

    _machine(monkeypatch, ("cpu", "openvino"), AMX)
    real = session.create_session

    def no_openvino(*args, provider="cpu", **kw):
        if provider == "openvino":
            raise UserError("the OpenVINO execution provider did not attach")
        return real(*args, provider=provider, **kw)

    monkeypatch.setattr(session, "create_session", no_openvino)
    root = _with_ov_entry(tiny_bundle, tmp_path / "b")
    with pytest.warns(RuntimeWarning, match="fp32_ov_bf16 did not start.*trying qint8"):
        predictor = load(root, device="cpu")
    assert predictor.variant.name == "qint8" and predictor.policy.pad_multiple == 1
    with pytest.raises(UserError, match="did not attach"):  # asked for by name: an error, not a fallback
        load(root, variant="fp32_ov_bf16", device="cpu")


def test_export_skips_a_provider_that_is_not_installed(monkeypatch, tmp_path, tiny_model_dir, tiny_data_dir):
    from bertdeploy.exporter import ExportConfig, export

    monkeypatch.setattr(plugins, "openvino_installed", lambda: False)
    config = ExportConfig(run_dir=str(tiny_model_dir), output=str(tmp_path / "b"), data=str(tiny_data_dir),
                          variants=["fp32_ov_bf16"], max_accuracy_drop=100.0)  # fmt: skip
    result = export(config)
    row = next(r for r in result.rows if r["name"] == "fp32_ov_bf16")
    assert row["skipped"] and not row["accepted"] and "not installed" in row["reason"]
    assert result.failed_required == []  # skipped with a note, not an error
    assert [v["name"] for v in result.manifest["variants"]] == ["fp32"]
    assert any("fp32_ov_bf16 skipped" in n for n in result.manifest["eval"]["notes"])
    assert result.manifest["variants"][0]["provider"] == "cpu"


class _FakeOrt:
    """What ``plugins`` asks of onnxruntime's plugin registry, on a CPU the plugin offers no device for."""

    OrtHardwareDeviceType = plugins.ort.OrtHardwareDeviceType

    def __init__(self, fail_with: str = "") -> None:
        self.calls: list[str] = []
        self.fail_with = fail_with

    def get_ep_devices(self) -> list:
        return []  # registered or not, no OpenVINO device: the AMD EPYC case

    def register_execution_provider_library(self, name: str, path: str) -> None:
        self.calls.append(name)
        if self.fail_with:
            raise RuntimeError(self.fail_with)


def _fake_plugin(monkeypatch, fake: _FakeOrt) -> None:
    import sys
    import types

    monkeypatch.setattr(plugins, "ort", fake)
    monkeypatch.setattr(plugins, "_REGISTERED", set())
    monkeypatch.setattr(plugins, "openvino_installed", lambda: True)
    module = types.SimpleNamespace(get_library_path=lambda: "/nonexistent/libopenvino_ep.so")
    monkeypatch.setitem(sys.modules, plugins.OPENVINO_PACKAGE, module)


def test_the_plugin_is_registered_once_even_where_it_offers_no_device(monkeypatch):
    fake = _FakeOrt()
    _fake_plugin(monkeypatch, fake)
    assert plugins.openvino_devices() == [] and plugins.openvino_devices() == []
    assert fake.calls == [plugins.REGISTRATION]  # a second registration would fail: "already registered"
    why = plugins.unavailable("openvino")
    assert "offers no device for this CPU" in why and "Intel" in why
    assert plugins.unavailable("cpu") is None


def test_a_registration_made_before_counts(monkeypatch):
    fake = _FakeOrt(fail_with="EP library is already registered under bertdeploy-openvino")
    _fake_plugin(monkeypatch, fake)
    plugins.register_openvino()
    plugins.register_openvino()
    assert fake.calls == [plugins.REGISTRATION]
    _fake_plugin(monkeypatch, _FakeOrt(fail_with="cannot load library"))
    with pytest.raises(RuntimeError, match="cannot load library"):
        plugins.register_openvino()


def test_no_device_for_this_cpu_is_a_skip_at_export_and_one_error_at_load(
    monkeypatch, tmp_path, tiny_model_dir, tiny_data_dir, tiny_bundle
):
    from bertdeploy.exporter import ExportConfig, export
    from bertdeploy.runtime import load

    monkeypatch.setattr(plugins, "openvino_installed", lambda: True)
    monkeypatch.setattr(plugins, "openvino_devices", lambda: [])
    config = ExportConfig(run_dir=str(tiny_model_dir), output=str(tmp_path / "b"), data=str(tiny_data_dir),
                          variants=["fp32_ov_bf16", "qint8_static_ov"], max_accuracy_drop=100.0)  # fmt: skip
    result = export(config)
    rows = {r["name"]: r for r in result.rows}
    for name in ("fp32_ov_bf16", "qint8_static_ov"):
        assert rows[name]["skipped"] and not rows[name]["accepted"]
        assert "offers no device for this CPU" in rows[name]["reason"]
    assert rows["qint8_static"]["accepted"] and result.failed_required == []
    root = _with_ov_entry(tiny_bundle, tmp_path / "ov")
    with pytest.raises(UserError, match="offers no device for this CPU"):
        load(root, provider="openvino", device="cpu")


@pytest.mark.openvino
def test_the_real_plugin_on_a_cpu_it_does_not_serve(tmp_path, tiny_model_dir, tiny_data_dir):
    """Where the installed plugin offers no device (an AMD CPU): the export skips its variants with that reason,
    each of them (the plugin registered once), and the bundle loads as before."""
    pytest.importorskip(plugins.OPENVINO_PACKAGE)
    from bertdeploy.exporter import ExportConfig, export
    from bertdeploy.runtime import load

    if plugins.openvino_unavailable() is None:
        pytest.skip(f"{CPU_KIND}: the plugin serves this CPU (TestOpenVINO runs it)")
    config = ExportConfig(run_dir=str(tiny_model_dir), output=str(tmp_path / "b"), data=str(tiny_data_dir),
                          variants=["qint8", "fp32_ov_bf16", "qint8_static_ov"], max_accuracy_drop=100.0)  # fmt: skip
    result = export(config)
    rows = {r["name"]: r for r in result.rows}
    assert all("offers no device for this CPU" in rows[n]["reason"] for n in ("fp32_ov_bf16", "qint8_static_ov"))
    assert load(tmp_path / "b", device="cpu", threads=1).variant.name == "qint8"
    with pytest.raises(UserError, match="no variant of the bundle was gated on the openvino provider"):
        load(tmp_path / "b", provider="openvino", device="cpu")


@pytest.mark.openvino
class TestOpenVINO:
    """The real OpenVINO EP plugin on the tiny model (CI: .ci/openvino_peers.sh installs it; a skip fails there)."""

    @pytest.fixture(scope="class")
    def ov_bundle(self, tmp_path_factory, tiny_model_dir, tiny_data_dir) -> Path:
        pytest.importorskip(plugins.OPENVINO_PACKAGE)
        from bertdeploy.exporter import ExportConfig, export

        if (why := plugins.openvino_unavailable()) is not None:  # test_the_plugin_on_a_cpu_it_does_not_serve runs
            pytest.skip(f"{CPU_KIND}: {why}")
        out = tmp_path_factory.mktemp("ov") / "bundle"
        export(ExportConfig(run_dir=str(tiny_model_dir), output=str(out), data=str(tiny_data_dir),
                            variants=["qint8", "fp32_ov_bf16"], max_accuracy_drop=100.0))  # fmt: skip
        return out

    def test_gated_and_recorded(self, ov_bundle):
        raw = json.loads((ov_bundle / bundle.MANIFEST_NAME).read_text())
        entry = next(v for v in raw["variants"] if v["name"] == "fp32_ov_bf16")
        assert (entry["provider"], entry["hint"], entry["runs"], entry["file"]) == ("openvino", "bf16", "fp32",
                                                                                   "onnx/model.onnx")  # fmt: skip
        assert entry["machine"]["provider"] == plugins.OPENVINO
        assert entry["parity"]["agreement"] >= 0.99 and entry["parity"]["max_abs_diff"] < 0.05

    def test_load_attaches_and_agrees(self, ov_bundle, monkeypatch):
        from bertdeploy.runtime import load

        texts = ["a good day", "a bad day", "nothing much happened today at all"]
        ov = load(ov_bundle, provider="openvino", threads=1)
        assert ov.variant.name == "fp32_ov_bf16" and ov.providers[0] == plugins.OPENVINO
        assert ov.policy.pad_multiple == plugins.PAD_MULTIPLE  # fewer shapes for OpenVINO to prepare
        ref = load(ov_bundle, variant="fp32", provider="cpu", threads=1)
        assert ref.providers == ["CPUExecutionProvider"] and ref.policy.pad_multiple == 1
        got = [p.label for p in ov.predict(texts)]
        assert got == [p.label for p in ref.predict(texts)]
        _machine(monkeypatch, plugins.installed_providers(), AMX)
        assert load(ov_bundle, device="cpu", threads=1).variant.name == "fp32_ov_bf16"
        _machine(monkeypatch, plugins.installed_providers(), NO_AMX)
        assert load(ov_bundle, device="cpu", threads=1).variant.name == "qint8"

    def test_streams_run_inside_one_compiled_model(self, ov_bundle):
        """streams=2 on the OpenVINO EP: OpenVINO's own two streams serve the concurrent calls; same labels."""
        from bertdeploy.runtime import load

        texts = [f"a {'very ' * (i % 9)}good day number {i}" for i in range(200)]
        one = load(ov_bundle, provider="openvino", threads=2)
        two = load(ov_bundle, provider="openvino", threads=2, streams=2)
        assert two.providers[0] == plugins.OPENVINO and two.streams == 2
        assert [p.label for p in two.predict(texts)] == [p.label for p in one.predict(texts)]


def test_openvino_streams_share_the_threads_of_one_compiled_model(monkeypatch, tmp_path):
    """The OpenVINO EP gets all the threads and NUM_STREAMS = streams; ONNX Runtime's own concurrent-run streams
    (threads // streams each) would leave one single-threaded infer request serving every call."""
    from bertdeploy.runtime import session

    assert plugins.openvino_config("bf16", 2) == {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 2}
    assert plugins.openvino_config(None, 4, 2) == {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 4,
                                                   "NUM_STREAMS": 2}  # fmt: skip
    seen = []

    class Stop(Exception):
        pass

    def record(options, hint, threads, streams=1):
        seen.append((hint, threads, streams))
        raise Stop

    monkeypatch.setattr(plugins, "add_openvino", record)
    for streams, threads in ((1, 2), (2, 1), (1, None)):
        with pytest.raises(Stop):
            session.create_session(tmp_path / "m.onnx", "cpu", 0, session.SessionConfig(threads=threads), False,
                                   provider="openvino", hint="bf16", streams=streams)  # fmt: skip
    assert seen == [("bf16", 2, 1), ("bf16", 2, 2), ("bf16", None, 1)]


def test_export_table_says_skipped_not_rejected():
    from rich.console import Console

    from bertdeploy.cli.export import render
    from bertdeploy.exporter.pipeline import ExportResult, _row

    rows = [_row("fp32", accepted=True), _row("fp32_ov_bf16", reason="skipped: not installed", skipped=True)]
    manifest = {"task": "text-classification", "machine": {"isa": "avx2"},
                "eval": {"rows": 1, "split": "test", "data": "d", "parity_rows": 1}}  # fmt: skip
    note = f"fp32_ov_bf16 skipped ({plugins.OPENVINO_EXTRA})"
    result = ExportResult(bundle=Path("b"), rows=rows, baseline={}, manifest=manifest, notes=[note])
    console = Console(record=True, width=200)
    render(result, console)
    text = console.export_text()
    assert "skipped" in text and "REJECTED" not in text and "rejected fp32_ov_bf16" not in text
    assert 'pip install "bertdeploy[openvino-ep]"' in text  # not eaten as rich markup


def test_serve_cli_passes_the_provider(monkeypatch, tiny_bundle):
    from click.testing import CliRunner

    import bertdeploy.serve
    from bertdeploy.cli import cli

    seen = {}
    monkeypatch.setattr(bertdeploy.serve, "serve", lambda bundle, load, options, **kw: seen.update(load=load))
    # through the group, as users call it: invoking the bare command would cache a help option without "-h"
    result = CliRunner().invoke(cli, ["serve", str(tiny_bundle), "--provider", "cpu"])
    assert result.exit_code == 0, result.output
    assert seen["load"].provider == "cpu"
    bad = CliRunner().invoke(cli, ["serve", str(tiny_bundle), "--provider", "tpu"])
    assert bad.exit_code == 2 and "tpu" in bad.output


def test_predict_cli_takes_the_provider(tiny_bundle, tmp_path):
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    src = tmp_path / "in.txt"
    src.write_text("a good day\na bad day\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["predict", str(tiny_bundle), "-i", str(src), "-o", str(out), "-q",
                                      "--provider", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 2
    # a bundle with no variant gated on the OpenVINO EP: one line, exit 2, nothing written
    out2 = tmp_path / "out2.jsonl"
    bad = CliRunner().invoke(cli, ["predict", str(tiny_bundle), "-i", str(src), "-o", str(out2), "-q",
                                   "--provider", "openvino"])  # fmt: skip
    assert bad.exit_code == 2 and "openvino" in bad.output and not out2.exists()


def test_bench_skips_a_variant_whose_provider_is_not_installed(monkeypatch, tiny_bundle, tmp_path):
    from bertdeploy.benchmark.backends import BackendContext, Skip, make_backend

    monkeypatch.setattr(plugins, "openvino_installed", lambda: False)
    root = _with_ov_entry(tiny_bundle, tmp_path / "b")
    ctx = BackendContext(None, root, ["a", "b", "c"], 32, "fp32_ov_bf16", 1, "cpu", 8, [])
    with pytest.raises(Skip, match="OpenVINO execution provider is not installed"):
        make_backend("bertdeploy", ctx).load()
