"""Terminal output shared by the library and the CLI.

Progress bars, warnings and notes go to stderr (`console`), so that stdout carries only results:
a table, or with `--json` exactly one JSON object. `set_quiet(True)` silences bars and notes.

User text is printed literally: `note`, `warn` and `error` escape their message (a path such as
`runs/[best]/final.pt` or gloo's `[/__w/pytorch/…:545]` is not rich markup), and the progress bars
render task descriptions and fields without markup. Only the labels vdiag adds are styled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, soft_wrap=True)
stdout = Console(soft_wrap=True)
_state = {"quiet": False}

T = TypeVar("T")


def set_quiet(quiet: bool) -> None:
    """Hide (True) or show progress bars and notes for the rest of the process (`--quiet`); warnings stay."""
    _state["quiet"] = quiet


def is_quiet() -> bool:
    """Whether `set_quiet(True)` is in force."""
    return _state["quiet"]


def note(message: str, *, title: str | None = None) -> None:
    """An informational line on stderr (hidden with --quiet), printed literally; `title` is shown in bold before it."""
    if not _state["quiet"]:
        head = f"[bold]{escape(title)}[/bold]: " if title else ""
        console.print(head + escape(message), highlight=False)


def warn(message: str) -> None:
    """A warning on stderr (always shown), printed literally."""
    console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def error(message: str, *, label: str = "error") -> None:
    """An error line on stderr (always shown), printed literally after a red `label:`."""
    console.print(f"[red]{escape(label)}:[/red] {escape(message)}", highlight=False)


class _Rate(TextColumn):
    def __init__(self, unit: str):
        super().__init__("")
        self.unit = unit

    def render(self, task):
        speed = task.finished_speed or task.speed
        return f"{speed:,.1f} {self.unit}/s" if speed else f"– {self.unit}/s"


def progress_bar(unit: str = "it", fields: tuple[str, ...] = ()) -> Progress:
    """A rich progress bar with count, rate and ETA, on stderr; `fields` are extra task fields
    shown after the ETA (e.g. the current losses).

    Args:
        unit: the unit of the rate column.
        fields: names of task fields (`progress.add_task(..., losses="")`) shown after the ETA.

    Returns:
        A `rich.progress.Progress` to use as a context manager; disabled under `set_quiet(True)`.
    """
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _Rate(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        *[TextColumn(f"{{task.fields[{name}]}}", markup=False) for name in fields],
        console=console,
        disable=_state["quiet"],
        transient=False,
    )


def track(items: Iterable[T], total: int | None = None, *, description: str = "working", unit: str = "it") -> Iterator[T]:
    """Iterate with a progress bar (rate and ETA) on stderr, hidden under `set_quiet(True)`.

    Args:
        items: what to iterate.
        total: the number of items (default `len(items)` where it has one; else no ETA).
        description: the bar's label.
        unit: the unit of the rate ('videos' → 'videos/s').

    Returns:
        An iterator over `items`, advancing the bar after each.
    """
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress_bar(unit) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
