# Run: python benchmarks/drcd/selection_variants.py (reads ../shared/datasets/drcd_select; prints validation, test)
import json
import math
import re

root = "../shared/datasets/drcd_select"  # run from the repository root
ctx = json.load(open(f"{root}/context.json"))
UNIT = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


def units(t):
    return UNIT.findall(t.lower())


def grams(u, n):
    return {tuple(u[i : i + n]) for i in range(len(u) - n + 1)}


def run(split, f):
    qs = json.load(open(f"{root}/{split}.json"))
    return sum(
        max(q["paragraphs"], key=lambda p: f(q["question"], ctx[p], [ctx[x] for x in q["paragraphs"]])) == q["relevant"]
        for q in qs
    ) / len(qs)


def char2(q, p, c):
    return sum(1 for i in range(len(q) - 1) if q[i : i + 2] in p)


def unit2(q, p, c):
    pu = units(p)
    return len(grams(units(q), 2) & grams(pu, 2))


def unit12(q, p, c):
    qu, pu = units(q), units(p)
    return len(grams(qu, 2) & grams(pu, 2)) + 0.5 * len(grams(qu, 1) & grams(pu, 1))


def unit2idf(q, p, c):
    qu = units(q)
    qg = grams(qu, 2) | grams(qu, 1)
    cg = [grams(units(x), 2) | grams(units(x), 1) for x in c]
    pg = grams(units(p), 2) | grams(units(p), 1)
    return sum(math.log((len(c) + 1) / (1 + sum(g in s for s in cg))) + 1 for g in qg & pg)


for f in (char2, unit2, unit12, unit2idf):
    print(f.__name__, run("validation", f), run("test", f))
