"""`vdiag eval retrieval`: nearest-neighbour video retrieval (ViDiDi App. B.4, DCLR §4.1).

Each video is the mean of its 10 uniformly spread clips' embeddings; embeddings are centred on the
mean training video and L2-normalised; every test video queries the training set by cosine
similarity, and a query succeeds at k when one of its k nearest training videos shares its class.

    R@k      share of successful test queries, k = 1, 5, 10, 20, 50 (k ≤ training videos)
    chance   R@1 expected from random features: Σ_c p_test(c) · p_train(c)
"""

from __future__ import annotations

import numpy as np

from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, sample_sizes, train_test
from vdiag.diagnostics.probe import bootstrap, ceiling_flags, with_intervals
from vdiag.neighbours import nearest
from vdiag.results import Result

RANKS = (1, 5, 10, 20, 50)


def normalise(features: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Centre, then scale every row to unit length: `(N, C)`, `(C,)` → `(N, C)` (ViDiDi App. B.4)."""
    centred = features - centre
    return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)


def retrieval_hits(
    queries: np.ndarray,
    query_labels: np.ndarray,
    *,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    ranks=RANKS,
    rows: int | None = None,
    device: str | None = None,
) -> dict[int, np.ndarray]:
    """Which queries find a same-class gallery item among their k nearest (cosine; ViDiDi App. B.4).

    The neighbours come from `vdiag.neighbours.nearest` in blocks of queries (the same search as the
    kNN monitor of pretraining): memory grows with the gallery, never with queries × gallery.

    Args:
        queries: `(Q, C)` L2-normalised; query_labels: `(Q,)` int.
        gallery: `(G, C)` L2-normalised; gallery_labels: `(G,)` int.
        ranks: the k to report; those above G are left out.
        rows: queries per block [chosen for about 256 MiB].
        device: where to compute the similarities [CPU].

    Returns:
        k → `(Q,)` bool: a same-class gallery item is among the k most similar. Ties keep gallery order.
    """
    kept = [k for k in ranks if k <= len(gallery)]
    if not kept:
        return {}
    _, order = nearest(queries, gallery, max(kept), rows=rows, device=device)  # (Q, K), nearest first
    same = np.asarray(gallery_labels)[order.numpy()] == np.asarray(query_labels)[:, None]
    first = np.where(same.any(axis=1), same.argmax(axis=1), max(kept))  # rank of the first hit (K: none in the top K)
    return {k: first < k for k in kept}


def retrieval(extractor: Extractor, data: DataRef, *, target: str = "label", ranks=RANKS) -> Result:
    """Nearest-neighbour video retrieval: test videos query the training videos (ViDiDi App. B.4, Table 3).

    Args:
        extractor: the model and its extraction settings; each video is the mean of its clips.
        data: the dataset; the gallery is the train split, the queries the test split.
        target: "label" or a synthetic factor that defines "same class".
        ranks: the k of R@k.

    Returns:
        `Result` "eval retrieval"; metrics: `R@k` (share of test videos with a same-class training
        video among their k nearest, in [0, 1], with 95 % bootstrap intervals over queries) and
        `chance` (R@1 of random features: Σ_c p_test(c) · p_train(c)); details: `feature_health`,
        `flags` (intervals of width 0 at a ceiling), `per_video` (query ids, 0/1 hits at each k).

    Raises:
        VdiagError: (from `train_test`) `target` is not a factor of the data, train and test share
            videos, or the features are collapsed.
    """
    split = train_test(extractor, data, target=target)
    train, test = split.train, split.test["real"]
    train_labels, test_labels, class_names = split.train_labels, split.labels, split.class_names
    gallery_raw = train.videos
    centre = gallery_raw.mean(axis=0)
    hits = retrieval_hits(
        normalise(test.videos, centre), test_labels, gallery=normalise(gallery_raw, centre), gallery_labels=train_labels, ranks=ranks
    )

    def statistics(rows: np.ndarray) -> dict[str, float]:
        return {f"R@{k}": float(hit[rows].mean()) for k, hit in hits.items()}

    classes = len(class_names)
    p_train = np.bincount(train_labels, minlength=classes) / len(train_labels)
    p_test = np.bincount(test_labels, minlength=classes) / len(test_labels)
    metrics = {**statistics(np.arange(len(test_labels))), "chance": float(p_train @ p_test)}
    metrics = with_intervals(metrics, bootstrap(statistics, len(test_labels), seed=extractor.seed))
    return Result(
        command="eval retrieval",
        metrics=metrics,
        data=data.path,
        config={
            **extractor.describe(),
            "target": target,
            "gallery_videos": len(train_labels),
            "query_videos": len(test_labels),
            **sample_sizes(train=train, test=test),
            "data": data.describe(),
        },
        details={
            "feature_health": split.health,
            "flags": ceiling_flags(metrics, len(test_labels)),
            "per_video": {"video_ids": test.video_ids, **{f"hit_{k}": hit.astype(int).tolist() for k, hit in hits.items()}},
        },
    )
