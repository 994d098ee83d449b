"""`vdiag demo`."""

from __future__ import annotations

import click

from vdiag.cli.common import emit, json_option, metrics_table
from vdiag.demo import run_demo


@click.command(
    epilog="""\b
Examples:
  vdiag demo
  vdiag demo --out my-demo""",
)
@click.option("--out", type=click.Path(file_okay=False), default="vdiag-demo", show_default=True, help="Where the demo writes its files.")
@click.option("--data", type=click.Path(file_okay=False), default=None, help="Synthetic dataset folder [default: the cache's default dataset].")
@json_option
@click.pass_obj
def demo(settings, out, data, as_json):
    """Run the main job end to end on this machine and say what it did.

    Today: generate the confounded synthetic dataset (reused if present) and draw its factor grid.
    """
    result = run_demo(out, data=data, seed=settings.seed)
    footer = [*result.details["steps"], f"summary: {result.files[0]}"]
    emit(result, as_json, metrics_table(result, "demo"), footer)
