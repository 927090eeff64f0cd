"""Extractive-QA scores: exact match and F1 of predicted answer strings against every reference answer, computed
as the official SQuAD v1.1 script does for English (normalised words: lower case, no punctuation, no articles;
F1 on the bag of words) and as the CMRC 2018 script does for Chinese (each CJK character a token, punctuation
removed, F1 on the longest common substring of tokens). A question is scored the Chinese way when one of its
references holds a CJK character. Standard library only.

One deliberate difference from the CMRC script: it splits runs of non-CJK characters with ``nltk.word_tokenize``;
here they split on whitespace and punctuation (``\\w+`` runs), which agrees on the letters and digits that occur in
answers without adding nltk.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

_CJK = re.compile(r"[\u4e00-\u9fa5]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_WORDS = re.compile(r"\w+|[^\w\s]")
#: the CMRC 2018 script's punctuation list
CMRC_PUNCTUATION = frozenset(
    [
        "-",
        ":",
        "_",
        "*",
        "^",
        "/",
        "\\",
        "~",
        "`",
        "+",
        "=",
        "，",
        "。",
        "：",
        "？",
        "！",
        "“",
        "”",
        "；",
        "’",
        "《",
        "》",
        "……",
        "·",
        "、",
        "「",
        "」",
        "（",
        "）",
        "－",
        "～",
        "『",
        "』",
    ]  # fmt: skip
)


def squad_normalize(text: str) -> str:
    """The SQuAD v1.1 script's ``normalize_answer``."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _squad_f1(prediction: str, reference: str) -> float:
    pred, ref = squad_normalize(prediction).split(), squad_normalize(reference).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def cmrc_segments(text: str, remove_punctuation: bool = True) -> list[str]:
    """The CMRC 2018 script's ``mixed_segmentation``: CJK characters one by one, other runs split into words."""
    out: list[str] = []
    run = ""
    for ch in str(text).lower().strip():
        if remove_punctuation and ch in CMRC_PUNCTUATION:
            continue
        if _CJK.match(ch) or ch in CMRC_PUNCTUATION:
            out.extend(_WORDS.findall(run))
            run = ""
            out.append(ch)
        else:
            run += ch
    out.extend(_WORDS.findall(run))
    return out


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def _cmrc_f1(prediction: str, reference: str) -> float:
    pred, ref = cmrc_segments(prediction), cmrc_segments(reference)
    same = _longest_common_run(ref, pred)
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def _cmrc_strip(text: str) -> str:
    return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_PUNCTUATION)


def answer_scores(prediction: str, references: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction, each the best over the references (0 / 0 without references)."""
    if not references:
        return 0.0, 0.0
    if any(_CJK.search(r) for r in references):
        em = max(float(_cmrc_strip(prediction) == _cmrc_strip(r)) for r in references)
        return em, max(_cmrc_f1(prediction, r) for r in references)
    em = max(float(squad_normalize(prediction) == squad_normalize(r)) for r in references)
    return em, max(_squad_f1(prediction, r) for r in references)


def qa_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """``exact_match`` and ``f1`` averaged over questions, as fractions in [0, 1] (the scripts print x 100), and
    ``n``."""
    if len(predictions) != len(references):
        raise ValueError("one list of reference answers per prediction is needed")
    pairs = [answer_scores(p, r) for p, r in zip(predictions, references)]
    n = len(pairs)
    return {
        "exact_match": sum(e for e, _ in pairs) / n if n else 0.0,
        "f1": sum(f for _, f in pairs) / n if n else 0.0,
        "n": n,
    }
