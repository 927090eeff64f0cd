"""The [CLS]-only last layer: the same logits as the full model, in PyTorch and after export."""

from __future__ import annotations

import pytest

from bertdeploy.exporter.prune import cls_only_copy

TEXTS = ["good", "a much longer text that needs several more tokens than the others", "bad day", "ok then"]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_pruned_copy_gives_the_same_logits_on_a_padded_batch(tiny_model_dir, attn):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, attn_implementation=attn).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # padding is exercised
    pruned, reason = cls_only_copy(model)
    assert reason is None and pruned is not model
    with torch.no_grad():
        full, cls = model(**batch).logits, pruned(**batch).logits
    assert torch.allclose(full, cls, atol=1e-5), (full - cls).abs().max()
    # the original is untouched, and the pruned last layer really sees one row
    assert type(model.bert.encoder.layer[-1]).__name__ == "BertLayer"
    seen = []
    pruned.bert.encoder.layer[-1].layer.output.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        pruned(**batch)
    assert seen == [torch.Size([len(TEXTS), 1, model.config.hidden_size])]


def test_other_architectures_are_left_alone():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=32)
    )
    same, reason = cls_only_copy(model)
    assert same is model and "distilbert" in reason


def test_all_positions_export_keeps_the_plain_graph(tmp_path, tiny_model_dir, tiny_data_dir):
    from bertdeploy import bundle
    from bertdeploy.exporter import ExportConfig, export

    result = export(
        ExportConfig(
            run_dir=str(tiny_model_dir),
            output=str(tmp_path / "b"),
            data=str(tiny_data_dir),
            variants=["O2"],
            cls_only=False,
        )
    )
    m = bundle.read_manifest(result.bundle)
    assert m.raw["graph"] == {"last_layer": "all positions"}
    assert m.variant("O2").fused_nodes["Attention"] == 2  # one per layer
