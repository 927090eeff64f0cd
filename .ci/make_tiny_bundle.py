"""Build a tiny bundle (2-layer BERT, random weights, 3 labels) with the full install, for the light-venv CI job:

python .ci/make_tiny_bundle.py OUT_DIR        # writes OUT_DIR/bundle and OUT_DIR/texts.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import TINY_LABELS, build_tiny_model, tiny_texts, write_csv  # noqa: E402

from bertdeploy.exporter import ExportConfig, export  # noqa: E402


def main(out: Path) -> None:
    data = out / "data"
    for split, n, seed in (("train", 60, 1), ("validation", 30, 2), ("test", 30, 3)):
        write_csv(data / f"{split}.csv", tiny_texts(n, seed=seed))
    (data / "labels.txt").write_text("\n".join(TINY_LABELS) + "\n", encoding="utf-8")
    (out / "texts.txt").write_text("\n".join(t for t, _ in tiny_texts(50, seed=4)) + "\n", encoding="utf-8")
    model = build_tiny_model(out / "model")
    export(
        ExportConfig(
            run_dir=str(model),
            output=str(out / "bundle"),
            data=str(data),
            variants=["fp32", "qint8"],
            max_accuracy_drop=100.0,
            min_agreement={"fp32": 0.0},
        )
    )
    print(f"wrote {out / 'bundle'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
