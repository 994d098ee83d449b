"""`vdiag report`: the diagnostics of several checkpoints side by side, as one HTML file and Markdown.

For every checkpoint: probe static-bias, probe shuffle, probe factors (synthetic data only), eval
retrieval, eval cluster and the Koopman eigenvalues (`viz eig`); for all of them together a t-SNE
(`viz tsne`). Features come from the diagnostics' cache, so a report after the individual commands
(or a second report) recomputes nothing but the probes. The report card has one row per metric and
one column per checkpoint, each value with its 95 % interval, and a one-line reading taken from the
diagnostic's docs page.

Files in the output folder: report.html (self-contained: figures embedded as base64 PNG),
report.md (figures as PNG files beside it), report.json (every metric, as `<checkpoint index>.<name>`),
and the figures and JSON of each diagnostic under `<index>-<checkpoint name>/`.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from vdiag import __version__
from vdiag.console import note
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, load_extractor
from vdiag.io import atomic_path
from vdiag.results import Result

# metric → (diagnostic, label, reading from its docs page, docs page)
CARD = [
    ("static-bias", "acc_real", "accuracy, real clips", "the ordinary linear-probe accuracy", "diagnostics/static-bias.md"),
    (
        "static-bias",
        "static_ratio",
        "static ratio",
        "acc_static / acc_real; near 1 = decides from appearance, lower = needs motion",
        "diagnostics/static-bias.md",
    ),
    (
        "static-bias",
        "contrasted_acc",
        "contrasted accuracy",
        "right on real and wrong on static: higher = correct because of motion",
        "diagnostics/static-bias.md",
    ),
    (
        "static-bias",
        "sim_shuffled",
        "similarity to shuffled",
        "embedding of a clip vs its shuffled version; 1 = blind to frame order",
        "diagnostics/static-bias.md",
    ),
    (
        "shuffle",
        "acc",
        "shuffle probe accuracy",
        "ordered vs shuffled, chance 0.5; compare with the untrained architecture",
        "diagnostics/shuffle.md",
    ),
    (
        "factors",
        "static_score",
        "static factors",
        "chance-normalised accuracy on colour and shape; 1 = perfect, 0 = chance",
        "diagnostics/factors.md",
    ),
    (
        "factors",
        "dynamic_score",
        "dynamic factors",
        "the same for brightness change and trajectory; the decoupling methods aim to raise it",
        "diagnostics/factors.md",
    ),
    (
        "retrieval",
        "R@1",
        "retrieval R@1",
        "a same-class training video is the nearest neighbour; higher is better",
        "diagnostics/retrieval.md",
    ),
    (
        "retrieval",
        "R@5",
        "retrieval R@5",
        "among the 5 nearest (close to 1 for any model when classes are few)",
        "diagnostics/retrieval.md",
    ),
    (
        "cluster",
        "silhouette@all",
        "silhouette (all classes)",
        "in [−1, 1]: near 1 tight separate classes, near 0 overlapping",
        "diagnostics/cluster.md",
    ),
    (
        "eig",
        "static_fraction_bolddi",
        "Koopman static fraction (BOLD-DI)",
        "share of eigenvalues with |λ| ≥ 0.9 and |Arg λ| ≤ 0.1",
        "viz/eig.md",
    ),
    ("eig", "static_fraction_bodvcl", "Koopman static fraction (BOD-VCL)", "share of eigenvalues with |λ − 1| ≤ 0.1", "viz/eig.md"),
]


@dataclass
class Entry:
    """One checkpoint of the report: its short label and its results, diagnostic name → `Result`."""

    label: str
    results: dict[str, Result]


def run_diagnostics(extractor: Extractor, data: DataRef, folder: Path, *, has_factors: bool) -> dict[str, Result]:
    """Every diagnostic of the card for one checkpoint; each writes its JSON (and figures) in `folder`.

    Args:
        extractor: the checkpoint and its extraction settings; the Koopman eigenvalues reload it
            with its temporal strides removed (`keep_temporal`).
        data: the dataset.
        folder: where each diagnostic writes `<name>.json` and its files.
        has_factors: the data is synthetic: run `probe factors` too.

    Returns:
        diagnostic name ("static-bias", "shuffle", "retrieval", "cluster", "eig", "factors") → `Result`.
    """
    from vdiag.diagnostics.cluster import cluster
    from vdiag.diagnostics.factors import factor_probe
    from vdiag.diagnostics.retrieval import retrieval
    from vdiag.diagnostics.shuffle import shuffle_probe
    from vdiag.diagnostics.static_bias import static_bias
    from vdiag.viz.eig import viz_eig

    model = extractor.model
    temporal = load_extractor(
        model.path,
        backbone=None if model.config else model.name,
        layer=model.layer,
        keep_temporal=True,
        device=model.device,
        sampling=extractor.sampling,
        **extractor.settings,
    )
    results = {
        "static-bias": static_bias(extractor, data),
        "shuffle": shuffle_probe(extractor, data),
        "retrieval": retrieval(extractor, data),
        "cluster": cluster(extractor, data, folder),
        "eig": viz_eig(temporal, data, folder),
    }
    if has_factors:
        results["factors"] = factor_probe(extractor, data)
    for name, result in results.items():
        result.checkpoint = str(model.path)
        result.write(folder / f"{name}.json")
    return results


def build_report(extractors: list[Extractor], data: DataRef, out: Path) -> Result:
    """The report card of one or more checkpoints: every diagnostic of `CARD`, the t-SNE and the eigenvalue figures.

    Diagnostics: static-bias and shuffle (BOLD-DI §3.2, Fig. 2), factors (BOD-VCL, synthetic data
    only), retrieval (ViDiDi App. B.4), silhouette and t-SNE (ViDiDi Table 7, Fig. 4), Koopman
    eigenvalues (BOD-VCL Fig. 4a).

    Args:
        extractors: one per checkpoint, all on the same data.
        data: the dataset.
        out: folder for report.html (self-contained, figures embedded), report.md, the t-SNE and,
            per checkpoint, `<index>-<run folder>/` with each diagnostic's JSON and figures.

    Returns:
        `Result` "report"; metrics `<checkpoint index>.<metric>` for every metric of every
        diagnostic (with their 95 % intervals); details["labels"]: the checkpoints' short names.
    """
    from vdiag.viz.tsne import checkpoint_label, viz_tsne

    out = Path(out)
    has_factors = bool(data.split("test").factor_values)
    entries: list[Entry] = []
    for number, extractor in enumerate(extractors):
        label = checkpoint_label(extractor)
        note(f"report: diagnostics of {label} ({number + 1} of {len(extractors)})")
        folder = out / f"{number}-{Path(str(extractor.model.path)).parent.name or 'checkpoint'}"
        entries.append(Entry(label, run_diagnostics(extractor, data, folder, has_factors=has_factors)))
    tsne = viz_tsne(extractors, data, out)
    figures = [("t-SNE of the video embeddings, best-retrieved classes, one panel per checkpoint", Path(tsne.figures[0]))]
    figures += [(f"Koopman eigenvalues — {entry.label}", Path(entry.results["eig"].figures[0])) for entry in entries]
    metrics = {
        f"{number}.{name}": value
        for number, entry in enumerate(entries)
        for result in entry.results.values()
        for name, value in result.metrics.items()
    }
    html_path, markdown_path = out / "report.html", out / "report.md"
    title = f"vdiag report — {len(entries)} checkpoint{'s' if len(entries) > 1 else ''} on {data.path}"
    with atomic_path(html_path) as tmp:
        tmp.write_text(render_html(title, entries, figures, data=data))
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(render_markdown(title, entries, figures, out=out))
    return Result(
        command="report",
        metrics=metrics,
        data=data.path,
        figures=[str(path) for _, path in figures],
        files=[str(html_path), str(markdown_path)],
        config={"checkpoints": [str(e.model.path) for e in extractors], **extractors[0].describe()},
        details={"labels": [entry.label for entry in entries]},
    )


def card_rows(entries: list[Entry]) -> list[tuple[str, str, str, list[str]]]:
    """The card's rows: (label, reading, docs page, one cell per checkpoint) for every card metric present.

    A cell is "value [low, high]" with three decimals, or "–" when the checkpoint lacks the metric.
    """
    rows = []
    for diagnostic, name, label, reading, page in CARD:
        cells = []
        for entry in entries:
            result = entry.results.get(diagnostic)
            value = result.metrics.get(name) if result else None
            if value is None:
                cells.append("–")
                continue
            low, high = result.metrics.get(f"{name}_ci_low"), result.metrics.get(f"{name}_ci_high")
            cells.append(f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else ""))
        if any(cell != "–" for cell in cells):
            rows.append((label, reading, page, cells))
    return rows


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
    """A card cell "0.540 [0.475, 0.605]" as the value with its interval below it."""
    value, _, interval = cell.partition(" [")
    below = f'<div class="ci">[{html.escape(interval)}</div>' if interval else ""
    return f'<td class="value">{html.escape(value)}{below}</td>'


def render_html(title: str, entries: list[Entry], figures: list[tuple[str, Path]], *, data: DataRef) -> str:
    """The report as one self-contained HTML page: the card (values with 95 % intervals, how to read
    each row) and the figures embedded as base64 PNG.

    Args:
        title: the page title.
        entries: one per checkpoint (a card column each).
        figures: (caption, PNG file) in page order.
        data: the dataset, named in the page.

    Returns:
        The HTML text.
    """
    escape = html.escape
    head = "".join(f"<th>{escape(entry.label)}</th>" for entry in entries)
    body_rows = []
    for label, reading, page, cells in card_rows(entries):
        values = "".join(_value_cell(cell) for cell in cells)
        about = f'<div class="reading">{escape(reading)} <span class="page">(docs/{escape(page)})</span></div>'
        body_rows.append(f"<tr><td><b>{escape(label)}</b>{about}</td>{values}</tr>")
    figure_html = "".join(
        f'<figure><img alt="{escape(caption)}" src="{_data_uri(path)}"><figcaption>{escape(caption)}</figcaption></figure>'
        for caption, path in figures
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">vdiag {escape(__version__)} · data: {escape(data.path)} · values with 95 % bootstrap intervals over test videos</p>
<h2>Report card</h2>
<table>
<thead><tr><th>metric and how to read it</th>{head}</tr></thead>
<tbody>
{chr(10).join(body_rows)}
</tbody>
</table>
<h2>Figures</h2>
{figure_html}
</body>
</html>
"""


