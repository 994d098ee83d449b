"""Why the decoupling methods do not recover motion on the static-shortcut benchmark: their own ablations.

On the `static-shortcut` benchmark (docs/static-shortcut.md) v-SimCLR reads the background colour
and misses the trajectory; ViDiDi (SimCLR, VICReg) recovers it, while DCLR, the concepts method,
BOLD-DI and BOD-VCL do not, and ViDiDi-BYOL is within the noise of v-SimCLR (issue 20). This recipe
runs each non-recovering method's own ablations on the benchmark (DCLR Table 4 / 5 and its Eq. 16
weight, the concepts warm-up and Table 4 losses, BOLD-DI Tables 9 / 10 / 11–12 / 14 and Table 5's
single level, BOD-VCL's radius, ViDiDi Table 6's schedules) and longer training (12 epochs), and
writes three tables:

1. `static_shortcut_ablations`: every run's factor probes (`vdiag probe factors`: fit on val, tested
   on test, both unconfounded): fg trajectory, dynamic and static score, pretraining seconds;
   mean ± 95 % t-interval where a row has several seeds.
2. `static_shortcut_ablations_terms`: each method's logged loss terms per epoch (from the default
   seed-0 run's metrics.jsonl): which decoupling terms are on, and how large they are.
3. `static_shortcut_ablations_concepts`: the concepts method's Table 3 features (v, codes, local
   features; static and dynamic) probed for the trajectory with `vdiag eval linear --target
   fg_trajectory`, fit on the train split of the benchmark's unconfounded twin (correlation 0) and
   tested on the same test videos; v-SimCLR's embedding probed the same way for comparison.

Every run uses the benchmark's preset and clip shape (`--preset static-shortcut --set data.size=32
--set data.stride=1`); a method's options are `--set method_args.KEY=VALUE`. A run folder that
already holds final.pt is reused after checking that its config.yaml has the row's method, seed,
epochs and options (so a table can be rebuilt from finished runs); a probe whose JSON exists is
reused too.

    python commands/static_shortcut_ablations.py --smoke                    # seconds: tiny data, three runs
    python commands/static_shortcut_ablations.py --out /work/exp/abl        # every row (37 pretraining runs, 1-10 min each on CPU)
    python commands/static_shortcut_ablations.py --dry-run                  # print the commands only
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import yaml

from vdiag.catalog import CONCEPT_FEATURES
from vdiag.data.synthetic import BENCHMARKS
from vdiag.errors import VdiagError
from vdiag.recipes import Recipe, run_recipe, score, seed_interval

BENCHMARK = BENCHMARKS["static-shortcut"]
EPOCHS = BENCHMARK["epochs"]
SHAPE = ["--preset", "static-shortcut", "--set", f"data.size={BENCHMARK['data']['size']}", "--set", "data.stride=1"]
# DCLR Table 4 studies the losses alone: no search, no activation alignment, no refinement (commands/dclr_table4.py)
INPUT_LEVEL = ("search=none", "activation_alignment=false", "refine_static=false", "refine_dynamic=false")
SEEDS = (0, 1, 2)
# (row, folder stem, method, method options, epochs, seeds); folder = <stem>-s<seed>
RUNS = [
    ("v-SimCLR", "simclr", "simclr", (), EPOCHS, (0,)),
    ("v-SimCLR, 12 epochs", "simclr-e12", "simclr", (), 12, (0,)),
    # DCLR (cpu preset: sd_weight 0.1, search and refinement after 1 warm-up epoch)
    ("DCLR (cpu preset)", "dclr", "dclr", (), EPOCHS, SEEDS),
    ("DCLR, sd_weight 1 (Eq. 16)", "dclr-sd1", "dclr", ("sd_weight=1",), EPOCHS, SEEDS),
    ("DCLR, no warm-up", "dclr-nowarm", "dclr", ("warmup_epochs=0",), EPOCHS, (0,)),
    ("DCLR Table 4: L_VD", "dclr-t4-vd", "dclr", ("losses=vd", *INPUT_LEVEL), EPOCHS, SEEDS),
    ("DCLR Table 4: L_VS + L_VD", "dclr-t4-vs-vd", "dclr", ("losses=vs,vd", *INPUT_LEVEL), EPOCHS, (0,)),
    ("DCLR Table 4: L_VV + L_VD", "dclr-t4-vv-vd", "dclr", ("losses=vv,vd", *INPUT_LEVEL), EPOCHS, (0,)),
    ("DCLR Table 4: L_VV + L_VS + L_VD", "dclr-t4-vv-vs-vd", "dclr", ("losses=vv,vs,vd", *INPUT_LEVEL), EPOCHS, (0,)),
    (
        "DCLR Table 4: L_VS + L_VD − L_SD, sd_weight 1",
        "dclr-t4-vs-vd-sd1",
        "dclr",
        ("losses=vs,vd,sd", "sd_weight=1", *INPUT_LEVEL),
        EPOCHS,
        (0,),
    ),
    ("DCLR: − L_SD alone, sd_weight 1", "dclr-t4-sd1", "dclr", ("losses=sd", "sd_weight=1", *INPUT_LEVEL), EPOCHS, (0,)),
    ("DCLR, 12 epochs", "dclr-e12", "dclr", (), 12, (0,)),
    # concepts (cpu preset: L_loc after 1 warm-up epoch)
    ("concepts (cpu preset)", "concepts", "concepts", (), EPOCHS, (0,)),
    ("concepts, no warm-up", "concepts-nowarm", "concepts", ("warmup_epochs=0",), EPOCHS, (0,)),
    (
        "concepts, K_s = K_d = 50, top-K 5 (the paper's, §4.2)",
        "concepts-k50",
        "concepts",
        ("static_concepts=50", "dynamic_concepts=50", "top_k=5"),
        EPOCHS,
        (0,),
    ),
    ("concepts, 12 epochs", "concepts-e12", "concepts", (), 12, (0,)),
    # BOLD-DI on v-SimCLR (cpu preset: ν 0.1, one inner step, AID-FD, ξ 0.9, ω 0.1)
    ("BOLD-DI-SimCLR (cpu preset)", "bolddi-simclr", "bolddi-simclr", (), EPOCHS, (0,)),
    ("BOLD-DI-SimCLR, ν = 1 (Table 10)", "bolddi-simclr-dw1", "bolddi-simclr", ("dynamic_weight=1",), EPOCHS, (0,)),
    ("BOLD-DI-SimCLR, ν = 100 (Table 10)", "bolddi-simclr-dw100", "bolddi-simclr", ("dynamic_weight=100",), EPOCHS, (0,)),
    ("BOLD-DI-SimCLR, no inner step (Table 14: + L_dynamic)", "bolddi-simclr-inner0", "bolddi-simclr", ("inner_steps=0",), EPOCHS, (0,)),
    ("BOLD-DI-SimCLR, ξ 0.6, ω 0.5 (Tables 11-12)", "bolddi-simclr-xi06-om05", "bolddi-simclr", ("xi=0.6", "omega=0.5"), EPOCHS, (0,)),
    ("BOLD-DI-SimCLR, 12 epochs", "bolddi-simclr-e12", "bolddi-simclr", (), 12, (0,)),
    # BOD-VCL on v-SimCLR (cpu preset: radius 0.1)
    ("BOD-VCL-SimCLR (cpu preset)", "bodvcl-simclr", "bodvcl-simclr", (), EPOCHS, (0,)),
    ("BOD-VCL-SimCLR, radius 0.3", "bodvcl-simclr-r03", "bodvcl-simclr", ("radius=0.3",), EPOCHS, (0,)),
    ("BOD-VCL-SimCLR, radius 0.03", "bodvcl-simclr-r003", "bodvcl-simclr", ("radius=0.03",), EPOCHS, (0,)),
    ("BOD-VCL-SimCLR, 12 epochs", "bodvcl-simclr-e12", "bodvcl-simclr", (), 12, (0,)),
    # ViDiDi-BYOL (cpu preset: balanced schedule, second order at p 0.5) and its base
    ("v-BYOL", "byol", "byol", (), EPOCHS, (0,)),
    ("ViDiDi-BYOL (cpu preset)", "vididi-byol", "vididi-byol", (), EPOCHS, SEEDS),
    ("ViDiDi-BYOL, 12 epochs", "vididi-byol-e12", "vididi-byol", (), 12, SEEDS),
    (
        "ViDiDi-BYOL, random 1st order (Table 6)",
        "vididi-byol-random",
        "vididi-byol",
        ("schedule=random", "random_max_order=1", "second_order_prob=0"),
        EPOCHS,
        (0,),
    ),
    ("ViDiDi-BYOL, reverse (Table 6)", "vididi-byol-reverse", "vididi-byol", ("schedule=reverse",), EPOCHS, (0,)),
]
# --smoke (1 epoch, tiny data): a default with two seeds, an option of a bi-level method, concepts (two of its features)
SMOKE_RUNS = [
    ("v-SimCLR", "simclr", "simclr", (), EPOCHS, (0, 1)),
    ("BOLD-DI-SimCLR, no inner step", "bolddi-simclr-inner0", "bolddi-simclr", ("inner_steps=0",), EPOCHS, (0,)),
    ("concepts (cpu preset)", "concepts", "concepts", (), EPOCHS, (0,)),
]
SMOKE_FEATURES = ("v", "F_v_dynamic")
SMOKE_DATA = ["--num-train", "32", "--num-val", "16", "--num-test", "16"]
SMOKE_TRAIN = ["--batch-size", "8", "--workers", "0", "--set", "data.frames=4", "--set", "train.warmup_epochs=0"]
PROBE_OPTIONS = ["--clips", "2"]
COLUMNS = ["options", "seeds", "fg trajectory", "dynamic score", "static score", "bg colour", "trajectory per seed", "pretrain s"]
BOOKKEEPING = {"type", "epoch", "global_step", "seconds", "lr", "clips_per_s"}


def main():
    recipe = Recipe.from_command_line("static_shortcut_ablations", __doc__, synthetic=True)
    runs = SMOKE_RUNS if recipe.smoke else RUNS
    rows, record = [], []
    for row, stem, method, options, epochs, seeds in runs:
        measured = []
        for seed in seeds:
            folder = pretrain(recipe, stem, method, options, epochs, seed)
            metrics = probe_factors(recipe, folder, dataset(recipe, seed))
            if metrics is not None:
                seconds = json.loads((folder / "pretrain.json").read_text())["metrics"]["seconds"]
                measured.append({"seed": seed, "run": folder.name, **metrics, "pretrain_seconds": seconds})
        record.append({"row": row, "method": method, "options": list(options), "epochs": epochs, "seeds": measured})
        rows.append((row, table_row(options, epochs, seeds, measured)))
    if recipe.dry_run:
        return
    recipe.table(
        "Static-shortcut benchmark: the decoupling methods' own ablations (vdiag probe factors)",
        COLUMNS,
        rows,
        note="Accuracies are fractions, scores chance-normalised (0 = chance, 1 = perfect); probes fit on val, tested on the "
        "200 test videos (±0.07 95 % interval for one run); mean ± 95 % t-interval over the seeds where there are several. "
        "Options are `--set method_args.KEY=VALUE`; 'input level' = search=none, activation_alignment=false, "
        "refine_static=false, refine_dynamic=false (DCLR Table 4). Pretrain seconds: wall time of the pretraining "
        "(mean over seeds), on a shared CPU: compare only within one load condition.",
    )
    (recipe.out / "static_shortcut_ablations_runs.json").write_text(json.dumps(record, indent=2) + "\n")
    loss_terms_table(recipe, runs)
    concepts_table(recipe, runs)


def dataset(recipe: Recipe, seed: int, correlation: str | None = None) -> Path:
    """The benchmark's dataset for `seed` (or its unconfounded twin), made once under <out>/data."""
    name = f"shortcut-correlation{correlation}-s{seed}" if correlation is not None else f"shortcut-s{seed}"
    folder = recipe.out / "data" / name
    if not (folder / "manifest.json").is_file():
        size = SMOKE_DATA if recipe.smoke else []
        twin = ["--correlation", correlation] if correlation is not None else []
        recipe.vdiag("--seed", str(seed), "synth-dataset", "--benchmark", "static-shortcut", *twin, *size, "--out", folder)
    return folder


