"""`vdiag eval cluster`: how well the embeddings separate classes (ViDiDi Table 7, Fig. 4, App. C.1).

Embeddings are video-level (10-clip mean), centred and L2-normalised (the geometry retrieval uses).
The silhouette score (Rousseeuw 1987; scikit-learn's `silhouette_score`, Euclidean) is computed for
the top-k classes, k = 3, 5, 10, 20, 50 and all. As in ViDiDi App. C the top classes are the
best-retrieved ones: ranked by leave-one-out nearest-neighbour accuracy within the split.

    silhouette@k   in [−1, 1]: near 1 tight, separated classes; near 0 overlapping; < 0 mixed up

The embeddings, labels and class names are saved (`embeddings.npz`) for the t-SNE figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import silhouette_samples, silhouette_score

from vdiag import distributed as dist
from vdiag.data.formats import check_target
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, require_reading, sample_sizes, targets
from vdiag.diagnostics.probe import bootstrap, with_intervals
from vdiag.diagnostics.retrieval import normalise
from vdiag.errors import VdiagError
from vdiag.io import save_npz
from vdiag.results import Result

TOP_K = (3, 5, 10, 15, 20, 50)  # ViDiDi Table 7: 3, 5, 10, 15, 20 and all


def best_retrieved_classes(embeddings: np.ndarray, labels: np.ndarray) -> list[int]:
    """Classes ordered by leave-one-out 1-NN accuracy (cosine), best first; ties by class index (ViDiDi App. C).

    Args:
        embeddings: `(N, C)` L2-normalised video embeddings; labels: `(N,)` int.

    Returns:
        The class indices present in `labels`, best-retrieved first.
    """
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    correct = labels[similarity.argmax(axis=1)] == labels
    classes = np.unique(labels)
    accuracy = [correct[labels == c].mean() for c in classes]
    return [int(classes[i]) for i in sorted(range(len(classes)), key=lambda i: (-accuracy[i], classes[i]))]


def silhouettes(embeddings: np.ndarray, labels: np.ndarray, *, top_k=TOP_K) -> dict[str, float]:
    """Silhouette scores of the top-k best-retrieved classes (ViDiDi Table 7, App. C.1).

    Args:
        embeddings: `(N, C)` L2-normalised video embeddings; labels: `(N,)` int.
        top_k: the k to score (those not below the number of classes are left out); all classes
            are always scored.

    Returns:
        `silhouette@<k>` and `silhouette@all` → score in [−1, 1] (Euclidean, scikit-learn): near 1
        tight, separated classes; near 0 overlapping; below 0 mixed up.
    """
    ranked = best_retrieved_classes(embeddings, labels)
    scores = {}
    for k in [k for k in top_k if k < len(ranked)] + [len(ranked)]:
        keep = np.isin(labels, ranked[:k])
        name = "all" if k == len(ranked) else str(k)
        scores[f"silhouette@{name}"] = float(silhouette_score(embeddings[keep], labels[keep]))
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
    metrics = silhouettes(embeddings, labels, top_k=top_k)
    per_video = silhouette_samples(embeddings, labels)  # their mean is silhouette@all
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
