# Run: python benchmarks/drcd/reader_select.py BUNDLE validation [VARIANT]
"""Reader as selector: the answer with the highest score over a question's candidate paragraphs."""

import json
import sys
import time

from bertdeploy.metrics_qa import qa_metrics
from bertdeploy.runtime import load

bundle, split = sys.argv[1], sys.argv[2]
variant = sys.argv[3] if len(sys.argv) > 3 else None
root = "../shared/datasets/drcd_select"  # run from the repository root
ctx = json.load(open(f"{root}/context.json"))
qs = json.load(open(f"{root}/{split}.json"))
r = load(bundle, variant=variant) if variant else load(bundle)
t = time.time()
pairs = [(q["question"], ctx[p]) for q in qs for p in q["paragraphs"]]
ans = r.predict(pairs, top_k=1)
print("pairs", len(pairs), "s", round(time.time() - t, 1), file=sys.stderr)
sel, pred, gold_pred = [], [], []
for i, q in enumerate(qs):
    group = ans[4 * i : 4 * i + 4]
    best = max(range(4), key=lambda k: group[k].score)
    sel.append(q["paragraphs"][best] == q["relevant"])
    pred.append(group[best].answer)
    gold_pred.append(group[q["paragraphs"].index(q["relevant"])].answer)
refs = [[q["answer"]["text"]] for q in qs]
print(
    json.dumps(
        {
            "split": split,
            "questions": len(qs),
            "selection_accuracy": sum(sel) / len(sel),
            "end_to_end": qa_metrics(pred, refs),
            "qa_on_gold": qa_metrics(gold_pred, refs),
        },
        default=float,
    )
)
