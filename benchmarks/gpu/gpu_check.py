"""The CUDA check of issue 12, prepared on a machine without a GPU and NOT run yet (no GPU numbers exist).

    python3 benchmarks/gpu/gpu_check.py --data ../shared/datasets/emotion --out benchmarks/gpu/results   # ~5-8 min

Steps, each timed and written to OUT/results.json as it finishes (a failed step records its error and the script
goes on with the next step that does not depend on it):
  1. environment: torch / CUDA / GPU, onnxruntime build and its providers (onnxruntime-gpu must be installed:
     see README.md here for how its 255 MB wheel reaches a machine that only takes 64 MiB transfers);
  2. ``bertdeploy train`` MiniLM-L6 on the emotion data, 1 epoch (the Trainer picks bf16 on a GPU that has it);
  3. ``bertdeploy export --fp16 --int8`` of that run (the gate validates on the CPU), plus Optimum's own fp16 export
     on CUDA (``main_export(device="cuda", dtype="fp16")``) for comparison;
  4. the runtime on CUDAExecutionProvider and on TensorrtExecutionProvider with IO binding, asserting that the
     requested provider really attached (``Classifier.providers[0]``) and that fp16 labels match fp32's;
  5. ``bertdeploy bench`` of the bundle against PyTorch CUDA fp32 / fp16 / bf16 and ORTModel on CUDA, batch 1 and 32.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

STEPS: dict[str, dict] = {}


def step(name: str, out: Path, fn) -> bool:
    """Run one step now; record seconds / result / error into OUT/results.json immediately; True when it worked."""
    t0 = time.perf_counter()
    try:
        result, ok = fn(), True
    except Exception as e:  # noqa: BLE001 - recorded; later steps decide whether they can go on
        result, ok = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}, False
    STEPS[name] = {"ok": ok, "seconds": round(time.perf_counter() - t0, 1), **result}
    (out / "results.json").write_text(json.dumps(STEPS, indent=1, default=str) + "\n")
    print(f"[{name}] {'ok' if ok else 'FAILED'} in {STEPS[name]['seconds']} s", flush=True)
    return ok


def environment() -> dict:
    import onnxruntime as ort
    import torch

    if hasattr(ort, "preload_dlls"):  # CUDA / cuDNN from the nvidia-* wheels that PyTorch brought
        ort.preload_dlls()
    info = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
    }
    if not torch.cuda.is_available():
        raise RuntimeError(f"no CUDA device visible to torch: {info}")
    if "CUDAExecutionProvider" not in info["ort_providers"]:
        raise RuntimeError(f"this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu): {info}")
    return info


def cli(*args: str) -> dict:
    cmd = [sys.executable, "-m", "bertdeploy.cli.__main__", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return {"command": " ".join(cmd[1:]), "stdout_tail": proc.stdout[-3000:]}


def optimum_fp16(run: Path, out: Path) -> dict:
    from optimum.exporters.onnx import main_export

    main_export(str(run), out, task="text-classification", device="cuda", dtype="fp16", do_validation=False)
    return {"files": sorted(p.name for p in out.glob("*.onnx"))}


def runtime_providers(bundle: Path, texts: list[str]) -> dict:
    from bertdeploy.runtime import load

    ref = [p.label for p in load(bundle, variant="fp32", device="cpu").predict(texts)]
    out = {}
    for device in ("cuda", "tensorrt"):
        for variant in ("fp32", "fp16"):
            key = f"{device}:{variant}"
            try:
                clf = load(bundle, variant=variant, device=device)  # raises when the provider does not attach
                attached = clf.providers
                want = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[device]
                assert attached[0] == want, f"{want} requested, {attached} attached"
                clf.predict(texts[:64])  # warm-up (TensorRT builds its engine here: minutes the first time)
                t0 = time.perf_counter()
                labels = [p.label for p in clf.predict(texts)]
                seconds = time.perf_counter() - t0
                lat = []
                for t in texts[:200]:
                    t1 = time.perf_counter()
                    clf.predict([t])
                    lat.append((time.perf_counter() - t1) * 1e3)
                out[key] = {
                    "providers": attached,
                    "io_binding": clf._run.on_gpu,
                    "texts_per_s": len(texts) / seconds,
                    "batch1_p50_ms": sorted(lat)[len(lat) // 2],
                    "same_label_as_cpu_fp32": sum(a == b for a, b in zip(labels, ref)) / len(ref),
                }
            except Exception as e:  # noqa: BLE001 - e.g. TensorRT libraries absent: recorded per provider
                out[key] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
    if all("error" in v for k, v in out.items() if k.startswith("cuda")):
        raise RuntimeError(f"CUDA provider failed: {out}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the emotion dataset folder (train/validation/test.csv)")
    ap.add_argument("--out", default="benchmarks/gpu/results")
    ap.add_argument("--work", default="/tmp/bertdeploy-gpu")
    args = ap.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    run, bundle = work / "run", work / "bundle"
    if not step("environment", out, environment):
        return
    train = ["train", "--model", "minilm-l6", "--data", args.data, "--epochs", "1", "--batch-size", "64"]
    train += ["--max-length", "128", "--padding", "dynamic", "--group-by-length", "--output", str(run), "--overwrite"]
    if not step("train", out, lambda: cli(*train)):
        return
    exported = step("export", out, lambda: cli("export", str(run), "-o", str(bundle), "--fp16", "--int8", "--force"))
    step("optimum_fp16_cuda", out, lambda: optimum_fp16(run, work / "optimum_fp16"))
    if not exported:
        return
    import csv

    with open(Path(args.data) / "test.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    step("runtime", out, lambda: runtime_providers(bundle, texts))
    bench = ["bench", str(bundle), "--data", args.data, "--device", "cuda", "--backends", "bertdeploy,torch,ortmodel"]
    bench += ["--variants", "fp32,fp16", "--torch-dtypes", "fp32,fp16,bf16", "--padding", "bucketed"]
    bench += ["--batch-sizes", "1,32", "--min-seconds", "1", "--gemm-seconds", "0", "-o", str(out / "bench")]
    step("bench", out, lambda: cli(*bench, "--overwrite"))


if __name__ == "__main__":
    main()
