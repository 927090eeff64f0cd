"""Issue 12's measurement in ONE command: the peers and our variants, whole file, batch 1, sequence-length scaling
and the `bertdeploy bench` peer table; writes the results JSON files and regenerates RESULTS.md (and, with
--readme, the README's headline table). Run it on an idle machine:

    python3 benchmarks/runtime/measure.py --bundle models/minilm-emotion --hf runs/minilm-emotion \
        --data ../shared/datasets/emotion --out benchmarks/runtime/final --readme

Use a Python that has the ``[openvino]`` extra (a venv with ``--system-site-packages`` is enough:
``python3 -m venv --system-site-packages /tmp/ovenv && /tmp/ovenv/bin/pip install -c constraints.txt
openvino nncf``); without it the OpenVINO rows are skipped with that reason. ``--quick`` (1 round, fewer texts,
shorter timed loops) only proves that everything runs.

Steps: (1) a copy of the bundle exported with max_length 512 for the long-text rows (``--bundle512``, built from
--hf when absent); (2) ``bench_runtime.py``: every engine over the whole test file, interleaved rounds, plus a
batch-1 pass; (3) the same at synthetic 128 / 256 / 512 tokens, bucketed vs static; (4) ``bertdeploy bench`` on the
bundle and a from-scratch bert-tiny (batch 1 and 32, end to end and model only); (5) RESULTS.md with the goal table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bertdeploy.variants import VARIANTS

#: the dynamic int8 file of a bundle exported now (the variant table names it; older bundles: model_qint8.onnx)
INT8_FILE = Path(VARIANTS["qint8"].file).name
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_runtime as br  # noqa: E402

ENGINES = [
    "peak",
    "pipeline",
    "torchint8",
    "ortmodel:model.onnx",
    f"ortmodel:{INT8_FILE}",
    "openvino:fp32",
    "openvino:qint8",
    "openvino:nncf",
    "bertdeploy:fp32:bucketed",
    "bertdeploy:fp32:bucketed:fusions=ort",
    "bertdeploy:qint8:bucketed",
    "bertdeploy:qint8:bucketed:fusions=ort",
    "bertdeploy:qint8_qkv:bucketed",
    "bertdeploy:qint8:static",
]
SEQ_ENGINES = [
    "bertdeploy:fp32:bucketed",
    "bertdeploy:fp32:static",
    "bertdeploy:qint8:bucketed",
    "bertdeploy:qint8:static",
]
SEQ_LENGTHS = (128, 256, 512)
GOALS = {"fp32_share": 1.05, "int8_share": 0.95, "x_ortmodel": 2.5, "batch1_ms": 2.7, "small_e2e_share": 0.85}


def sh(cmd: list[str], log: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    with open(log, "a", encoding="utf-8") as f:
        subprocess.run(cmd, check=True, stderr=f)


def bundle512(args: argparse.Namespace) -> Path:
    """The bundle for the long-text rows: fp32 + qint8 exported from --hf with max_length 512 (gated as usual)."""
    path = Path(args.bundle512 or f"{args.bundle.rstrip('/')}-512")
    if (path / "bertdeploy.json").is_file():
        return path
    from bertdeploy.exporter import ExportConfig, export

    print(f"exporting {path} (max_length 512)", flush=True)
    export(ExportConfig(run_dir=args.hf, output=str(path), variants=["fp32", "qint8"], max_length=512, force=True))
    return path


def whole_file(args: argparse.Namespace, out: Path) -> None:
    cmd = [sys.executable, str(HERE / "bench_runtime.py"), f"--bundle={args.bundle}", f"--hf={args.hf}"]
    cmd += [f"--data={Path(args.data) / 'test.csv'}", f"--source={Path(args.data) / 'test.csv'}"]
    cmd += [
        f"--threads={args.threads}",
        f"--repeats={1 if args.quick else 3}",
        f"--latency={40 if args.quick else 300}",
    ]
    sh([*cmd, "--engines=" + ",".join(args.engines or ENGINES), f"--out={out / 'whole_file.json'}"], out / "log.txt")


def seq_lengths(args: argparse.Namespace, out: Path, bundle: Path) -> None:
    for length in SEQ_LENGTHS:
        cmd = [sys.executable, str(HERE / "bench_runtime.py"), f"--bundle={bundle}", f"--hf={args.hf}"]
        data = f"synthetic:{length}" + (f":{max(8, 4096 // length)}" if args.quick else "")
        cmd += [f"--data={data}", f"--source={Path(args.data) / 'test.csv'}", f"--threads={args.threads}"]
        cmd += [f"--repeats={1 if args.quick else 3}", "--engines=" + ",".join(SEQ_ENGINES)]
        sh([*cmd, f"--out={out / f'seq_{length}.json'}"], out / "log.txt")


def bench_peers(args: argparse.Namespace, out: Path) -> None:
    """`bertdeploy bench` with every backend on the bundle, plus a from-scratch bert-tiny (small-model rows)."""
    from bertdeploy.benchmark import BenchConfig, bench

    quick = dict(min_seconds=0.3, min_iterations=3, timing_texts=128, eval_limit=300) if args.quick else {}
    cfg = BenchConfig(
        targets=[args.bundle, "bert-tiny"],
        data=args.data,
        output=str(out / "bench"),
        backends=["bertdeploy", "torch", "pipeline", "ortmodel", "openvino"],
        variants=["fp32", "qint8", "qint8_qkv"],
        torch_dtypes=["fp32", "int8"],
        openvino_variants=["fp32", "qint8", "nncf"],
        padding=["bucketed"],
        batch_sizes=[1, 32],
        threads=args.threads,
        export=True,
        overwrite=True,
        name="issue 12",
        command=" ".join(sys.argv),
        **quick,
    )
    bench(cfg)


# ---------------------------------------------------------------------------------------------- the page
def _rows(res: dict) -> dict[str, dict]:
    return {r["engine"]: r for r in res["runs"] if "texts_per_s" in r}


def goal_table(whole: dict, bench_rows: list[dict]) -> list[tuple[str, str, str, bool | None]]:
    """(goal, reached, how it was computed, met) rows from the whole-file run and the bench rows."""
    runs, peaks = _rows(whole), br.peaks_of(whole)
    flops, _ = br._useful_flops(whole["bundle"], whole["data"], whole.get("source", ""))
    per_text = flops / next(iter(runs.values()))["texts"]

    def share(engine: str) -> float | None:
        r = runs.get(engine)
        peak = peaks.get("int8" if br.is_int8(r or {"engine": engine}) else "fp32")
        return r["texts_per_s"] * per_text / 1e9 / peak if r and peak else None

    ours = {  # the shipped settings only: not the "before" rows of a lever (fusions=ort)
        e: r for e, r in runs.items() if e.startswith("bertdeploy:") and e.split(":")[2:] == ["bucketed"]
    }
    fp32 = max((e for e in ours if not br.is_int8(ours[e])), key=lambda e: ours[e]["texts_per_s"], default=None)
    int8 = max((e for e in ours if br.is_int8(ours[e])), key=lambda e: ours[e]["texts_per_s"], default=None)
    out: list[tuple[str, str, str, bool | None]] = []
    for name, engine, goal in (("fp32 share of the ceiling", fp32, "fp32_share"), ("int8 share", int8, "int8_share")):
        s = share(engine) if engine else None
        out.append(
            (f"{name} >= {GOALS[goal]:.0%}", f"{s:.0%}" if s else "-", f"`{engine}`", s >= GOALS[goal] if s else None)
        )
    for engine, ref in ((fp32, "ortmodel:model.onnx"), (int8, f"ortmodel:{INT8_FILE}")):
        if engine and ref in runs:
            x = runs[engine]["texts_per_s"] / runs[ref]["texts_per_s"]
            out.append((f">= 2.5x `{ref}`", f"{x:.2f}x", f"`{engine}`", x >= GOALS["x_ortmodel"]))
    lat = runs.get("bertdeploy:qint8:bucketed", {}).get("batch1_p50_ms")
    ok = lat <= GOALS["batch1_ms"] if lat else None
    out.append(("batch-1 qint8 p50 <= 2.7 ms", f"{lat:.2f} ms" if lat else "-", "e2e, one text per call", ok))
    peers = [e for e in runs if e != "peak" and not e.startswith("bertdeploy:")]
    for peer in peers:
        p = runs[peer]
        better = [e for e in ours if ours[e]["texts_per_s"] > p["texts_per_s"] and _acc(ours[e]) >= _acc(p)]
        out.append(
            (f"ahead of `{peer}` at >= its accuracy", "yes" if better else "no", ", ".join(better[:2]), bool(better))
        )
    tiny = [
        r for r in bench_rows if r["target"] == "bert-tiny" and r["backend"] == "bertdeploy" and r["batch_size"] == 32
    ]
    for r in tiny:
        if r.get("model_seq_per_s") and r.get("e2e_seq_per_s"):
            x = r["e2e_seq_per_s"] / r["model_seq_per_s"]
            out.append(
                (f"bert-tiny {r['variant']} e2e >= 85 % of model-only", f"{x:.0%}", "bench, batch 32", x >= 0.85)
            )
    return out


def _met(ok: bool | None) -> str:
    return "-" if ok is None else "yes" if ok else "NO"


def _acc(r: dict) -> float:
    return r.get("accuracy") if r.get("accuracy") is not None else -1.0


def seq_table(out: Path) -> str:
    lines = ["| tokens (L/2..L) | " + " | ".join(f"`{e.split(':', 1)[1]}` texts/s" for e in SEQ_ENGINES) + " |"]
    lines.append("|---:|" + "---:|" * len(SEQ_ENGINES))
    for length in SEQ_LENGTHS:
        f = out / f"seq_{length}.json"  # texts/s of synthetic:L (N texts, see the JSON's "data")
        if f.is_file():
            runs = _rows(json.loads(f.read_text()))
            cells = [f"{runs[e]['texts_per_s']:.1f}" if e in runs else "-" for e in SEQ_ENGINES]
            lines.append(f"| {length} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page(args: argparse.Namespace, out: Path, started: float) -> str:
    from bertdeploy.benchmark.report import headline, markdown_table
    from bertdeploy.benchmark.results import Report

    whole = json.loads((out / "whole_file.json").read_text())
    report = Report.read(out / "bench" / "results.json")
    rows = report.rows() if report else []
    goals = goal_table(whole, rows)
    label = "QUICK proof run" if args.quick else "full run"
    loads = [whole["started_load"][0], *[x[0] for x in whole["loads_after_each_round"]]]
    busy = max(loads) > 0.5 * (whole["machine"].get("logical_cpus") or 2)
    parts = [
        f"# Issue 12 measurement ({label}, {'BUSY machine: relative numbers only' if busy else 'idle machine'})",
        f"`{' '.join(['python3', *sys.argv])}` — {time.time() - started:.0f} s; 1-minute load averages {loads}",
        "## Whole file, end to end (bench_runtime.py)",
        br.report(whole),
        "## Goals",
        "| goal | reached | from | met |\n|---|---:|---|---|\n"
        + "\n".join(f"| {g} | {v} | {how} | {_met(ok)} |" for g, v, how, ok in goals),
        "## Sequence length (synthetic texts, 2 threads, bundle exported with max_length 512)",
        seq_table(out),
        "## `bertdeploy bench`: peers as backends (bucketed, best cell per block)",
        markdown_table(headline(rows), HEADLINE) if rows else "(no bench results)",
    ]
    return "\n\n".join(parts) + "\n"


HEADLINE = [
    ("model", "target", None),
    ("engine", "engine", None),
    ("size MB", "size_mb", "{:.1f}"),
    ("p50 ms, batch 1", "p50", None),
    ("seq/s, batch 32", "seq_s", None),
    ("model-only seq/s", "model_seq_s", "{:.1f}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("agree vs torch", "agreement_torch", "{:.4f}"),
]


def update_readme(text: str, readme: Path) -> None:
    """Replace the README block between the bench-headline markers with the bench table of this run."""
    start, end = "<!-- issue12-headline:start -->", "<!-- issue12-headline:end -->"
    body = readme.read_text(encoding="utf-8")
    if start not in body or end not in body:
        raise SystemExit(f"{readme} has no {start} ... {end} block")
    table = text.split("## `bertdeploy bench`: peers as backends (bucketed, best cell per block)", 1)[1].strip()
    head, rest = body.split(start, 1)
    readme.write_text(head + start + "\n" + table + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--hf", required=True, help="the training run the bundle was exported from")
    ap.add_argument("--data", required=True, help="dataset folder with train.csv / test.csv")
    ap.add_argument("--out", default=str(HERE / "final"))
    ap.add_argument("--bundle512", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engines", type=lambda s: s.split(","), default=None, help="override the whole-file engines")
    ap.add_argument("--skip", default="", help="steps to skip: whole,seq,bench (all three: only rewrite the page)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--readme", action="store_true", help="also rewrite the README headline block")
    args = ap.parse_args()
    for key in ("bundle", "hf", "data", "bundle512"):  # the workers and the page resolve them from anywhere
        if getattr(args, key):
            setattr(args, key, str(Path(getattr(args, key)).resolve()))
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    if "whole" not in args.skip:
        whole_file(args, out)
    if "seq" not in args.skip:
        seq_lengths(args, out, bundle512(args))
    if "bench" not in args.skip:
        bench_peers(args, out)
    text = page(args, out, started)
    (out / "RESULTS.md").write_text(text, encoding="utf-8")
    if args.readme:
        update_readme(text, HERE.parents[1] / "README.md")
    print(text)


if __name__ == "__main__":
    main()
