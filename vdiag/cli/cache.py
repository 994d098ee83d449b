"""`vdiag cache info` and `vdiag cache verify`."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from vdiag.cli.common import emit, json_option

KIND_NAMES = {
    "features": "features",
    "frame-index": "frame indexes",
    "datasets": "synthetic datasets",
    "temporary": "interrupted writes",
    "other": "other",
}


def _bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


@click.group(
    "cache",
    epilog="""\b
Examples:
  vdiag cache info                    # entries and sizes per kind
  vdiag cache verify                  # every entry against its video / checkpoint; exit 1 if stale
  vdiag cache verify --prune          # delete the stale and corrupt entries
  VDIAG_CACHE_DIR=/scratch/vdiag vdiag cache verify --json""",
)
def cache_group():
    """The cache folder ($VDIAG_CACHE_DIR, else ~/.cache/vdiag): features, frame indexes, synthetic datasets."""


@cache_group.command(
    "info",
    epilog="""\b
Examples:
  vdiag cache info
  vdiag cache info --json""",
)
@json_option
def info(as_json):
    """Entries and bytes per kind of cache entry (nothing is read or checked)."""
    from vdiag.diagnostics.cache import KINDS, cache_info

    result = cache_info()
    table = Table(title=f"cache {escape(result.data)}", title_justify="left")
    for column in ("kind", "entries", "size"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind in KINDS:
        if result.metrics[f"{kind}_entries"]:
            table.add_row(KIND_NAMES[kind], str(result.metrics[f"{kind}_entries"]), _bytes(result.metrics[f"{kind}_bytes"]))
    table.add_row("[b]all[/b]", str(result.metrics["entries"]), _bytes(result.metrics["bytes"]))
    emit(result, as_json, table)


@cache_group.command(
    "verify",
    epilog="""\b
Examples:
  vdiag cache verify                  # report; exit 1 when stale or corrupt entries exist
  vdiag cache verify --prune          # and delete them (each atomically); exit 0 once they are gone
  vdiag cache verify --json > cache.json""",
)
@click.option("--prune", is_flag=True, help="Delete every stale or corrupt entry (one atomic step each).")
@click.option("--all-entries", is_flag=True, help="List every stale entry, not only the first 20.")
@json_option
def verify(prune, all_entries, as_json):
    """Re-check every cache entry against its source.

    A feature entry is stale when a video it was computed from is missing or changed (size, mtime or
    content digest) or its checkpoint is missing or loads to other tensors (each checkpoint is loaded
    once); a frame index when its video is missing or changed; entries of an older vdiag and
    leftovers of interrupted writes are stale too; unreadable entries are corrupt. Exits 1 when stale
    or corrupt entries remain.
    """
    from vdiag.diagnostics.cache import KINDS, verify_cache

    result = verify_cache(prune=prune)
    m = result.metrics
    table = Table(title=f"cache verify {escape(result.data)}", title_justify="left")
    for column in ("kind", "entries", "stale", "corrupt", "size"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind in KINDS:
        if m[f"{kind}_entries"]:
            stale, corrupt = m[f"{kind}_stale"], m[f"{kind}_corrupt"]
            table.add_row(
                KIND_NAMES[kind],
                str(m[f"{kind}_entries"]),
                f"[yellow]{stale}[/yellow]" if stale else "0",
                f"[red]{corrupt}[/red]" if corrupt else "0",
                _bytes(m[f"{kind}_bytes"]),
            )
    rows = result.details["entries"]
    footer = [
        f"[{'red' if row['status'] == 'corrupt' else 'yellow'}]{escape(row['status'])}[/]: {escape(row['path'])} — {escape(row['reason'])}"
        + (" [dim](pruned)[/dim]" if row["pruned"] else "")
        for row in (rows if all_entries else rows[:20])
    ]
    if len(rows) > 20 and not all_entries:
        footer.append(f"… and {len(rows) - 20} more (--all-entries or --json lists them)")
    if prune:
        footer.append(f"pruned {m['pruned']} entries ({_bytes(m['pruned_bytes'])})")
    elif rows:
        footer.append(f"{len(rows)} stale or corrupt entries ({_bytes(m['stale_bytes'])}); `vdiag cache verify --prune` deletes them")
    else:
        footer.append("every entry matches its source")
    emit(result, as_json, table, footer=footer)
    if m["remaining"]:
        raise click.exceptions.Exit(1)
