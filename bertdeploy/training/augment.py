"""The transfer set of ``bertdeploy distill --augment K``: K perturbed copies of each training text, labelled by the
teacher only (Tang et al., 2019, "Distilling task-specific knowledge from BERT into simple neural networks").

Each word is, independently, masked (``p_mask``), swapped for a word drawn from the training texts by frequency
(``p_swap``; the paper's swaps are guided by part of speech, these are not) or kept; then, with ``p_ngram``, a window
of 1 to ``max_ngram`` words is cut out. Copies are seeded, and deduplicated against each other and the originals
(so a text yields at most K copies). The functions see texts only, never labels: the soft labels come from the
teacher.

Words are whitespace-separated runs, each CJK character a word of its own (how the runtime's word aggregation and
token-classification data split sentences). :func:`perturb_words` works on one word list and returns the window
of original positions it kept — masking and swaps keep every position, a window slices them — so a token-
classification variant (:func:`augment_sentences`) keeps a word ↔ tag alignment for free.

The teacher scores the augmented texts once (:func:`transfer_logits`; a token-classification teacher scores the
augmented sentences' words, one row a word); the logits and the texts are cached under
``$BERTDEPLOY_CACHE/transfer`` (default ``~/.cache/bertdeploy/transfer``), keyed by the teacher's weights, the
training texts, the seed, K and the perturbation, so ``--resume`` and later runs over the same teacher and data
(another student, seed or schedule) do not score them again.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bertdeploy.errors import UserError
from bertdeploy.runtime.entities import is_cjk

if TYPE_CHECKING:
    from bertdeploy.training.config import DistillConfig
    from bertdeploy.training.teacher import Teacher

#: the version of the perturbation algorithm (part of the cache key: a change invalidates old caches)
ALGORITHM = 1
#: most copies per text accepted
MAX_COPIES = 64


@dataclass(frozen=True)
class Perturbation:
    """Probabilities of the Tang et al. recipe (the defaults of ``benchmarks/accuracy/augment.py``'s measured runs)."""

    p_mask: float = 0.1
    p_swap: float = 0.1
    p_ngram: float = 0.25
    max_ngram: int = 5
    mask: str = "[MASK]"

    def __post_init__(self) -> None:
        if not (0 <= self.p_mask and 0 <= self.p_swap and self.p_mask + self.p_swap <= 1 and 0 <= self.p_ngram <= 1):
            raise UserError("augment: p_mask, p_swap, p_ngram must be probabilities (p_mask + p_swap <= 1)")
        if self.max_ngram < 1:
            raise UserError(f"augment: max_ngram must be >= 1, got {self.max_ngram}")


@dataclass(frozen=True)
class Augmented:
    """One perturbed copy: its words, the index of its source sentence, and the source positions it keeps
    (``words[i]`` stands at position ``window.start + i`` of the source)."""

    words: tuple[str, ...]
    source: int
    window: range


def split_words(text: str) -> list[str]:
    """Whitespace-separated words, each CJK character a word of its own."""
    out: list[str] = []
    for chunk in text.split():
        run = ""
        for ch in chunk:
            if is_cjk(ch):
                if run:
                    out.append(run)
                out.append(ch)
                run = ""
            else:
                run += ch
        if run:
            out.append(run)
    return out


def join_words(words: Sequence[str]) -> str:
    """The inverse of :func:`split_words` up to whitespace: a space between words, none between CJK characters."""
    out = ""
    for i, w in enumerate(words):
        if i and not (is_cjk(words[i - 1][-1:]) and is_cjk(w[:1])):
            out += " "
        out += w
    return out


def perturb_words(
    words: Sequence[str], vocab: Sequence[str], rng: random.Random, p: Perturbation = Perturbation()
) -> tuple[list[str], range]:
    """One perturbed copy of ``words`` and the source positions it keeps (masking and swaps keep every position;
    an n-gram window keeps ``window``)."""
    out = []
    for w in words:
        r = rng.random()
        out.append(p.mask if r < p.p_mask else rng.choice(vocab) if r < p.p_mask + p.p_swap and vocab else w)
    window = range(len(out))
    if len(out) > 3 and rng.random() < p.p_ngram:
        n = rng.randint(1, min(p.max_ngram, len(out) - 1))
        start = rng.randrange(len(out) - n + 1)
        window = range(start, start + n)
    return out[window.start : window.stop], window


def augment_sentences(
    sentences: Sequence[Sequence[str]], copies: int, seed: int, p: Perturbation = Perturbation()
) -> list[Augmented]:
    """Up to ``copies`` perturbed copies of each word list, seeded, without duplicates (of each other or of any
    source sentence); swaps draw from the sentences' words by frequency. Copy ``c`` of every sentence comes
    before copy ``c + 1`` of any."""
    _check_copies(copies)
    vocab = [w for s in sentences for w in s]
    seen = {tuple(s) for s in sentences}
    rng = random.Random(seed)
    out = []
    for _ in range(copies):
        for i, sentence in enumerate(sentences):
            words, window = perturb_words(sentence, vocab, rng, p)
            key = tuple(words)
            if key and key not in seen:
                seen.add(key)
                out.append(Augmented(key, i, window))
    return out


def augment_texts(texts: Sequence[str], copies: int, seed: int, p: Perturbation = Perturbation()) -> list[str]:
    """Up to ``copies`` perturbed copies of each text (:func:`augment_sentences` on their words), as texts."""
    return [join_words(a.words) for a in augment_sentences([split_words(t) for t in texts], copies, seed, p)]


def _check_copies(copies: int) -> None:
    if isinstance(copies, bool) or not isinstance(copies, int) or not 0 <= copies <= MAX_COPIES:
        raise UserError(f"augment must be a whole number of copies per text in [0, {MAX_COPIES}], got {copies!r}")


def cache_dir() -> Path:
    """Where transfer sets are cached: ``$BERTDEPLOY_CACHE/transfer``, default ``~/.cache/bertdeploy/transfer``."""
    root = os.environ.get("BERTDEPLOY_CACHE") or Path.home() / ".cache" / "bertdeploy"
    return Path(root).expanduser() / "transfer"


def cache_name(identity: str, max_length: int, texts: Sequence[str], copies: int, seed: int, p: Perturbation) -> str:
    """The cache file of one transfer set: teacher weights + max_length, training texts, K, seed, perturbation."""
    h = hashlib.sha256(f"{ALGORITHM}\0{identity}\0{max_length}\0{copies}\0{seed}\0{astuple(p)}\0".encode())
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return f"transfer-k{copies}-seed{seed}-{h.hexdigest()[:20]}.npz"


def _read_cache(path: Path, texts: list[str], shape: tuple[int, int], per_word: bool) -> np.ndarray | None:
    from bertdeploy.training.teacher import sound

    try:
        with np.load(path, allow_pickle=False) as f:
            cached, logits = f["texts"].tolist(), f["logits"]
    except (OSError, ValueError, KeyError):
        return None
    if cached != texts or logits.shape != shape or not sound(logits, per_word):
        return None
    return logits


def _write_cache(path: Path, texts: list[str], logits: np.ndarray) -> None:
    from bertdeploy import bundle

    path.parent.mkdir(parents=True, exist_ok=True)
    with bundle.atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, texts=np.asarray(texts, dtype=str), logits=logits)


