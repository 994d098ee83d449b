"""Linear probes on frozen features and bootstrap confidence intervals.

The probe is scikit-learn's multinomial `LogisticRegression` (L-BFGS, C = 1) after a
`StandardScaler`, with a fixed `random_state`: the usual frozen-feature linear evaluation, as
deterministic as the features. It trains on every clip of every training video (N·K samples) and
predicts a video by averaging the class probabilities of its K clips (the 10-clip test of
ViDiDi App. B.4 / DCLR §4.1).

At Kinetics scale (millions of clips × 2048 dimensions) scikit-learn's float64 copy and CPU solver
do not fit, so the same probe exists in torch (`TorchProbe`): the same standardisation (mean and
population standard deviation, a constant dimension scaled by 1), the same objective
(½‖W‖² + C · Σ cross-entropy, intercept not penalised; one weight vector for two classes, as
scikit-learn), minimised by full-batch L-BFGS (strong-Wolfe line search) in float32 on the features'
device (CUDA when available), the loss summed over blocks of rows so memory stays at the features
plus one block of logits. The backend is chosen per fit:

    sklearn   always scikit-learn (the reference)
    torch     always `TorchProbe`
    auto      scikit-learn below `AUTO_TORCH_ELEMENTS` training samples × dimensions, torch above

`vdiag probe … / eval linear --probe-backend` sets it for a command (`probe_backend`); results record
the backend used in `config.probe_backend`.

Confidence intervals are percentile bootstrap intervals over the test videos (1000 resamples,
95 %): a statistic is recomputed on resampled videos, so paired statistics (accuracy on real and
on static clips of the same videos, their ratio) are resampled together.
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vdiag.errors import VdiagError

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95
PROBE_BACKENDS = ("auto", "sklearn", "torch")
# auto: scikit-learn up to this many training samples × dimensions (UCF-101's 95k clips × 512 dims
# stay on scikit-learn, whose float64 copy is then ~0.4 GB), the torch probe above (Kinetics-400:
# 2.4M clips × 2048 dims)
AUTO_TORCH_ELEMENTS = 50_000_000
C_REGULARISATION = 1.0  # scikit-learn's default C, the probe's inverse L2 strength
STANDARDISE_ROWS = 8192  # rows per float64 block while standardising (bounds the temporaries)

_BACKEND: contextvars.ContextVar[tuple[str, str | None, list[str] | None]] = contextvars.ContextVar(
    "vdiag_probe_backend", default=("auto", None, None)
)


@contextmanager
def probe_backend(name: str = "auto", *, device: str | None = None) -> Iterator[list[str]]:
    """Within the block, `fit_probe` uses backend `name` on `device` unless a call names its own.

    Args:
        name: one of `PROBE_BACKENDS`.
        device: where the torch probe computes [cuda when available, else cpu].

    Yields:
        A list that receives the backend of every probe fit inside the block ("sklearn" / "torch").

    Raises:
        VdiagError: an unknown backend.
    """
    if name not in PROBE_BACKENDS:
        raise VdiagError(f"unknown probe backend {name!r}; choose one of: {', '.join(PROBE_BACKENDS)}")
    used: list[str] = []
    token = _BACKEND.set((name, device, used))
    try:
        yield used
    finally:
        _BACKEND.reset(token)


def choose_backend(name: str, samples: int, dims: int) -> str:
    """The backend a fit of `samples` × `dims` gets: `name` itself, or for "auto" torch above `AUTO_TORCH_ELEMENTS`."""
    if name != "auto":
        return name
    return "torch" if samples * dims > AUTO_TORCH_ELEMENTS else "sklearn"


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    max_iter: int = 1000,
    backend: str | None = None,
    device: str | None = None,
):
    """A standardised logistic-regression probe (the frozen-feature linear evaluation, DCLR §4.1).

    Args:
        features: `(N, C)` or per-clip `(N, K, C)`; every clip is a sample with its video's label.
        labels: `(N,)` integer classes.
        seed: the solver's `random_state`.
        max_iter: L-BFGS iterations (a probe that stops there is still used).
        backend: "sklearn", "torch" or "auto" [the enclosing `probe_backend`, else "auto"].
        device: the torch probe's device [the enclosing `probe_backend`'s, else cuda when available].

    Returns:
        The fitted probe: scikit-learn's pipeline (`StandardScaler` → `LogisticRegression`) or a
        `TorchProbe`; both have `classes_`, `predict_proba` and `predict`.

    Raises:
        VdiagError: the labels hold a single class; an unknown backend.
    """
    x, y = _samples(features, labels)
    if len(np.unique(y)) < 2:
        raise VdiagError("the training split has a single class; a probe needs at least two (check the split and --target)")
    default, default_device, used = _BACKEND.get()
    chosen = backend or default
    if chosen not in PROBE_BACKENDS:
        raise VdiagError(f"unknown probe backend {chosen!r}; choose one of: {', '.join(PROBE_BACKENDS)}")
    chosen = choose_backend(chosen, x.shape[0], x.shape[1])
    if used is not None:
        used.append(chosen)
    if chosen == "torch":
        return TorchProbe(max_iter=max_iter, device=device or default_device).fit(x, y)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C_REGULARISATION, max_iter=max_iter, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a probe at max_iter is still a probe
        probe.fit(x, y)
    return probe


class TorchProbe:
    """scikit-learn's standardised `LogisticRegression` (C = 1, L-BFGS) in torch, for features too large for it.

    Standardisation as `StandardScaler` (mean, population standard deviation, a constant dimension
    scaled by 1, statistics in float64); objective as `LogisticRegression`: C · Σᵢ CE(xᵢ) + ½‖W‖²
    (intercept free), here divided by N; multinomial softmax for three or more classes, one logistic
    weight vector for two. Full-batch L-BFGS (history 10, strong-Wolfe line search, as SciPy's
    L-BFGS-B that scikit-learn calls) in float32 on `device`, the loss and gradient summed over
    blocks of `block` rows.

    Attributes (after `fit`): `classes_` `(K,)`, `mean_` / `scale_` `(C,)`, `coef_` `(K or 1, C)`,
    `intercept_`, `n_iter_` (L-BFGS iterations), `device`.
    """

    def __init__(self, *, max_iter: int = 1000, device: str | None = None, block: int = 65536, tol: float = 1e-5):
        self.max_iter, self.block, self.tol = max_iter, block, tol
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def fit(self, x: np.ndarray, y: np.ndarray) -> TorchProbe:
        """Standardise and fit on `(N, C)` features and `(N,)` labels; returns self."""
        self.classes_, encoded = np.unique(y, return_inverse=True)
        with torch.inference_mode(False), torch.enable_grad():
            features = self._standardise(torch.as_tensor(np.asarray(x)), fit=True)
            target = torch.as_tensor(encoded, dtype=torch.long, device=self.device)
            count, width = features.shape
            outputs = 1 if len(self.classes_) == 2 else len(self.classes_)
            weight = torch.zeros(outputs, width, device=self.device, requires_grad=True)
            bias = torch.zeros(outputs, device=self.device, requires_grad=True)
            optimizer = torch.optim.LBFGS(
                [weight, bias],
                lr=1,
                max_iter=self.max_iter,
                max_eval=self.max_iter * 5 // 4,
                tolerance_grad=self.tol,
                tolerance_change=1e-12,
                history_size=10,
                line_search_fn="strong_wolfe",
            )

            def closure() -> torch.Tensor:
                optimizer.zero_grad()
                total = torch.zeros((), dtype=torch.float64, device=self.device)
                for start in range(0, count, self.block):
                    logits = features[start : start + self.block] @ weight.T + bias
                    part = self._loss(logits, target[start : start + self.block]) / count
                    part.backward()
                    total += part.detach().double()
                penalty = 0.5 * (weight * weight).sum() / (C_REGULARISATION * count)
                penalty.backward()
                return (total + penalty.detach().double()).float()

            optimizer.step(closure)
        self.n_iter_ = int(optimizer.state[weight].get("n_iter", 0))
        self.coef_, self.intercept_ = weight.detach(), bias.detach()
        return self

    @staticmethod
    def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:  # two classes: the logit of the second, as scikit-learn's binary model
            return torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="sum")
        return torch.nn.functional.cross_entropy(logits, target, reduction="sum")

    def _standardise(self, x: torch.Tensor, *, fit: bool = False) -> torch.Tensor:
        """`(N, C)` → standardised float32 on the device, block by block (statistics in float64)."""
        rows = STANDARDISE_ROWS  # float64 temporaries of this many rows only
        if fit:
            total = torch.zeros(x.shape[1], dtype=torch.float64, device=self.device)
            for start in range(0, len(x), rows):
                total += x[start : start + rows].to(self.device, torch.float64).sum(0)
            mean = total / len(x)
            square = torch.zeros_like(total)
            for start in range(0, len(x), rows):
                square += ((x[start : start + rows].to(self.device, torch.float64) - mean) ** 2).sum(0)
            scale = (square / len(x)).sqrt()
            scale[scale < 10 * torch.finfo(torch.float64).eps] = 1.0  # a constant dimension, as StandardScaler
            self.mean_, self.scale_ = mean, scale
        out = torch.empty(x.shape, dtype=torch.float32, device=self.device)
        for start in range(0, len(x), rows):
            block = x[start : start + rows].to(self.device, torch.float64)
            out[start : start + rows] = ((block - self.mean_) / self.scale_).float()
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """`(N, C)` → `(N, len(classes_))` float64 probabilities, columns in `classes_` order."""
        with torch.inference_mode():
            features = self._standardise(torch.as_tensor(np.asarray(x)))
            parts = []
            for start in range(0, len(features), self.block):
                logits = (features[start : start + self.block] @ self.coef_.T + self.intercept_).double()
                if logits.shape[1] == 1:
                    positive = torch.sigmoid(logits)
                    parts.append(torch.cat([1 - positive, positive], dim=1).cpu())
                else:
                    parts.append(torch.softmax(logits, dim=1).cpu())
        return torch.cat(parts).numpy() if parts else np.zeros((0, len(self.classes_)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """`(N, C)` → `(N,)` the most probable class (the first on a tie, as scikit-learn)."""
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


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
