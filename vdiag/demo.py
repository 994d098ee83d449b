"""`vdiag demo`: the papers' core finding, end to end on a laptop CPU.

1. The static-shortcut benchmark (`vdiag synth-dataset --benchmark static-shortcut`,
   docs/static-shortcut.md): BOD-VCL Fig. 5's factors, 400 / 200 / 200 videos of 8 frames at
   32 × 32; in train both dynamic factors follow the background colour with p = 0.95, val and test
   unconfounded. The setting was chosen from v-SimCLR and the supervised references alone, where
   v-SimCLR's dynamic score is at most half the dynamic reference's at 3 of 3 seeds. Also its
   unconfounded twin (`--correlation 0`; the same val and test videos) for the references.
2. Seven pretraining runs with the benchmark's `static-shortcut` preset (the cpu preset with mild
   augmentation), the same epochs for each:
   - a static reference: supervised on the background colour with a per-frame 2-D network, which
     cannot see motion at all (trained on the twin);
   - a dynamic reference: supervised on the trajectory (the label) with the 3-D backbone (trained
     on the twin: on the confounded split a supervised network takes the shortcut too);
   - v-SimCLR, the plain video contrastive baseline;
   - the decoupling methods: ViDiDi-SimCLR, DCLR, concepts, BOLD-DI-SimCLR.
3. `vdiag report` on all seven: static-bias, shuffle, factors, retrieval, silhouette, Koopman
   eigenvalues, t-SNE, one HTML page.

Every step is reused when its output exists, and an interrupted pretraining resumes from its
last.pt, so running `vdiag demo` again continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vdiag.console import note
from vdiag.data.synthetic import BENCHMARKS, generate_dataset, synth_config
from vdiag.errors import VdiagError
from vdiag.results import Result
from vdiag.viz.synth_preview import plot_factor_grid


@dataclass(frozen=True)
class DemoRun:
    """One pretraining run of the demo: run folder name, method, its role in the story, and
    (optionally) a backbone, method options and whether it trains on the unconfounded twin."""

    name: str
    method: str
    role: str
    backbone: str | None = None
    method_args: dict = field(default_factory=dict)
    unconfounded: bool = False


DEMO_RUNS = (
    DemoRun(
        "static-reference",
        "supervised",
        "supervised on background colour, per-frame network: appearance only",
        "tiny2d",
        {"target": "bg_color"},
        unconfounded=True,
    ),
    DemoRun("dynamic-reference", "supervised", "supervised on the trajectory label: motion", None, {"target": "label"}, unconfounded=True),
    DemoRun("v-simclr", "simclr", "plain video contrastive learning (the baseline)"),
    DemoRun("vididi-simclr", "vididi-simclr", "ViDiDi: temporal derivatives as views"),
    DemoRun("dclr", "dclr", "DCLR: static frame and frame difference, motion search"),
    DemoRun("concepts", "concepts", "static and dynamic concepts"),
    DemoRun("bolddi-simclr", "bolddi-simclr", "BOLD-DI: bi-level Koopman decoupling"),
)


BENCHMARK = "static-shortcut"  # the dataset and training preset of the demo (vdiag.data.synthetic.BENCHMARKS)


@dataclass(frozen=True)
class DemoSettings:
    """The demo's scale: frame side (pixels) and videos per split of the synthetic dataset,
    pretraining epochs, clips per test video in the diagnostics."""

    size: int = 32
    num_train: int = 400
    num_val: int = 200
    num_test: int = 200
    epochs: int = 4
    clips: int = 2  # per test video in the diagnostics (the commands' default is 10)


def run_demo(
    out: str | Path = "vdiag-demo",
    settings: DemoSettings = DemoSettings(),
    *,
    data: str | Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    decoder: str = "auto",
    runs: tuple[DemoRun, ...] = DEMO_RUNS,
) -> Result:
    """The papers' core finding end to end: confounded synthetic data, seven pretraining runs, one report.

    Does plain video contrastive learning take the static shortcut (BOLD-DI §3.2, BOD-VCL §1), and
    do the decoupling methods (ViDiDi, DCLR, concepts, BOLD-DI) recover motion? Finished runs are
    reused and an interrupted one resumes, so a second call continues where the first stopped.

    Args:
        out: folder for the runs (`runs/<name>/`), the report (`report/`), the factor preview and demo.json.
        settings: dataset size, epochs, clips per test video.
        data: the synthetic dataset folder [the cache's dataset for these parameters].
        seed: seeds the dataset, the pretraining and the diagnostics.
        device: where models run.
        decoder: "auto", "decord" or "pyav".
        runs: the pretraining runs (`DEMO_RUNS`).

    Returns:
        `Result` "demo": the report's metrics (`<run index>.<diagnostic>.<metric>`), figures, the report files
        (report.html, report.md); details: runs, seconds per step, the dataset's measured correlation.

    Raises:
        VdiagError: a pretraining run stopped before its end (run the demo again to continue).
    """
    from vdiag.diagnostics.data import resolve_data
    from vdiag.diagnostics.features import load_extractor
    from vdiag.report.card import build_report

    out = Path(out)
    total = len(runs) + 3
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def step(number: int, message: str) -> float:
        note(message, title=f"demo step {number}/{total}")
        return time.perf_counter()

    clock = step(1, "the static-shortcut benchmark (train: both dynamic factors follow the background colour, p = 0.95) and its twin")
    sizes = {"size": settings.size, "num_train": settings.num_train, "num_val": settings.num_val, "num_test": settings.num_test}
    config = synth_config(BENCHMARK, seed=seed, **sizes)
    dataset = generate_dataset(config, data)  # validates the settings before anything is written
    twin = generate_dataset(synth_config(BENCHMARK, seed=seed, **sizes, correlation=0.0))  # same val / test videos
    out.mkdir(parents=True, exist_ok=True)
    preview = plot_factor_grid(config, out / "synthetic-factors.png")
    seconds["dataset"] = time.perf_counter() - clock

    checkpoints = []
    for number, run in enumerate(runs, start=2):
        clock = step(number, f"pretrain {run.name} — {run.role}")
        trained_on = twin["out"] if run.unconfounded else dataset["out"]
        checkpoints.append(_pretrain(run, trained_on, out / "runs" / run.name, settings, seed=seed, device=device, decoder=decoder))
        seconds[f"pretrain {run.name}"] = time.perf_counter() - clock

    clock = step(total - 1, f"diagnose all {len(runs)} checkpoints and write the report")
    extractors = [load_extractor(checkpoint, device=device, clips=settings.clips, decoder=decoder, seed=seed) for checkpoint in checkpoints]
    report = build_report(extractors, resolve_data(extractors[0].model, dataset["out"]), out / "report")
    seconds["report"] = time.perf_counter() - clock
    step(total, "done")
    seconds["total"] = time.perf_counter() - started

    result = Result(
        command="demo",
        data=dataset["out"],
        metrics=report.metrics,
        figures=[str(preview), *report.figures],
        files=report.files,
        config={"out": str(out), "seed": seed, **asdict(settings)},
        details={
            "labels": report.details["labels"],
            "runs": [
                {"name": run.name, "method": run.method, "role": run.role, "checkpoint": str(c), "unconfounded": run.unconfounded}
                for run, c in zip(runs, checkpoints)
            ],
            "benchmark": BENCHMARK,
            "twin": twin["out"],
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "correlation": dataset.get("correlation"),
        },
    )
    result.write(out / "demo.json")
    return result


# Settings that may differ between a stored demo run and this one without making it another run.
_REUSE_IGNORES = (
    "data.workers",
    "data.max_failures",
    "data.persistent_workers",
    "data.prefetch_factor",
    "train.save_every_steps",
    "train.save_every_minutes",
    "train.save_every_epochs",
    "train.check_finite_every",
    "train.knn_every",
)


def _pretrain(run: DemoRun, data: str, folder: Path, settings: DemoSettings, *, seed: int, device: str, decoder: str) -> Path:
    """Train one demo run, or reuse / resume the one in `folder` when it was made with these settings; returns final.pt.

    A stored run made with other settings (epochs, data, size, seed, …) is not reused: it is
    removed, said so, and trained again."""
    import shutil

    from vdiag.checkpoint import load_checkpoint
    from vdiag.train.config import config_differences, resolve_config
    from vdiag.train.trainer import pretrain

    final = folder / "final.pt"
    options = {
        "data": {"path": str(data), "format": "synthetic", "size": settings.size},
        "train": {"epochs": settings.epochs, "batch_size": min(32, max(2, settings.num_train // 2))},
        "method_args": dict(run.method_args),
        "backbone": {"name": run.backbone} if run.backbone else {},
    }
    config = resolve_config(run.method, BENCHMARKS[BENCHMARK]["preset"], options=options, seed=seed)
    stored = next((p for p in (final, folder / "last.pt") if p.is_file()), None)
    if stored is not None:
        differences = config_differences(load_checkpoint(stored)["config"], config, ignore=_REUSE_IGNORES)
        if not differences:
            if stored == final:
                note(f"reusing {final} (delete the folder to train again)")
                return final
        else:
            shown = "; ".join(f"{key} {old!r} → {new!r}" for key, old, new in differences[:3])
            note(f"{folder} was trained with other settings ({shown}): training it again")
            shutil.rmtree(folder)
    pretrain(config, folder, device=device, decoder=decoder, resume="auto")
    if not final.is_file():  # stopped early (Ctrl-C): last.pt is saved
        raise VdiagError(f"the demo stopped while pretraining {run.name}; run `vdiag demo` again to continue from {folder / 'last.pt'}")
    return final
