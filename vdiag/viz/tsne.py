"""`vdiag viz tsne`: t-SNE of video embeddings by class, checkpoints side by side (ViDiDi Fig. 4, 7–10).

For each checkpoint: video embeddings (the mean of `--clips` uniform clips), centred and
L2-normalised as for retrieval and clustering; the top-k classes chosen as ViDiDi App. C does —
the best-retrieved ones (leave-one-out nearest-neighbour accuracy, `vdiag.diagnostics.cluster`);
scikit-learn's t-SNE (PCA initialisation, fixed seed) to 2-D; one panel per checkpoint, coloured by
class, with the silhouette score of those classes (in the embedding space, not the 2-D map) in
the panel title. The 2-D coordinates, labels and scores are saved beside the figure (`tsne.npz`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score

from vdiag import distributed as dist
from vdiag.data.formats import check_target
from vdiag.diagnostics.cluster import best_retrieved_classes
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, sample_sizes, targets
from vdiag.diagnostics.retrieval import normalise
from vdiag.errors import VdiagError
from vdiag.io import save_npz
from vdiag.results import Result
from vdiag.viz.style import plt, reading_note, save_figure, style

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999", "#882255"]


def embed_2d(embeddings: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE to 2-D (scikit-learn, PCA initialisation): `(N, C)` → `(N, 2)`.

    The perplexity is capped below the number of points, as t-SNE requires.
    """
    perplexity = min(perplexity, max(1.0, (len(embeddings) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)


def checkpoint_label(extractor: Extractor) -> str:
    """A short name: the run folder for a run's final.pt / last.pt, else folder/file; plus the
    training method when the name does not already say it."""
    model = extractor.model
    path = Path(str(model.path))
    name = path.parent.name if path.name in ("final.pt", "last.pt") and path.parent.name else "/".join(path.parts[-2:])
    method = model.method_name
    return f"{name} · {method}" if method and method not in name else name


def viz_tsne(
    extractors: list[Extractor],
    data: DataRef,
    out: Path,
    *,
    split: str = "test",
    target: str = "label",
    top_k: int = 5,
    perplexity: float = 30.0,
    figure_format: str = "png",
) -> Result:
    """t-SNE of video embeddings coloured by class, one panel per checkpoint (ViDiDi Fig. 4, App. C).

    Args:
        extractors: one per checkpoint, all on the same data.
        data: the dataset.
        out: folder for `tsne.<figure_format>` and `tsne.npz` (2-D points and labels per panel,
            class names, silhouettes).
        split: which videos.
        target: "label" or a synthetic factor to colour by.
        top_k: show the k best-retrieved classes (ViDiDi Fig. 4: 5).
        perplexity: t-SNE perplexity (capped below the number of videos).
        figure_format: "png", "pdf" or "svg".

    Returns:
        `Result` "viz tsne"; metrics `silhouette` (one checkpoint) or `silhouette_<i>`: the
        silhouette in [−1, 1] of the shown classes in embedding space (not in the 2-D map).

    Raises:
        VdiagError: `target` is not a factor of the data; fewer than two classes with several videos each.
    """
    index = check_target(data.split(split), target)
    panels = []
    for extractor in extractors:
        features = extractor(index, ["real"])["real"]
        labels, class_names = targets(features, target)
        embeddings = normalise(features.videos, features.videos.mean(axis=0))
        chosen = best_retrieved_classes(embeddings, labels)[:top_k]
        keep = np.isin(labels, chosen)
        if len(chosen) < 2 or keep.sum() <= len(chosen):
            raise VdiagError(f"t-SNE by class needs two classes or more with several videos each; {split} has too few")
        score = float(silhouette_score(embeddings[keep], labels[keep]))
        panels.append(
            {
                "label": checkpoint_label(extractor),
                "points": embed_2d(embeddings[keep], seed=extractor.seed, perplexity=perplexity),
                "labels": labels[keep],
                "classes": chosen,
                "silhouette": score,
                "sizes": sample_sizes(**{split: features}),
                "split": split,
            }
        )

    figure = Path(out) / f"tsne.{figure_format}"
    saved = Path(out) / "tsne.npz"
    if dist.is_main():
        save_figure(
            _plot(
                panels,
                class_names,
                f"t-SNE of video embeddings, top {len(panels[0]['classes'])} best-retrieved classes ({target}), {split} split",
            ),
            figure,
        )
        arrays = {}
        for number, panel in enumerate(panels):
            arrays[f"points_{number}"], arrays[f"labels_{number}"] = panel["points"], panel["labels"]
        save_npz(
            saved,
            checkpoints=np.asarray([p["label"] for p in panels]),
            class_names=np.asarray(class_names),
            silhouettes=np.asarray([p["silhouette"] for p in panels]),
            **arrays,
        )
    metrics = {"silhouette" if len(panels) == 1 else f"silhouette_{number}": panel["silhouette"] for number, panel in enumerate(panels)}
    return Result(
        command="viz tsne",
        metrics=metrics,
        data=data.path,
        figures=[str(figure)],
        files=[str(saved)],
        config={**extractors[0].describe(), "split": split, "target": target, "top_k": top_k, "perplexity": perplexity},
        details={
            "checkpoints": [p["label"] for p in panels],
            "sample_sizes": [p["sizes"] for p in panels],
            "classes": [[class_names[c] for c in p["classes"]] for p in panels],
        },
    )


def _plot(panels: list[dict], class_names: list[str], title: str):
    every_class = sorted({int(c) for p in panels for c in p["classes"]})
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(every_class)}
    with style():
        columns = min(len(panels), 4)  # at most four panels a row: a report page stays readable
        rows = -(-len(panels) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.6 * rows), squeeze=False)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        for ax, panel in zip(axes.flat, panels):
            for c in panel["classes"]:
                chosen = panel["labels"] == c
                ax.scatter(*panel["points"][chosen].T, s=9, alpha=0.75, lw=0, color=colour[c], label=class_names[c])
            note = reading_note(panel["sizes"], panel["split"]).replace("; ", "\n")
            ax.set_title(f"{panel['label']}\nsilhouette {panel['silhouette']:.3f}{note}")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
        handles, names = [], []
        for ax in axes.flat:
            for handle, name in zip(*ax.get_legend_handles_labels()):
                if name not in names:
                    handles.append(handle)
                    names.append(name)
        fig.legend(handles, names, loc="lower center", ncol=min(len(names), 5), bbox_to_anchor=(0.5, -0.06 / rows), markerscale=2)
        fig.suptitle(title)
        fig.tight_layout()
    return fig
