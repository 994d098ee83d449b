"""`vdiag validate`: the validity table, every diagnostic on models whose answer is known."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from vdiag.cli.common import emit, json_option


def _table(result) -> Table:
    from vdiag.diagnostics.validity import validity_grid

    table = Table(title=f"validity: {result.metrics['passed']} of {result.metrics['checks']} checks pass", title_justify="left")
    table.add_column("diagnostic")
    for model in result.details["models"]:
        table.add_column(model, justify="right")
    for name, cells in validity_grid(result):
        texts = []
        for cell in cells:
            mark = "" if cell["pass"] is None else " [green]✓[/green]" if cell["pass"] else " [red]✗[/red]"
            expected = f"\n[dim]{cell['expected']}[/dim]" if cell["expected"] else ""
            texts.append(f"{cell['text']}{mark}{expected}")
        table.add_row(name, *texts)
    return table


@click.command(
    "validate",
    epilog="""\b
Examples:
  vdiag validate                      # 64 videos per split, 32 px, 8 epochs: minutes on a CPU
  vdiag validate --smoke              # seconds: the size the tests run
  vdiag validate --out runs/validity --json""",
)
@click.option("--smoke", is_flag=True, help="The smallest size (24 videos per split, 3 epochs, 2 clips): a quick check, wide intervals.")
@click.option("--videos", type=click.IntRange(8), help="Videos per split [64].")
@click.option("--epochs", type=click.IntRange(1), help="Training epochs of the two supervised reference models [8].")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Decoding processes.")
@click.option(
    "--out", type=click.Path(file_okay=False), default="validity", show_default=True, help="Folder for data, models and the table."
)
@json_option
@click.pass_obj
def validate(settings, smoke, videos, epochs, workers, out, as_json):
    """Run every diagnostic on seven known-answer models (first-frame-only, per-frame 2-D,
    frame-difference-only, supervised on a static / a dynamic factor, collapsed, random 3-D) built
    on unconfounded synthetic data: one table of expected side, measured value and pass/fail.
    Writes <out>/validity.json and <out>/validity.md. Exits 1 when a check fails.
    """
    from dataclasses import replace

    from vdiag.diagnostics.validity import SMOKE, ValiditySize, validity_markdown, validity_table
    from vdiag.io import atomic_path

    size = SMOKE if smoke else ValiditySize()
    size = replace(size, **{k: v for k, v in {"videos": videos, "epochs": epochs}.items() if v is not None})
    result = validity_table(Path(out), size=size, seed=settings.seed, workers=workers)
    written = result.write(Path(out) / "validity.json")
    markdown = Path(out) / "validity.md"
    with atomic_path(markdown) as tmp:
        tmp.write_text(validity_markdown(result))
    result.files.append(str(markdown))
    emit(result, as_json, None if as_json else _table(result), footer=[f"wrote {written}", f"      {markdown}"])
    if result.metrics["failed"]:
        raise SystemExit(1)
