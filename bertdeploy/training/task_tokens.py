"""Token classification in training: words → sub-tokens with each word's tag on its first sub-token (``-100``
elsewhere, or on every sub-token with ``label_all_tokens``), and entity-level scores with seqeval on the words.

Evaluation splits are always labelled on first sub-tokens only, so validation and test scores count each word
once whatever ``label_all_tokens`` says (as the runtime's word-level aggregation does).
"""

from __future__ import annotations

from typing import Any

#: the label id transformers' losses ignore
IGNORE = -100
#: the column ``encode(..., word_ids=True)`` adds: each token's word index, -1 for special and padding tokens
WORD_IDS = "word_ids"


def align(word_ids: list[int | None], tags: list[int], label_all: bool, inside: dict[int, int]) -> list[int]:
    """Per-token labels of one encoded sentence: a word's tag on its first sub-token; its other sub-tokens get
    ``IGNORE`` or, with ``label_all``, the tag again (a ``B-`` tag turned into its ``I-`` tag via ``inside``)."""
    out, prev = [], None
    for w in word_ids:
        if w is None:
            out.append(IGNORE)
        elif w != prev:
            out.append(tags[w])
        else:
            out.append(inside.get(tags[w], tags[w]) if label_all else IGNORE)
        prev = w
    return out


def inside_ids(labels: list[str]) -> dict[int, int]:
    """``B-X`` id -> ``I-X`` id, for the tags that have both."""
    index = {name: i for i, name in enumerate(labels)}
    return {i: index[f"I-{n[2:]}"] for i, n in enumerate(labels) if n.startswith("B-") and f"I-{n[2:]}" in index}


def encode(data: Any, tokenizer: Any, max_length: int, padding: str, label_all_tokens: bool = False,
           word_ids: bool = False):  # fmt: skip
    """Tokenized ``DatasetDict`` (input_ids, attention_mask, [token_type_ids], labels) of token data; with
    ``word_ids`` also the :data:`WORD_IDS` column (distillation aligns the teacher's words with it)."""
    pad = "max_length" if padding == "static" else False
    inside = inside_ids(data.labels)

    def encoder(label_all: bool):
        def run(batch):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length,
                            padding=pad)  # fmt: skip
            enc["labels"] = [align(enc.word_ids(i), tags, label_all, inside) for i, tags in enumerate(batch["tags"])]
            if word_ids:
                enc[WORD_IDS] = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(batch["tags"]))]
            return enc

        return run

    ds = data.to_datasets()
    return type(ds)(
        {
            name: split.map(
                encoder(label_all_tokens and name == "train"),
                batched=True,
                remove_columns=["tokens", "tags"],
                desc=f"tokenize {name}",
            )  # fmt: skip
            for name, split in ds.items()
        }
    )


#: the run folder's (and, through export, the manifest's) tag transition counts of the training split
TRANSITIONS_FILE = "tag_transitions.json"


def transitions(data: Any) -> dict[str, Any]:
    """The training split's tag transition counts (:func:`bertdeploy.runtime.entities.count_transitions`): what
    ``bio`` decoding adds to the model's scores, in training's scores, the export gate and the runtime alike."""
    from bertdeploy.runtime.entities import count_transitions

    return count_transitions(data.splits["train"]["tags"], len(data.labels))


def data_prior(data: Any) -> Any:
    """The :class:`~bertdeploy.runtime.entities.TagPrior` of the training split's tags (what training's scores and a
    token teacher's scores decode with)."""
    from bertdeploy.runtime.entities import TagPrior

    return TagPrior.from_counts(transitions(data), len(data.labels))


def read_transitions(run: Any, labels: list[str]) -> tuple[dict[str, Any] | None, Any]:
    """(counts, :class:`~bertdeploy.runtime.entities.TagPrior`) of a run folder; (None, None) for a run trained
    before bertdeploy counted them."""
    import json
    from pathlib import Path

    from bertdeploy.errors import UserError
    from bertdeploy.runtime.entities import TagPrior

    path = Path(run) / TRANSITIONS_FILE
    if not path.is_file():
        return None, None
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        return table, TagPrior.from_counts(table, len(labels))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: {e}") from None


def scores(predictions: Any, label_ids: Any, labels: list[str], prior: Any = None) -> dict[str, Any]:
    """seqeval entity P/R/F1 (micro and per type) and token accuracy over the labelled positions (one a word), the
    words' tags decoded as the runtime decodes them by default (:func:`bertdeploy.runtime.entities.best_tags`, BIO
    with ``prior``'s transition scores) from logits ``[rows, tokens, labels]`` (tag ids ``[rows, tokens]`` are taken
    as they are)."""
    from bertdeploy.metrics import entity_metrics
    from bertdeploy.runtime.entities import best_tags

    gold_tags, pred_tags = [], []
    for p_row, g_row in zip(predictions, label_ids):
        keep = g_row != IGNORE
        gold_tags.append([labels[int(t)] for t in g_row[keep]])
        chosen = best_tags(p_row[keep], labels, prior=prior) if predictions.ndim == 3 else p_row[keep]
        pred_tags.append([labels[int(t)] for t in chosen])
    return entity_metrics(gold_tags, pred_tags)
