"""The ``tiny_bundle`` fixture: what the runtime and bench engineers build on."""

from __future__ import annotations

from bertdeploy.bundle import read_manifest, verify_variant


def test_tiny_bundle_is_readable_and_verified(tiny_bundle):
    manifest = read_manifest(tiny_bundle)
    assert manifest.labels == ["negative", "neutral", "positive"]
    assert [v.name for v in manifest.variants] == ["fp32", "O2", "fp16", "qint8"]
    assert manifest.model_inputs == ["input_ids", "attention_mask", "token_type_ids"]
    for v in manifest.variants:
        assert verify_variant(tiny_bundle, v).is_file()
    assert (tiny_bundle / "tokenizer.json").is_file()
    assert (tiny_bundle / "config.json").is_file()
