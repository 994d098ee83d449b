"""`vdiag validate`: does every diagnostic land on the right side for models whose answer is known?

On a small unconfounded synthetic dataset (every factor drawn independently in every split), seven
known-answer models are built and every diagnostic is run on each:

    first-frame-only        an untrained per-frame 2-D net that is shown frame 0 of every clip only
    per-frame 2-D           an untrained `tiny2d` (per-frame features averaged over time): order-blind
    frame-difference-only   the same net shown x[t + 1] − x[t] only: no appearance, only change
    supervised-on-static    `tiny2d` trained to classify the background colour (appearance)
    supervised-on-dynamic   `tiny` (3-D) trained to classify the trajectory (motion)
    collapsed               `tiny` whose stem outputs a constant: one embedding for every clip
    random 3-D              an untrained `tiny` (temporal kernels see frame order)

The result is one table, diagnostic × model: the side the diagnostic must report (derived from how
the model is built, never from a measurement), the measured value, and pass / fail; a cell without
an expected side shows the value only. docs/diagnostics/validity.md shows the table at the small
CPU size it states.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vdiag.console import note
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import DegenerateFeatures, Extractor, Sampling
from vdiag.diagnostics.model import DiagnosticModel, _fingerprint, load_model
from vdiag.models.backbones import VideoBackbone, build_backbone
from vdiag.results import Result

MODELS = (
    "first-frame-only",
    "per-frame 2-D",
    "frame-difference-only",
    "supervised-on-static",
    "supervised-on-dynamic",
    "collapsed",
    "random 3-D",
)
REFUSED = "refused"


@dataclass(frozen=True)
class ValiditySize:
    """How big the validity run is: the synthetic dataset (videos per split, pixels, frames), the
    reference models' training epochs and the clips per video of every diagnostic."""

    videos: int = 64
    size: int = 32
    frames: int = 8
    epochs: int = 24  # generator 2's trajectories need ~24 epochs at this size (8 left the 3-D model near chance)
    clips: int = 4


SMOKE = ValiditySize(videos=24, size=32, frames=8, epochs=3, clips=2)


class _ViewBody(nn.Module):
    """A body shown a fixed view of every clip: frame 0 repeated, or the frame differences."""

    def __init__(self, body: nn.Module, view: str):
        super().__init__()
        self.body, self.view = body, view

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if self.view == "first-frame":
            return self.body(clips[:, :, :1].expand_as(clips).contiguous())
        return self.body(clips[:, :, 1:] - clips[:, :, :-1])


def _constructed(name: str, backbone: VideoBackbone, tag: str) -> DiagnosticModel:
    model = DiagnosticModel(backbone.eval(), Path(f"<{name}>"))
    model.fingerprint = hashlib.sha256(f"{_fingerprint(model)}|{tag}".encode()).hexdigest()[:24]
    return model


def train_reference(data: str | Path, out: str | Path, *, backbone: str, target: str, frames: int, size: int, epochs: int) -> str:
    """Train a supervised reference model: `backbone` classifying the synthetic factor `target`.

    Args:
        data: the synthetic dataset.
        out: the run folder.
        backbone: "tiny2d" (per-frame, appearance only) or "tiny" (3-D).
        target: the factor it learns (bg_color: static; fg_trajectory: dynamic).
        frames, size: clip length and crop side (pixels).
        epochs: training epochs (batch 16, no warm-up).

    Returns:
        The path of its final checkpoint.
    """
    from vdiag.train.config import resolve_config
    from vdiag.train.trainer import pretrain

    options = {
        "backbone": {"name": backbone},
        "data": {"path": str(data), "frames": frames, "stride": 1, "size": size, "workers": 0},
        "train": {"epochs": epochs, "batch_size": 16, "warmup_epochs": 0},
        "method_args": {"target": target},
    }
    return str(pretrain(resolve_config("supervised", "cpu", options=options), Path(out), device="cpu").checkpoint)


