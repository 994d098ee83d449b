"""`vdiag doctor`."""

from __future__ import annotations

import click
from rich.table import Table

from vdiag.cli.common import emit, json_option
from vdiag.console import stdout
from vdiag.doctor import run_doctor


@click.command(
    epilog="""\b
Examples:
  vdiag doctor
  vdiag doctor --json | python -m json.tool""",
)
@json_option
def doctor(as_json: bool) -> None:
    """Check the environment: package versions, working decoders, CUDA, known traps.

    Decoders are tested for real: a tiny H.264 clip is written with PyAV and read back with decord
    and with PyAV. Exits 1 when something vdiag needs is broken. To check the files of a dataset
    (frame counts, rotation, VFR, decoder agreement, unreadable files), run `vdiag check-data DATA`.
    """
    result = run_doctor()
    if as_json:
        emit(result, True)
    else:
        _print_tables(result)
    if result.metrics["problems"]:
        raise click.exceptions.Exit(1)


def _print_tables(result) -> None:
    details = result.details
    versions = Table(title="packages", title_justify="left")
    versions.add_column("package")
    versions.add_column("version")
    for name, version in details["versions"].items():
        versions.add_row(name, version or "[red]missing[/red]")
    checks = Table(title="checks", title_justify="left")
    checks.add_column("check")
    checks.add_column("status")
    checks.add_column("detail")
    for check in details["checks"]:
        status = "[green]ok[/green]" if check["ok"] else ("[red]FAIL[/red]" if check["required"] else "[yellow]no[/yellow]")
        checks.add_row(check["name"], status, check["detail"])
    stdout.print(versions)
    stdout.print(checks)
    problems = result.metrics["problems"]
    stdout.print("all required checks pass" if not problems else f"[red]{problems} required check(s) failed[/red]")
    stdout.print(details.get("hint", ""), highlight=False)
