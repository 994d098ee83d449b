"""The static shortcut, mapped: when does plain v-SimCLR miss motion on the synthetic data?

The papers' central claim (BOLD-DI §3.2, BOD-VCL's synthetic study, DCLR and ViDiDi's motivation):
plain video contrastive learning captures static appearance and misses motion. This recipe measures
when it does on vdiag's synthetic data (issue 20, docs/static-shortcut.md). Around a base setting
(the `static-shortcut` benchmark: `vdiag synth-dataset --benchmark static-shortcut`, trained with
the `static-shortcut` preset), it changes one cause at a time:

- augmentation strength: the `static-shortcut` preset (crops 70–100 %, no grey scale) vs the `cpu`
  preset (crops 30–100 %, grey scale at p 0.2), at the same frame size and epochs;
- number of static values: 2 vs 4 background colours (4 trajectories follow them);
- per-video static identity: a multiplicative background texture (`--texture`);
- motion salience: smaller shapes (`--radius`), faster motion (`--speed`), a steeper brightness
  ramp (`--brightness-change 1`, the generator's default);
- what the brightness change follows in train: the colour (the benchmark) or the shape (the default);
- train correlation (`--correlation`);
- training length (epochs).

For every point it pretrains v-SimCLR and probes every factor (`vdiag probe factors`: fit on val,
test on test, both unconfounded), with two supervised references: a static one (per-frame `tiny2d`
network supervised on the background colour) and a dynamic one (3-D `tiny` supervised on the
trajectory). The references train on the point's unconfounded twin (the same options with
`--correlation 0`: a supervised network on the confounded split takes the shortcut too, measured),
whose val and test videos are the same videos as the point's (the correlation only changes how
train videos are drawn), and are probed on the point's val and test like v-SimCLR. It writes a
table per axis (mean and 95 % t-interval over the seeds, per-seed values in the JSON) and a figure
of the curves.

The shortcut criterion: v-SimCLR's dynamic_score at most half of the dynamic reference's.
No decoupling method runs here: the setting is chosen from v-SimCLR and the references alone.

    python commands/static_shortcut.py --smoke            # seconds: one axis, one seed, tiny data
    python commands/static_shortcut.py                    # every axis, 3 seeds (102 runs; 7 axes took 2 h on 2 CPU cores)
    python commands/static_shortcut.py --dry-run          # print the commands only
    python commands/static_shortcut.py --seeds 0 --axes epochs correlation   # part of it
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from vdiag.data.synthetic import BENCHMARKS
from vdiag.errors import VdiagError
from vdiag.recipes import Recipe, run_recipe, score, seed_interval

BENCHMARK = BENCHMARKS["static-shortcut"]
SEEDS = (0, 1, 2)
SMOKE_SEEDS = (0,)
# (axis, x label, [(value label, synth-dataset options, preset, epochs)]); the base point is on every axis
BASE = ("base", [], BENCHMARK["preset"], BENCHMARK["epochs"])
AXES = [
    ("augmentation", "augmentation (preset)", [("mild", [], "static-shortcut", None), ("strong (cpu)", [], "cpu", None)]),
    ("colours", "background colours", [("2", [], None, None), ("4", ["--colors", "blue,green,red,yellow"], None, None)]),
    (
        "texture",
        "texture amplitude",
        [("0", [], None, None), ("0.15", ["--texture", "0.15"], None, None), ("0.3", ["--texture", "0.3"], None, None)],
    ),
    ("radius", "shape radius (fraction of frame)", [("0.13-0.2", [], None, None), ("0.06-0.1", ["--radius", "0.06,0.1"], None, None)]),
    ("speed", "speed multiplier", [("0.5", ["--speed", "0.5"], None, None), ("1", [], None, None), ("2", ["--speed", "2"], None, None)]),
    ("brightness", "brightness change", [("0.5", [], None, None), ("1", ["--brightness-change", "1"], None, None)]),
    (
        "pairing",
        "brightness follows",
        [("colour", [], None, None), ("shape", ["--pairing", "fg_trajectory=bg_color,bg_brightness=fg_shape"], None, None)],
    ),
    (
        "correlation",
        "train correlation",
        [("0.5", ["--correlation", "0.5"], None, None), ("0.8", ["--correlation", "0.8"], None, None), ("0.95", [], None, None)],
    ),
    ("epochs", "epochs", [("2", [], None, 2), ("4", [], None, None), ("8", [], None, 8)]),
]
SMOKE_AXES = [AXES[0]]
SMOKE_DATA = ["--num-train", "32", "--num-val", "16", "--num-test", "16"]
SMOKE_TRAIN = ["--batch-size", "8", "--workers", "0", "--set", "data.frames=4", "--set", "train.warmup_epochs=0"]
# the benchmark's clip shape, given to every run so that the presets differ in their augmentation only
SHAPE = ["--set", f"data.size={BENCHMARK['data']['size']}", "--set", "data.stride=1"]
RUNS = [  # (row, method, options): v-SimCLR and the two supervised references
    ("v-SimCLR", "simclr", []),
    ("static reference", "supervised", ["--backbone", "tiny2d", "--target", "bg_color"]),
    ("dynamic reference", "supervised", ["--target", "label"]),
]
PROBE = ["--clips", "2"]  # as on docs/static-shortcut.md: two clips per video
METRICS = ["dynamic_score", "static_score", "acc_fg_trajectory", "acc_bg_brightness", "acc_bg_color"]


def main():
    recipe = Recipe.from_command_line("static_shortcut", __doc__, synthetic=True, extra_options=add_options)
    seeds = SMOKE_SEEDS if recipe.smoke else tuple(recipe.options["seeds"] or SEEDS)
    chosen = recipe.options["axes"] or [axis[0] for axis in AXES]  # in the order given
    axes = SMOKE_AXES if recipe.smoke else [axis for name in chosen for axis in AXES if axis[0] == name]
    record = {"benchmark": BENCHMARK, "seeds": list(seeds), "axes": {}}
    if recipe.options.get("finished_only") and not list((recipe.out / "runs").glob("*/*/final.pt")):
        raise VdiagError(f"no finished run under {recipe.out / 'runs'}; run the study first (without --finished-only), or pass its --out")
    for axis, label, points in axes:
        rows, curves = [], {row: [] for row, _, _ in RUNS}
        for value, data_options, preset, epochs in points:
            preset, epochs = preset or BASE[2], epochs or BASE[3]
            measured = {row: [] for row, _, _ in RUNS}
            for seed in seeds:
                data = make_dataset(recipe, data_options, seed)
                twin = make_dataset(recipe, [*twin_options(data_options), "--correlation", "0"], seed)
                for row, method, options in RUNS:
                    # the references do not depend on the augmentation: one pair per dataset and length
                    run_preset, train_data = (preset, data) if method == "simclr" else (BASE[2], twin)
                    checkpoint = pretrain(recipe, train_data, method, options, run_preset, epochs, seed)
                    if checkpoint is not None:
                        measured[row].append(recipe.diagnose("probe factors", checkpoint, *PROBE, data=data))
            for row, _, _ in RUNS:
                summary = {name: seed_interval(m.get(name) for m in measured[row]) for name in METRICS}
                curves[row].append({"value": value, **summary, "seeds": [{k: m.get(k) for k in METRICS} for m in measured[row]]})
                rows.append((f"{label} = {value}: {row}", [cell(summary[name], len(seeds)) for name in METRICS]))
        record["axes"][axis] = {"label": label, "curves": curves}
        recipe.table(
            f"Static shortcut, {label}: v-SimCLR and the supervised references (mean ± 95 % t-interval over seeds {list(seeds)})",
            ["dynamic score", "static score", "fg trajectory", "bg brightness", "bg colour"],
            rows,
            note="Scores: 0 = chance, 1 = perfect (vdiag probe factors, fit on val, tested on test). Accuracies are fractions. "
            "The shortcut: v-SimCLR's dynamic score at most half of the dynamic reference's.",
            name=f"static_shortcut_{axis}",
        )
    if not recipe.dry_run:
        (recipe.out / "static_shortcut_curves.json").write_text(json.dumps(record, indent=2) + "\n")
        figure = plot_curves(record, recipe.out / "static_shortcut.png")
        print(f"figure: {figure}", file=sys.stderr)


def add_options(parser) -> None:
    """The study's own options: which seeds and axes to run (a smaller study, or its tables from
    the runs already made: finished runs are reused)."""
    names = [axis[0] for axis in AXES]
    parser.add_argument("--seeds", type=int, nargs="+", help=f"seeds to run [{' '.join(map(str, SEEDS))}]")
    parser.add_argument(
        "--axes", nargs="+", choices=names, metavar="AXIS", help=f"axes to run, in this order, of: {', '.join(names)} [all]"
    )
    parser.add_argument(
        "--finished-only", action="store_true", help="train nothing: tables and figure of the finished runs (each cell says its seeds)"
    )


def make_dataset(recipe: Recipe, options: list[str], seed: int) -> str:
    """The benchmark's dataset with `options` changed (a later option wins), for `seed` (made once)."""
    chosen = dict(zip(options[::2], options[1::2], strict=True))
    name = "-".join(["shortcut", *(f"{k.lstrip('-')}{v.replace(',', '_')}" for k, v in chosen.items()), f"s{seed}"])
    options = [item for pair in chosen.items() for item in pair]
    folder = recipe.out / "data" / name
    if not (folder / "manifest.json").is_file() and not recipe.options.get("finished_only"):
        size = SMOKE_DATA if recipe.smoke else []
        recipe.vdiag("--seed", str(seed), "synth-dataset", "--benchmark", "static-shortcut", *options, *size, "--out", folder)
    return str(folder)