def reference_models(
    data: str | Path, out: str | Path, *, size: ValiditySize = ValiditySize(), seed: int = 0
) -> dict[str, DiagnosticModel]:
    """The seven known-answer models of the module docstring, trained or constructed.

    Args:
        data: the synthetic dataset (unconfounded).
        out: folder for the two trained models' runs.
        size: frames, pixels and epochs.
        seed: the untrained networks' initialisation.

    Returns:
        model name (`MODELS`) → `DiagnosticModel`.
    """
    out = Path(out)

    def fresh(name: str) -> VideoBackbone:
        torch.manual_seed(seed)
        return build_backbone(name)

    flat = fresh("tiny2d")
    collapsed = fresh("tiny")
    with torch.no_grad():
        collapsed.body.stem[1].weight.zero_()
        collapsed.body.stem[1].bias.fill_(1.0)
    common = {"frames": size.frames, "size": size.size, "epochs": size.epochs}
    return {
        "first-frame-only": _constructed("first-frame-only", VideoBackbone("tiny2d", _ViewBody(flat.body, "first-frame"), 128), "first"),
        "per-frame 2-D": _constructed("per-frame 2-D", flat, "plain"),
        "frame-difference-only": _constructed(
            "frame-difference-only", VideoBackbone("tiny2d", _ViewBody(fresh("tiny2d").body, "difference"), 128), "difference"
        ),
        "supervised-on-static": load_model(train_reference(data, out / "static", backbone="tiny2d", target="bg_color", **common)),
        "supervised-on-dynamic": load_model(train_reference(data, out / "dynamic", backbone="tiny", target="fg_trajectory", **common)),
        "collapsed": _constructed("collapsed", collapsed, "collapsed"),
        "random 3-D": _constructed("random 3-D", fresh("tiny"), "random"),
    }


# (row, diagnostic, how the row's number is computed from the diagnostic's metrics,
#  model → (expected side, test on the metrics)); every expectation follows from how the model is built:
#  first-frame-only: its static clip is all it sees (static_ratio 1), and one frame holds no motion;
#  per-frame 2-D (and the 2-D colour model): a mean over frames cannot see order (sim_shuffled 1,
#  shuffle probe at chance); frame-difference-only: a static clip has no differences, shuffled frames
#  differ more, differences hold no appearance; the 3-D models see order; the supervised models
#  decode what they were trained on (the colour model: colour 1, shape ≥ chance, so static_score ≈ 0.5
#  or more); the collapsed model gets no reading ("> 0.5 (CI)": the 95 %
#  interval's low end is above chance).
ROWS: list[tuple[str, str, Callable[[dict], float], dict[str, tuple[str, Callable[[dict], bool]]]]] = [
    (
        "static-bias: static_ratio (label)",
        "static-bias",
        lambda m: m["static_ratio"],
        {
            "first-frame-only": ("= 1", lambda m: m["static_ratio"] >= 0.999 or m["acc_real"] == 0),
            "frame-difference-only": ("< 0.8", lambda m: m["static_ratio"] < 0.8),
            "supervised-on-dynamic": ("≤ 0.7", lambda m: m["static_ratio"] <= 0.7),
        },
    ),
    (
        "static-bias: sim_shuffled",
        "static-bias",
        lambda m: m["sim_shuffled"],
        {
            "per-frame 2-D": ("= 1", lambda m: m["sim_shuffled"] >= 0.999),
            "supervised-on-static": ("= 1", lambda m: m["sim_shuffled"] >= 0.999),
            "random 3-D": ("< 1", lambda m: m["sim_shuffled"] < 0.999),
            "supervised-on-dynamic": ("< 1", lambda m: m["sim_shuffled"] < 0.999),
        },
    ),
    (
        "shuffle: acc (chance 0.5)",
        "shuffle",
        lambda m: m["acc"],
        {
            "per-frame 2-D": ("≈ 0.5", lambda m: abs(m["acc"] - 0.5) <= 0.05),
            "supervised-on-static": ("≈ 0.5", lambda m: abs(m["acc"] - 0.5) <= 0.05),
            "random 3-D": ("> 0.5 (CI)", lambda m: m["acc_ci_low"] > 0.5),
            "supervised-on-dynamic": ("> 0.5 (CI)", lambda m: m["acc_ci_low"] > 0.5),
            "frame-difference-only": ("> 0.5 (CI)", lambda m: m["acc_ci_low"] > 0.5),
        },
    ),
    (
        "factors: static_score",
        "factors",
        lambda m: m["static_score"],
        {
            "first-frame-only": ("≥ 0.3", lambda m: m["static_score"] >= 0.3),
            "per-frame 2-D": ("≥ 0.3", lambda m: m["static_score"] >= 0.3),
            "supervised-on-static": ("≥ 0.4", lambda m: m["static_score"] >= 0.4),
            "frame-difference-only": ("≤ 0.2", lambda m: m["static_score"] <= 0.2),
        },
    ),
    (
        "factors: dynamic_score",
        "factors",
        lambda m: m["dynamic_score"],
        {
            "first-frame-only": ("≤ 0.2", lambda m: m["dynamic_score"] <= 0.2),
            "supervised-on-static": ("≤ 0.2", lambda m: m["dynamic_score"] <= 0.2),
            # trained on fg_trajectory only: ≈ (1 + 0) / 2 over the two dynamic factors, since the
            # brightness change is a second, untrained motion (generator 2 shows it in no single frame)
            "supervised-on-dynamic": ("≥ 0.4", lambda m: m["dynamic_score"] >= 0.4),
        },
    ),
]


