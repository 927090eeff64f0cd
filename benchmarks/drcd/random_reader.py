"""A QA reader from random weights with another ``initializer_range``, for a same-schedule control.

Takes a run folder's config and tokenizer (the cloze-stage run: bert-mini's shape and its data vocabulary) and
writes a folder that ``bertdeploy train --model FOLDER`` fine-tunes as it would a pretrained one:

    python benchmarks/drcd/random_reader.py runs/qa-cloze1 runs/init-r05 --init-range 0.05
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", help="run folder whose config.json and tokenizer are kept")
    p.add_argument("output", help="new folder")
    p.add_argument("--init-range", type=float, default=0.02, help="BertConfig.initializer_range")
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    config = BertConfig.from_pretrained(a.source)
    config.initializer_range = a.init_range
    BertForQuestionAnswering(config).save_pretrained(a.output, safe_serialization=True)
    AutoTokenizer.from_pretrained(a.source).save_pretrained(a.output)


if __name__ == "__main__":
    main()
