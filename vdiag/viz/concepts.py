"""`vdiag viz concepts`: what the static and dynamic concepts of a `concepts` model attend to and
how they separate classes (concepts, Qian et al., Figs. 4–5).

For one video (Fig. 5): the clip's concept codes q_v (Eq. 2–3); the most active static concept
(largest code among the K_s static ones) and the most active dynamic one; their cross-attention maps
(Eq. 7) over the feature map, upsampled to the frames and drawn over them.

Codes are the cosine similarities of the pooled feature to each prototype (Eq. 3), in [−1, 1].
For the dataset split (Fig. 4): each video's codes (mean over its clips), averaged per class
separately over the static and the dynamic concepts, and the class × class cosine similarity of
those averages. The paper's reading: static codes are similar across classes that share scenes,
dynamic codes tell actions apart. `mean_offdiag_static` / `mean_offdiag_dynamic` summarise each
matrix (mean similarity between different classes; lower = more class-specific).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vdiag import distributed as dist
from vdiag.data.formats import check_target
from vdiag.data.views import eval_view
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, require_concepts, sample_sizes, targets
from vdiag.io import save_npz
from vdiag.results import Result
from vdiag.viz.activation import read_clip, upsample
from vdiag.viz.style import clip_is_padded, clip_note, plt, reading_note, save_figure, style


def class_similarity(codes: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Cosine similarity between the per-class mean code vectors (concepts Fig. 4).

    Args:
        codes: `(videos, K)` concept codes; labels: `(videos,)` int; classes: the number of classes.

    Returns:
        `(classes, classes)` cosines in [−1, 1]; classes without videos get NaN rows.
    """
    means = np.full((classes, codes.shape[1]), np.nan)
    for c in range(classes):
        if (labels == c).any():
            means[c] = codes[labels == c].mean(axis=0)
    unit = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def mean_offdiagonal(matrix: np.ndarray) -> float:
    """The mean of a square matrix's off-diagonal entries, NaN ignored (lower = more class-specific codes)."""
    off = ~np.eye(len(matrix), dtype=bool)
    return float(np.nanmean(matrix[off])) if off.any() else float("nan")


def viz_concepts(
    extractor: Extractor,
    data: DataRef,
    out: Path,
    *,
    video: str | Path,
    split: str = "test",
    target: str = "label",
    start: int | None = None,
    frames_shown: int = 4,
    figure_format: str = "png",
) -> Result:
    """Static and dynamic concepts of a `concepts` model (concepts Figs. 4–5, Eq. 2–3, 7).

    For `video`: the most active static and dynamic concept (largest code q_v) and their
    cross-attention maps over the frames (Fig. 5). For `split`: the class × class cosine similarity
    of the per-class mean codes, static and dynamic concepts apart (Fig. 4).

    Args:
        extractor: a `concepts` checkpoint and its extraction settings.
        data: the dataset.
        out: folder for `concepts-<video>.<figure_format>` and `.npz` (codes, attention maps,
            similarity matrices, per-video codes, labels).
        video: the video file of the attention rows.
        split: the videos of the similarity matrices.
        target: "label" or a synthetic factor: the classes.
        start: first frame of `video`'s clip [the middle clip].
        frames_shown: columns of the attention rows.
        figure_format: "png", "pdf" or "svg".

    Returns:
        `Result` "viz concepts"; metrics `mean_offdiag_static` / `mean_offdiag_dynamic` (mean cosine
        between different classes, lower = more class-specific; the paper expects the dynamic one
        lower), `static_concept` / `dynamic_concept` (the chosen concepts' indices) and
        `static_code` / `dynamic_code` (their codes, cosines in [−1, 1]).

    Raises:
        VdiagError: (from `require_concepts`, `check_target`) not a `concepts` checkpoint or a
            `--layer` is set; `target` is not a factor of the data.
    """
    require_concepts(extractor)
    model, sampling = extractor.model, extractor.sampling
    method = model.method
    static_count = method.static_concepts
    index = check_target(data.split(split), target)

    video = Path(video)
    raw, indices = read_clip(video, sampling, decoder=extractor.decoder, start=start)
    shown = eval_view(raw, sampling.size)
    with torch.inference_mode():
        outputs = method.concept_outputs(sampling.normalize(shown)[None].to(model.device))
    codes = outputs["codes"][0].float().cpu()
    static_index = int(codes[:static_count].argmax())
    dynamic_index = static_count + int(codes[static_count:].argmax())
    attention = outputs["attention"][0].float().cpu()  # (K, T', H', W')
    maps = {
        name: upsample(attention[k], shown.shape[1], sampling.size) for name, k in (("static", static_index), ("dynamic", dynamic_index))
    }

    features = extractor(index, ["real"], output="concepts.q_v")["real"]
    labels, class_names = targets(features, target)
    video_codes = features.videos  # (N, K_s + K_d)
    similarity = {
        "static": class_similarity(video_codes[:, :static_count], labels, len(class_names)),
        "dynamic": class_similarity(video_codes[:, static_count:], labels, len(class_names)),
    }
    metrics = {
        "mean_offdiag_static": mean_offdiagonal(similarity["static"]),
        "mean_offdiag_dynamic": mean_offdiagonal(similarity["dynamic"]),
        "static_concept": static_index,
        "dynamic_concept": dynamic_index,
        "static_code": float(codes[static_index]),
        "dynamic_code": float(codes[dynamic_index]),
    }
    sizes = sample_sizes(**{split: features})
    name = "/".join(Path(str(model.path)).parts[-2:])
    figure, saved = Path(out) / f"concepts-{video.stem}.{figure_format}", Path(out) / f"concepts-{video.stem}.npz"
    if dist.is_main():
        title = (
            f"Static and dynamic concepts — {name}; {video.name}{clip_note(indices)} "
            f"and the {split} split by {target}{reading_note(sizes, split)}"
        )
        save_figure(
            _plot(
                shown,
                indices,
                maps,
                (static_index, dynamic_index - static_count),
                codes,
                static_count,
                similarity,
                class_names,
                frames_shown,
                title,
            ),
            figure,
        )
        save_npz(
            saved,
            codes=codes.numpy(),
            attention_static=maps["static"],
            attention_dynamic=maps["dynamic"],
            similarity_static=similarity["static"],
            similarity_dynamic=similarity["dynamic"],
            class_names=np.asarray(class_names),
            video_codes=video_codes,
            labels=labels,
        )
    return Result(
        command="viz concepts",
        metrics=metrics,
        data=data.path,
        figures=[str(figure)],
        files=[str(saved)],
        config={
            **extractor.describe(),
            "video": str(video),
            "split": split,
            "target": target,
            **sizes,
            "padded_clip": clip_is_padded(indices),
        },
    )