def pretrain(recipe: Recipe, stem: str, method: str, options: tuple[str, ...], epochs: int, seed: int) -> Path:
    """Train one run into <out>/runs/<stem>-s<seed>, or reuse the finished run there after checking its settings.

    Raises:
        VdiagError: the folder holds a run with other settings than the row's.
    """
    folder = recipe.out / "runs" / f"{stem}-s{seed}"
    if (folder / "final.pt").is_file() and not recipe.dry_run:
        check_settings(folder, method, options, 1 if recipe.smoke else epochs, seed)
        recipe.commands.append(f"# reused {folder / 'final.pt'}")
        return folder
    data = dataset(recipe, seed)
    sets = [item for option in options for item in ("--set", f"method_args.{option}")]
    size = SMOKE_TRAIN if recipe.smoke else []
    recipe.vdiag(
        "--seed", str(seed), "pretrain", "--method", method, "--data", data, *SHAPE, "--epochs", str(1 if recipe.smoke else epochs),
        *sets, *size, "--out", folder,
    )  # fmt: skip
    return folder


def check_settings(folder: Path, method: str, options: tuple[str, ...], epochs: int, seed: int) -> None:
    """Refuse a reused run whose config.yaml differs from the row's method, seed, epochs or options.

    Raises:
        VdiagError: a setting differs.
    """
    config = yaml.safe_load((folder / "config.yaml").read_text())
    found = {"method": config.get("method"), "seed": config.get("seed"), "epochs": config.get("train", {}).get("epochs")}
    wanted = {"method": method, "seed": seed, "epochs": epochs}
    for option in options:
        key, value = option.split("=", 1)
        found[key] = config.get("method_args", {}).get(key)
        wanted[key] = yaml.safe_load(value)
    differ = [f"{key} {found[key]!r} (the row wants {wanted[key]!r})" for key in wanted if found[key] != wanted[key]]
    if differ:
        raise VdiagError(f"{folder} holds a run with other settings: {', '.join(differ)}; delete it or choose another --out")


