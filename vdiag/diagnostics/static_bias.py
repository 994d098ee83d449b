"""`vdiag probe static-bias`: does the model still classify when every frame is the same?

BOLD-DI §3.2, experiment 1 (Fig. 2a–b): a linear classifier is trained on frozen features of real
clips of the train split; on the test split it is evaluated, unchanged, on real clips, on static
clips (every frame a copy of the first) and on frame differences (the motion-only view).

    acc_real, acc_static, acc_dynamic   top-1 of the same probe on the three views
    static_ratio   = acc_static / acc_real      (near 1: the decision comes from appearance)
    contrasted_acc = share right on real and wrong on static (StillMix's contrasted accuracy)
    chance         = share of the most frequent test class

and, without training anything, how much the embedding moves when time is destroyed: the mean
cosine similarity between a clip's embedding and that of its static, shuffled and reversed
versions (`sim_static`, `sim_shuffled`, `sim_reversed`; 1.0 = blind to time). Embeddings are
centred on the mean real test clip first, so that unrelated clips sit near 0 rather than near the
shared positive offset of ReLU features. The chance level of each similarity
(`sim_<view>_chance`) is the same cosine between a real clip and the view of *another* test video
(one drawn at random per video, `unrelated_videos`; the same clip index): how similar the view of
an unrelated video is.
A similarity at its chance level means the perturbation moved the clip as far as replacing the video.
"""

from __future__ import annotations

import numpy as np

from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, sample_sizes, train_test
from vdiag.diagnostics.probe import bootstrap, ceiling_flags, fit_probe, majority_share, predict_proba, safe_ratio, with_intervals
from vdiag.results import Result

TEST_VIEWS = ("real", "static", "difference", "shuffled", "reversed")


def centred_similarity(reference: np.ndarray, other: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows after subtracting `centre`.

    Args:
        reference, other: per-clip features `(N, K, C)` of two views of the same clips.
        centre: `(C,)`, subtracted from both (the mean real clip).

    Returns:
        `(N, K)` cosines in [−1, 1]; 1 = the view did not move the embedding.
    """
    a, b = reference - centre, other - centre
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(norms, 1e-12)


def unrelated_videos(count: int, seed: int = 0) -> np.ndarray:
    """For each of `count` videos, another one drawn at random (never itself): the pairs of the
    similarities' chance level. Dataset order often groups a class together, so the next video would
    mostly share the class.

    Returns:
        `(count,)` int64 indices, index i ≠ i (all zeros for a single video).
    """
    if count < 2:
        return np.zeros(count, dtype=np.int64)
    rng = np.random.default_rng([seed, count])
    return (np.arange(count) + rng.integers(1, count, size=count)) % count


def static_bias(extractor: Extractor, data: DataRef, *, target: str = "label") -> Result:
    """Does the model still classify when every frame is the same? (BOLD-DI §3.2, experiment 1, Fig. 2a–b)

    A linear probe (`fit_probe`) is trained on real clips of the train split and tested, unchanged,
    on real, static (first frame repeated) and frame-difference clips of the test split; the
    embedding's cosine similarity to static, shuffled and reversed versions needs no training.

    Args:
        extractor: the model and its extraction settings (`extractor.seed` seeds probe and bootstrap).
        data: the dataset (train and test splits).
        target: "label" or a synthetic factor to classify.

    Returns:
        `Result` "probe static-bias"; metrics (shares in [0, 1], each with a 95 % bootstrap interval
        over test videos, `<name>_ci_low` / `_ci_high`): `acc_real`, `acc_static`, `acc_dynamic`
        (top-1 on real, static, frame-difference clips), `static_ratio` = acc_static / acc_real
        (near 1: the decision comes from appearance), `contrasted_acc` (right on real and wrong on
        static), `sim_static` / `sim_shuffled` / `sim_reversed` (mean centred cosine, 1 = blind to
        time) and `chance` (share of the most frequent test class), and `sim_<view>_chance` (the
        chance level of each similarity: the mean centred cosine between a real clip and the view
        of another test video drawn at random, `unrelated_videos`; with its interval).

    Raises:
        VdiagError: (from `train_test` / `fit_probe`) `target` is not a factor of the data, or the
            train split has a single class.
    """
    split = train_test(extractor, data, target=target, test_views=TEST_VIEWS)
    train, test, labels, class_names = split.train, split.test, split.labels, split.class_names
    probe = fit_probe(train.features, split.train_labels, seed=extractor.seed)
    correct = {
        view: predict_proba(probe, test[view].features, len(class_names)).argmax(1) == labels for view in ("real", "static", "difference")
    }
    real = test["real"].features
    centre = real.reshape(-1, real.shape[-1]).mean(axis=0)
    similarity = {}  # per test video: the cosine to its own view, and (chance) to the view of another video
    others = unrelated_videos(len(real), seed=extractor.seed)
    for view in ("static", "shuffled", "reversed"):
        similarity[view] = centred_similarity(real, test[view].features, centre).mean(axis=1)
        other = centred_similarity(real, test[view].features[others], centre).mean(axis=1)
        similarity[f"{view}_chance"] = other if len(real) > 1 else np.full(len(real), np.nan)  # one video: no other to compare

    def statistics(rows: np.ndarray) -> dict[str, float]:
        acc_real, acc_static = correct["real"][rows].mean(), correct["static"][rows].mean()
        return {
            "acc_real": float(acc_real),
            "acc_static": float(acc_static),
            "static_ratio": safe_ratio(acc_static, acc_real),
            "acc_dynamic": float(correct["difference"][rows].mean()),
            "contrasted_acc": float((correct["real"][rows] & ~correct["static"][rows]).mean()),
            **{f"sim_{view}": float(values[rows].mean()) for view, values in similarity.items()},
        }

    everything = np.arange(len(labels))
    metrics = statistics(everything)
    metrics["chance"] = majority_share(labels)
    intervals = bootstrap(statistics, len(labels), seed=extractor.seed)
    metrics = with_intervals(metrics, intervals)
    return Result(
        command="probe static-bias",
        metrics=metrics,
        data=data.path,
        config={
            **extractor.describe(),
            "target": target,
            **sample_sizes(train=train, test=test["real"]),
            # acc_dynamic reads the difference view, which takes one frame past each clip: padded when the video ends there
            "test_padded_difference_clips": int(test["difference"].reading.get("padded_clips", 0)),
            "data": data.describe(),
        },
        details={
            "classes": class_names,
            "feature_health": split.health,
            "flags": ceiling_flags(metrics, len(labels)),
            "per_video": {
                "video_ids": test["real"].video_ids,
                **{f"correct_{view}": hits.astype(int).tolist() for view, hits in correct.items()},
            },
        },
    )