def transfer_logits(
    teacher: Teacher,
    texts: Sequence[Any],
    copies: int,
    seed: int,
    batch_size: int = 64,
    p: Perturbation = Perturbation(),
) -> tuple[list[Any], np.ndarray, dict[str, Any]]:
    """The augmented copies of ``texts``, the teacher's logits on them (its own label order) and what was done;
    scored once, then read from the cache (:func:`cache_dir`). A token-classification teacher takes pre-split
    sentences (word lists, :func:`augment_sentences`) and gives one logit row per word of the copies."""
    from bertdeploy.training.teacher import expected_rows, input_keys, score

    if teacher.per_word:
        augmented: list[Any] = [list(a.words) for a in augment_sentences(texts, copies, seed, p)]
    else:
        augmented = augment_texts(texts, copies, seed, p)
    keys = input_keys(augmented)
    path = cache_dir() / cache_name(teacher.identity, teacher.max_length, input_keys(list(texts)), copies, seed, p)
    shape = (expected_rows(teacher, augmented), len(teacher.labels))
    logits = _read_cache(path, keys, shape, teacher.per_word) if augmented else np.zeros(shape)
    status = "hit"
    if logits is None:
        logits, status = score(teacher, augmented, batch_size), "computed"
        _write_cache(path, keys, logits)
    info = {"copies": copies, "seed": seed, "texts": len(augmented), "duplicates_dropped": copies * len(texts)
            - len(augmented), "cache": status, "cache_file": str(path), **asdict(p)}  # fmt: skip
    return augmented, logits.astype(np.float32), info


def for_config(
    config: DistillConfig, teacher: Teacher, tokenizer: Any, train: list[Any]
) -> tuple[list[Any], np.ndarray, dict[str, Any] | None]:
    """``distill``'s ``--augment`` copies of the training texts (token classification: sentences), their teacher
    logits (the teacher's label order) and what was done (None without augmentation); masks are the student
    tokenizer's mask token."""
    copies = config.copies(len(train))
    if copies == 0 or config.alpha == 0:  # hard labels only: texts without a label would carry no loss
        return [], np.zeros((0, len(teacher.labels)), dtype=np.float32), None
    p = Perturbation(mask=getattr(tokenizer, "mask_token", None) or Perturbation.mask)
    return transfer_logits(teacher, train, copies, config.seed, config.teacher_batch_size, p)
