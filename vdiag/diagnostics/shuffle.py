"""`vdiag probe shuffle`: can a linear classifier on frozen features tell true order from a perturbed one?

BOLD-DI §3.2, experiment 2 (Fig. 2c). Every video contributes ordered and perturbed clips in equal
number (clip k of video i is perturbed when i + k is odd: with the default 10 clips per video, five
of each; with one clip per video, alternate videos), so the set is balanced and no clip appears in
both classes. The probe trains on the train split and is scored on the held-out videos of the test
split.

Perturbations: `shuffle` (a random order, never the identity), `reverse` (the arrow of time) and
`freeze` (every frame a copy of the first: is there any motion signal at all?).

    acc     accuracy on the test clips (95 % interval from resampling test videos)
    chance  0.5
"""

from __future__ import annotations

import numpy as np

from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, require_reading, sample_sizes
from vdiag.diagnostics.probe import bootstrap, ceiling_flags, fit_probe, with_intervals
from vdiag.errors import VdiagError
from vdiag.results import Result

PERTURBATIONS = {"shuffle": "shuffled", "reverse": "reversed", "freeze": "static"}


def balanced_set(real: np.ndarray, perturbed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A balanced ordered-vs-perturbed set: clip k of video i is perturbed when i + k is odd.

    Args:
        real, perturbed: per-clip features `(N, K, C)` of the ordered and the perturbed clips.

    Returns:
        samples `(N·K, C)`, targets `(N·K,)` int64 (1 = perturbed) and the video of each sample `(N·K,)`.
    """
    videos, clips = real.shape[:2]
    is_perturbed = (np.arange(videos)[:, None] + np.arange(clips)[None, :]) % 2 == 1  # (N, K)
    samples = np.where(is_perturbed[..., None], perturbed, real).reshape(videos * clips, -1)
    return samples, is_perturbed.reshape(-1).astype(np.int64), np.repeat(np.arange(videos), clips)


def shuffle_probe(extractor: Extractor, data: DataRef, *, perturbation: str = "shuffle") -> Result:
    """Can a linear probe on frozen features tell true frame order from a perturbed one? (BOLD-DI §3.2, experiment 2, Fig. 2c)

    Args:
        extractor: the model and its extraction settings (`extractor.seed` draws the shuffled
            orders and seeds the probe and the bootstrap).
        data: the dataset; the probe trains on the train split, is scored on the test split.
        perturbation: "shuffle" (a random order, never the identity), "reverse" (the arrow of
            time) or "freeze" (every frame a copy of the first).

    Returns:
        `Result` "probe shuffle"; metrics: `acc` (share of test clips classified right, in [0, 1],
        with a 95 % interval from resampling test videos) and `chance` (0.5). Near 0.5 the
        features ignore frame order; the v-CL models of BOLD-DI Fig. 2c sit there. details:
        `feature_health`, `flags`, `per_video` (test video ids, right clips and clips per video).

    Raises:
        VdiagError: an unknown perturbation; train and test sharing videos; collapsed features.
    """
    if perturbation not in PERTURBATIONS:
        raise VdiagError(f"unknown perturbation {perturbation!r}; choose one of: {', '.join(PERTURBATIONS)}")
    view = PERTURBATIONS[perturbation]
    sets, health, real = [], {}, {}
    for split in ("train", "test"):
        features = extractor(data.split(split), ["real", view])
        real[split] = features["real"]
        health[split] = require_reading(features["real"], model=extractor.model, split=split)
        sets.append(balanced_set(features["real"].features, features[view].features))
    (train_x, train_y, _), (test_x, test_y, test_video) = sets
    probe = fit_probe(train_x, train_y, seed=extractor.seed)
    correct = probe.predict(test_x) == test_y
    per_video_correct = np.bincount(test_video, weights=correct)
    per_video_count = np.bincount(test_video)

    def statistics(rows: np.ndarray) -> dict[str, float]:
        return {"acc": float(per_video_correct[rows].sum() / per_video_count[rows].sum())}

    metrics = {**statistics(np.arange(len(per_video_count))), "chance": 0.5}
    metrics = with_intervals(metrics, bootstrap(statistics, len(per_video_count), seed=extractor.seed))
    return Result(
        command="probe shuffle",
        metrics=metrics,
        data=data.path,
        config={**extractor.describe(), "perturbation": perturbation, **sample_sizes(**real), "data": data.describe()},
        details={
            "feature_health": health,
            "flags": ceiling_flags(metrics, len(per_video_count)),
            "per_video": {"video_ids": real["test"].video_ids, "correct": per_video_correct.tolist(), "clips": per_video_count.tolist()},
        },
    )
