"""Unlabelled transfer texts for ``bertdeploy distill --unlabelled``: perturbed copies of the training texts, which
the teacher then labels (Tang et al., 2019, "Distilling task-specific knowledge from BERT into simple neural
networks": masking, word swaps, n-gram sampling). The labels are dropped: only the teacher's logits are used.

    python benchmarks/accuracy/augment.py /work/shared/datasets/emotion/train.csv -o /work/runs/emotion-aug.txt
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path


def perturb(words: list[str], vocab: list[str], rng: random.Random, p_mask: float, p_swap: float, p_ngram: float):
    out = []
    for w in words:
        r = rng.random()
        out.append("[MASK]" if r < p_mask else rng.choice(vocab) if r < p_mask + p_swap else w)
    if len(out) > 3 and rng.random() < p_ngram:  # a random window of 1-5 words
        n = rng.randint(1, min(5, len(out) - 1))
        start = rng.randrange(len(out) - n + 1)
        out = out[start : start + n]
    return " ".join(out)


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
    vocab = [w for t in texts for w in t.split()]  # word swaps drawn by corpus frequency
    rng = random.Random(a.seed)
    lines = [perturb(t.split(), vocab, rng, a.p_mask, a.p_swap, a.p_ngram) for _ in range(a.copies) for t in texts]
    a.output.write_text("\n".join(s.replace("\n", " ") for s in lines if s.strip()) + "\n", encoding="utf-8")
    print(f"{a.output}: {len(lines)} texts")


if __name__ == "__main__":
    main()
