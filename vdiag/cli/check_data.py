"""`vdiag check-data`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from vdiag.cli.common import emit, json_option, metrics_table, video_root_option
from vdiag.console import track
from vdiag.data.check import check_data
from vdiag.data.formats import FORMATS
from vdiag.data.sampling import ClipSpec


@click.command(
    "check-data",
    epilog="""\b
Examples:
  vdiag check-data data/ucf101                  # every file of every split
  vdiag check-data k400/train.csv --max-problems 50
  vdiag check-data data/ssv2 --json > check.json
  vdiag check-data k400/annotations/val.csv --video-root k400/val   # counts the listed clips that are missing
  vdiag check-data k400/train.csv --workers 8      # 8 processes (the scan decodes every file once)
  vdiag --decoder pyav check-data data/hmdb51 --split test""",
)
@click.argument("data", type=click.Path())
@click.option("--format", "data_format", type=click.Choice(FORMATS), default="auto", show_default=True, help="Dataset layout.")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="all", show_default=True)
@click.option("--split-id", type=click.IntRange(1, 3), default=1, show_default=True, help="UCF-101 / HMDB-51 split number.")
@video_root_option
@click.option("--frames", type=click.IntRange(1), default=8, show_default=True, help="Frames per clip (for the agreement clips).")
@click.option("--stride", type=click.IntRange(1), default=2, show_default=True, help="Clip stride.")
@click.option("--clips", type=click.IntRange(1), default=2, show_default=True, help="Clips per file compared between decord and PyAV.")
@click.option("--max-problems", type=click.IntRange(0), default=0, show_default=True, help="Files with problems allowed before exit 1.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Processes scanning files in parallel (0: one).")
@click.option("--all-files", is_flag=True, help="List every file, not only those with problems or notes.")
@json_option
@click.pass_obj
def check_data_command(
    settings, data, data_format, split, split_id, video_root, frames, stride, clips, max_problems, workers, all_files, as_json
):
    """Read every file of a dataset once and report what would make clips wrong.

    Per file: decodable frames vs the count the container (or list) records, rotation, variable
    frame rate, decord and PyAV compared on sampled clips, unreadable or truncated files, runs of
    repeated frames. Builds the frame-index cache that training and the diagnostics reuse.
    Exits 1 when more than --max-problems files have problems.
    """
    result = check_data(
        data,
        format=data_format,
        split=split,
        split_id=split_id,
        video_root=video_root,
        decoder=settings.decoder,
        clip=ClipSpec(frames, stride=stride),
        clips=clips,
        max_problems=max_problems,
        progress=None if as_json else (lambda items, total: track(items, total=total, description="checking", unit="files")),
        workers=workers,
    )
    if as_json:
        emit(result, True)
    else:
        table = _files_table(result, all_files)
        emit(
            result,
            False,
            table=table if table.row_count else metrics_table(result, "check-data: every file reads right"),
            footer=_footer(result),
        )
    if result.metrics["exceeded"]:
        raise click.exceptions.Exit(1)


def _files_table(result, all_files: bool) -> Table:
    table = Table(title=f"check-data {result.data}", title_justify="left")
    for column in ("file", "frames", "recorded", "size", "fps", "decoder", "status"):
        table.add_column(column, justify="right" if column in ("frames", "recorded", "fps") else "left", overflow="fold")
    root = Path(result.data)
    root = root.parent if root.is_file() else root
    for row in result.details["files"]:
        if not (all_files or row["problems"] or row["notes"]):
            continue
        tags = [f"[red]{escape(t[1:])}[/red]" if t.startswith("!") else f"[yellow]{escape(t)}[/yellow]" for t in row["tags"]]
        recorded = "" if row["metadata_frames"] is None else str(row["metadata_frames"])
        fps = "" if row["fps"] is None else f"{row['fps']:g}"
        table.add_row(
            _short(row["path"], root), str(row["frames"] or "–"), recorded, row["size"], fps, row["decoder"], ", ".join(tags) or "ok"
        )
    return table


def _short(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root.absolute() if Path(path).is_absolute() else root))
    except ValueError:
        return path


def _footer(result) -> list[str]:
    m = result.metrics
    problems = ", ".join(
        f"{m[k]} {k.replace('_', ' ')}" for k in ("unreadable", "truncated", "count_mismatch", "decoders_disagree", "frozen") if m[k]
    )
    notes = ", ".join(
        f"{m[k]} {k.replace('_', ' ')}"
        for k in ("decoder_switches", "rotated", "vfr", "with_repeated_frames", "shorter_than_a_clip")
        if m[k]
    )
    lines = [
        f"{m['files']} files, {m['frames']} frames in {m['seconds']:.1f} s ({m['files_per_second']:.1f} files/s); "
        f"{m['files_with_problems']} with problems" + (f" ({problems})" if problems else "") + (f"; notes: {notes}" if notes else "")
    ]
    if m["files_with_problems"] or notes:
        lines.append("--json gives the full sentence for every problem and note")
    if m["missing"]:
        lines.append(f"{m['missing']} files listed in the annotations were not found")
    if m["exceeded"]:
        lines.append(f"[red]{m['files_with_problems']} files with problems > --max-problems {result.config['max_problems']}[/red]")
    lines.append("frame-index cache built: training and the diagnostics reuse it")
    return lines
