"""Question-match token types (``train --question-match``, issue 23): context tokens that occur in the question get
token type 2, in training, in the export gate and in the runtime alike, recorded in the bundle; refused elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertdeploy.errors import UserError
from bertdeploy.runtime.tokenize import MATCH_TYPE, PairEncoder, question_match_types
from bertdeploy.training import TrainConfig, train
from tests.helpers import VOCAB, build_tiny_reader


def _encoder(max_length: int = 32, stride: int = 8) -> PairEncoder:
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True)
    from tokenizers import Tokenizer

    return PairEncoder(Tokenizer.from_str(tok.backend_tokenizer.to_str()), max_length, stride=stride)


def _tokens(encoder: PairEncoder, encoded, row: int) -> list[tuple[str, int, int]]:
    a, b = int(encoded.offsets[row]), int(encoded.offsets[row] + encoded.lengths[row])
    names = [encoder._tok.id_to_token(int(i)) for i in encoded.ids[a:b]]
    return list(zip(names, encoded.sequence[a:b].tolist(), encoded.type_ids[a:b].tolist()))


def test_context_tokens_of_the_question_get_the_match_type_row_by_row():
    encoder = _encoder()
    encoded = encoder.encode_marked([("where is movie", "the movie was bad"), ("where is food", "the movie zzqx")])
    first, second = _tokens(encoder, encoded, 0), _tokens(encoder, encoded, 1)
    assert [t for t, s, _ in first if s == 1] == ["the", "movie", "was", "bad"]
    assert [m for _, s, m in first if s == 1] == [1, MATCH_TYPE, 1, 1]
    assert all(m == 0 for _, s, m in first if s == 0) and first[0] == ("[CLS]", -1, 0) and first[-1][2] == 1
    # the same word in another row's context does not match: each window against its own question
    assert MATCH_TYPE not in [m for _, _, m in second]
    plain = encoder.encode_pairs([("where is movie", "the movie was bad")])
    types = encoded.type_ids[: len(plain.ids)]
    assert np.array_equal(np.where(types == MATCH_TYPE, 1, types), plain.type_ids)  # only the marks differ


def test_special_tokens_never_match():
    ids = np.array([2, 9, 1, 3, 1, 9, 3])  # [CLS] q:9 q:[UNK] [SEP] c:[UNK] c:9 [SEP]
    sequence = np.array([-1, 0, 0, -1, 1, 1, -1])
    types = np.array([0, 0, 0, 0, 1, 1, 1])
    out = question_match_types(ids, sequence, np.array([7]), types, special=np.array([0, 1, 2, 3, 4]))
    assert out.tolist() == [0, 0, 0, 0, 1, MATCH_TYPE, 1]
    assert (
        question_match_types(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.array([0])).size
        == 0
    )


def test_training_windows_carry_the_runtimes_types(tiny_qa_dir):
    from transformers import BertTokenizerFast

    from bertdeploy.data import DataSpec, load_data
    from bertdeploy.training.task_qa import encode_qa

    data = load_data(DataSpec(str(tiny_qa_dir)))
    tok = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True)
    feats = encode_qa(data, tok, 32, "static", TrainConfig(doc_stride=8, question_match=True))["validation"]
    split = data.splits["validation"]
    runtime = _encoder(32, 8).encode_marked(list(zip(split["question"], split["context"])))
    trained = [t[: sum(m)] for t, m in zip(feats["token_type_ids"], feats["attention_mask"])]
    assert np.array_equal(np.concatenate(trained), runtime.type_ids)
    assert (runtime.type_ids == MATCH_TYPE).any()


@pytest.fixture(scope="module")
def match_run(tiny_qa_dir, tmp_path_factory):
    model = build_tiny_reader(tmp_path_factory.mktemp("match_reader"))
    out = tmp_path_factory.mktemp("match_run") / "run"
    config = TrainConfig(model=str(model), data=str(tiny_qa_dir), output=str(out), epochs=2, batch_size=8, lr=5e-3,
                         max_length=32, doc_stride=8, report_to=["none"], question_match=True)  # fmt: skip
    return train(config)


@pytest.fixture(scope="module")
def match_bundle(match_run, tmp_path_factory):
    from bertdeploy import export
    from bertdeploy.exporter import ExportConfig

    bundle = tmp_path_factory.mktemp("match_bundle") / "bundle"
    export(ExportConfig(run_dir=str(match_run.output), output=str(bundle), variants=["fp32"]))
    return bundle


def test_a_question_match_reader_is_recorded_and_answered_as_pytorch(match_run, match_bundle, tiny_qa_dir):
    from bertdeploy import load
    from bertdeploy.metrics_qa import qa_metrics

    config = json.loads((match_run.output / "config.json").read_text())
    assert config["question_match"] is True and config["type_vocab_size"] == 3
    bundle = match_bundle
    manifest = json.loads((bundle / "bertdeploy.json").read_text())
    assert manifest["question_match"] is True
    fp32 = next(v for v in manifest["variants"] if v["name"] == "fp32")
    assert fp32["parity"]["agreement"] == 1.0  # the gate fed PyTorch and ONNX the same types as the runtime
    reader = load(bundle, variant="fp32")
    test = [json.loads(line) for line in (tiny_qa_dir / "test.jsonl").read_text().splitlines()]
    predicted = [a.answer for a in reader.predict([{"question": r["question"], "context": r["context"]} for r in test])]
    scores = qa_metrics(predicted, [r["answers"]["text"] for r in test])  # the gate judged what the runtime answers
    assert (scores["exact_match"], scores["f1"]) == (fp32["metrics"]["exact_match"], fp32["metrics"]["f1"])
    records = [{"question": "where is movie", "context": "i love the food at work and the movie was bad"}]
    assert reader.question_match and (reader.encode(records).type_ids == MATCH_TYPE).any()
    marked = reader.logits(records)
    reader.question_match = False  # the types matter: without them the same reader scores differently
    assert not np.allclose(reader.logits(records).start, marked.start)


def test_the_triton_reader_step_feeds_the_types(match_bundle, tiny_qa_dir, tmp_path, monkeypatch):
    """The Triton repository's answers step (``NAME_reader``) marks the context like the runtime: its model calls
    carry type 2, and its answers are the runtime's."""
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from test_package_triton_answers import open_step, qa_request

    from bertdeploy import load
    from bertdeploy.package import triton_repository

    repo = triton_repository(match_bundle, tmp_path / "repo", name="m", variant="fp32", kind="cpu")
    test = [json.loads(line) for line in (tiny_qa_dir / "test.jsonl").read_text().splitlines()]
    records = [{"question": r["question"], "context": r["context"]} for r in test]
    step, bls = open_step(repo.repository, "m_reader", monkeypatch)
    (response,) = step.execute([qa_request(records)])
    answers = [t.as_numpy().reshape(-1).tolist() for t in response.output_tensors]
    assert any((call["token_type_ids"] == MATCH_TYPE).any() for call in bls.calls)
    with load(match_bundle, variant="fp32") as reader:
        expected = reader.predict(records)
    assert [(a.decode(), s, e) for a, s, e in zip(answers[0], answers[2], answers[3])] == [
        (x.answer, x.start, x.end) for x in expected
    ]


