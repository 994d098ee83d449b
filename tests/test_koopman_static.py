"""Koopman numbers that cannot mislead: figures for features that do not move, a static measure
that ranks by how static a trajectory is, and a warning when the shared fit is exact."""

from __future__ import annotations

import numpy as np
import pytest

from vdiag.viz.eig import clip_eigenvalues, plot_eigenvalues


@pytest.mark.parametrize("kind", ["constant", "one value", "two values"])
def test_eigenvalue_figure_draws_features_that_do_not_move(kind):
    """A time-blind model's clips have eigenvalues equal to 1 up to ~1e-16: the histograms used to
    raise "Too many bins for data range" on exactly the model the figure exists to show."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    if kind == "constant":
        per_frame = np.repeat(rng.random((12, 1, 35)), 8, axis=1)  # (clips, T, C), the same at every step
        eigenvalues, _ = clip_eigenvalues(per_frame)
        assert len(eigenvalues) == 12 and np.abs(eigenvalues - 1).max() < 1e-9
    else:
        eigenvalues = np.array([1.0 + 0j] if kind == "one value" else [0.5 + 0j] * 3 + [1.0 + 0j] * 4)
    figure = plot_eigenvalues(eigenvalues, title=kind)
    modulus = figure.axes[1]
    counts = [patch.get_height() for patch in modulus.patches]
    assert sum(counts) == len(eigenvalues)  # every eigenvalue is in the |λ| histogram
    plt.close(figure)