def render_markdown(title: str, entries: list[Entry], figures: list[tuple[str, Path]], *, out: Path) -> str:
    """The report as Markdown: the card as a table, figures linked relative to `out` (the folder of report.md).

    Returns:
        The Markdown text.
    """
    lines = [f"# {title}", "", "Values with 95 % bootstrap intervals over test videos.", ""]
    lines.append("| metric | " + " | ".join(entry.label for entry in entries) + " | how to read it |")
    lines.append("|---|" + "---:|" * len(entries) + "---|")
    for label, reading, _, cells in card_rows(entries):
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {reading} |")
    lines.append("")
    for caption, path in figures:
        lines += [f"![{caption}]({path.relative_to(out)})", "", f"*{caption}*", ""]
    return "\n".join(lines)


def card_table(result: Result, *, entries_labels: list[str] | None = None):
    """The report card as a rich table for the terminal (from the report's flat metrics)."""
    from rich.table import Table

    labels = entries_labels or result.details.get("labels", [])
    table = Table(title="report card (95% intervals in report.html)", title_justify="left")
    table.add_column("metric")
    for label in labels:
        table.add_column(label, justify="right")
    for _, name, label, _, _ in CARD:
        values = [result.metrics.get(f"{number}.{name}") for number in range(len(labels))]
        if any(v is not None for v in values):
            table.add_row(label, *["–" if v is None else f"{v:.3f}" for v in values])
    return table
