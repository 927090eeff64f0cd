"""``bertdeploy distill`` for token classification: per-token soft labels aligned through the words.

The teacher scores each training sentence's words in ITS OWN tokenization and keeps, per word, the logits of the
word's first sub-token (:func:`bertdeploy.training.teacher.score`: one row a word, NaN for a word its max_length
cut off). The student's tokenization of the same words then places each word's row where training puts its label
(:func:`soft_refs`): on the word's first sub-token, and with ``label_all_tokens`` on its other sub-tokens too, where
the teacher's ``B-X`` probability moves to ``I-X`` as the hard label does (:func:`inside_matrix`). The teacher's
rows stay one table (words x labels); the training rows hold only a row index per token (column ``SOFT``, -1 where
there is no soft label: special and padding tokens, unlabelled sub-tokens, words the teacher did not reach).

The loss (:class:`TokenSoftLoss`) is the text-classification one per token: ``alpha * T^2 * KL`` averaged over the
tokens that have a soft label, plus ``(1 - alpha) * CE`` over the labelled tokens (``--augment`` copies of the
sentences and ``--unlabelled`` texts carry no hard label: their tags are -100 and only the KL term sees them).
Unlabelled raw texts become word lists the way the data sets write them (:func:`augment.split_words`: whitespace,
each CJK character a word, as the runtime's ``whitespace_words``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bertdeploy.data import LoadedData
from bertdeploy.training.augment import for_config, split_words
from bertdeploy.training.config import DistillConfig
from bertdeploy.training.losses import SOFT, hard_loss, kl_term
from bertdeploy.training.task_tokens import IGNORE, WORD_IDS, data_prior, encode, inside_ids
from bertdeploy.training.teacher import Teacher, label_order, teacher_logits
from bertdeploy.training.trainer import Prepared

#: the ``SOFT`` index of a token without a soft label
NO_SOFT = -1


def soft_refs(word_ids: Sequence[int], start: int, valid: np.ndarray, label_all: bool = False) -> list[int]:
    """Per student token, the teacher table row of its word (``start + word``) on the word's first sub-token;
    ``-2 - row`` on its later sub-tokens with ``label_all`` (their target is the row with ``B-`` moved to ``I-``);
    :data:`NO_SOFT` elsewhere (special / padding tokens: word id -1 or None; a word whose row is not ``valid``)."""
    out, prev = [], None
    for w in word_ids:
        row = NO_SOFT if w is None or w < 0 or not valid[start + w] else start + w
        if row == NO_SOFT:
            out.append(NO_SOFT)
        elif w != prev:
            out.append(row)
        else:
            out.append(-2 - row if label_all else NO_SOFT)
        prev = w
    return out


def inside_matrix(labels: list[str]) -> np.ndarray:
    """``[labels, labels]``: probabilities times it move each ``B-X`` share onto ``I-X`` (identity elsewhere)."""
    m = np.eye(len(labels), dtype=np.float32)
    for b, i in inside_ids(labels).items():
        m[b, b], m[b, i] = 0.0, 1.0
    return m


class TokenSoftLoss:
    """``alpha * T^2 * KL(teacher || student)`` over the tokens with a soft label + ``(1 - alpha) * CE`` over the
    labelled tokens; the teacher's rows (``table``, words x labels, the data's label order) are looked up by the
    ``SOFT`` column of the batch."""

    def __init__(self, table: np.ndarray, temperature: float, alpha: float, inside: np.ndarray | None = None) -> None:
        import torch

        self.table = torch.from_numpy(np.nan_to_num(table).astype(np.float32))
        self.inside = None if inside is None else torch.from_numpy(inside)
        self.temperature, self.alpha = temperature, alpha

    def targets(self, refs: Any) -> Any:
        """Teacher probabilities at temperature T of the rows ``refs`` (``-2 - row``: with B- moved to I-)."""
        import torch

        if self.table.device != refs.device:  # moved once, not every step
            self.table = self.table.to(refs.device)
            self.inside = None if self.inside is None else self.inside.to(refs.device)
        later = refs < NO_SOFT
        rows = torch.where(later, -2 - refs, refs)
        p = torch.softmax(self.table[rows] / self.temperature, dim=-1)
        if self.inside is not None and bool(later.any()):
            p[later] = p[later] @ self.inside
        return p

    def __call__(self, student: Any, refs: Any, labels: Any, label_smoothing: float = 0.0) -> Any:
        loss = hard_loss(student, labels, label_smoothing) * (1 - self.alpha)
        keep = refs != NO_SOFT
        if self.alpha > 0 and bool(keep.any()):
            kl = kl_term(student[keep], self.targets(refs[keep]), self.temperature)
            loss = loss + self.alpha * self.temperature**2 * kl
        return loss


class SoftCollator:
    """The task's collator plus the ``SOFT`` column padded with :data:`NO_SOFT` to the batch's token width."""

    def __init__(self, base: Any, padding_side: str = "right") -> None:
        self.base, self.padding_side = base, padding_side

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if not features or SOFT not in features[0]:
            return self.base(features)
        refs = [list(f[SOFT]) for f in features]
        batch = self.base([{k: v for k, v in f.items() if k != SOFT} for f in features])
        width = batch["input_ids"].shape[1]
        pad = [[NO_SOFT] * (width - len(r)) for r in refs]
        rows = [p + r if self.padding_side == "left" else r + p for r, p in zip(refs, pad)]
        batch[SOFT] = torch.tensor(rows, dtype=torch.long)
        return batch


def word_scores(
    logits: np.ndarray, gold: Sequence[Sequence[int]], labels: list[str], prior: Any = None
) -> dict[str, Any]:
    """Entity scores (seqeval) of per-word logits (one row a word, sentence after sentence; a NaN row, a word the
    teacher did not reach, counts as ``O``), the tags decoded as ``train`` scores them (BIO sequences with the
    training tags' transition scores ``prior``)."""
    from bertdeploy.metrics import entity_metrics
    from bertdeploy.runtime.entities import best_tags

    outside = labels.index("O") if "O" in labels else 0
    bounds = np.cumsum([0, *(len(tags) for tags in gold)])
    pred_tags = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        rows = logits[a:b]
        reached = ~np.isnan(rows).any(axis=1)
        tags = np.full(len(rows), outside, dtype=np.int64)
        tags[reached] = best_tags(rows[reached], labels, prior=prior)
        pred_tags.append([labels[int(t)] for t in tags])
    return entity_metrics([[labels[int(t)] for t in tags] for tags in gold], pred_tags)


def _transfer_set(config: DistillConfig, prep: Prepared, extra: list[list[str]], table: np.ndarray):
    """The training sentences and the augmented ones (tags -100) encoded as training encodes them, with ``SOFT``."""
    train = prep.data.splits["train"]
    tokens = [*train["tokens"], *extra]
    tags = [*train["tags"], *([IGNORE] * len(s) for s in extra)]
    data = LoadedData({"train": {"tokens": tokens, "tags": tags}}, prep.data.labels, "", task=prep.task)
    ds = encode(data, prep.tokenizer, config.max_length, config.padding, config.label_all_tokens, word_ids=True)
    starts = np.cumsum([0, *(len(s) for s in tokens)])
    valid = ~np.isnan(table).any(axis=1)

    def refs(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        rows = zip(batch[WORD_IDS], indices, strict=True)
        return {SOFT: [soft_refs(w, int(starts[i]), valid, config.label_all_tokens) for w, i in rows]}

    return ds["train"].map(refs, batched=True, with_indices=True, remove_columns=[WORD_IDS], desc="soft labels")


def score_tokens(
    config: DistillConfig, teacher: Teacher, prep: Prepared, unlabelled: Sequence[str] = ()
) -> tuple[dict[str, Any], TokenSoftLoss]:
    """Teacher logits per word on train + ``unlabelled`` (split into words) + eval sentences (cached in the partial
    folder) and on the ``--augment`` copies; the transfer set is put in place of the training split. Returns the
    teacher's description (with its eval-split scores) and the loss."""
    order = label_order(teacher.labels, prep.data.labels)
    splits, ev = prep.data.splits, prep.data.eval_split
    train = [list(s) for s in splits["train"]["tokens"]]
    words = [w for w in map(split_words, unlabelled) if w]
    sentences = [*train, *words, *(list(s) for s in splits[ev]["tokens"])]
    logits, cache = teacher_logits(teacher, sentences, prep.work, config.teacher_batch_size)
    n = sum(len(s) for s in train)
    u = n + sum(len(s) for s in words)
    extra, extra_logits, augment_info = for_config(config, teacher, prep.tokenizer, train)
    table = np.concatenate([logits[:u], extra_logits])[:, order]
    prep.datasets["train"] = _transfer_set(config, prep, [*words, *extra], table)
    gold = np.concatenate([np.asarray(t, dtype=np.int64) for t in splits["train"]["tags"]])
    reached = ~np.isnan(table[:n]).any(axis=1)
    agree = float(np.mean(np.nan_to_num(table[:n]).argmax(-1)[reached] == gold[reached])) if reached.any() else 0.0
    scores = word_scores(logits[u:][:, order], splits[ev]["tags"], prep.data.labels, data_prior(prep.data))
    info = {**teacher.describe(), "cache": cache, "scored_texts": len(sentences), "unlabelled_texts": len(words),
            "scored_words": int(len(logits)), "words_cut": int((~reached).sum()), "train_agreement": round(agree, 4),
            "eval_split": ev, "augment": augment_info,
            "eval": {k: v for k, v in scores.items() if isinstance(v, float)}}  # fmt: skip
    inside = inside_matrix(prep.data.labels) if config.label_all_tokens else None
    return info, TokenSoftLoss(table, config.temperature, config.alpha, inside)
