"""Perturbed copies of training texts as a file, for ``bertdeploy distill --unlabelled`` (the runs of this folder
made before ``distill --augment K`` existed). A thin call of :func:`bertdeploy.training.augment.augment_texts`:
masking, word swaps, n-gram windows (Tang et al., 2019), seeded and deduplicated; labels are never read.

    python benchmarks/accuracy/augment.py ../shared/datasets/emotion/train.csv --copies 4 --seed 1 -o runs/aug4.txt

``bertdeploy distill --augment K`` does the same inside the run (and caches the teacher's logits on the copies).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from bertdeploy.training.augment import Perturbation, augment_texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train", type=Path, help="a csv with a text column")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--text-column", default="text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--p-mask", type=float, default=0.1)
    p.add_argument("--p-swap", type=float, default=0.1)
    p.add_argument("--p-ngram", type=float, default=0.25)
    a = p.parse_args()
    with open(a.train, newline="", encoding="utf-8") as f:
        texts = [row[a.text_column] for row in csv.DictReader(f)]
    lines = augment_texts(texts, a.copies, a.seed, Perturbation(a.p_mask, a.p_swap, a.p_ngram))
    a.output.write_text("\n".join(s.replace("\n", " ") for s in lines) + "\n", encoding="utf-8")
    print(f"{a.output}: {len(lines)} texts")


if __name__ == "__main__":
    main()