def test_a_question_match_reader_keeps_the_types_when_trained_on(match_run, tiny_qa_dir, tmp_path):
    out = tmp_path / "again"
    train(TrainConfig(model=str(match_run.output), data=str(tiny_qa_dir), output=str(out), epochs=1, batch_size=8,
                      max_length=32, doc_stride=8, report_to=["none"]))  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["question_match"] is True and config["type_vocab_size"] == 3


def test_question_match_is_refused_outside_question_answering(tiny_data_dir, tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="--question-match applies to question answering"):
        train(TrainConfig(model=str(tiny_model_dir), data=str(tiny_data_dir), output=str(tmp_path / "r"),
                          question_match=True, report_to=["none"]))  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_a_malformed_question_match_in_a_manifest_is_named(tiny_qa_bundle, tmp_path):
    import shutil

    from bertdeploy import load

    bundle = tmp_path / "b"
    shutil.copytree(tiny_qa_bundle, bundle)
    manifest = json.loads((bundle / "bertdeploy.json").read_text())
    manifest["question_match"] = "yes"
    (bundle / "bertdeploy.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="question_match must be true or false"):
        load(bundle, variant="fp32")


def test_a_model_without_token_types_is_refused():
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering

    from bertdeploy.training.models import add_match_type

    model = DistilBertForQuestionAnswering(
        DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    )
    with pytest.raises(UserError, match="needs a model with token-type embeddings.*distilbert has none"):
        add_match_type(model)


def test_pairs_without_offsets_have_the_same_ids_types_and_truncation():
    """Multiple choice encodes without character offsets (``encode_batch_fast``): the model sees the same input."""
    with_offsets = _encoder(max_length=16)
    pairs = [("where is the movie", "the movie was bad and the food was worse than the movie " * 3), ("a", "b")]
    a = PairEncoder(with_offsets._tok, 16, windows=False).encode_pairs(pairs)
    b = PairEncoder(with_offsets._tok, 16, windows=False, offsets=False).encode_pairs(pairs)
    assert a.truncated == b.truncated == 1 and a.lengths.tolist() == b.lengths.tolist() == [16, 5]
    for name in ("ids", "type_ids", "sequence", "offsets"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.spans.any() and not b.spans.any()  # what offsets=False leaves out


def test_a_question_too_long_for_a_window_is_found_before_encoding():
    """``PairEncoder.too_long``: the first question leaving its context no more than the stride (index, tokens,
    tokens left), None when all fit or without windows; the export gate refuses such evaluation data in one line."""
    from bertdeploy.exporter.gate_qa import make_span_batches

    encoder = _encoder(max_length=32, stride=8)
    long = "where is the " + "very " * 30 + "food?"
    fits, tight = "where is the food?", "where is the " + "very " * 16 + "food?"
    assert encoder.too_long([fits, fits]) is None
    assert encoder.too_long([fits, long, tight]) == (1, 35, -6)
    assert encoder.too_long([fits, tight]) == (1, 21, 8)  # 8 left, not more than the stride
    assert encoder._counter() is encoder._counter()  # the untruncated copy it counts with is made once
    assert PairEncoder(encoder._tok, 32, windows=False).too_long([long]) is None  # truncated, never windowed
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True)
    with pytest.raises(UserError, match=r"evaluation question #1: the question \(35 tokens\) leaves no room"):
        make_span_batches(tokenizer, [(fits, "the food"), (long, "the food")], 32)
