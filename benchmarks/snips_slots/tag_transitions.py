"""Entity F1 of token-classification run folders with the training tags' transition scores at several weights.

    python benchmarks/snips_slots/tag_transitions.py ../shared/datasets/snips_slots runs/snips-c runs/snips-d ...

Each run's per-word log probabilities (first sub-token, PyTorch, as training scores them) on the validation and test
splits, decoded by `bertdeploy.runtime.entities.best_tags` with the BIO rule plus the training split's transition
counts (`count_transitions`) at each weight (0 = the BIO rule alone); seqeval micro F1 as training reports it. The
weight of the product (`PRIOR_WEIGHT`) is the one with the best mean validation F1 over the runs given.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from bertdeploy.data import DataSpec, load_data
from bertdeploy.metrics import entity_metrics
from bertdeploy.runtime.entities import TagPrior, best_tags, count_transitions

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def word_log_probs(run: str, sentences: list[list[str]]) -> list[np.ndarray]:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run)
    model = AutoModelForTokenClassification.from_pretrained(run).eval()
    config = json.loads((Path(run) / "train_config.json").read_text(encoding="utf-8"))
    n = int(config["max_length"])  # as the run was trained and scored
    out = []
    for i in range(0, len(sentences), 64):
        batch = sentences[i : i + 64]
        enc = tok(batch, is_split_into_words=True, truncation=True, max_length=n, padding=True, return_tensors="pt")
        with torch.no_grad():
            log_p = model(**enc).logits.log_softmax(-1).numpy()
        for j, words in enumerate(batch):
            first: dict[int, np.ndarray] = {}
            for t, w in enumerate(enc.word_ids(j)):
                if w is not None and w not in first:
                    first[w] = log_p[j, t]
            cut = np.full(log_p.shape[-1], -1e4)  # a word truncation cut off: O, as training counts it
            cut[model.config.label2id.get("O", 0)] = 0.0
            out.append(np.stack([first.get(w, cut) for w in range(len(words))]))
    return out


def main(data_dir: str, runs: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    data = load_data(DataSpec(data_dir))
    labels = data.labels
    table = count_transitions(data.splits["train"]["tags"], len(labels))
    print("split run " + " ".join(f"w={w}" for w in WEIGHTS))
    for split in ("validation", "test"):
        gold = [[labels[t] for t in tags] for tags in data.splits[split]["tags"]]
        for run in runs:
            log_p = word_log_probs(run, [list(s) for s in data.splits[split]["tokens"]])
            f1 = []
            for w in WEIGHTS:
                prior = TagPrior.from_counts({**table, "weight": w}, len(labels)) if w else None
                pred = [[labels[t] for t in best_tags(x, labels, prior=prior)] for x in log_p]
                f1.append(entity_metrics(gold, pred)["f1"])
            print(split, run, " ".join(f"{v:.4f}" for v in f1), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
