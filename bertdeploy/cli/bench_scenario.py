"""``bertdeploy bench --scenario serve|whole-file``: the scenarios beside the grid of cells (``cells``, the default).
Parses the shared options into the scenario's config, runs its one library function, prints its report."""

from __future__ import annotations

from typing import Any

from bertdeploy.errors import UserError


def _ints(value: str | None, default: list[int]) -> list[int]:
    if not value:
        return default
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"expected a comma list of integers, got {value!r}") from None


def run_scenario(scenario: str, targets: list[str], opts: dict[str, Any], command: str) -> dict[str, Any]:
    """Run ``scenario`` on ``targets`` with the bench options ``opts``; print and return its results."""
    from bertdeploy.cli.render import console

    if (
        not 1 <= len(targets) <= (2 if scenario == "whole-file" else 1)
        or not opts.get("data")
        or not opts.get("output")
    ):
        more = " (and, for the torch / pipeline engines, its training run)" if scenario == "whole-file" else ""
        raise UserError(f"--scenario {scenario} needs one bundle{more}, --data FILE and --output DIR")
    variants = [v for v in (opts.get("variants") or "").split(",") if v]
    if scenario == "serve":
        from bertdeploy.benchmark.scenarios.serve_load import ServeLoadConfig, run_serve_load

        cfg = ServeLoadConfig(
            bundle=targets[0],
            data=opts["data"],
            output=opts["output"],
            variant=variants[0] if variants else "auto",
            threads=opts.get("threads") or 2,
            clients=_ints(opts.get("clients"), [1, 8, 32]),
            repeats=opts.get("repeats") or 3,
            texts=opts.get("texts"),
            serve_args=(opts.get("serve_args") or "").split(),
            text_column=opts.get("text_column") or "text",
            command=command,
        )
        results = run_serve_load(cfg, log=lambda line: console.print(line, style="dim"))
        from bertdeploy.benchmark.scenarios.serve_load import report

        console.print(report(results), markup=False, soft_wrap=True)
        return results
    if scenario == "whole-file":
        return _whole_file(targets, opts, command)
    raise UserError(f"unknown scenario {scenario!r} (choose from cells, whole-file, serve)")


def _whole_file(targets: list[str], opts: dict[str, Any], command: str) -> dict[str, Any]:
    from bertdeploy.benchmark.scenarios.whole_file import WholeFileConfig, report, run_whole_file
    from bertdeploy.cli.render import console

    data, _, source = opts["data"].partition("@")  # synthetic:L[:N]@SOURCE glues SOURCE's texts
    cfg = WholeFileConfig(
        bundle=targets[0],
        hf=targets[1] if len(targets) > 1 else None,
        data=data,
        source=source or None,
        output=opts["output"],
        engines=[e for e in (opts.get("engines") or "ortmodel:fp32,bertdeploy:fp32").split(",") if e],
        threads=opts.get("threads") or 2,
        repeats=opts.get("repeats") or 3,
        min_seconds=WholeFileConfig.min_seconds if opts.get("min_seconds") is None else opts["min_seconds"],
        latency=opts.get("latency") or 0,
        texts=opts.get("texts"),
        text_column=opts.get("text_column") or "text",
        label_column=opts.get("label_column") or "label",
        max_tokens=opts.get("max_tokens"),
        command=command,
    )
    results = run_whole_file(cfg, log=lambda line: console.print(line, style="dim"))
    console.print(report(results), markup=False, soft_wrap=True)
    return results