def probe_factors(recipe: Recipe, folder: Path, data: Path) -> dict | None:
    """`vdiag probe factors` of the run's final.pt on `data` into <out>/diag/<run> (reused when its JSON exists)."""
    out = recipe.out / "diag" / folder.name
    result = out / "factors.json"
    if not result.is_file():
        smoke = ["--workers", "0"] if recipe.smoke else []
        recipe.vdiag("probe", "factors", folder / "final.pt", "--data", data, *PROBE_OPTIONS, *smoke, "--out", out)
    else:
        recipe.commands.append(f"# reused {result}")
    return None if recipe.dry_run else json.loads(result.read_text())["metrics"]


def mean_interval(values: list[float]) -> str:
    """'0.512' for one value, '0.512 ± 0.041' (95 % Student t, `seed_interval`) for several."""
    summary = seed_interval(values)
    if summary["half_width"] is None:
        return f"{summary['mean']:.3f}"
    return f"{summary['mean']:.3f} ± {summary['half_width']:.3f}"


def table_row(options: tuple[str, ...], epochs: int, seeds: tuple[int, ...], measured: list[dict]) -> list:
    """The cells of one row: options, seeds, the probe metrics (mean ± interval), pretraining seconds."""
    shown = [o for o in options if o not in INPUT_LEVEL] + (["input level"] if set(INPUT_LEVEL) <= set(options) else [])
    if epochs != EPOCHS:
        shown.append(f"{epochs} epochs")
    cells = [", ".join(shown) or "(preset)", ",".join(map(str, seeds))]
    if not measured:
        return cells + [None] * (len(COLUMNS) - 2)
    for name in ("acc_fg_trajectory", "dynamic_score", "static_score", "acc_bg_color"):
        cells.append(mean_interval([m[name] for m in measured]))
    cells.append(", ".join(f"{m['acc_fg_trajectory']:.3f}" for m in measured))
    cells.append(round(statistics.fmean(m["pretrain_seconds"] for m in measured)))
    return cells


