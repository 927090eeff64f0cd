"""Cold start of one bundle variant in a fresh process: load time, the first pass over a file (every new batch
shape is seen for the first time: OpenVINO builds its kernels per input shape), a second pass, and RSS.

    python benchmarks/openvino-ep/cold_start.py BUNDLE VARIANT TEXTS.csv [--threads 1] [--multiple 1]

``--multiple N``: a plugin-provider variant pads each batch to a multiple of N tokens (default: the runtime's,
``bertdeploy.runtime.plugins.PAD_MULTIPLE``; 1 = no rounding). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import time
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("variant")
    ap.add_argument("texts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--multiple", type=int, default=None)
    args = ap.parse_args()
    with open(args.texts, encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    start = time.perf_counter()
    import bertdeploy.runtime as rt
    from bertdeploy.runtime import loader

    if args.multiple is not None:
        loader.PAD_MULTIPLE = args.multiple  # what plugin-provider variants pad batch lengths to (default 8)
    rss0 = rss_mb()
    model = rt.load(args.bundle, variant=args.variant, device="cpu", threads=args.threads, batch_size=args.batch_size)
    load_s = time.perf_counter() - start
    rss_loaded = rss_mb()
    passes = []
    for _ in range(3):
        t = time.perf_counter()
        model.predict(texts)
        passes.append(round(len(texts) / (time.perf_counter() - t), 1))
    out = {
        "variant": args.variant,
        "providers": model.providers,
        "threads": args.threads,
        "multiple": model.policy.pad_multiple,
        "import_and_load_s": round(load_s, 2),
        "rss_mb_before_load": rss0,
        "rss_mb_loaded": rss_loaded,
        "texts_per_s_pass1_pass2_pass3": passes,
        "rss_mb_after": rss_mb(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "texts": len(texts),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
