"""Linear probes on frozen features and bootstrap confidence intervals.

The probe is scikit-learn's multinomial `LogisticRegression` (L-BFGS, C = 1) after a
`StandardScaler`, with a fixed `random_state`: the usual frozen-feature linear evaluation, as
deterministic as the features. It trains on every clip of every training video (N·K samples) and
predicts a video by averaging the class probabilities of its K clips (the 10-clip test of
ViDiDi App. B.4 / DCLR §4.1).

Confidence intervals are percentile bootstrap intervals over the test videos (1000 resamples,
95 %): a statistic is recomputed on resampled videos, so paired statistics (accuracy on real and
on static clips of the same videos, their ratio) are resampled together.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vdiag.errors import VdiagError

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95


def fit_probe(features: np.ndarray, labels: np.ndarray, *, seed: int = 0, max_iter: int = 1000):
    """A standardised logistic-regression probe (the frozen-feature linear evaluation, DCLR §4.1).

    Args:
        features: `(N, C)` or per-clip `(N, K, C)`; every clip is a sample with its video's label.
        labels: `(N,)` integer classes.
        seed: the solver's `random_state`.
        max_iter: L-BFGS iterations (a probe that stops there is still used).

    Returns:
        The fitted scikit-learn pipeline (`StandardScaler` → `LogisticRegression`).

    Raises:
        VdiagError: the labels hold a single class.
    """
    x, y = _samples(features, labels)
    if len(np.unique(y)) < 2:
        raise VdiagError("the training split has a single class; a probe needs at least two (check the split and --target)")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a probe at max_iter is still a probe
        probe.fit(x, y)
    return probe


def predict_proba(probe, features: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Video-level class probabilities: the mean over clips for per-clip input (the 10-clip test, ViDiDi App. B.4).

    Args:
        probe: from `fit_probe`.
        features: `(N, C)` or per-clip `(N, K, C)`.
        num_classes: columns of the output at least (classes the probe never saw get probability 0).

    Returns:
        `(N, classes)` probabilities; column c is integer label c.
    """
    per_clip = features.reshape(-1, features.shape[-1])
    probs = probe.predict_proba(per_clip)
    classes = probe.classes_
    width = int(max(num_classes or 0, classes.max() + 1))
    full = np.zeros((len(per_clip), width))
    full[:, classes] = probs
    if features.ndim == 3:
        full = full.reshape(features.shape[0], features.shape[1], width).mean(axis=1)
    return full


def _samples(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if features.ndim == 3:
        return features.reshape(-1, features.shape[-1]), np.repeat(labels, features.shape[1])
    return features, labels


def topk_correct(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Top-k hits: `(N, classes)` probabilities, `(N,)` labels → `(N,)` bool, the label among the k most probable."""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=1)


def majority_share(labels: np.ndarray) -> float:
    """The accuracy of always answering the most frequent class: the chance level we report."""
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else float("nan")


def bootstrap(
    statistics: Callable[[np.ndarray], dict[str, float]],
    count: int,
    *,
    seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
    confidence: float = CONFIDENCE,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of `statistics(indices)` over `samples` resamples of `count` items.

    Args:
        statistics: maps an index array `(count,)` (which items, with repetition) to named numbers;
            all of them are computed on the same resamples, so paired statistics stay paired.
        count: the items (test videos) to resample.
        seed: the resampling generator's seed.
        samples: resamples (1000).
        confidence: the interval's coverage (0.95).

    Returns:
        name → (low, high), NaN draws ignored.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(samples):
        for name, value in statistics(rng.integers(0, count, count)).items():
            draws.setdefault(name, []).append(value)
    tail = (1 - confidence) / 2 * 100
    return {name: (float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))) for name, v in draws.items()}


def with_intervals(metrics: dict[str, float], intervals: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Flat metrics with `<name>_ci_low` / `<name>_ci_high` after each name that has an interval."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        out[name] = value
        if name in intervals:
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = intervals[name]
    return out


def ceiling_flags(metrics: dict[str, float], count: int) -> dict[str, str]:
    """Flags for bootstrap intervals of width 0: at a ceiling or floor the resamples cannot vary, and
    [1.0, 1.0] is not certainty.

    Args:
        metrics: flat metrics with `<name>_ci_low` / `<name>_ci_high` (`with_intervals`).
        count: the items resampled (test videos); the flag gives the rule-of-three bound
            1 − 3/count (one-sided 95 %) that all-correct on `count` items does support.

    Returns:
        name → one line, for every metric whose interval has width 0.
    """
    flags = {}
    for name, value in metrics.items():
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        if low is None or high is None or not np.isfinite(value) or high - low > 0:
            continue
        if value >= 1.0:
            bound = f"; {count} items bound it only to ≥ {max(0.0, 1 - 3 / max(count, 1)):.3f} (rule of three, 95 %)"
            flags[name] = f"at ceiling: interval uninformative{bound}"
        elif value <= 0.0:
            bound = min(1.0, 3 / max(count, 1))
            flags[name] = f"at floor: interval uninformative; {count} items bound it only to ≤ {bound:.3f} (rule of three, 95 %)"
        else:
            flags[name] = "interval of width 0: every resample gave the same value (too few items to vary)"
    return flags


def safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is not positive."""
    return float(numerator / denominator) if denominator > 0 else float("nan")
