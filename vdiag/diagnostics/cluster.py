"""`vdiag eval cluster`: how well the embeddings separate classes (ViDiDi Table 7, Fig. 4, App. C.1).

Embeddings are video-level (10-clip mean), centred and L2-normalised (the geometry retrieval uses).
The silhouette score (Rousseeuw 1987; Euclidean, equal to scikit-learn's `silhouette_score` but computed
in blocks of videos, never an N × N matrix) is computed for
the top-k classes, k = 3, 5, 10, 20, 50 and all. As in ViDiDi App. C the top classes are the
best-retrieved ones: ranked by leave-one-out nearest-neighbour accuracy within the split.

    silhouette@k   in [−1, 1]: near 1 tight, separated classes; near 0 overlapping; < 0 mixed up

The embeddings, labels and class names are saved (`embeddings.npz`) for the t-SNE figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vdiag import distributed as dist
from vdiag.data.formats import check_target
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, require_reading, sample_sizes, targets
from vdiag.diagnostics.probe import bootstrap, with_intervals
from vdiag.diagnostics.retrieval import normalise
from vdiag.errors import VdiagError
from vdiag.io import save_npz
from vdiag.neighbours import block_rows, nearest
from vdiag.results import Result

TOP_K = (3, 5, 10, 15, 20, 50)  # ViDiDi Table 7: 3, 5, 10, 15, 20 and all


def best_retrieved_classes(embeddings: np.ndarray, labels: np.ndarray, *, rows: int | None = None) -> list[int]:
    """Classes ordered by leave-one-out 1-NN accuracy (cosine), best first; ties by class index (ViDiDi App. C).

    The nearest neighbours come from `vdiag.neighbours.nearest` in blocks of `rows` videos (no
    N × N matrix); equal similarities go to the lower index, as `argmax` would.

    Args:
        embeddings: `(N, C)` L2-normalised video embeddings; labels: `(N,)` int.
        rows: videos per block [chosen for about 256 MiB].

    Returns:
        The class indices present in `labels`, best-retrieved first.
    """
    _, nearest_index = nearest(embeddings, embeddings, 1, exclude_self=True, rows=rows)
    if nearest_index.shape[1]:
        correct = labels[nearest_index[:, 0].numpy()] == labels
    else:  # a single video has no neighbour
        correct = np.zeros(len(labels), dtype=bool)
    classes = np.unique(labels)
    accuracy = [correct[labels == c].mean() for c in classes]
    return [int(classes[i]) for i in sorted(range(len(classes)), key=lambda i: (-accuracy[i], classes[i]))]


def class_distance_sums(embeddings: np.ndarray, labels: np.ndarray, *, rows: int | None = None) -> np.ndarray:
    """For every video, the sum of its Euclidean distances to the videos of each class, in blocks of rows.

    Distances are computed as scikit-learn's `euclidean_distances` does (‖x‖² + ‖y‖² − 2 x·y,
    clipped at 0, a video's distance to itself exactly 0), in float64, `rows` videos at a time:
    the memory is `rows` × N + N × classes numbers, never N × N.

    Args:
        embeddings: `(N, C)`; labels: `(N,)` int in [0, classes).
        rows: videos per block [chosen for about 256 MiB].

    Returns:
        `(N, classes)` float64, classes = labels.max() + 1.
    """
    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float64)
    index = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    classes = int(index.max()) + 1 if len(index) else 0
    squares = (x * x).sum(dim=1)
    step = rows or block_rows(len(x))
    sums = torch.zeros(len(x), classes, dtype=torch.float64)
    for start in range(0, len(x), step):
        block = x[start : start + step]
        distance = (block @ x.T).mul_(-2).add_(squares[None, :]).add_(squares[start : start + step, None])  # in place, sklearn's order
        distance.clamp_(min=0).sqrt_()
        here = torch.arange(len(block))
        distance[here, here + start] = 0.0
        sums[start : start + step] = torch.zeros(len(block), classes, dtype=torch.float64).index_add_(1, index, distance)
    return sums.numpy()


def silhouette_values(sums: np.ndarray, labels: np.ndarray, keep=None) -> np.ndarray:
    """Per-video silhouette values (Rousseeuw 1987) of the videos of the classes `keep`, from `class_distance_sums`.

    s = (b − a) / max(a, b), a the mean distance to the other videos of its class, b the smallest
    mean distance to another kept class; 0 for a video alone in its class (scikit-learn's
    `silhouette_samples` convention, whose values these equal).

    Args:
        sums: `(N, classes)` from `class_distance_sums` on all videos.
        labels: `(N,)` int.
        keep: the classes scored [all present]; distances to other classes are ignored.

    Returns:
        `(M,)` values in [−1, 1] for the M videos whose class is in `keep`, in their order in `labels`.
    """
    kept = np.unique(labels) if keep is None else np.unique(np.asarray(keep))
    rows = np.isin(labels, kept)
    counts = np.bincount(labels, minlength=sums.shape[1])[kept].astype(np.float64)
    own = np.searchsorted(kept, labels[rows])
    between = sums[np.ix_(rows, kept)]
    inside = between[np.arange(len(own)), own]
    between[np.arange(len(own)), own] = np.inf
    nearest_other = (between / counts).min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = inside / (counts[own] - 1)
        values = (nearest_other - inside) / np.maximum(inside, nearest_other)
    return np.nan_to_num(values)


def silhouettes(
    embeddings: np.ndarray, labels: np.ndarray, *, top_k=TOP_K, rows: int | None = None, sums: np.ndarray | None = None
) -> dict[str, float]:
    """Silhouette scores of the top-k best-retrieved classes (ViDiDi Table 7, App. C.1).

    One blocked pass (`class_distance_sums`) serves every k: a subset's silhouette needs only the
    summed distances to its classes.

    Args:
        embeddings: `(N, C)` L2-normalised video embeddings; labels: `(N,)` int.
        top_k: the k to score (those not below the number of classes are left out); all classes
            are always scored.
        rows: videos per block [chosen for about 256 MiB].
        sums: `class_distance_sums(embeddings, labels)` when already computed.

    Returns:
        `silhouette@<k>` and `silhouette@all` → score in [−1, 1] (Euclidean; equal to scikit-learn's
        `silhouette_score`): near 1 tight, separated classes; near 0 overlapping; below 0 mixed up.
    """
    ranked = best_retrieved_classes(embeddings, labels, rows=rows)
    sums = class_distance_sums(embeddings, labels, rows=rows) if sums is None else sums
    scores = {}
    for k in [k for k in top_k if k < len(ranked)] + [len(ranked)]:
        name = "all" if k == len(ranked) else str(k)
        scores[f"silhouette@{name}"] = float(silhouette_values(sums, labels, ranked[:k]).mean())
    return scores


def cluster(extractor: Extractor, data: DataRef, out: Path, *, split: str = "test", target: str = "label", top_k=TOP_K) -> Result:
    """How well video embeddings separate classes: silhouettes of the best-retrieved classes (ViDiDi Table 7, App. C).

    Embeddings are video-level (the mean of the clips), centred and L2-normalised.

    Args:
        extractor: the model and its extraction settings.
        data: the dataset.
        out: folder for `embeddings.npz` (embeddings `(N, C)`, labels, class names, video ids: the
            input of a t-SNE, ViDiDi Fig. 4).
        split: which videos.
        target: "label" or a synthetic factor.
        top_k: as for `silhouettes`.

    Returns:
        `Result` "eval cluster"; metrics `silhouette@<k>`, `silhouette@all` in [−1, 1] (0 = classes
        overlapping, the level of random features); silhouette@all with a 95 % interval from
        resampling the videos' own silhouette values (the geometry fixed: how much the score
        depends on which videos were drawn);
        details: `class_order` (class names, best-retrieved first).

    Raises:
        VdiagError: `target` is not a factor of the data; collapsed features; fewer than two classes,
            or no more videos than classes, in `split`.
    """
    features = extractor(check_target(data.split(split), target), ["real"])["real"]
    health = require_reading(features, model=extractor.model, split=split)
    labels, class_names = targets(features, target)
    present = np.unique(labels)
    if len(present) < 2 or len(labels) <= len(present):
        raise VdiagError(
            "the silhouette needs at least two classes and more videos than classes; "
            f"{split} has {len(labels)} videos in {len(present)} classes"
        )
    embeddings = normalise(features.videos, features.videos.mean(axis=0))
    sums = class_distance_sums(embeddings, labels)
    metrics = silhouettes(embeddings, labels, top_k=top_k, sums=sums)
    per_video = silhouette_values(sums, labels)  # their mean is silhouette@all
    interval = bootstrap(lambda rows: {"silhouette@all": float(per_video[rows].mean())}, len(labels), seed=extractor.seed)
    metrics = with_intervals(metrics, interval)
    saved = Path(out) / "embeddings.npz"
    if dist.is_main():
        save_npz(saved, embeddings=embeddings, labels=labels, class_names=np.asarray(class_names), video_ids=np.asarray(features.video_ids))
    return Result(
        command="eval cluster",
        metrics=metrics,
        data=data.path,
        files=[str(saved)],
        config={
            **extractor.describe(),
            "split": split,
            "target": target,
            "videos": len(labels),
            **sample_sizes(**{split: features}),
            "data": data.describe(),
        },
        details={"class_order": [class_names[c] for c in best_retrieved_classes(embeddings, labels)], "feature_health": {split: health}},
    )
