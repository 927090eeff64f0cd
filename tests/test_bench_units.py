"""bench: the method and the decisions on synthetic numbers (no timing of real work, no models)."""

from __future__ import annotations

import json

import pytest

from bertdeploy.benchmark.config import BenchConfig
from bertdeploy.benchmark.gemm import encoder_dims, encoder_flops
from bertdeploy.benchmark.pick import pareto_front, pick
from bertdeploy.benchmark.timing import measure, percentiles, summarize
from bertdeploy.benchmark.worker import make_batches
from bertdeploy.config import accuracy_points
from bertdeploy.errors import UserError


class FakeClock:
    """Each call of the timed function advances time by the next value of ``steps``."""

    def __init__(self, steps):
        self.t = 0.0
        self.steps = list(steps)
        self.calls = 0

    def __call__(self) -> float:
        return self.t

    def work(self, _batch) -> None:
        self.t += self.steps[self.calls % len(self.steps)]
        self.calls += 1


def test_percentiles_interpolate_linearly():
    p = percentiles(list(range(1, 101)))
    assert p == {"p50": pytest.approx(50.5), "p90": pytest.approx(90.1), "p99": pytest.approx(99.01)}
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0}


def test_measure_needs_both_min_count_and_min_duration():
    clock = FakeClock([0.125])
    sizes = [(2, 10, 1e9)]
    # count reached first (3 x 0.125 s < 1 s): runs on until 1 s of timed work
    m = measure(clock.work, ["b"], sizes, warmup=2, min_iterations=3, min_seconds=1.0, clock=clock)
    assert len(m.latencies) == 8 and clock.calls == 10  # warm-up calls are not timed
    # duration reached first: runs on until the count
    clock = FakeClock([0.5])
    m = measure(clock.work, ["b"], sizes, warmup=0, min_iterations=5, min_seconds=0.1, clock=clock)
    assert len(m.latencies) == 5 and not m.capped


def test_measure_cap_is_flagged():
    clock = FakeClock([2.0])
    m = measure(
        clock.work, ["b"], [(1, 5, 0.0)], warmup=0, min_iterations=10, min_seconds=0, max_seconds=5, clock=clock
    )
    assert len(m.latencies) == 3 and m.capped


def test_summarize_throughput_over_whole_run():
    clock = FakeClock([0.125, 0.375])
    m = measure(
        clock.work, ["a", "b"], [(4, 40, 4e9), (4, 80, 8e9)], warmup=0, min_iterations=4, min_seconds=0, clock=clock
    )
    s = summarize(m)
    assert s["iterations"] == 4
    assert s["seq_per_s"] == pytest.approx(16 / 1.0)
    assert s["tokens_per_s"] == pytest.approx(240 / 1.0)
    assert s["useful_gflops"] == pytest.approx(24 / 1.0)
    assert s["p50_ms"] == pytest.approx(250.0)
    assert s["min_ms"] == pytest.approx(125.0)


def test_pareto_front_keeps_only_undominated_points():
    pts = [(10.0, 0.90), (5.0, 0.88), (4.0, 0.80), (6.0, 0.87), (12.0, 0.90), (3.0, 0.70), (5.0, 0.88)]
    assert pareto_front(pts) == [5, 2, 1, 0]  # (6, .87) is beaten by (5, .88); (12, .90) by (10, .90); dup dropped
    assert pareto_front([]) == []


def _row(backend, variant, acc, p50, bs=1, padding="dynamic", target="m"):
    return {
        "target": target,
        "backend": backend,
        "variant": variant,
        "padding": padding,
        "batch_size": bs,
        "status": "ok",
        "accuracy": acc,
        "f1_macro": acc,
        "e2e_p50_ms": p50,
        "e2e_seq_per_s": bs * 1e3 / p50,
    }


ROWS = [
    _row("torch", "fp32", 0.900, 20.0),
    _row("bertdeploy", "fp32", 0.900, 10.0),
    _row("bertdeploy", "O2", 0.900, 8.0),
    _row("bertdeploy", "qint8", 0.895, 4.0),
    _row("bertdeploy", "qint8_static", 0.860, 3.0),
    _row("bertdeploy", "qint8", 0.895, 2.0, bs=32),
]


@pytest.mark.parametrize(("drop", "variant"), [(0.0, "O2"), (1.0, "qint8"), (5.0, "qint8_static")])
def test_pick_fastest_within_budget(drop, variant):
    """The budget is in accuracy points, as in the export gate."""
    p = pick(ROWS, drop)
    assert p["variant"] == variant and p["batch_size"] == 1
    assert p["reference"]["accuracy"] == 0.9
    assert p["accuracy_drop"] <= drop + 1e-9


def test_pick_breaks_latency_ties_by_accuracy():
    rows = [*ROWS, _row("bertdeploy", "qint8_per_channel", 0.899, 3.1)]  # within 5% of 3.0 ms, more accurate
    assert pick(rows, 5.0)["variant"] == "qint8_per_channel"
    assert pick(rows, 5.0, tolerance=0.0)["variant"] == "qint8_static"


