"""The tagger's batched decoder (``bertdeploy/runtime/tag_batch.py``) against the text-by-text one it replaced
(``entities.aggregate`` per text, what ``Tagger.decode`` ran before), on the SNIPS test + validation sentences, in one
process, rounds interleaved, every answer checked equal first.

    python benchmarks/snips_slots/decode_batch.py decode BUNDLE            # decoding alone, µs a sentence
    python benchmarks/snips_slots/decode_batch.py end-to-end BUNDLE THREADS  # sentences/s, old vs new decoder

Run from the repository root (reads ../shared/datasets/snips_slots); prints one JSON line.
"""

import json
import sys
import time

import numpy as np

import bertdeploy
from bertdeploy.runtime.entities import aggregate

ROOT = "../shared/datasets/snips_slots"
ROUNDS = 7


def sentences() -> list[str]:
    out = []
    for split in ("test", "validation"):
        with open(f"{ROOT}/{split}.jsonl") as f:
            out += [" ".join(json.loads(line)["tokens"]) for line in f]
    return out


def old_decode(m, out, strategy="simple", decoding="bio"):
    return [
        aggregate(t, *out.tokens(i), m.labels, strategy, frozenset({"O"}), "whitespace", decoding, m.prior)
        for i, t in enumerate(out.texts)
    ]


def interleaved(calls: dict, per: float) -> dict:
    """Median and best of ROUNDS interleaved rounds of each call, as ``per / seconds``."""
    rates = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, f in calls.items():
            t = time.perf_counter()
            f()
            rates[name].append(per / (time.perf_counter() - t))
    return {name: {"best": float(max(v)), "median": float(np.median(v))} for name, v in rates.items()}


def spans_of(found: list) -> list:
    """What the decoders must agree on exactly (``average`` scores may differ by a float32 ulp: summation order)."""
    return [[(e.entity_group, e.start, e.end) for e in x] for x in found]


def decode_alone(bundle: str) -> dict:
    texts = sentences()
    m = bertdeploy.load(bundle, threads=1)
    out = m.forward(m.encode(texts))
    row = {"bundle": bundle, "texts": len(texts)}
    cases = [("simple", "bio"), ("simple", "argmax"), ("none", "bio"), ("none", "argmax")]
    for strategy, decoding in cases + [("first", "bio"), ("average", "bio"), ("max", "bio")]:
        calls = {
            "old": lambda s=strategy, d=decoding: old_decode(m, out, s, d),
            "new": lambda s=strategy, d=decoding: m.decode(out, s, decoding=d),
        }
        assert spans_of(calls["old"]()) == spans_of(calls["new"]()), "the two decoders disagree"
        rates = interleaved(calls, len(texts) / 1e6)  # texts per µs -> invert below
        row[f"{strategy}/{decoding}"] = {k: round(1 / v["median"], 1) for k, v in rates.items()}  # µs a text
    return row


def end_to_end(bundle: str, threads: int) -> dict:
    texts = sentences()
    m = bertdeploy.load(bundle, threads=threads)
    calls = {
        "old": lambda: old_decode(m, m.forward(m.encode(texts))),
        "new": lambda: m.predict(texts),
        "encode+model": lambda: m.forward(m.encode(texts)),
    }
    assert spans_of(calls["old"]()) == spans_of(calls["new"]()), "the two decoders disagree"
    rates = interleaved(calls, len(texts))
    return {"bundle": bundle, "threads": threads, "texts": len(texts),
            **{k: {"best": round(v["best"]), "median": round(v["median"])} for k, v in rates.items()}}  # fmt: skip


if __name__ == "__main__":
    mode, bundle = sys.argv[1], sys.argv[2]
    print(json.dumps(decode_alone(bundle) if mode == "decode" else end_to_end(bundle, int(sys.argv[3]))))
