"""Pieces every command shares: global settings, device choice, result rendering."""

from __future__ import annotations

import json
from dataclasses import dataclass

import click
from rich.table import Table

from vdiag.catalog import BACKBONE_NAMES
from vdiag.console import stdout
from vdiag.errors import VdiagError
from vdiag.io import to_jsonable
from vdiag.results import Result


@dataclass
class Settings:
    """The global options of `vdiag` (`--device`, `--seed`, `--decoder`, `--quiet`), handed to every command."""

    device: str = "auto"
    seed: int = 0
    decoder: str = "auto"
    quiet: bool = False


def resolve_device(name: str) -> str:
    """The device a command runs on: 'auto' → 'cuda' when a GPU is visible, else 'cpu'.

    Args:
        name: "auto", "cpu" or "cuda" (`--device`).

    Returns:
        "cuda" or "cpu".

    Raises:
        VdiagError: "cuda" was asked for but torch sees no GPU.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise VdiagError("--device cuda was asked for but torch sees no GPU here; use --device cpu (see `vdiag doctor`)")
    return name


json_option = click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout, nothing else.")

# `--video-root`: one definition for every command that takes `--data` (`data.video_root` in configs);
# the value is checked by `vdiag.data.formats.load_index` with the rest of the dataset.
video_root_option = click.option(
    "--video-root",
    type=click.Path(file_okay=False),
    help="Folder holding the videos of an annotation-file layout (Kinetics CSV, UCF-101, HMDB-51, SSv2, Diving-48, "
    "'path label' and rawframes lists) [beside the annotations].",
)


def comma_list(value: str | None) -> list[str] | None:
    """An option's comma-separated list ("a, b,,c" → ["a", "b", "c"]); None stays None."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def emit(result: Result, as_json: bool, table: Table | None = None, *, footer: list[str] | None = None) -> None:
    """Render a result: a rich table (and where files went), or one JSON object on stdout.

    Args:
        result: what the command computed.
        as_json: print exactly one JSON object (`--json`) and nothing else.
        table: the table to print [`metrics_table(result)`].
        footer: lines printed under the table (files written), not with `as_json`.
    """
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=to_jsonable))
        return
    stdout.print(table if table is not None else metrics_table(result))
    for line in footer or []:
        stdout.print(line, highlight=False)


def metrics_table(result: Result, *, title: str | None = None) -> Table:
    """metric | value, plus a "95% CI" column when the result carries `<name>_ci_low/_ci_high`."""
    metrics = result.metrics
    has_ci = any(name.endswith("_ci_low") for name in metrics)
    table = Table(title=title or result.command, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if has_ci:
        table.add_column("95% CI", justify="right")
    for name, value in metrics.items():
        if name.endswith(("_ci_low", "_ci_high")):
            continue
        row = [name, _format(value)]
        if has_ci:
            low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
            row.append(f"{_format(low)} – {_format(high)}" if low is not None else "")
        table.add_row(*row)
    return table


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class BackboneType(click.ParamType):
    """`--backbone`: a name of `BACKBONE_NAMES`, or `package.module:builder` (a callable returning an
    `nn.Module`; docs/backbones.md says what it must return)."""

    name = "backbone"

    def convert(self, value, param, ctx):
        """The value unchanged if it names a backbone; else one line listing the choices."""
        from vdiag.train.settings import is_builder_name  # the rule the settings schema applies too

        if value in BACKBONE_NAMES or is_builder_name(value):
            return value
        self.fail(f"{value!r} is not a backbone: use one of {', '.join(BACKBONE_NAMES)}, or package.module:builder", param, ctx)