def significant(value: float | None, digits: int = 4) -> float | None:
    """`value` rounded to `digits` significant digits (a loss term of 6e-4 stays readable)."""
    if value is None or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def loss_terms_table(recipe: Recipe, runs: list) -> None:
    """Each method's default seed-0 run: its logged loss terms, epoch by epoch (metrics.jsonl epoch lines)."""
    rows, width = [], 0
    for row, stem, _, options, epochs, seeds in runs:
        if options or epochs != EPOCHS or 0 not in seeds:
            continue
        lines = [json.loads(line) for line in (recipe.out / "runs" / f"{stem}-s0" / "metrics.jsonl").read_text().splitlines()]
        per_epoch = [line for line in lines if line.get("type") == "epoch"]
        width = max(width, len(per_epoch))
        terms = list(dict.fromkeys(k for line in per_epoch for k in line if k not in BOOKKEEPING))  # L_loc joins after the warm-up
        for term in terms:
            rows.append((f"{row}: {term}", [significant(line.get(term)) for line in per_epoch]))
    rows = [(name, values + [None] * (width - len(values))) for name, values in rows]
    recipe.table(
        "Static-shortcut benchmark: each method's loss terms per epoch (seed 0, its preset's options; epoch means)",
        [f"epoch {e}" for e in range(1, width + 1)],
        rows,
        note="Logged values before weighting: `loss` is the weighted total. DCLR: loss = vs + vd − sd_weight·sd + 0.5·ac; "
        "concepts: aln + loc + fid + 0.01·div (loc only after the warm-up); BOLD-DI: info_nce + ν·dynamic at θ*, with the "
        "inner (backdoor) loss moving θ by one SGD step; BOD-VCL: static + dynamic at θ*, prediction the inner loss.",
        name="static_shortcut_ablations_terms",
    )