def _plot(frames, indices, maps, chosen, codes, static_count, similarity, class_names, columns, title):
    times = np.unique(np.linspace(0, frames.shape[1] - 1, columns).round().astype(int))
    pictures = frames.permute(1, 2, 3, 0).numpy()
    with style():
        fig = plt.figure(figsize=(1.7 * len(times) + 4.4, 5.6))
        grid = fig.add_gridspec(3, len(times) + 2, width_ratios=[1] * len(times) + [0.25, 2.2], hspace=0.35, wspace=0.08)
        rows = (
            ("frames", None),
            (f"static concept {chosen[0]}\n(code {float(codes[chosen[0]]):.2f})", "static"),
            (f"dynamic concept {chosen[1]}\n(code {float(codes[static_count + chosen[1]]):.2f})", "dynamic"),
        )
        for row, (label, key) in enumerate(rows):
            for column, t in enumerate(times):
                ax = fig.add_subplot(grid[row, column])
                ax.imshow(pictures[t])
                if key is not None:
                    peak = max(float(maps[key].max()), 1e-12)
                    ax.imshow(maps[key][t] / peak, cmap="inferno", alpha=0.6, vmin=0, vmax=1)
                if row == 0:
                    ax.set_title(f"frame {indices[t]}", fontsize=7)
                if column == 0:
                    ax.set_ylabel(label, fontsize=7)
                ax.set_xticks([])
                ax.set_yticks([])
        matrices = grid[:, -1].subgridspec(2, 1, hspace=0.6)
        heatmaps = []
        # mean codes of different classes are often alike (cosines near 1): a shared colour range from
        # the lowest value of either matrix to 1 keeps the differences visible; cells carry their value
        low = float(np.nanmin([np.nanmin(similarity["static"]), np.nanmin(similarity["dynamic"])]))
        low = min(low, 0.99)
        for row, key in enumerate(("static", "dynamic")):
            ax = fig.add_subplot(matrices[row])
            image = ax.imshow(similarity[key], cmap="viridis", vmin=low, vmax=1)
            ax.set_title(f"{key} codes: class × class cosine", fontsize=7)
            ticks = list(range(len(class_names)))
            ax.set_xticks(ticks, class_names, rotation=90, fontsize=6)
            ax.set_yticks(ticks, class_names, fontsize=6)
            if len(class_names) <= 10:
                for i in ticks:
                    for j in ticks:
                        value = similarity[key][i, j]
                        ax.text(
                            j, i, f"{value:.3f}", ha="center", va="center", fontsize=6, color="white" if value < (low + 1) / 2 else "black"
                        )
            heatmaps.append(ax)
        fig.colorbar(image, ax=heatmaps, fraction=0.05, pad=0.02, label="cosine similarity")
        fig.suptitle(title, fontsize=8)
    return fig
