"""`vdiag probe factors`: which generative factors of the synthetic data are linearly decodable?

The BOD-VCL claim (§1, the synthetic dataset of Fig. 5) is that v-CL learns one kind of semantics. On the synthetic dataset
every video has known static factors (background colour, foreground shape) and dynamic ones
(brightness change, trajectory). A linear probe per factor is trained on the `val` split, where all
factors are drawn independently (the `train` split confounds each dynamic factor with a static
one), and tested on `test`.

    acc_<factor>    top-1 of that factor's probe on test
    static_score    mean chance-normalised accuracy (acc − chance) / (1 − chance) of the static factors
    dynamic_score   the same for the dynamic factors
    (1 = decoded perfectly, 0 = at chance; chance = share of the most frequent value in test)
"""

from __future__ import annotations

import numpy as np

from vdiag.data.synthetic import DYNAMIC_FACTORS, STATIC_FACTORS
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, require_reading, sample_sizes
from vdiag.diagnostics.probe import bootstrap, ceiling_flags, fit_probe, majority_share, predict_proba, with_intervals
from vdiag.errors import VdiagError
from vdiag.results import Result


def normalised(accuracy: float, chance: float) -> float:
    """Chance-normalised accuracy (accuracy − chance) / (1 − chance): 1 = perfect, 0 = chance; NaN when chance is 1."""
    return (accuracy - chance) / (1 - chance) if chance < 1 else float("nan")


def factor_probe(extractor: Extractor, data: DataRef) -> Result:
    """Which generative factors of the synthetic data are linearly decodable? (BOD-VCL §1, Fig. 5)

    One linear probe per factor, fit on the `val` split (factors independent) and tested on `test`.

    Args:
        extractor: the model and its extraction settings (`extractor.seed` seeds probes and bootstrap).
        data: a vdiag synthetic dataset (`vdiag synth-dataset`).

    Returns:
        `Result` "probe factors"; metrics: `acc_<factor>` (top-1 in [0, 1] of that factor's probe),
        `static_score` / `dynamic_score` (mean chance-normalised accuracy of the static / dynamic
        factors: 1 = decoded perfectly, 0 = chance), `chance_<factor>` (share of its most frequent
        value); 95 % bootstrap intervals over test videos. details: `per_video` (test ids, 0/1 hits
        per factor), `feature_health`, `flags`.

    Raises:
        VdiagError: the dataset has no generative factors (not a synthetic dataset); collapsed features.
    """
    test_index = data.split("test")
    if not test_index.factor_values:
        raise VdiagError(f"{data.path} has no generative factors; `probe factors` needs a dataset made by `vdiag synth-dataset`")
    fit = extractor(data.split("val"), ["real"])["real"]
    test = extractor(test_index, ["real"])["real"]
    health = {split: require_reading(features, model=extractor.model, split=split) for split, features in (("val", fit), ("test", test))}
    correct, chance = {}, {}
    for name, values in test.factor_values.items():
        probe = fit_probe(fit.features, fit.factors[name], seed=extractor.seed)
        truth = test.factors[name]
        correct[name] = predict_proba(probe, test.features, len(values)).argmax(1) == truth
        chance[name] = majority_share(truth)
    static = [name for name in STATIC_FACTORS if name in correct]
    dynamic = [name for name in DYNAMIC_FACTORS if name in correct]

    def statistics(rows: np.ndarray) -> dict[str, float]:
        accuracy = {name: float(hits[rows].mean()) for name, hits in correct.items()}
        return {
            **{f"acc_{name}": value for name, value in accuracy.items()},
            "static_score": float(np.mean([normalised(accuracy[n], chance[n]) for n in static])),
            "dynamic_score": float(np.mean([normalised(accuracy[n], chance[n]) for n in dynamic])),
        }

    metrics = statistics(np.arange(len(test)))
    metrics.update({f"chance_{name}": value for name, value in chance.items()})
    metrics = with_intervals(metrics, bootstrap(statistics, len(test), seed=extractor.seed))
    return Result(
        command="probe factors",
        metrics=metrics,
        data=data.path,
        config={
            **extractor.describe(),
            "fit_split": "val",
            "test_split": "test",
            "fit_videos": len(fit),
            **sample_sizes(fit=fit, test=test),
            "data": data.describe(),
        },
        details={
            "static_factors": static,
            "dynamic_factors": dynamic,
            "factor_values": test.factor_values,
            "feature_health": health,
            "flags": ceiling_flags(metrics, len(test)),
            "per_video": {"video_ids": test.video_ids, **{f"correct_{name}": hits.astype(int).tolist() for name, hits in correct.items()}},
        },
    )
