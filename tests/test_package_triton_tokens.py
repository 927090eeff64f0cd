"""`bertdeploy package triton` of a token-classification bundle: per-token output dims from the task table, the
tokenizer step's offsets, the entities step (the runtime's aggregation, numpy only) and the three-step ensemble.
Every config parses into Triton's ModelConfig; tokenizer -> model.onnx -> entities, run here with fake ``pb_utils``
objects (no Triton server), gives ``Tagger.predict``'s entities."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_package_triton import FakeRequest, FakeTensor, _parse, _request, _tokenizer_model, model_config_pb2

from bertdeploy import load
from bertdeploy.bundle import read_manifest
from bertdeploy.errors import UserError
from bertdeploy.package import triton_repository

TEXTS = [
    "i love the movie at night",
    "The Food Service was good today, thanks!",
    "my app login was so slow at work time",
    "今天的food service很好",
    "book",
]


@pytest.fixture(scope="module")
def repo(tiny_token_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton_tokens") / "repo"
    return triton_repository(tiny_token_bundle, out, name="ner", variant="fp32", kind="cpu", max_batch_size=16)


def test_every_config_parses_and_the_dims_come_from_the_task_table(repo, tiny_token_bundle):
    root = repo.repository
    assert (repo.task, repo.entities) == ("token-classification", "ner_entities")
    assert sorted(p.name for p in root.iterdir()) == ["ner", "ner_ensemble", "ner_entities", "ner_tokenizer"]
    configs = {p.parent.name: _parse(p) for p in root.glob("*/config.pbtxt")}
    onnx, tok, ens, ent = (configs[n] for n in ("ner", "ner_tokenizer", "ner_ensemble", "ner_entities"))
    labels = read_manifest(tiny_token_bundle).labels
    (logits,) = onnx.output
    assert (logits.name, list(logits.dims), logits.label_filename) == ("logits", [-1, len(labels)], "")
    assert list(repo.output.dims) == [-1, len(labels)]
    extra = [(o.name, model_config_pb2.DataType.Name(o.data_type), list(o.dims)) for o in tok.output[-2:]]
    assert extra == [("OFFSETS", "TYPE_INT64", [-1, 2]), ("WORD_IDS", "TYPE_INT64", [-1])]
    assert [o.name for o in tok.output[:-2]] == [i.name for i in onnx.input]
    assert (ent.backend, [i.name for i in ent.input]) == ("python", ["TEXT", "logits", "OFFSETS", "WORD_IDS"])
    assert list(ent.input[1].dims) == [-1, len(labels)] and ent.input[1].data_type == logits.data_type
    assert [(o.name, model_config_pb2.DataType.Name(o.data_type)) for o in ens.output] == [("ENTITIES", "TYPE_STRING")]
    assert [s.model_name for s in ens.ensemble_scheduling.step] == ["ner_tokenizer", "ner", "ner_entities"]
    produced = {i.name for i in ens.input}
    for step, config in zip(ens.ensemble_scheduling.step, (tok, onnx, ent), strict=True):
        assert set(step.input_map.values()) <= produced  # every step reads what the ensemble or an earlier one made
        assert set(step.input_map) == {i.name for i in config.input}
        assert set(step.output_map) == {o.name for o in config.output}
        produced |= set(step.output_map.values())
    assert "ENTITIES" in produced
    settings = json.loads((root / "ner_entities/1/entities_settings.json").read_text(encoding="utf-8"))
    transitions = read_manifest(tiny_token_bundle).raw["tag_transitions"]
    assert settings == {"labels": labels, "aggregation": "simple", "ignore_labels": ["O"],
                        "tag_transitions": transitions}  # fmt: skip
    assert (root / "ner_entities/1/entities.py").is_file() and (root / "ner/labels.txt").is_file()


def _entities_model(model_dir, monkeypatch):
    return _tokenizer_model(model_dir, monkeypatch)  # the same Triton life cycle: import model.py, initialize


def _pipeline(root, texts, monkeypatch, name="ner"):
    """TEXT -> tokenizer model.py -> model.onnx -> entities model.py, as the ensemble chains them."""
    import onnxruntime as ort

    tokenizer = _tokenizer_model(root / f"{name}_tokenizer", monkeypatch)
    (tokens,) = tokenizer.execute([_request(texts)])
    assert tokens.error is None
    feed = {t.name(): t.as_numpy() for t in tokens.output_tensors}
    extra = {k: feed.pop(k) for k in ("OFFSETS", "WORD_IDS")}
    session = ort.InferenceSession(str(root / f"{name}/1/model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], feed)
    entities = _entities_model(root / f"{name}_entities", monkeypatch)
    raw = np.array([t.encode("utf-8") for t in texts], dtype=object).reshape(-1, 1)
    request = FakeRequest(FakeTensor("TEXT", raw), FakeTensor("logits", logits),
                          *(FakeTensor(k, v) for k, v in extra.items()))  # fmt: skip
    (response,) = entities.execute([request])
    assert response.error is None, response.error
    (out,) = response.output_tensors
    assert out.name() == "ENTITIES" and out.as_numpy().shape == (len(texts), 1)
    return [json.loads(v.decode("utf-8")) for v in out.as_numpy().reshape(-1)], extra


def _same(got: list[dict], expected) -> None:
    want = [e.to_dict() for e in expected]
    assert [{**d, "score": 0} for d in got] == [{**d, "score": 0} for d in want]
    np.testing.assert_allclose([d["score"] for d in got], [d["score"] for d in want], atol=1e-5)


def test_tokenizer_offsets_are_the_runtime_spans(repo, tiny_token_bundle, monkeypatch):
    _, extra = _pipeline(repo.repository, TEXTS, monkeypatch)
    tagger = load(tiny_token_bundle, variant="fp32", threads=1)
    encoded = tagger.encode(TEXTS)
    for i in range(len(TEXTS)):
        n = int(encoded.lengths[i])
        sl = slice(int(encoded.offsets[i]), int(encoded.offsets[i]) + n)
        np.testing.assert_array_equal(extra["WORD_IDS"][i, :n], encoded.words[sl])
        real = encoded.words[sl] >= 0
        np.testing.assert_array_equal(extra["OFFSETS"][i, :n][real], encoded.spans[sl][real])
        assert (extra["WORD_IDS"][i, n:] == -1).all() and (extra["OFFSETS"][i, n:] == 0).all()  # padding


def test_tokenizer_then_model_then_entities_gives_the_runtime_entities(repo, tiny_token_bundle, monkeypatch):
    got, _ = _pipeline(repo.repository, TEXTS, monkeypatch)
    expected = load(tiny_token_bundle, variant="fp32", threads=1).predict(TEXTS)
    for text, found, want in zip(TEXTS, got, expected, strict=True):
        _same(found, want)
        assert all(d["word"] == text[d["start"] : d["end"]] for d in found)
    assert sum(map(len, got)) > 5


def test_the_entities_step_takes_its_aggregation_from_the_repository(tiny_token_bundle, tmp_path, monkeypatch):
    result = triton_repository(tiny_token_bundle, tmp_path / "r", name="ner", variant="fp32", kind="cpu",
                               aggregation="none", ignore_labels=[])  # fmt: skip
    got, _ = _pipeline(result.repository, TEXTS, monkeypatch)
    expected = load(tiny_token_bundle, variant="fp32", threads=1).predict(TEXTS, "none", ignore_labels=None)
    for found, want in zip(got, expected, strict=True):
        _same(found, want)
        assert all({"entity", "index"} <= set(d) for d in found)


def test_token_options_are_checked_and_write_nothing(tiny_token_bundle, varied_bundle, tmp_path):
    with pytest.raises(UserError, match="aggregation / ignore_labels apply to token-classification bundles"):
        triton_repository(varied_bundle, tmp_path / "a", aggregation="simple")
    with pytest.raises(UserError, match="aggregation must be one of"):
        triton_repository(tiny_token_bundle, tmp_path / "b", aggregation="longest")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    root = tmp_path / "repo"
    triton_repository(tiny_token_bundle, root, name="ner", variant="fp32")
    (root / "ner_entities/1/entities_settings.json").unlink()
    (root / "ner").rename(tmp_path / "moved")  # only ner_entities is left: still ours, still refused
    for name in ("ner_tokenizer", "ner_ensemble"):
        (root / name).rename(tmp_path / f"moved_{name}")
    with pytest.raises(UserError, match="already holds ner_entities"):
        triton_repository(tiny_token_bundle, root, name="ner", variant="fp32")
    result = triton_repository(tiny_token_bundle, root, name="ner", variant="fp32", overwrite=True)
    assert result.replaced == ["ner_entities"]
    assert (root / "ner_entities/1/entities_settings.json").is_file()


def test_cli_names_the_entities_step(tiny_token_bundle, tmp_path):
    from click.testing import CliRunner

    from bertdeploy.cli import cli

    args = ["package", "triton", str(tiny_token_bundle), "-o", str(tmp_path / "repo"), "--name", "ner"]
    res = CliRunner().invoke(cli, [*args, "--kind", "cpu", "--aggregation", "first", "--ignore-labels", "O,TIME"])
    assert res.exit_code == 0, res.output
    assert "ner_ensemble: TEXT -> ner_tokenizer -> ner -> ner_entities -> ENTITIES" in res.stdout
    settings = json.loads((tmp_path / "repo/ner_entities/1/entities_settings.json").read_text(encoding="utf-8"))
    assert (settings["aggregation"], settings["ignore_labels"]) == ("first", ["O", "TIME"])
