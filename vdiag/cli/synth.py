"""`vdiag synth-dataset`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click
from rich.table import Table

from vdiag.cli.common import comma_list, emit, json_option
from vdiag.data.synthetic import BENCHMARKS, FACTOR_KINDS, SynthConfig, generate_dataset, synth_config
from vdiag.errors import VdiagError
from vdiag.results import Result


def _pairing(value: str | None) -> dict[str, str] | None:
    if value is None:
        return None
    if value.strip().lower() == "none":
        return {}
    pairs = {}
    for part in comma_list(value) or []:
        if "=" not in part:
            raise VdiagError(f"--pairing takes dynamic=static pairs such as fg_trajectory=bg_color, got {part!r}")
        dynamic, static = (s.strip() for s in part.split("=", 1))
        pairs[dynamic] = static
    return pairs


@click.command(
    "synth-dataset",
    epilog="""\b
Examples:
  vdiag synth-dataset                                  # default: 64×64, 16 frames, 1000/500/500
  vdiag synth-dataset --out data/synth --preview       # and the factor grid (preview.png)
  vdiag synth-dataset --correlation 1.0 --label-factor bg_color
  vdiag synth-dataset --shapes circle,square,star --trajectories linear,rotation,orbit,bounce
  vdiag synth-dataset --texture 0.3 --speed 0.5 --radius 0.08,0.12     # static-shortcut knobs
  vdiag synth-dataset --benchmark static-shortcut --out data/shortcut  # the static-shortcut benchmark""",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Output folder [default: ~/.cache/vdiag/datasets/synth-default, or synth-<hash> for other parameters].",
)
@click.option("--seed", type=int, default=None, help="Generator seed [default: the global --seed].")
@click.option(
    "--benchmark",
    type=click.Choice(list(BENCHMARKS)),
    default=None,
    help="A named setting (docs/static-shortcut.md): its parameters replace the defaults; options given still apply.",
)
@click.option("--num-train", type=click.IntRange(0), default=None, help="Train videos [1000].")
@click.option("--num-val", type=click.IntRange(0), default=None, help="Val videos [500].")
@click.option("--num-test", type=click.IntRange(0), default=None, help="Test videos [500].")
@click.option("--size", type=int, default=None, help="Frame side in pixels (even, ≥ 32) [64].")
@click.option("--frames", type=int, default=None, help="Frames per video [16].")
@click.option("--fps", type=click.IntRange(1), default=None, help="Frames per second of the files [8].")
@click.option(
    "--correlation", type=float, default=None, help="In train, P(dynamic factor copies its static partner); 0 = independent [0.8]."
)
@click.option(
    "--label-factor", type=click.Choice(list(FACTOR_KINDS)), default=None, help="Which factor is the action label [fg_trajectory]."
)
@click.option("--colors", help="Background colours [blue,green]; also red, yellow, purple, orange, cyan, gray.")
@click.option("--shapes", help="Foreground shapes [pentagon,circle]; also square, triangle, star, hexagon.")
@click.option("--brightness", help="Background brightness changes [brightening,darkening]; also steady.")
@click.option("--trajectories", help="Foreground trajectories [rotation,linear]; also orbit, bounce.")
@click.option("--texture", type=float, default=None, help="Per-video multiplicative background texture, amplitude in [0, 1) [0: none].")
@click.option("--radius", help="Shape radius range MIN,MAX as fractions of the frame side [0.13,0.2].")
@click.option("--speed", type=float, default=None, help="Multiplier on how far the shape moves / turns over the clip, (0, 4] [1].")
@click.option(
    "--brightness-change", type=float, default=None, help="Multiplier on how much the background level changes over the clip, (0, 3] [1]."
)
@click.option("--color-offset", type=click.IntRange(0), default=None, help="Per-video background colour offset, ± levels per channel [12].")
@click.option("--pairing", help="Confounded pairs dynamic=static [fg_trajectory=bg_color,bg_brightness=fg_shape], or 'none'.")
@click.option("--preview", is_flag=True, help="Also write preview.png: every value of every factor (like BOD-VCL Fig. 5).")
@click.option("--workers", type=click.IntRange(1), default=None, help="Processes [default: all cores].")
@click.option("--overwrite", is_flag=True, help="Replace a dataset with other parameters at --out.")
@json_option
@click.pass_obj
def synth_dataset(
    settings,
    out,
    seed,
    benchmark,
    num_train,
    num_val,
    num_test,
    size,
    frames,
    fps,
    correlation,
    label_factor,
    colors,
    shapes,
    brightness,
    trajectories,
    texture,
    radius,
    speed,
    brightness_change,
    color_offset,
    pairing,
    preview,
    workers,
    overwrite,
    as_json,
):
    """Generate the synthetic static/dynamic dataset (BOD-VCL Fig. 5) with known factors.

    Four factors per video: background colour and foreground shape (static), background
    brightness change and foreground trajectory (dynamic). In the train split the dynamic factors
    follow the static ones with probability --correlation (the confounding of real datasets);
    val and test are decorrelated. Writes H.264 videos, per-frame foreground masks, labels.csv and
    manifest.json. The same options and seed give identical labels and frames.

    --benchmark static-shortcut starts from the setting where plain v-SimCLR, pretrained with
    `vdiag pretrain --preset static-shortcut`, takes the static shortcut (docs/static-shortcut.md);
    options given on the command line still apply.
    """
    given = {
        "size": size,
        "frames": frames,
        "fps": fps,
        "num_train": num_train,
        "num_val": num_val,
        "num_test": num_test,
        "correlation": correlation,
        "label_factor": label_factor,
        "texture": texture,
        "radius": _radius(radius),
        "speed": speed,
        "brightness_change": brightness_change,
        "color_offset": color_offset,
        "bg_color": comma_list(colors),
        "fg_shape": comma_list(shapes),
        "bg_brightness": comma_list(brightness),
        "fg_trajectory": comma_list(trajectories),
        "pairing": _pairing(pairing),
    }
    config = synth_config(benchmark, seed=settings.seed if seed is None else seed, **given)
    summary = generate_dataset(config, out, workers=workers, overwrite=overwrite)
    if preview:
        from vdiag.viz.synth_preview import plot_factor_grid  # matplotlib only when asked

        grid = Path(summary["out"]) / "preview.png"
        summary["preview"] = str(grid if grid.exists() else plot_factor_grid(config, grid))
    result = _result(config, summary)
    table = Table(title=f"synthetic dataset at {summary['out']}", title_justify="left")
    table.add_column("split")
    table.add_column("videos", justify="right")
    pairs = list(config.pairing.items())
    for dynamic, static in pairs:
        table.add_column(f"{dynamic} ~ {static}\nagreement / Cramér's V", justify="right")
    for split, count in summary.get("counts", {}).items():
        stats = summary.get("correlation", {}).get(split, {})
        cells = [
            f"{stats.get(f'{d}~{s}:agreement', float('nan')):.3f} / {stats.get(f'{d}~{s}:cramers_v', float('nan')):.3f}" for d, s in pairs
        ]
        table.add_row(split, str(count), *cells)
    verb = (
        "reused the existing dataset (same parameters) at"
        if summary["reused"]
        else f"wrote {sum(summary.get('counts', {}).values())} videos in {summary.get('seconds', 0):.1f} s to"
    )
    footer = [f"{verb} {summary['out']}", f"labels: {summary['out']}/labels.csv   manifest: {summary['out']}/manifest.json"]
    if summary.get("preview"):
        footer.append(f"preview: {summary['preview']}")
    emit(result, as_json, table, footer=footer)


def _radius(value: str | None) -> list[float] | None:
    if value is None:
        return None
    parts = comma_list(value) or []
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 2:
        raise VdiagError(f"--radius takes MIN,MAX as fractions of the frame side, such as 0.08,0.12; got {value!r}")
    return numbers


def _result(config: SynthConfig, summary: dict) -> Result:
    metrics = {f"num_{split}": count for split, count in summary.get("counts", {}).items()}
    for split, stats in summary.get("correlation", {}).items():
        for name, value in stats.items():
            metrics[f"{split}:{name}"] = value
    if not summary["reused"]:
        metrics["seconds"] = summary["seconds"]
        metrics["videos_per_second"] = summary["videos_per_second"]
    return Result(
        command="synth-dataset",
        data=summary["out"],
        metrics=metrics,
        figures=[summary["preview"]] if summary.get("preview") else [],
        files=[f"{summary['out']}/labels.csv", f"{summary['out']}/manifest.json"],
        config=asdict(config),
        details={"reused": summary["reused"]},
    )
