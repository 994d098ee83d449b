"""`vdiag report`: the diagnostics of several checkpoints side by side, as one HTML file and Markdown.

For every checkpoint: probe static-bias, probe shuffle, probe factors (synthetic data only), eval
retrieval, eval cluster and the Koopman eigenvalues (`viz eig`); for all of them together a t-SNE
(`viz tsne`). Features come from the diagnostics' cache, so a report after the individual commands
(or a second report) recomputes nothing but the probes. The report card has one row per metric and
one column per checkpoint, each value with its 95 % interval, and a one-line reading taken from the
diagnostic's docs page.

Files in the output folder: report.html (self-contained: figures embedded as base64 PNG),
report.md (figures as PNG files beside it), report.json (every metric, as
`<checkpoint index>.<diagnostic>.<metric>`, and the paired differences with the first checkpoint as
`diff.<index>-0.<diagnostic>.<metric>`), and the figures and JSON of each diagnostic under
`<index>-<checkpoint name>/`. A checkpoint whose features are collapsed gets a column "collapsed: no
reading" and no numbers.

The checkpoints may be of different architectures (`vdiag report A.pth=r3d_18 B.pyth=slow_r50 C/`),
each at its own sampling; a "models and clips" table above the card has a row per checkpoint (its
backbone, frames × stride, crop size, normalisation), and the paired differences pair by test video.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vdiag import __version__
from vdiag.console import note, warn
from vdiag.data.views import KINETICS_MEAN, KINETICS_STD
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, load_extractor
from vdiag.io import atomic_path
from vdiag.results import Result

# (diagnostic, metric, label, reading from its docs page, docs page, chance level: a metric of the
# same result, a number, or None where no chance level applies)
CARD = [
    ("static-bias", "acc_real", "accuracy, real clips", "the ordinary linear-probe accuracy", "diagnostics/static-bias.md", "chance"),
    (
        "static-bias",
        "static_ratio",
        "static ratio",
        "acc_static / acc_real; near 1 = decides from appearance, lower = needs motion",
        "diagnostics/static-bias.md",
        None,
    ),
    (
        "static-bias",
        "contrasted_acc",
        "contrasted accuracy",
        "right on real and wrong on static: higher = correct because of motion",
        "diagnostics/static-bias.md",
        0.0,
    ),
    (
        "static-bias",
        "sim_shuffled",
        "similarity to shuffled",
        "embedding of a clip vs its shuffled version; 1 = blind to frame order",
        "diagnostics/static-bias.md",
        "sim_shuffled_chance",
    ),
    (
        "shuffle",
        "acc",
        "shuffle probe accuracy",
        "ordered vs shuffled; compare with the untrained architecture",
        "diagnostics/shuffle.md",
        "chance",
    ),
    (
        "factors",
        "static_score",
        "static factors",
        "chance-normalised accuracy on colour and shape; 1 = perfect, 0 = chance",
        "diagnostics/factors.md",
        0.0,
    ),
    (
        "factors",
        "dynamic_score",
        "dynamic factors",
        "the same for brightness change and trajectory; the decoupling methods aim to raise it",
        "diagnostics/factors.md",
        0.0,
    ),
    (
        "retrieval",
        "R@1",
        "retrieval R@1",
        "a same-class training video is the nearest neighbour; higher is better",
        "diagnostics/retrieval.md",
        "chance",
    ),
    (
        "retrieval",
        "R@5",
        "retrieval R@5",
        "among the 5 nearest (close to 1 for any model when classes are few)",
        "diagnostics/retrieval.md",
        None,
    ),
    (
        "cluster",
        "silhouette@all",
        "silhouette (all classes)",
        "in [−1, 1]: near 1 tight separate classes, near 0 overlapping",
        "diagnostics/cluster.md",
        0.0,
    ),
    (
        "eig",
        "static_fraction_bolddi",
        "Koopman static fraction (BOLD-DI)",
        "share of eigenvalues with |λ| ≥ 0.9 and |Arg λ| ≤ 0.1",
        "viz/eig.md",
        "static_fraction_bolddi_chance",
    ),
    (
        "eig",
        "static_fraction_bodvcl",
        "Koopman static fraction (BOD-VCL)",
        "share of eigenvalues with |λ − 1| ≤ 0.1",
        "viz/eig.md",
        "static_fraction_bodvcl_chance",
    ),
]

COLLAPSED = "collapsed: no reading"
CEILING_MARK = "†"


@dataclass
class Entry:
    """One checkpoint of the report: its short label, its results (diagnostic name → `Result`), and
    `refused`: why no diagnostic gave a reading (a collapsed model), else None."""

    label: str
    results: dict[str, Result]
    refused: str | None = None


def run_diagnostics(
    extractor: Extractor, data: DataRef, folder: Path, *, has_factors: bool, temporal: Extractor | None = None
) -> dict[str, Result]:
    """Every diagnostic of the card for one checkpoint; each writes its JSON (and figures) in `folder`.

    Args:
        extractor: the checkpoint and its extraction settings; the Koopman eigenvalues reload it
            with its temporal strides removed (`keep_temporal`), except a Hugging Face model with a
            fixed time table (VideoMAE, ViViT), which keeps its tubelet steps so that it takes the
            same clips as the other diagnostics (docs/backbones.md).
        data: the dataset.
        folder: where each diagnostic writes `<name>.json` and its files.
        has_factors: the data is synthetic: run `probe factors` too.
        temporal: the extractor the Koopman eigenvalues use, instead of reloading the checkpoint
            (a model held in memory, `vdiag.api`).

    Returns:
        diagnostic name ("static-bias", "shuffle", "retrieval", "cluster", "eig", "factors") → `Result`.

    Raises:
        DegenerateFeatures: (from the first diagnostic) the model's features are collapsed.
    """
    from vdiag.diagnostics.cluster import cluster
    from vdiag.diagnostics.factors import factor_probe
    from vdiag.diagnostics.retrieval import retrieval
    from vdiag.diagnostics.shuffle import shuffle_probe
    from vdiag.diagnostics.static_bias import static_bias
    from vdiag.viz.eig import viz_eig

    model = extractor.model
    results = {"static-bias": static_bias(extractor, data)}  # first: it refuses a collapsed model before anything else runs
    if temporal is None:
        temporal = load_extractor(
            model.path,
            backbone=None if model.config else model.name,
            layer=model.layer,
            keep_temporal=not fixed_time_table(model),
            device=model.device,
            sampling=extractor.sampling,
            **extractor.settings,
        )
    results.update(
        {
            "shuffle": shuffle_probe(extractor, data),
            "retrieval": retrieval(extractor, data),
            "cluster": cluster(extractor, data, folder),
            "eig": viz_eig(temporal, data, folder),
        }
    )
    if has_factors:
        results["factors"] = factor_probe(extractor, data)
    for name, result in results.items():
        result.checkpoint = str(model.path)
        result.write(folder / f"{name}.json")
    return results


def fixed_time_table(model) -> bool:
    """Whether a model's time position table is fixed (Hugging Face VideoMAE, ViViT): with `keep_temporal`
    it would take half the frames, so its per-time-step features stay one per tubelet."""
    return getattr(model.backbone.body, "kind", None) in ("videomae", "vivit") and hasattr(model.backbone.body, "tubelet")


# the normalisations of docs/backbones.md, by name: (name, mean, std)
NORMALISATIONS = (
    ("Kinetics, torchvision", KINETICS_MEAN, KINETICS_STD),
    ("Kinetics, pytorchvideo", (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
    ("ImageNet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
)


def normalisation_name(mean, std) -> str:
    """ "ImageNet (mean 0.485/0.456/0.406, std 0.229/0.224/0.225)": the name of a known normalisation, and its numbers."""
    numbers = f"mean {'/'.join(f'{m:g}' for m in mean)}, std {'/'.join(f'{v:g}' for v in std)}"
    for name, known_mean, known_std in NORMALISATIONS:
        if np.allclose(mean, known_mean, atol=1e-6) and np.allclose(std, known_std, atol=1e-6):
            return f"{name} ({numbers})"
    return numbers


def backbone_label(model) -> str:
    """The architecture in words: the backbone name (a Hugging Face folder's model type), the probed layer,
    `keep-temporal` when its temporal strides are removed."""
    body = model.backbone.body
    name = f"{body.kind} (Hugging Face)" if hasattr(body, "tubelet") and hasattr(body, "kind") else model.name
    if model.layer:
        name += f", layer {model.layer}"
    if model.backbone.keep_temporal:
        name += ", keep-temporal"
    return name


def model_rows(extractors: list[Extractor], labels: list[str]) -> list[dict]:
    """One row per checkpoint: what it is and the clips it was given (each model at its own sampling).

    Args:
        extractors: one per checkpoint.
        labels: their short names (the card's column heads).

    Returns:
        Per checkpoint: `label`, `checkpoint` (path), `backbone` (`backbone_label`), `frames`, `stride`
        (frames), `size` (crop side, pixels), `clips` (per video), `mean`, `std`, `normalisation` (in words).
    """
    rows = []
    for extractor, label in zip(extractors, labels):
        sampling = extractor.sampling
        rows.append(
            {
                "label": label,
                "checkpoint": str(extractor.model.path),
                "backbone": backbone_label(extractor.model),
                "frames": sampling.frames,
                "stride": sampling.stride,
                "size": sampling.size,
                "clips": sampling.clips,
                "mean": list(sampling.mean),
                "std": list(sampling.std),
                "normalisation": normalisation_name(sampling.mean, sampling.std),
            }
        )
    return rows


def build_report(extractors: list[Extractor], data: DataRef, out: Path, *, temporal: list[Extractor | None] | None = None) -> Result:
    """The report card of one or more checkpoints: every diagnostic of `CARD`, the t-SNE and the eigenvalue figures.

    Diagnostics: static-bias and shuffle (BOLD-DI §3.2, Fig. 2), factors (BOD-VCL, synthetic data
    only), retrieval (ViDiDi App. B.4), silhouette and t-SNE (ViDiDi Table 7, Fig. 4), Koopman
    eigenvalues (BOD-VCL Fig. 4a). A checkpoint whose features are collapsed gets a column
    "collapsed: no reading" (`DegenerateFeatures`) instead of numbers or a failed report. With
    several checkpoints, each is compared with the first by paired bootstrap over the same test
    videos (`paired_differences`). The checkpoints may be of different architectures, each with its
    own sampling (frames, stride, crop size, normalisation: a row per checkpoint above the card);
    they are paired by test video, so their clips may differ while the videos are the same.

    Args:
        extractors: one per checkpoint, all on the same data, each with its own sampling.
        data: the dataset.
        out: folder for report.html (self-contained, figures embedded), report.md, the t-SNE and,
            per checkpoint, `<index>-<run folder>/` with each diagnostic's JSON and figures.
        temporal: per checkpoint, the extractor of the Koopman eigenvalues (`run_diagnostics`), or
            None to reload the checkpoint with its temporal strides removed.

    Returns:
        `Result` "report"; metrics `<checkpoint index>.<diagnostic>.<metric>` for every metric of
        every diagnostic (with their 95 % intervals) and `diff.<i>-0.<diagnostic>.<metric>` (paired
        differences with their intervals); config: the data (`DataRef.describe`) and sample sizes;
        details: `labels` (the checkpoints' short names), `refused` (index → why no reading),
        `flags` (`<index>.<diagnostic>.<metric>` → intervals of width 0 at a ceiling); config `models`
        (`model_rows`: per checkpoint its backbone and sampling; the top-level sampling keys are the
        first checkpoint's).
    """
    from vdiag.diagnostics.features import DegenerateFeatures
    from vdiag.viz.tsne import checkpoint_label, viz_tsne

    out = Path(out)
    has_factors = bool(data.split("test").factor_values)
    entries: list[Entry] = []
    temporal = temporal or [None] * len(extractors)
    for number, extractor in enumerate(extractors):
        label = checkpoint_label(extractor)
        note(f"report: diagnostics of {label} ({number + 1} of {len(extractors)})")
        folder = out / f"{number}-{Path(str(extractor.model.path)).parent.name or 'checkpoint'}"
        try:
            results = run_diagnostics(extractor, data, folder, has_factors=has_factors, temporal=temporal[number])
            entries.append(Entry(label, results))
        except DegenerateFeatures as err:
            warn(f"report: no reading for {label}: {err}")
            entries.append(Entry(label, {}, refused=str(err)))
    readable = [extractor for extractor, entry in zip(extractors, entries) if entry.refused is None]
    figures = []
    if readable:
        tsne = viz_tsne(readable, data, out)
        figures.append(("t-SNE of the video embeddings, best-retrieved classes, one panel per checkpoint", Path(tsne.figures[0])))
    figures += [
        (f"Koopman eigenvalues — {entry.label}", Path(entry.results["eig"].figures[0])) for entry in entries if "eig" in entry.results
    ]
    metrics = {
        f"{number}.{diagnostic}.{name}": value
        for number, entry in enumerate(entries)
        for diagnostic, result in entry.results.items()
        for name, value in result.metrics.items()
    }
    differences = {number: paired_differences(entries[0], entry, seed=extractors[0].seed) for number, entry in enumerate(entries) if number}
    for number, diff in differences.items():
        metrics.update({f"diff.{number}-0.{key}": value for key, value in diff.items()})
    flags = {
        f"{number}.{diagnostic}.{name}": flag
        for number, entry in enumerate(entries)
        for diagnostic, result in entry.results.items()
        for name, flag in result.details.get("flags", {}).items()
    }
    about = data.describe()
    sizes = sample_size_line(entries, extractors)
    models = model_rows(extractors, [entry.label for entry in entries])
    html_path, markdown_path = out / "report.html", out / "report.md"
    title = f"vdiag report — {len(entries)} checkpoint{'s' if len(entries) > 1 else ''}"
    seed = extractors[0].seed
    with atomic_path(html_path) as tmp:
        tmp.write_text(render_html(title, entries, figures, data=data, about=about, sizes=sizes, out=out, seed=seed, models=models))
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(render_markdown(title, entries, figures, out=out, about=about, sizes=sizes, seed=seed, models=models))
    return Result(
        command="report",
        metrics=metrics,
        data=data.path,
        figures=[str(path) for _, path in figures],
        files=[str(html_path), str(markdown_path)],
        config={
            "checkpoints": [str(e.model.path) for e in extractors],
            **extractors[0].describe(),
            "models": models,
            "data": about,
            "sample_sizes": sizes,
        },
        details={
            "labels": [entry.label for entry in entries],
            "refused": {str(number): entry.refused for number, entry in enumerate(entries) if entry.refused},
            "flags": flags,
        },
    )


def sample_size_line(entries: list[Entry], extractors: list[Extractor] | Extractor) -> str:
    """The sample sizes behind the card: videos of train and test, clips per video, frames per clip.

    Args:
        entries: the checkpoints' results (the first with a static-bias result supplies the counts).
        extractors: the checkpoints' extractors (or one): their sampling (clips, frames, stride, size);
            when the checkpoints' clips differ, the line says they are given per checkpoint.

    Returns:
        One line, e.g. "train 96 videos (384 clips), test 64 videos (256 clips); 4 clips per video of
        8 frames at stride 1, 32 px".
    """
    extractors = extractors if isinstance(extractors, list) else [extractors]
    samplings = {(e.sampling.clips, e.sampling.frames, e.sampling.stride, e.sampling.size) for e in extractors}
    sampling = extractors[0].sampling
    if len(samplings) == 1:
        plural = "s" if sampling.clips != 1 else ""
        clips = f"{sampling.clips} clip{plural} per video of {sampling.frames} frames at stride {sampling.stride}, {sampling.size} px"
    else:
        per_video = sorted({count for count, *_ in samplings})
        clips = f"{'/'.join(map(str, per_video))} clips per video; frames, stride and size per checkpoint (models table)"
    for entry in entries:
        if "static-bias" in entry.results:
            c = entry.results["static-bias"].config
            return (
                f"train {c['train_videos']} videos ({c['train_clips']} clips), test {c['test_videos']} videos "
                f"({c['test_clips']} clips); {clips}"
            )
    return clips


def _per_video_statistics(diagnostic: str, result: Result):
    """name → statistic(rows) for the card metrics computable from a result's per-video hits, and the video ids."""
    from vdiag.diagnostics.factors import normalised
    from vdiag.diagnostics.probe import safe_ratio

    per_video = result.details.get("per_video")
    if not per_video:
        return {}, None
    arrays = {key: np.asarray(values, dtype=np.float64) for key, values in per_video.items() if key != "video_ids"}
    ids = per_video["video_ids"]
    if diagnostic == "static-bias":
        real, static = arrays["correct_real"], arrays["correct_static"]
        return {
            "acc_real": lambda rows: real[rows].mean(),
            "static_ratio": lambda rows: safe_ratio(static[rows].mean(), real[rows].mean()),
            "contrasted_acc": lambda rows: (real[rows] * (1 - static[rows])).mean(),
        }, ids
    if diagnostic == "shuffle":
        correct, clips = arrays["correct"], arrays["clips"]
        return {"acc": lambda rows: correct[rows].sum() / clips[rows].sum()}, ids
    if diagnostic == "retrieval" and "hit_1" in arrays:
        return {"R@1": lambda rows: arrays["hit_1"][rows].mean()}, ids
    if diagnostic == "factors":
        chance = {name: result.metrics[f"chance_{name}"] for name in result.details["factor_values"]}

        def score(kind):
            names = result.details[f"{kind}_factors"]
            return lambda rows: float(np.mean([normalised(arrays[f"correct_{n}"][rows].mean(), chance[n]) for n in names]))

        return {"static_score": score("static"), "dynamic_score": score("dynamic")}, ids
    return {}, None


def paired_differences(base: Entry, other: Entry, *, seed: int = 0) -> dict[str, float]:
    """`other` − `base` for the card metrics, with 95 % paired bootstrap intervals over the same test videos.

    Both checkpoints are scored on the same test videos; every resample draws one set of videos and
    recomputes both checkpoints' metrics on it, so the interval is that of the difference ("is B
    more dynamic than A?"), narrower than the two separate intervals suggest when the models err on
    the same videos.

    Args:
        base, other: two checkpoints' results; a metric is compared only when both have the per-video
            hits of the same test videos, in the same order.
        seed: the resampling seed.

    Returns:
        `<diagnostic>.<metric>` → difference, with `_ci_low` / `_ci_high`; empty when either was refused.
    """
    from vdiag.diagnostics.probe import bootstrap, with_intervals

    pairs = {}
    for diagnostic in base.results:
        if diagnostic not in other.results:
            continue
        left, ids = _per_video_statistics(diagnostic, base.results[diagnostic])
        right, other_ids = _per_video_statistics(diagnostic, other.results[diagnostic])
        if ids is None or ids != other_ids:
            continue
        for name in left:
            pairs[f"{diagnostic}.{name}"] = (left[name], right[name], len(ids))
    if not pairs:
        return {}
    count = next(iter(pairs.values()))[2]
    if any(n != count for *_, n in pairs.values()):
        pairs = {key: value for key, value in pairs.items() if value[2] == count}

    def statistics(rows: np.ndarray) -> dict[str, float]:
        return {key: float(b(rows) - a(rows)) for key, (a, b, _) in pairs.items()}

    return with_intervals(statistics(np.arange(count)), bootstrap(statistics, count, seed=seed))


def _chance(result: Result, chance) -> float | None:
    if chance is None:
        return None
    if isinstance(chance, str):
        return result.metrics.get(chance)
    return float(chance)


def card_rows(entries: list[Entry]) -> list[tuple[str, str, str, list[str]]]:
    """The card's rows: (label, reading, docs page, one cell per checkpoint) for every card metric present.

    A cell is "value [low, high]" with three decimals, then "· chance c" where a chance level
    applies and "†" when the interval has width 0 (uninformative, e.g. at a ceiling); "collapsed: no
    reading" for a refused checkpoint; "–" when the checkpoint lacks the metric.
    """
    rows = []
    for diagnostic, name, label, reading, page, chance in CARD:
        cells = []
        for entry in entries:
            if entry.refused:
                cells.append(COLLAPSED)
                continue
            result = entry.results.get(diagnostic)
            value = result.metrics.get(name) if result else None
            if value is None:
                cells.append("–")
                continue
            low, high = result.metrics.get(f"{name}_ci_low"), result.metrics.get(f"{name}_ci_high")
            cell = f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")
            if name in result.details.get("flags", {}):
                cell += f" {CEILING_MARK}"
            level = _chance(result, chance)
            if level is not None:
                cell += f" · chance {level:.2f}"
            cells.append(cell)
        if any(cell not in ("–", COLLAPSED) for cell in cells):
            rows.append((label, reading, page, cells))
    return rows


def difference_rows(entries: list[Entry], *, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Rows of the paired comparison with the first checkpoint: (label, one cell per other checkpoint).

    A cell is "+0.120 [+0.050, +0.190]" (other − first, 95 % paired bootstrap interval over the same
    test videos), "–" when not comparable.
    """
    differences = [paired_differences(entries[0], entry, seed=seed) for entry in entries[1:]]
    rows = []
    for diagnostic, name, label, *_ in CARD:
        key = f"{diagnostic}.{name}"
        cells = []
        for diff in differences:
            if key in diff:
                cells.append(f"{diff[key]:+.3f} [{diff[key + '_ci_low']:+.3f}, {diff[key + '_ci_high']:+.3f}]")
            else:
                cells.append("–")
        if any(cell != "–" for cell in cells):
            rows.append((label, cells))
    return rows


def docs_link(page: str, out: Path) -> str:
    """Where a docs page is, relative to the report's folder when the docs sit beside the package, else `docs/<page>`."""
    docs = Path(__file__).resolve().parents[2] / "docs" / page
    if docs.is_file():
        return os.path.relpath(docs, Path(out).resolve())
    return f"docs/{page}"


def markdown_cell(text: str) -> str:
    """Text safe inside a Markdown table cell: `|` escaped, line breaks as spaces."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35em 0.7em; text-align: left; vertical-align: top; }
td.value { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td:first-child { min-width: 16em; max-width: 24em; }
.reading { color: #666; font-size: 0.85em; margin-top: 0.2em; }
.ci { color: #777; font-size: 0.8em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.meta { color: #666; font-size: 0.85em; }
"""


def _value_cell(cell: str) -> str:
    """A card cell "0.540 [0.475, 0.605] · chance 0.50" as the value with its interval and chance level below it."""
    main, _, chance = cell.partition(" · ")
    value, _, interval = main.partition(" [")
    below = f'<div class="ci">[{html.escape(interval)}</div>' if interval else ""
    below += f'<div class="ci">{html.escape(chance)}</div>' if chance else ""
    return f'<td class="value">{html.escape(value)}{below}</td>'


def models_table(models: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The models table: a header and one row per checkpoint (checkpoint, backbone, frames × stride,
    crop size, clips per video, normalisation), from `model_rows`."""
    header = ["checkpoint", "backbone", "frames × stride", "crop", "clips per video", "normalisation"]
    rows = [
        [m["label"], m["backbone"], f"{m['frames']} × {m['stride']}", f"{m['size']} px", str(m["clips"]), m["normalisation"]]
        for m in models
    ]
    return header, rows


def _uncompared(entries: list[Entry]) -> list[str]:
    """A line for each checkpoint left out of the paired differences because its test videos differ from the first's."""
    notes = []
    first = entries[0].results.get("static-bias")
    ids = (first.details.get("per_video") or {}).get("video_ids") if first else None
    for entry in entries[1:] if ids is not None and not entries[0].refused else ():
        result = entry.results.get("static-bias")
        other = (result.details.get("per_video") or {}).get("video_ids") if result else None
        if not entry.refused and other is not None and other != ids:
            notes.append(
                f"{entry.label}: not compared with {entries[0].label}: its test videos differ ({len(other)} vs {len(ids)} decoded); "
                "paired differences need the same videos"
            )
    return notes


def _footnotes(entries: list[Entry]) -> list[str]:
    names = {name for _, name, *_ in CARD}
    notes = _uncompared(entries) if len(entries) > 1 else []
    if any(names & set(result.details.get("flags", {})) for entry in entries for result in entry.results.values()):
        notes.append(
            f"{CEILING_MARK} interval of width 0, uninformative: at a ceiling (or floor) every resample gives the same value; "
            "see the flags in the diagnostic's JSON"
        )
    return notes + [f"{entry.label}: {entry.refused}" for entry in entries if entry.refused]


def render_html(
    title: str,
    entries: list[Entry],
    figures: list[tuple[str, Path]],
    *,
    data: DataRef,
    about: dict | None = None,
    sizes: str = "",
    out: Path | None = None,
    seed: int = 0,
    models: list[dict] | None = None,
) -> str:
    """The report as one self-contained HTML page: the data and sample sizes, the models and their
    clips (a row per checkpoint), the card (values with 95 % intervals and chance levels, how to read
    each row, a link to its docs page), the paired differences with the first checkpoint, and the
    figures embedded as base64 PNG.

    Args:
        title: the page title.
        entries: one per checkpoint (a card column each).
        figures: (caption, PNG file) in page order.
        data: the dataset.
        about: `data.describe()` (computed when None).
        sizes: the sample-size line (`sample_size_line`).
        out: the report's folder (docs links are relative to it).
        seed: the paired bootstrap's seed.
        models: `model_rows` (the models table; omitted when None).

    Returns:
        The HTML text.
    """
    escape = html.escape
    about = about if about is not None else data.describe()
    out = Path(out) if out is not None else Path(".")
    head = "".join(f"<th>{escape(entry.label)}</th>" for entry in entries)
    body_rows = []
    for label, reading, page, cells in card_rows(entries):
        values = "".join(_value_cell(cell) for cell in cells)
        link = f'<a href="{escape(docs_link(page, out))}">docs/{escape(page)}</a>'
        body_rows.append(f'<tr><td><b>{escape(label)}</b><div class="reading">{escape(reading)} ({link})</div></td>{values}</tr>')
    diff_html = ""
    if len(entries) > 1 and difference_rows(entries, seed=seed):
        diff_head = "".join(f"<th>{escape(e.label)} − {escape(entries[0].label)}</th>" for e in entries[1:])
        diff_rows = "".join(
            f"<tr><td>{escape(label)}</td>{''.join(_value_cell(c) for c in cells)}</tr>"
            for label, cells in difference_rows(entries, seed=seed)
        )
        diff_html = (
            "<h2>Paired differences</h2>\n"
            f'<p class="meta">each checkpoint minus {escape(entries[0].label)}, on the same test videos; 95 % paired bootstrap '
            "intervals: an interval that excludes 0 is a difference the test set supports</p>\n"
            f"<table><thead><tr><th>metric</th>{diff_head}</tr></thead><tbody>{diff_rows}</tbody></table>\n"
        )
    models_html = ""
    if models:
        header, rows = models_table(models)
        models_html = (
            "<h2>Models and clips</h2>\n"
            '<p class="meta">each checkpoint at its own clips (frames × stride in frames of the video), on the same test videos</p>\n'
            f"<table><thead><tr>{''.join(f'<th>{escape(h)}</th>' for h in header)}</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
            + "</tbody></table>\n"
        )
    notes = "".join(f'<p class="meta">{escape(line)}</p>' for line in _footnotes(entries))
    figure_html = "".join(
        f'<figure><img alt="{escape(caption)}" src="{_data_uri(path)}"><figcaption>{escape(caption)}</figcaption></figure>'
        for caption, path in figures
    )
    split = about.get("split", "")
    if "split_seed" in about:
        split += f", seed {about['split_seed']}, {about['test_share']:.0%} of each class held out"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">vdiag {escape(__version__)} · data: {escape(about.get("description", data.path))} · split: {escape(split)}</p>
<p class="meta">samples: {escape(sizes)} · values with 95 % bootstrap intervals over test videos</p>
{models_html}<h2>Report card</h2>
<table>
<thead><tr><th>metric and how to read it</th>{head}</tr></thead>
<tbody>
{chr(10).join(body_rows)}
</tbody>
</table>
{notes}
{diff_html}<h2>Figures</h2>
{figure_html}
</body>
</html>
"""


def render_markdown(
    title: str,
    entries: list[Entry],
    figures: list[tuple[str, Path]],
    *,
    out: Path,
    about: dict | None = None,
    sizes: str = "",
    seed: int = 0,
    models: list[dict] | None = None,
) -> str:
    """The report as Markdown: data and sample sizes, the models and their clips (`model_rows`, a row per
    checkpoint), the card as a table (cells escaped, docs pages as links), the paired differences,
    figures linked relative to `out` (the folder of report.md).

    Returns:
        The Markdown text.
    """
    lines = [f"# {markdown_cell(title)}", ""]
    if about:
        lines += [f"Data: {about.get('description', '')}; split: {about.get('split', '')}.", ""]
    if sizes:
        lines += [f"Samples: {sizes}.", ""]
    if models:
        header, rows = models_table(models)
        lines += ["## Models and clips", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(markdown_cell(cell) for cell in row) + " |" for row in rows]
        lines += [""]
    lines += ["Values with 95 % bootstrap intervals over test videos.", ""]
    lines.append("| metric | " + " | ".join(markdown_cell(entry.label) for entry in entries) + " | how to read it |")
    lines.append("|---|" + "---:|" * len(entries) + "---|")
    for label, reading, page, cells in card_rows(entries):
        link = f"[docs/{page}]({docs_link(page, out)})"
        values = " | ".join(markdown_cell(c) for c in cells)
        lines.append(f"| {markdown_cell(label)} | {values} | {markdown_cell(reading)} ({link}) |")
    lines.append("")
    lines += [markdown_cell(line) + "  " for line in _footnotes(entries)]
    if len(entries) > 1 and difference_rows(entries, seed=seed):
        lines += ["", f"## Paired differences (each checkpoint minus {markdown_cell(entries[0].label)}, same test videos)", ""]
        lines.append("| metric | " + " | ".join(markdown_cell(e.label) for e in entries[1:]) + " |")
        lines.append("|---|" + "---:|" * (len(entries) - 1))
        for label, cells in difference_rows(entries, seed=seed):
            lines.append(f"| {markdown_cell(label)} | " + " | ".join(cells) + " |")
    lines.append("")
    for caption, path in figures:
        lines += [f"![{caption}]({path.relative_to(out)})", "", f"*{caption}*", ""]
    return "\n".join(lines)


def card_table(result: Result, *, entries_labels: list[str] | None = None):
    """The report card as a rich table for the terminal (from the report's flat metrics)."""
    from rich.table import Table

    labels = entries_labels or result.details.get("labels", [])
    refused = result.details.get("refused", {})
    table = Table(title="report card (95% intervals and paired differences in report.html)", title_justify="left")
    table.add_column("metric")
    for label in labels:
        table.add_column(label, justify="right")
    models = result.config.get("models") or []
    if len(models) == len(labels):  # each checkpoint's architecture and clips
        table.add_row("backbone", *[m["backbone"] for m in models])
        table.add_row("frames × stride, crop", *[f"{m['frames']} × {m['stride']}, {m['size']} px" for m in models])
        table.add_row("normalisation", *[m["normalisation"].split(" (")[0] for m in models], end_section=True)
    for diagnostic, name, label, *_ in CARD:
        values = [result.metrics.get(f"{number}.{diagnostic}.{name}") for number in range(len(labels))]
        if any(v is not None for v in values):
            cells = [COLLAPSED if str(number) in refused else "–" if v is None else f"{v:.3f}" for number, v in enumerate(values)]
            table.add_row(label, *cells)
    return table
