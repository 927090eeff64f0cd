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
    paragraphs: Iterable[str],
    per_paragraph: int = 4,
    seed: int = 42,
    prefix: str = "cloze",
    per_sentence: int = 1,
    context_chars: int = 0,
) -> list[dict[str, Any]]:
    """Up to ``per_paragraph`` cloze questions from each paragraph, as flattened-JSONL QA records ``{id, question,
    context, answers: {text: [phrase], answer_start: [offset]}}``.

    Sentences are visited in a seeded order, one phrase each a round, for up to ``per_sentence`` rounds (1: one
    question a sentence at most). ``context_chars`` > 0 cuts each record's context to the answer's sentence and its
    neighbours, whole sentences, up to about that many characters (short contexts make many questions cheap to
    train on); 0 keeps the whole paragraph."""
    rng = random.Random(seed)
    paragraphs = list(paragraphs)
    counts = ngram_counts(paragraphs)
    out: list[dict[str, Any]] = []
    for p, paragraph in enumerate(paragraphs):
        bounds = [(m.start(), m.end()) for m in _SENTENCE.finditer(paragraph)]  # every sentence: the windows'
        spans = [(s, e) for s, e in bounds if e - s >= MIN_SENTENCE]  # those long enough to ask about
        rng.shuffle(spans)
        found = _paragraph_clozes(paragraph, spans, per_paragraph, per_sentence, rng, counts)
        for made, (span, a, phrase, question) in enumerate(found):
            lo, hi = _window(bounds, span, context_chars) if context_chars > 0 else (0, len(paragraph))
            record = {"id": f"{prefix}-{p}-{made}", "question": question, "context": paragraph[lo:hi]}
            record["answers"] = {"text": [phrase], "answer_start": [a - lo]}
            out.append(record)
    return out


def _paragraph_clozes(paragraph, spans, per_paragraph, per_sentence, rng, counts) -> list[tuple]:
    """``(sentence span, answer offset, phrase, question)`` for up to ``per_paragraph`` gaps, round-robin over the
    sentences (each sentence's phrase candidates drawn lazily, so one round uses the seed as one question a
    sentence always did)."""
    pools = [_candidates(paragraph, start, end, rng, counts) for start, end in spans]
    used: set[str] = set()  # a phrase occurs once in the paragraph, but two patterns may both yield it
    found: list[tuple] = []
    for _ in range(per_sentence):
        for i, (start, end) in enumerate(spans):
            if len(found) >= per_paragraph:
                return found
            for a, b in pools[i]:
                phrase = paragraph[a:b].strip()
                a = paragraph.index(phrase, a) if phrase else a
                if not phrase or paragraph.count(phrase) != 1 or len(phrase) > 30 or phrase in used:
                    continue
                used.add(phrase)
                found.append(((start, end), a, phrase, _question(paragraph, start, end, a, a + len(phrase))))
                break
    return found


def _window(bounds: list[tuple[int, int]], span: tuple[int, int], chars: int) -> tuple[int, int]:
    """Whole sentences (``bounds``: every sentence of the paragraph) around ``span``, the answer's sentence, which
    is always kept: one more after it, then one before, while the window stays within ``chars`` characters."""
    i = next(k for k, (s, e) in enumerate(bounds) if s <= span[0] < e)
    lo, hi = bounds[i]
    before, after = i - 1, i + 1
    while True:
        grew = False
        if after < len(bounds) and bounds[after][1] - lo <= chars:
            hi, after, grew = bounds[after][1], after + 1, True
        if before >= 0 and hi - bounds[before][0] <= chars:
            lo, before, grew = bounds[before][0], before - 1, True
        if not grew:
            return lo, hi


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
    data: str,
    output: str,
    per_paragraph: int = 4,
    seed: int = 42,
    overwrite: bool = False,
    per_sentence: int = 1,
    context_chars: int = 0,
    only: bool = False,
) -> ClozeData:
    """A QA data folder for ``train``: ``data``'s questions (any QA layout) as flattened JSONL, with up to
    ``per_paragraph`` cloze questions from each distinct training paragraph added to the training split (shuffled
    in, seeded), and ``cloze.json`` saying how it was made. ``only`` makes the cloze questions the whole training
    split (a first stage before the real questions); ``per_sentence`` and ``context_chars`` as in
    :func:`cloze_records`. Only training paragraphs are used, so validation and test stay unseen. ``output`` is
    written whole or not at all; ``overwrite`` replaces a folder only when this function wrote it."""
    from bertdeploy.data import DataSpec, load_data
    from bertdeploy.errors import UserError
    from bertdeploy.outputs import atomic_dir

    for flag, value in (("--per-paragraph", per_paragraph), ("--per-sentence", per_sentence)):
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    if context_chars < 0:
        raise UserError(f"--context-chars must be >= 0 (0: whole paragraphs), got {context_chars}")
    loaded = load_data(DataSpec(data, task="question-answering", val_ratio=0.0))
    if "train" not in loaded.splits:
        raise UserError(f"{data}: no training split to make cloze questions from")
    splits = {name: _records(rows) for name, rows in loaded.splits.items()}
    paragraphs = list(dict.fromkeys(r["context"] for r in splits["train"]))
    cloze = cloze_records(paragraphs, per_paragraph, seed, per_sentence=per_sentence, context_chars=context_chars)
    splits["train"] = cloze if only else splits["train"] + cloze
    random.Random(seed).shuffle(splits["train"])
    counts = {name: len(records) for name, records in splits.items()}
    info = {"format": FORMAT, "source": str(data), "per_paragraph": per_paragraph, "seed": seed}
    info |= {"per_sentence": per_sentence, "context_chars": context_chars, "cloze_only": only}
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