def twin_options(options: list[str]) -> list[str]:
    """The options of a point's unconfounded twin: `--pairing` dropped, since at correlation 0 no
    train video follows its partner and the generator draws the same numbers whatever the pairing
    (the twin's videos are identical; dropping it lets points share their references)."""
    pairs = zip(options[::2], options[1::2], strict=True)
    return [item for key, value in pairs if key != "--pairing" for item in (key, value)]


ISSUED: set[Path] = set()  # run folders already trained (or printed, in a dry run)


def pretrain(recipe: Recipe, data: str, method: str, options: list[str], preset: str, epochs: int, seed: int) -> str | None:
    """One pretraining run (reused when its final.pt exists); its checkpoint, or None in a dry run."""
    tag = "-".join([method, *(o.lstrip("-") for o in options if not o.startswith("--")), preset, f"e{epochs}"])
    # the tag names the run: method, backbone / target, preset, epochs
    folder = recipe.out / "runs" / Path(data).name / tag
    checkpoint = folder / "final.pt"
    if recipe.options.get("finished_only") and not checkpoint.is_file():
        return None  # tables of the runs made so far: this seed is left out of this point (its n says so)
    if not checkpoint.is_file() and folder not in ISSUED:
        ISSUED.add(folder)
        size = SMOKE_TRAIN if recipe.smoke else []
        resume = ["--resume"] if (folder / "last.pt").is_file() else []  # an interrupted run continues
        recipe.vdiag(
            "--seed", str(seed), "pretrain", "--method", method, "--data", data, *options, "--preset", preset, "--epochs",
            str(1 if recipe.smoke else epochs), *SHAPE, *size, "--out", folder, *resume,
        )  # fmt: skip
    elif not recipe.dry_run and folder not in ISSUED:
        ISSUED.add(folder)
        recipe.commands.append(f"# reused {checkpoint}")
    return None if recipe.dry_run else str(checkpoint)


