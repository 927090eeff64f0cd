"""Extractive question answering and multiple choice in training.

QA: each (question, context) pair becomes overlapping windows of ``max_length`` tokens that share ``doc_stride``
tokens (the fast tokenizer's overflowing tokens, as transformers' ``run_qa.py`` prepares features); the window
that holds the whole first answer is labelled with its start / end tokens, the others point at ``[CLS]``. Scores
are the end-to-end answers: each question's windows go through the runtime's n-best span search
(:func:`bertdeploy.runtime.spans.answers` with its defaults — answers of at most 15 tokens, the pipeline's — so
training-time scores are the export gate's wherever the export keeps that cap, :func:`bertdeploy.exporter.gate_qa.
pick_answer_len`) and are scored with the
SQuAD v1.1 rules (English) or CMRC 2018's (Chinese), :mod:`bertdeploy.metrics_qa`.

Multiple choice: each question is paired with every choice, giving ``[choices, tokens]`` per record and
``[batch, choices, tokens]`` batches; scored on accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: columns of an evaluation window the model does not take (the Trainer drops them before the forward pass)
EVAL_COLUMNS = ("example", "context_mask", "offsets", "words")


def _label_window(enc: Any, i: int, answer: dict[str, list[Any]]) -> tuple[int, int]:
    """(start token, end token) of the first answer in window ``i``, or (0, 0) (``[CLS]``) when it is not inside."""
    if not answer["text"]:
        return 0, 0
    start_char = answer["answer_start"][0]
    end_char = start_char + len(answer["text"][0])
    seq = enc.sequence_ids(i)
    offsets = enc["offset_mapping"][i]
    ctx = [t for t, s in enumerate(seq) if s == 1]
    if not ctx or offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
        return 0, 0
    s = next(t for t in ctx if offsets[t][1] > start_char)
    e = next(t for t in reversed(ctx) if offsets[t][0] < end_char)
    return s, e


def _check_questions(name: str, split: Any, tokenizer: Any, max_length: int, stride: int) -> None:
    """A question that leaves its context no more than ``stride`` tokens of a window: a :class:`UserError` naming
    it (the tokenizer would fail on it), by the runtime's own rule (:meth:`PairEncoder.too_long`)."""
    from bertdeploy.errors import UserError
    from bertdeploy.exporter.batches import runtime_encoder
    from bertdeploy.runtime.tokenize import PairEncoder

    encoder = runtime_encoder(tokenizer, max_length, PairEncoder, stride=stride)
    found = encoder.too_long(list(split["question"]))
    if found is not None:
        i = found[0]
        qid = split[i]["id"] if "id" in split.column_names else f"#{i}"
        raise UserError(f"{name} question {qid}: {encoder.too_long_reason(*found[1:])} (or raise --max-length / "
                        "lower --doc-stride)")  # fmt: skip