def concepts_table(recipe: Recipe, runs: list) -> None:
    """The concepts Table 3 features of the default seed-0 concepts run, probed for the trajectory on the twin."""
    twin = dataset(recipe, 0, correlation="0")
    features = SMOKE_FEATURES if recipe.smoke else CONCEPT_FEATURES
    targets = [("concepts", feature) for feature in features] + [("simclr", "embedding")]
    rows = []
    for stem, feature in targets:
        if not any(r[1] == stem and 0 in r[5] for r in runs):
            continue
        folder = recipe.out / "runs" / f"{stem}-s0"
        out = recipe.out / "diag" / folder.name / f"linear-trajectory-{feature}"
        result = out / "linear.json"
        if not result.is_file():
            smoke = ["--workers", "0"] if recipe.smoke else []
            recipe.vdiag(
                "eval", "linear", folder / "final.pt", "--data", twin, "--target", "fg_trajectory", "--feature", feature,
                *PROBE_OPTIONS, *smoke, "--out", out,
            )  # fmt: skip
        metrics = json.loads(result.read_text())["metrics"]
        rows.append((f"{stem}: {feature}", [score(metrics.get("top1"))]))
    recipe.table(
        "Static-shortcut benchmark: concepts Table 3 features, linear probe for the trajectory (seed 0)",
        ["fg trajectory top-1"],
        rows,
        note="`vdiag eval linear --target fg_trajectory --feature F`, fit on the train split of the benchmark's unconfounded "
        "twin (correlation 0, 400 videos), tested on its 200 test videos (the benchmark's own test videos). Fractions.",
        name="static_shortcut_ablations_concepts",
    )


if __name__ == "__main__":
    run_recipe(main)