def cell(summary: dict, seeds: int) -> str | None:
    """'0.512 ± 0.041' (or just the mean for one seed), with "(n = 2)" when fewer than `seeds` seeds were measured."""
    if summary["mean"] is None:
        return None
    fewer = f" (n = {summary['n']})" if summary["n"] < seeds else ""
    if summary["half_width"] is None:
        return f"{score(summary['mean'])}{fewer}"
    return f"{score(summary['mean'])} ± {score(summary['half_width'])}{fewer}"


def plot_curves(record: dict, path: Path) -> Path:
    """One panel per axis: dynamic score of v-SimCLR and both references, with the intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = record["axes"]
    fig, panels = plt.subplots(1, len(axes), figsize=(3.2 * len(axes), 3.0), squeeze=False, sharey=True)
    for panel, (axis, data) in zip(panels[0], axes.items(), strict=True):
        for row, points in data["curves"].items():
            x = list(range(len(points)))
            y = [p["dynamic_score"]["mean"] if p["dynamic_score"]["mean"] is not None else math.nan for p in points]
            err = [p["dynamic_score"]["half_width"] or 0.0 for p in points]
            panel.errorbar(x, y, yerr=err, marker="o", capsize=3, label=row)
            panel.set_xticks(x, [p["value"] for p in points])
        panel.set_xlabel(data["label"])
        panel.set_title(axis)
        panel.axhline(0.0, color="grey", lw=0.5)
    panels[0][0].set_ylabel("dynamic score (0 = chance)")
    panels[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    run_recipe(main)