def encode_qa(data: Any, tokenizer: Any, max_length: int, padding: str, config: Any = None):
    """Windows of every split: input ids, masks, start / end positions; evaluation splits keep what the span
    search needs (the question each window belongs to, context mask, character offsets, word ids)."""
    stride = getattr(config, "doc_stride", None) or min(128, max_length // 4)
    if stride >= max_length // 2:
        from bertdeploy.errors import UserError

        raise UserError(f"--doc-stride {stride} must be below half of --max-length ({max_length})")

    def run(batch, indices, pad):
        enc = tokenizer(batch["question"], batch["context"], truncation="only_second", max_length=max_length,
                        stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding=pad)  # fmt: skip
        owner = enc.pop("overflow_to_sample_mapping")
        starts, ends, mask, words = [], [], [], []
        for i, q in enumerate(owner):
            s, e = _label_window(enc, i, batch["answers"][q])
            starts.append(s)
            ends.append(e)
            seq = enc.sequence_ids(i)
            mask.append([x == 1 for x in seq])
            words.append([w if x == 1 and w is not None else -1 for w, x in zip(enc.word_ids(i), seq)])
        enc["start_positions"], enc["end_positions"] = starts, ends
        enc["example"] = [indices[q] for q in owner]
        enc["context_mask"], enc["words"] = mask, words
        enc["offsets"] = [[list(o) for o in offs] for offs in enc.pop("offset_mapping")]
        if getattr(config, "question_match", False):
            enc["token_type_ids"] = _match_types(enc, special)
        return enc

    from bertdeploy.runtime.tokenize import special_ids

    special = special_ids(tokenizer.backend_tokenizer)  # the runtime's own definition
    ds = data.to_datasets()
    for name, split in ds.items():
        _check_questions(name, split, tokenizer, max_length, stride)
    out = {}
    for name, split in ds.items():
        # dynamic padding: training windows pad to their batch's longest (a short context's window is short);
        # evaluation windows stay max_length long, so their logits line up across batches for the span search
        pad = "max_length" if padding == "static" or name != "train" else False
        feats = split.map(run, batched=True, with_indices=True, remove_columns=split.column_names,
                          fn_kwargs={"pad": pad}, desc=f"windows {name}")  # fmt: skip
        out[name] = feats.remove_columns(list(EVAL_COLUMNS)) if name == "train" else feats
    return type(ds)(out)


def _match_types(enc: Any, special: np.ndarray) -> list[list[int]]:
    """The windows' token types with the question-match type, as the runtime computes them (``--question-match``)."""
    from bertdeploy.runtime.tokenize import question_match_types

    rows = enc["input_ids"]
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    seq = [-1 if x is None else x for i in range(len(rows)) for x in enc.sequence_ids(i)]
    flat = question_match_types(np.concatenate(rows) if rows else np.zeros(0, np.int64), np.asarray(seq, np.int64),
                                lengths, np.concatenate(enc["token_type_ids"]) if rows else np.zeros(0, np.int64),
                                special)  # fmt: skip
    return [part.tolist() for part in np.split(flat, np.cumsum(lengths)[:-1])]


def qa_scorer(data: Any, datasets: Any, split: str):
    """``(predictions, label_ids) -> {exact_match, f1, n}`` for the windows of ``split``, in dataset order."""
    from bertdeploy.metrics_qa import qa_metrics
    from bertdeploy.runtime.spans import Window, answers

    feats = datasets[split]
    rows = data.splits[split]
    owner = np.asarray(feats["example"])
    masks, offsets, words = feats["context_mask"], feats["offsets"], feats["words"]

    def score(predictions: Any, label_ids: Any = None) -> dict[str, Any]:
        start, end = predictions[0], predictions[1]
        windows: dict[int, list[Window]] = {}
        for i, q in enumerate(owner):
            n = len(masks[i])
            windows.setdefault(int(q), []).append(
                Window(
                    start[i][:n],
                    end[i][:n],
                    np.asarray(masks[i], bool),
                    np.asarray(offsets[i], np.int64),
                    np.asarray(words[i], np.int64),
                )  # fmt: skip
            )
        predicted = []
        for q in range(len(rows["question"])):
            found = answers(rows["context"][q], windows.get(q, []))  # the runtime's defaults, as the gate's
            predicted.append(found[0].answer if found else "")
        return qa_metrics(predicted, [a["text"] for a in rows["answers"]])

    return score


def encode_mc(data: Any, tokenizer: Any, max_length: int, padding: str, config: Any = None):
    """``[choices, tokens]`` inputs per question (padded to ``max_length``) and its label."""

    def run(batch):
        n = len(batch["choices"][0])
        first = [q for q in batch["question"] for _ in range(n)]
        second = [c for choices in batch["choices"] for c in choices]
        enc = tokenizer(first, second, truncation=True, max_length=max_length, padding="max_length")
        out = {k: [v[i : i + n] for i in range(0, len(v), n)] for k, v in enc.items()}
        out["label"] = batch["label"]
        return out

    ds = data.to_datasets()
    return type(ds)(
        {
            name: split.map(run, batched=True, remove_columns=split.column_names, desc=f"choices {name}")
            for name, split in ds.items()
        }
    )


def mc_scorer(data: Any, datasets: Any, split: str):
    """``(predictions, label_ids) -> {accuracy, n}``."""

    def score(predictions: Any, label_ids: Any) -> dict[str, Any]:
        pred = np.argmax(np.asarray(predictions), -1)
        gold = np.asarray(label_ids)
        return {"accuracy": float((pred == gold).mean()) if len(gold) else 0.0, "n": int(len(gold))}

    return score
