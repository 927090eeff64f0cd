"""Paired, interleaved end-to-end throughput of bundle variants in ONE process: every round predicts the whole
file once with each variant (the order rotating), so the load of a shared machine hits every variant alike; the
per-round ratio to the first variant is the number to compare. A stopgap until ``bertdeploy bench`` has a
whole-file scenario (issue 24, item 5).

    python benchmarks/openvino-ep/paired.py BUNDLE TEXTS.csv qint8 fp32_ov_bf16 [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("texts")
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    import bertdeploy.runtime as rt

    with open(args.texts, encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    models = {v: rt.load(args.bundle, variant=v, device="cpu", threads=args.threads, batch_size=args.batch_size)
              for v in args.variants}  # fmt: skip
    labels = {v: [p.label for p in m.predict(texts)] for v, m in models.items()}  # also the warm-up pass
    rates: dict[str, list[float]] = {v: [] for v in args.variants}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = args.variants[r % len(args.variants) :] + args.variants[: r % len(args.variants)]
        for v in order:
            t = time.perf_counter()
            models[v].predict(texts)
            rates[v].append(len(texts) / (time.perf_counter() - t))
        load.append(os.getloadavg()[0])
    base = args.variants[0]
    out = {
        "texts": len(texts),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "load_1m": [round(x, 2) for x in load],
        "variants": {
            v: {
                "providers": models[v].providers,
                "texts_per_s_median": round(statistics.median(rates[v]), 1),
                "texts_per_s_best": round(max(rates[v]), 1),
                "ratio_to_first_median": round(statistics.median(a / b for a, b in zip(rates[v], rates[base])), 3),
                "labels_equal_to_first": round(sum(a == b for a, b in zip(labels[v], labels[base])) / len(texts), 4),
            }
            for v in args.variants
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
