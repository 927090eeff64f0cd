"""``bertdeploy distill --student-init SOURCE``: start a small student from a pretrained (or fine-tuned) BERT pruned
to the student preset's shape instead of from random weights.

The student keeps the first ``layers`` encoder layers of the source and, in them, the hidden channels, attention
heads and FFN neurons with the largest activations on sample training texts (Minitron's activation-based width
pruning: Muralidharan et al., 2024, "Compact language models via pruning and knowledge distillation"):

- a hidden channel scores the mean |output| of every LayerNorm it passes through (embeddings and kept layers);
- a head scores the mean L2 norm of its context vector; an FFN neuron the mean |activation|;
- means run over real (unpadded) tokens only. Kept indices stay in their original order.

Heads keep the source's head size, so a preset's width decides the head count: bert-mini's 256 channels from
MiniLM-L6 (32-dim heads) give 8 heads of 32 rather than bert-mini's 4 of 64 (the same parameters and FLOPs).
The source needs the student's vocabulary; a source of the data's task (a sequence classifier, or a token classifier
for token classification) with the data's labels also gives its head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertdeploy import tasks
from bertdeploy.errors import UserError

#: sample texts that score the channels, heads and neurons
SAMPLE = 512


def check_source(spec: str) -> str:
    """The source folder (a run folder, a pretrained folder or ``minilm-l6``); cheap checks only."""
    from bertdeploy.training.models import resolve

    ms = resolve(spec)
    if ms.kind != "local":
        raise UserError(f"--student-init {spec!r}: must be a local folder or minilm-l6")
    if not (Path(ms.location) / "model.safetensors").is_file():
        raise UserError(f"--student-init {spec}: no model.safetensors (bertdeploy loads safetensors weights only)")
    return ms.location


def _load_source(location: str, labels: list[str], task: str):
    """(encoder model, classifier head or None, its row order for ``labels``, tokenizer vocabulary)."""
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    spec = tasks.get(task)
    try:
        config = AutoConfig.from_pretrained(location, local_files_only=True)
        vocab = AutoTokenizer.from_pretrained(location, use_fast=True, local_files_only=True).get_vocab()
        names = [str(config.id2label[i]) for i in range(len(config.id2label))]
        is_classifier = any(str(a).endswith(spec.architecture) for a in config.architectures or [])
        if is_classifier and sorted(names) == sorted(labels):
            model = getattr(transformers, spec.auto_model).from_pretrained(
                location, use_safetensors=True, local_files_only=True
            )
            base, head = getattr(model, model.base_model_prefix), model.classifier
            return base.eval(), head, [names.index(name) for name in labels], vocab
        base = AutoModel.from_pretrained(location, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"--student-init {location}: cannot load it ({str(e).splitlines()[0]})") from None
    return base.eval(), None, None, vocab


def importance(base: Any, batches: list[dict[str, Any]], layers: int) -> dict[str, Any]:
    """Activation scores: ``hidden`` [H], and per kept layer ``heads`` [A] and ``neurons`` [I]."""
    import torch

    cfg = base.config
    size = cfg.hidden_size // cfg.num_attention_heads
    hidden = torch.zeros(cfg.hidden_size)
    heads = [torch.zeros(cfg.num_attention_heads) for _ in range(layers)]
    neurons = [torch.zeros(cfg.intermediate_size) for _ in range(layers)]
    mask: list[Any] = [None]

    def add(acc: Any, values: Any) -> None:  # values [B, T, D]: sum over the real tokens
        acc += (values * mask[0][..., None]).sum((0, 1))

    hooks = [base.embeddings.LayerNorm.register_forward_hook(lambda m, i, o: add(hidden, o.abs()))]
    for n, layer in enumerate(base.encoder.layer[:layers]):
        for ln in (layer.attention.output.LayerNorm, layer.output.LayerNorm):
            hooks.append(ln.register_forward_hook(lambda m, i, o: add(hidden, o.abs())))
        hooks.append(layer.attention.self.register_forward_hook(
            lambda m, i, o, n=n: add(heads[n], o[0].unflatten(-1, (-1, size)).norm(dim=-1))))  # fmt: skip
        hooks.append(layer.intermediate.register_forward_hook(lambda m, i, o, n=n: add(neurons[n], o.abs())))
    try:
        with torch.inference_mode():
            for batch in batches:
                mask[0] = batch["attention_mask"].float()
                base(**batch)
    finally:
        for h in hooks:
            h.remove()
    return {"hidden": hidden, "heads": heads, "neurons": neurons}


def _top(scores: Any, k: int) -> Any:
    import torch

    return torch.sort(torch.topk(scores, k).indices).values


def _linear(dst: Any, src: Any, rows: Any, cols: Any) -> None:
    dst.weight.copy_(src.weight[rows][:, cols])
    if dst.bias is not None:
        dst.bias.copy_(src.bias[rows])


def _norm(dst: Any, src: Any, ch: Any) -> None:
    dst.weight.copy_(src.weight[ch])
    dst.bias.copy_(src.bias[ch])


def _copy_layer(dst: Any, src: Any, ch: Any, heads: Any, neurons: Any, size: int) -> None:
    import torch

    dims = (heads[:, None] * size + torch.arange(size)).flatten()
    for name in ("query", "key", "value"):
        _linear(getattr(dst.attention.self, name), getattr(src.attention.self, name), dims, ch)
    _linear(dst.attention.output.dense, src.attention.output.dense, ch, dims)
    _norm(dst.attention.output.LayerNorm, src.attention.output.LayerNorm, ch)
    _linear(dst.intermediate.dense, src.intermediate.dense, neurons, ch)
    _linear(dst.output.dense, src.output.dense, ch, neurons)
    _norm(dst.output.LayerNorm, src.output.LayerNorm, ch)


def _check_shape(student: Any, base: Any) -> int:
    """The source's head size; one clear error when the student's shape cannot be cut from the source."""
    s, t = student.config, base.config
    if t.model_type != "bert" or s.model_type != "bert":
        raise UserError(f"--student-init: BERT models only (source {t.model_type}, student {s.model_type})")
    size = t.hidden_size // t.num_attention_heads
    wider = [f"{k} {getattr(s, k)} > {getattr(t, k)}" for k in ("num_hidden_layers", "hidden_size",
             "intermediate_size") if getattr(s, k) > getattr(t, k)]  # fmt: skip
    if wider:
        raise UserError(f"--student-init: the student is larger than the source ({', '.join(wider)})")
    if s.hidden_size % size:
        raise UserError(f"--student-init: hidden size {s.hidden_size} is not a multiple of the source's head size")
    return size


def student_config(student: Any, base: Any) -> Any:
    """The student's config with the source's head size (heads = hidden / head size) and vocabulary size."""
    size = _check_shape(student, base)
    config = student.config.__class__.from_dict(student.config.to_dict())
    config.num_attention_heads = config.hidden_size // size
    for key in ("vocab_size", "max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps"):
        setattr(config, key, getattr(base.config, key))
    return config


def _copy(student: Any, base: Any, head: Any, order: Any, scores: dict[str, Any]) -> None:
    import torch

    cfg = student.config
    size = cfg.hidden_size // cfg.num_attention_heads
    ch = _top(scores["hidden"], cfg.hidden_size)
    dst = getattr(student, student.base_model_prefix)
    with torch.no_grad():
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            getattr(dst.embeddings, name).weight.copy_(getattr(base.embeddings, name).weight[:, ch])
        _norm(dst.embeddings.LayerNorm, base.embeddings.LayerNorm, ch)
        for n, layer in enumerate(dst.encoder.layer):
            heads = _top(scores["heads"][n], cfg.num_attention_heads)
            neurons = _top(scores["neurons"][n], cfg.intermediate_size)
            _copy_layer(layer, base.encoder.layer[n], ch, heads, neurons, size)
        if dst.pooler is not None and base.pooler is not None:
            _linear(dst.pooler.dense, base.pooler.dense, ch, ch)
        if head is not None:
            _linear(student.classifier, head, torch.tensor(order), ch)


def prune_into(
    student: Any,
    tokenizer: Any,
    spec: str,
    labels: list[str],
    texts: list[str],
    max_length: int,
    task: str = tasks.DEFAULT,
) -> tuple[Any, dict[str, Any]]:
    """A new student model of ``student``'s shape cut from ``spec`` (see the module doc), and what was done;
    ``task`` picks the student's AutoModel class (a token classifier for token classification)."""
    import torch
    import transformers

    location = check_source(spec)
    base, head, order, vocab = _load_source(location, labels, task)
    if vocab != tokenizer.get_vocab():
        raise UserError(f"--student-init {spec}: its vocabulary differs from the student's tokenizer")
    config = student_config(student, base)
    sample = [t for t in texts if t.strip()][:SAMPLE]
    if not sample:
        raise UserError("--student-init: no training texts to score the source's activations")
    batches = [tokenizer(sample[i : i + 32], truncation=True, max_length=max_length, padding=True,
                         return_tensors="pt") for i in range(0, len(sample), 32)]  # fmt: skip
    scores = importance(base, [dict(b) for b in batches], config.num_hidden_layers)
    torch.manual_seed(0)
    pruned = getattr(transformers, tasks.get(task).auto_model).from_config(config)
    _copy(pruned, base, head, order, scores)
    src = base.config
    info = {"from": spec, "location": location, "sample_texts": len(sample), "head": head is not None,
            "source_shape": [src.num_hidden_layers, src.hidden_size, src.num_attention_heads, src.intermediate_size],
            "shape": [config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
                      config.intermediate_size]}  # fmt: skip
    return pruned, info
