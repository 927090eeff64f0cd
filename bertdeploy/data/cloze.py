"""Cloze questions from unlabelled paragraphs: extra extractive-QA training records made from the data's own text.

A sentence of a paragraph, with one phrase in it replaced by a question word, becomes a question whose answer is that
phrase at its place in the paragraph (``"1991年印度有將近5萬人..."`` → ``"何時印度有將近5萬人？"``, answer ``1991年``).
Training on them teaches a reader from random weights what a pretrained one brings: find the part of the paragraph
the question's words come from and take the phrase that fills the gap — the span-selection idea of Glass et al.
2020 and Ram et al. 2021 (Splinter), here as plain QA records that ``train`` reads like any other.

Phrases, most wanted first: numbers with their unit, text in brackets or quotes, one to three Latin words, then runs
of two to :data:`WORD_MAX` CJK characters that look like words (Chinese has no spaces to cut at): they recur in the
corpus, one more character on either side occurs less often, and they neither start nor end with a function
character. A phrase that occurs twice in its paragraph is never chosen (the answer must be unambiguous); the
question keeps up to :data:`CONTEXT_CHARS` characters on each side of the gap, within its clause. Deterministic for
a seed.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: characters of the sentence kept on each side of the gap in the question
CONTEXT_CHARS = 18
#: ``cloze.json``'s format tag (what ``--overwrite`` recognises as a folder this module wrote)
FORMAT = "bertdeploy-cloze/1"
#: sentences shorter than this make no question
MIN_SENTENCE = 10
_SENTENCE = re.compile(r"[^。！？；!?;\n]+[。！？；!?;]?")
_PHRASES = (
    re.compile(r"\d[\d,.]*\s*(?:年|月|日|世紀|%|％|萬|億|千|百|人|個|種|次|公里|公尺|米|歲|名|座|位|倍|度)*"),
    re.compile(r"(?<=[「『《〈（(])[^」』》〉）)]{1,20}(?=[」』》〉）)])"),
    re.compile(r"[A-Za-z][A-Za-z'-]*(?: [A-Za-z][A-Za-z'-]*){0,2}"),
)
_CJK = re.compile(r"[\u4e00-\u9fff]{2,}")
#: the longest CJK word a cloze gap takes, in characters
WORD_MAX = 4
#: function characters a CJK gap neither starts nor ends with (they attach to the words around them)
_FUNCTION = set("的了是在也與和及或為於之而並但到被將把就都其這那一有以所從對由向即亦又則")


def _wh(phrase: str) -> str:
    if re.search(r"\d", phrase):
        return "何時" if re.search(r"年|月|日|世紀", phrase) else "多少"
    return "什麼"


def ngram_counts(paragraphs: list[str], longest: int = WORD_MAX) -> Counter[str]:
    """How often each run of 2 .. ``longest`` + 1 CJK characters occurs in ``paragraphs``."""
    counts: Counter[str] = Counter()
    for paragraph in paragraphs:
        for run in _CJK.findall(paragraph):
            for n in range(2, longest + 2):
                counts.update(run[i : i + n] for i in range(len(run) - n + 1))
    return counts


def _word_like(paragraph: str, a: int, b: int, counts: Counter[str]) -> bool:
    """A run of CJK characters that recurs in the corpus and whose ends are free: one more character on either side
    occurs less often (an unsupervised word boundary, as in branching-entropy segmentation)."""
    n = counts[paragraph[a:b]]
    left = counts[paragraph[a - 1 : b]] if a > 0 else 0
    right = counts[paragraph[a : b + 1]] if b < len(paragraph) else 0
    edges = paragraph[a] in _FUNCTION or paragraph[b - 1] in _FUNCTION
    return n >= 2 and left < n and right < n and not edges


def _candidates(paragraph: str, start: int, end: int, rng: random.Random, counts: Counter[str]):
    """(start, end) of phrases inside ``paragraph[start:end]``, the most question-like kinds first."""
    sentence = paragraph[start:end]
    for pattern in _PHRASES:
        found = [(start + m.start(), start + m.end()) for m in pattern.finditer(sentence) if m.group().strip()]
        rng.shuffle(found)
        yield from found
    words = [
        (start + m.start() + i, start + m.start() + i + n)
        for m in _CJK.finditer(sentence)
        for n in range(WORD_MAX, 1, -1)
        for i in range(len(m.group()) - n + 1)
        if _word_like(paragraph, start + m.start() + i, start + m.start() + i + n, counts)
    ]
    rng.shuffle(words)
    yield from sorted(words, key=lambda w: w[0] - w[1])  # longer words first, random among equals


def _question(paragraph: str, start: int, end: int, a: int, b: int) -> str:
    left = paragraph[max(start, a - CONTEXT_CHARS) : a]
    cut = max(left.rfind(c) for c in "，,、：:")
    if cut >= 0 and len(left) - cut > 4:  # start at a clause boundary rather than inside a word
        left = left[cut + 1 :]
    right = paragraph[b : min(end, b + CONTEXT_CHARS)]
    cut = min((i for i in (right.find(c) for c in "，,。；;！!？?") if i >= 4), default=len(right))
    right = right[:cut].rstrip("。，,；;！!？?、：: ")
    return f"{left.lstrip()}{_wh(paragraph[a:b])}{right}？"


def cloze_records(
    paragraphs: Iterable[str], per_paragraph: int = 4, seed: int = 42, prefix: str = "cloze"
) -> list[dict[str, Any]]:
    """Up to ``per_paragraph`` cloze questions from each paragraph (one per sentence), as flattened-JSONL QA
    records ``{id, question, context, answers: {text: [phrase], answer_start: [offset]}}``."""
    rng = random.Random(seed)
    paragraphs = list(paragraphs)
    counts = ngram_counts(paragraphs)
    out: list[dict[str, Any]] = []
    for p, paragraph in enumerate(paragraphs):
        spans = [(m.start(), m.end()) for m in _SENTENCE.finditer(paragraph) if m.end() - m.start() >= MIN_SENTENCE]
        rng.shuffle(spans)
        made = 0
        for start, end in spans:
            if made >= per_paragraph:
                break
            for a, b in _candidates(paragraph, start, end, rng, counts):
                phrase = paragraph[a:b].strip()
                a = paragraph.index(phrase, a) if phrase else a
                if not phrase or paragraph.count(phrase) != 1 or len(phrase) > 30:
                    continue
                question = _question(paragraph, start, end, a, a + len(phrase))
                record = {"id": f"{prefix}-{p}-{made}", "question": question, "context": paragraph}
                record["answers"] = {"text": [phrase], "answer_start": [a]}
                out.append(record)
                made += 1
                break
    return out


@dataclass
class ClozeData:
    """What :func:`write_cloze_data` wrote."""

    output: str
    questions: dict[str, int]
    """Records per split file written (``train`` counts the cloze questions too)."""
    cloze: int
    paragraphs: int
    """Distinct training paragraphs the cloze questions came from."""


def write_cloze_data(
    data: str, output: str, per_paragraph: int = 4, seed: int = 42, overwrite: bool = False
) -> ClozeData:
    """A QA data folder for ``train``: ``data``'s questions (any QA layout) as flattened JSONL, with up to
    ``per_paragraph`` cloze questions from each distinct training paragraph added to the training split (shuffled
    in, seeded), and ``cloze.json`` saying how it was made. Only training paragraphs are used, so validation and
    test stay unseen. ``output`` is written whole or not at all; ``overwrite`` replaces a folder only when this
    function wrote it."""
    from bertdeploy.data import DataSpec, load_data
    from bertdeploy.errors import UserError
    from bertdeploy.outputs import atomic_dir

    if per_paragraph < 1:
        raise UserError(f"--per-paragraph must be >= 1, got {per_paragraph}")
    loaded = load_data(DataSpec(data, task="question-answering", val_ratio=0.0))
    if "train" not in loaded.splits:
        raise UserError(f"{data}: no training split to make cloze questions from")
    splits = {name: _records(rows) for name, rows in loaded.splits.items()}
    paragraphs = list(dict.fromkeys(r["context"] for r in splits["train"]))
    cloze = cloze_records(paragraphs, per_paragraph, seed)
    splits["train"] = splits["train"] + cloze
    random.Random(seed).shuffle(splits["train"])
    counts = {name: len(records) for name, records in splits.items()}
    info = {"format": FORMAT, "source": str(data), "per_paragraph": per_paragraph, "seed": seed}
    info |= {"cloze_questions": len(cloze), "paragraphs": len(paragraphs), "questions": counts}
    with atomic_dir(output, overwrite=overwrite, kind="cloze", inputs=[data]) as tmp:
        for name, records in splits.items():
            with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (tmp / "cloze.json").write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return ClozeData(output=str(output), questions=counts, cloze=len(cloze), paragraphs=len(paragraphs))


def _records(rows: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = ("id", "question", "context", "answers")
    return [dict(zip(keys, values, strict=True)) for values in zip(*(rows[k] for k in keys), strict=True)]
