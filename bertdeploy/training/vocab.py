"""Vocabulary coverage: the share of a tokenizer's output that is ``[UNK]`` on the training texts (``train``
refuses a vocabulary that does not cover the data), and a WordPiece vocabulary built from the training texts
for from-scratch models (``--from-scratch --vocab-from-data``), CJK one character a token as in BERT's Chinese
vocabulary. Built with the ``tokenizers`` trainer; the result is a ``BertTokenizerFast`` that saves and exports
like any other."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bertdeploy.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: default size of a vocabulary built from data (every character seen is kept even beyond it)
DEFAULT_VOCAB_SIZE = 8000
#: default ceiling of the training texts' [UNK] rate
DEFAULT_MAX_UNK_RATE = 0.05


def build_vocab_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, lowercase: bool = True):
    """A ``BertTokenizerFast`` whose WordPiece vocabulary is trained on ``texts`` (BERT normalizer and
    pre-tokenizer: each CJK character is its own word, so its own token)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise UserError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 1}, got {vocab_size}")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##", show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.model = models.WordPiece(_canonical(tok.get_vocab()), unk_token="[UNK]", continuing_subword_prefix="##")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=lowercase,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def run_tokenizer(texts: Sequence[str], vocab_size: int, checkpoint: Path | None = None) -> Any:
    """The data vocabulary of a run: the one saved with ``checkpoint`` when resuming (the model's embedding rows are
    numbered by it), else one built from ``texts``."""
    if checkpoint is not None and (checkpoint / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(checkpoint, use_fast=True)
    return build_vocab_tokenizer(texts, vocab_size)


def _canonical(vocab: dict[str, int]) -> dict[str, int]:
    """The trained tokens in a fixed order (specials, then words, then ``##`` pieces, each by length and text): the
    trainer numbers them in hash order, so the same texts would give other ids from run to run. (Where merge counts
    tie at the size cutoff, the trainer may also keep other rare Latin or digit pieces: ~1 % of tnews' 8,000 tokens.)"""
    rest = sorted(set(vocab) - set(SPECIAL_TOKENS), key=lambda t: (t.startswith("##"), len(t), t))
    return {t: i for i, t in enumerate([*SPECIAL_TOKENS, *rest])}


def unk_rate(tokenizer: Any, texts: Sequence[str]) -> float:
    """Share of the tokens ``tokenizer`` produces for ``texts`` that are its unknown token (no special tokens,
    no truncation, no padding: every real token counts once); 0.0 for a tokenizer without one."""
    from tokenizers import Tokenizer

    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return 0.0
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())  # a copy: the caller's settings stay
    backend.no_padding()
    backend.no_truncation()
    total = unknown = 0
    for enc in backend.encode_batch(list(texts), add_special_tokens=False):
        total += len(enc.ids)
        unknown += enc.ids.count(unk)
    return unknown / total if total else 0.0


def texts_of(split: dict[str, list[Any]]) -> list[str]:
    """The texts of one loaded split, whatever its task: ``text``; ``tokens`` joined by spaces; questions with their
    contexts (each distinct context once) or their choices."""
    if "text" in split:
        return list(split["text"])
    if "tokens" in split:
        return [" ".join(words) for words in split["tokens"]]
    texts = list(split.get("question", []))
    texts += list(dict.fromkeys(split.get("context", [])))
    texts += list(dict.fromkeys(c for choices in split.get("choices", []) for c in choices))
    return texts


def sample(texts: Sequence[str], n: int = 5000, seed: int = 0) -> list[str]:
    """At most ``n`` of ``texts`` (a seeded sample; all of them when there are fewer)."""
    import random

    if len(texts) <= n:
        return list(texts)
    return random.Random(seed).sample(list(texts), n)


def check_unk(rate: float, limit: float, model: str) -> None:
    """Refuse (one line naming the fix) when the [UNK] rate of the training texts is above ``limit``."""
    if rate > limit:
        raise UserError(
            f"{rate:.1%} of the training tokens are [UNK] with the {model} tokenizer (limit {limit:.0%}): its "
            "vocabulary does not cover this data; use --from-scratch --vocab-from-data (a vocabulary built from the "
            "training texts), or --max-unk-rate 1 to train anyway"
        )