def validity_table(out: str | Path, *, size: ValiditySize = ValiditySize(), seed: int = 0, workers: int = 0) -> Result:
    """Build the known-answer models, run every diagnostic on each, and tabulate expected side, value, pass.

    Args:
        out: folder for the synthetic dataset (`data/`) and the trained models' runs.
        size: dataset, training and sampling size (`SMOKE` for tests, seconds on a CPU).
        seed: seeds the dataset, the untrained networks, the probes and the bootstrap.
        workers: decoding processes.

    Returns:
        `Result` "validate"; metrics `checks`, `passed`, `failed`; details["rows"]: one dict per
        (row, model): `row`, `model`, `expected` (None where no side is known), `measured` (a number,
        or "refused" for a model without a reading), `pass` (True / False / None); details["size"].
    """
    from vdiag.data.synthetic import SynthConfig, generate_dataset
    from vdiag.diagnostics.factors import factor_probe
    from vdiag.diagnostics.shuffle import shuffle_probe
    from vdiag.diagnostics.static_bias import static_bias

    out = Path(out)
    root = out / "data"
    n = size.videos
    config = SynthConfig(size=size.size, frames=size.frames, num_train=n, num_val=n, num_test=n, correlation=0.0, seed=seed)
    generate_dataset(config, root, workers=workers or 1)
    data = DataRef(str(root))
    models = reference_models(root, out / "models", size=size, seed=seed)
    sampling = Sampling(frames=size.frames, stride=1, size=size.size, clips=size.clips)
    runs = {"static-bias": static_bias, "shuffle": shuffle_probe, "factors": factor_probe}
    rows = []
    for model_name, model in models.items():
        note(f"validate: {model_name}")
        extractor = Extractor(model, sampling, workers=workers, seed=seed)
        measured: dict[str, dict | None] = {}
        for diagnostic, run in runs.items():
            try:
                measured[diagnostic] = run(extractor, data).metrics
            except DegenerateFeatures:
                measured[diagnostic] = None
        for row, diagnostic, value, expectations in ROWS:
            metrics = measured[diagnostic]
            expected, check = expectations.get(model_name, (None, None))
            if model_name == "collapsed":
                expected, check = "refused", None
            if metrics is None:
                rows.append({"row": row, "model": model_name, "expected": expected, "measured": REFUSED, "pass": expected is not None})
                continue
            passed = None if check is None else bool(check(metrics))
            if model_name == "collapsed":
                passed = False
            rows.append({"row": row, "model": model_name, "expected": expected, "measured": float(value(metrics)), "pass": passed})
    judged = [r for r in rows if r["pass"] is not None]
    return Result(
        command="validate",
        metrics={"checks": len(judged), "passed": sum(r["pass"] for r in judged), "failed": sum(not r["pass"] for r in judged)},
        data=str(root),
        config={"videos_per_split": n, "size": size.size, "frames": size.frames, "epochs": size.epochs, "clips": size.clips, "seed": seed},
        details={"rows": rows, "models": list(models), "dataset": data.describe()["description"]},
    )


def validity_grid(result: Result) -> list[tuple[str, list[dict]]]:
    """The table's rows in order: (diagnostic row, one cell per model in `details['models']` order),
    each cell a row of `details['rows']` with `text`, its measured value formatted, added.

    Args:
        result: from `validity_table`.

    Returns:
        [(row name, [cell, …]), …]: what the terminal and Markdown renderings both draw.
    """
    rows, models = result.details["rows"], result.details["models"]
    grid = []
    for name in dict.fromkeys(r["row"] for r in rows):
        cells = [next(r for r in rows if r["row"] == name and r["model"] == model) for model in models]
        grid.append((name, [{**c, "text": c["measured"] if isinstance(c["measured"], str) else f"{c['measured']:.2f}"} for c in cells]))
    return grid


def validity_markdown(result: Result) -> str:
    """The validity table as Markdown: one row per diagnostic row, one column per model; each cell
    "value ✓" / "value ✗ (expected …)" / "value" (no known side) / "refused ✓".

    Args:
        result: from `validity_table`.

    Returns:
        The Markdown table, with the size it was run at in a line above it.
    """
    models = result.details["models"]
    c = result.config
    lines = [
        f"Run at {c['videos_per_split']} videos per split, {c['size']} px, {c['frames']} frames, {c['epochs']} training epochs, "
        f"{c['clips']} clips per video, seed {c['seed']}: {result.metrics['passed']} of {result.metrics['checks']} checks pass.",
        "",
        "| diagnostic | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for name, cells in validity_grid(result):
        texts = []
        for cell in cells:
            mark = "" if cell["pass"] is None else " ✓" if cell["pass"] else " ✗"
            expected = f" (expected {cell['expected']})" if cell["expected"] and cell["pass"] is not None else ""
            texts.append(f"{cell['text']}{mark}{expected}".replace("|", "\\|"))
        lines.append(f"| {name} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"
