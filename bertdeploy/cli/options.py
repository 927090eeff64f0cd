"""Options that several commands share, defined once so that their names, choices and help never drift apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from bertdeploy import variants

#: ``--provider`` of ``predict`` and ``serve`` (a :class:`bertdeploy.runtime.LoadOptions` field)
provider_option: Callable[[Any], Any] = click.option(
    "--provider",
    type=click.Choice(["auto", *variants.PROVIDERS]),
    default="auto",
    show_default=True,
    help="CPU execution provider: auto (the variant's own), cpu (ONNX Runtime's), openvino (the OpenVINO EP plugin: "
    'pip install "bertdeploy[openvino-ep]").',
)
