"""Scenarios of ``bertdeploy bench`` besides the grid of cells (:mod:`bertdeploy.benchmark.sweep`): ``serve``
(:mod:`.serve_load`: ``bertdeploy serve`` under concurrent clients beside offline ``predict``) and ``whole-file``
(:mod:`.whole_file`: every engine over a whole file in its own process, interleaved rounds). Each writes
``results.json`` + ``report.md`` into its output folder and regenerates a README table there."""

SCENARIOS = ["cells", "whole-file", "serve"]