def test_pick_at_other_batch_size_and_errors():
    assert pick(ROWS, 1.0, batch_size=32)["variant"] == "qint8"
    with pytest.raises(UserError, match="batch size 8 was not measured"):
        pick(ROWS, 1.0, batch_size=8)
    untrained = [{**r, "accuracy": None} for r in ROWS]
    with pytest.raises(UserError, match="no timed row has an accuracy"):
        pick(untrained, 1.0)
    only_bad = [ROWS[0], _row("bertdeploy", "qint8", 0.5, 1.0)]
    with pytest.raises(UserError, match="no bertdeploy variant is within"):
        pick(only_bad, 1.0)


def test_make_batches_bucketed_groups_similar_lengths():
    texts = [f"t{i}" for i in range(12)]
    lengths = [5, 30, 7, 28, 6, 31, 8, 29, 4, 32, 9, 27]
    dims = {"layers": 1, "hidden": 4, "intermediate": 8, "labels": 2}
    batches, sizes = make_batches(texts, lengths, 3, "bucketed", dims, seed=1)
    assert len(batches) == 4
    for b, (n, tokens, flops) in zip(batches, sizes, strict=True):
        ls = [lengths[texts.index(t)] for t in b]
        assert n == 3 and tokens == sum(ls) and flops == encoder_flops(dims, ls)
        assert max(ls) - min(ls) <= 2  # neighbours in length order: all short or all long
    dyn, _ = make_batches(texts, lengths, 4, "dynamic", dims)
    assert dyn[0] == texts[:4]
    few, few_sizes = make_batches(texts[:2], lengths[:2], 5, "static", dims)
    assert len(few) == 1 and len(few[0]) == 5 and few_sizes[0][0] == 5


def test_encoder_flops_formula_and_config_names():
    dims = encoder_dims({"num_hidden_layers": 2, "hidden_size": 4, "intermediate_size": 16, "id2label": {"0": "a"}})
    assert dims == {"layers": 2, "hidden": 4, "intermediate": 16, "labels": 1}
    # per layer: 8*l*h^2 + 4*l^2*h + 4*l*h*i with l=3: 384 + 144 + 768; head: 2*h^2 + 2*h*c = 40
    assert encoder_flops(dims, [3]) == 2 * (384 + 144 + 768) + 40
    distil = encoder_dims({"n_layers": 6, "dim": 768, "hidden_dim": 3072})
    assert distil == {"layers": 6, "hidden": 768, "intermediate": 3072, "labels": 2}


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(UserError, match="unknown backend 'tensorrt'"):
        BenchConfig(targets=["x"], output="o", backends=["tensorrt"])
    with pytest.raises(UserError, match="unknown variant 'int4'"):
        BenchConfig(targets=["x"], output="o", variants="fp32,int4")
    with pytest.raises(UserError, match="unknown padding"):
        BenchConfig(output="o", padding=["ragged"])
    with pytest.raises(UserError, match="unknown BenchConfig key"):
        BenchConfig.from_dict({"targets": ["x"], "batchsize": 3})
    with pytest.raises(UserError, match="output folder is required"):
        BenchConfig(targets=["x"])
    y = tmp_path / "b.yaml"
    y.write_text("targets: [bert-tiny]\nbatch_sizes: [1, 32]\npadding: static\nmin_seconds: 0.5\n", encoding="utf-8")
    cfg = BenchConfig.load(y, {"min_seconds": 0.1, "output": str(tmp_path / "o")}, ["max_accuracy_drop=2%"])
    assert cfg.batch_sizes == [1, 32] and cfg.padding == ["static"] and cfg.min_seconds == 0.1
    assert cfg.max_accuracy_drop == 2.0
    assert json.loads(json.dumps(cfg.to_dict()))["targets"] == ["bert-tiny"]


def test_accuracy_budget_is_points_everywhere():
    assert accuracy_points("1%") == 1.0 == accuracy_points(1) == accuracy_points("1.0") == accuracy_points("1pt")
    assert accuracy_points("0.5 %") == 0.5
    for bad in ("lots", -1, "nan", float("inf")):
        with pytest.raises(UserError):
            accuracy_points(bad)


def test_latency_ticks_are_plain_milliseconds():
    from matplotlib.figure import Figure

    from bertdeploy.benchmark.plots import ENGINE_NAMES, ms_label, plain_ms_axis

    assert [ms_label(v) for v in (0.2, 0.5, 1.0, 2.0, 10.0, 200.0)] == ["0.2", "0.5", "1", "2", "10", "200"]
    ax = Figure().subplots()
    ax.plot([1.7, 45.0], [1, 2])
    plain_ms_axis(ax)
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert {"2", "5", "10", "20"} <= set(labels) and not any("10^" in t or "times" in t for t in labels)
    assert ENGINE_NAMES["openvino"] == "OpenVINO"
