"""Can a BERT from random weights learn to find the question's tokens in the context? A synthetic probe.

Each example: a context of 32 random tokens (vocabulary 1,000) and a question taken from it.
``--task match``: the question is one context token, the answer is where it sits (one attention layer suffices).
``--task gap``: the question is a 10-token stretch of the context with 1-3 tokens replaced by one gap token, the
answer is the replaced stretch (a cloze question whose sentence is in the context, as `bertdeploy data cloze`
makes them). Trained as extractive QA (``BertForQuestionAnswering``, start / end cross-entropy); the loss is
printed every 100 steps. Uniform guessing over the context scores ln 32 = 3.47; the position prior alone ~3.1-3.2;
a model that has learnt the matching falls far below (1.1 at step 600 for ``match`` at init range 0.1).

    python benchmarks/drcd/copy_probe.py --task match --layers 2 --hidden 64 --init-range 0.1 --steps 600
    python benchmarks/drcd/copy_probe.py --task gap --layers 2 --init-range 0.1 --match-first 1000 --steps 5000
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from transformers import BertConfig, BertForQuestionAnswering

VOCAB, QUESTION, CONTEXT, BATCH, GAP = 1000, 10, 32, 32, 5


def batch(g: torch.Generator, task: str) -> dict[str, torch.Tensor]:
    ids, types, starts, ends = [], [], [], []
    for _ in range(BATCH):
        ctx = torch.randint(10, VOCAB, (CONTEXT,), generator=g)
        o = int(torch.randint(0, CONTEXT - QUESTION, (1,), generator=g))
        sent = ctx[o : o + QUESTION].clone()
        a = int(torch.randint(2, QUESTION - 4, (1,), generator=g))
        n = int(torch.randint(1, 4, (1,), generator=g))
        if task == "match":
            a, n, q = 0, 1, sent[:1]
        else:
            q = torch.cat([sent[:a], torch.tensor([GAP]), sent[a + n :]])
        x = torch.cat([torch.tensor([1]), q, torch.tensor([2]), ctx, torch.tensor([2])])
        x = torch.nn.functional.pad(x, (0, 2 + QUESTION + CONTEXT - len(x)))
        off = 2 + len(q)
        ids.append(x)
        starts.append(off + o + a)
        ends.append(off + o + a + n - 1)
        types.append(torch.cat([torch.zeros(off, dtype=torch.long), torch.ones(len(x) - off, dtype=torch.long)]))
    x = torch.stack(ids)
    return {"input_ids": x, "attention_mask": (x != 0).long(), "token_type_ids": torch.stack(types),
            "start_positions": torch.tensor(starts), "end_positions": torch.tensor(ends)}  # fmt: skip


def sinusoids(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe * 0.02 / pe.std()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=["match", "gap"], default="gap")
    p.add_argument("--position-init", choices=["random", "sin"], default="random")
    p.add_argument("--init-range", type=float, default=0.02, help="BertConfig.initializer_range (HF default 0.02)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--match-first", type=int, default=0, help="steps of the match task before --task (a curriculum)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=4,
                     intermediate_size=4 * a.hidden, max_position_embeddings=128, initializer_range=a.init_range,
                     hidden_dropout_prob=a.dropout, attention_probs_dropout_prob=a.dropout)  # fmt: skip
    model = BertForQuestionAnswering(cfg)
    if a.position_init == "sin":
        with torch.no_grad():
            model.bert.embeddings.position_embeddings.weight.copy_(sinusoids(128, a.hidden))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    t0, total = time.time(), 0.0
    for step in range(1, a.steps + 1):
        loss = model(**batch(g, "match" if step <= a.match_first else a.task)).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        total += loss.item()
        if step % 100 == 0:
            print(f"step {step} loss {total / 100:.3f} ({time.time() - t0:.0f} s)", flush=True)
            total = 0.0


if __name__ == "__main__":
    main()
