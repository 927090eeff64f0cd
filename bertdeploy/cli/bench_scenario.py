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

    if len(targets) != 1 or not opts.get("data") or not opts.get("output"):
        raise UserError(f"--scenario {scenario} needs one bundle, --data FILE and --output DIR")
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

        console.print(report(results), markup=False)
        return results
    raise UserError(f"unknown scenario {scenario!r} (choose from cells, serve)")
