"""The similarity readings of `probe static-bias` carry a measured chance level (the same cosine
against the view of an unrelated video) with an interval, like every other number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_koopman_static import TimeBlind

from vdiag.console import set_quiet
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, Sampling
from vdiag.diagnostics.model import DiagnosticModel
from vdiag.diagnostics.static_bias import centred_similarity, static_bias, unrelated_videos
from vdiag.models.backbones import VideoBackbone


def test_unrelated_videos_are_never_the_video_itself():
    for count in (2, 3, 64):
        others = unrelated_videos(count, seed=1)
        assert len(others) == count and (others != np.arange(count)).all() and others.min() >= 0 and others.max() < count
        np.testing.assert_array_equal(others, unrelated_videos(count, seed=1))
    assert len(set(unrelated_videos(64, seed=1).tolist())) > 32  # spread over the videos, not a shift


def test_chance_is_near_zero_for_unrelated_random_clips():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 2, 16))
    centre = real.reshape(-1, 16).mean(0)
    chance = centred_similarity(real, real[unrelated_videos(400)], centre).mean()
    assert abs(chance) < 0.03 and centred_similarity(real, real, centre).mean() == pytest.approx(1.0)


def test_a_time_blind_model_is_at_one_and_far_above_its_chance_level(tiny_synth):
    root, _ = tiny_synth
    set_quiet(True)
    model = DiagnosticModel(VideoBackbone("blind", TimeBlind(), 4, keep_temporal=True), Path("blind.pt"), fingerprint="blind-sim")
    metrics = static_bias(Extractor(model, Sampling(8, 1, 32, 2), workers=0), DataRef(str(root)), target="bg_color").metrics
    set_quiet(False)
    for view in ("static", "shuffled", "reversed"):
        chance = f"sim_{view}_chance"
        assert {chance, f"{chance}_ci_low", f"{chance}_ci_high"} <= set(metrics)
        assert metrics[f"{chance}_ci_low"] <= metrics[chance] <= metrics[f"{chance}_ci_high"]
    assert metrics["sim_shuffled"] == pytest.approx(1.0) and metrics["sim_reversed"] == pytest.approx(1.0)  # blind to order
    assert metrics["sim_shuffled_chance_ci_high"] < 0.9  # another video's clip is not the same clip
