"""Foreground masses are shares of raw, non-negative maps, each beside its chance level.

Known answers: a map that weighs every pixel equally scores exactly the foreground's area share;
a map that is zero off the foreground scores 1; a 1 % preference for the foreground moves the
mass by about 1 %, not to 1 (what min-max normalisation made of it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vdiag.diagnostics.features import Extractor, Sampling
from vdiag.diagnostics.model import DiagnosticModel
from vdiag.errors import VdiagError
from vdiag.models.backbones import VideoBackbone
from vdiag.viz.activation import foreground_mass, viz_activation


class Affine(nn.Module):
    """A one-channel feature map offset + gain · (mean over RGB of the normalised clip)."""

    def __init__(self, offset: float, gain: float):
        super().__init__()
        self.offset, self.gain = offset, gain

    def forward(self, clips):
        return self.offset + self.gain * clips.mean(dim=1, keepdim=True)


class Foreground(nn.Module):
    """Non-zero only on light pixels: the synthetic dataset's pale shapes."""

    def forward(self, clips):
        return torch.relu(clips.mean(dim=1, keepdim=True) - 1.0)


def _activation(tiny_synth, tmp_path, module, name):
    root, _ = tiny_synth
    model = DiagnosticModel(VideoBackbone(name, module, 1), Path(f"{name}.pt"), fingerprint=name)
    video = root / "videos" / "test" / "test_00001.mp4"
    return viz_activation(Extractor(model, Sampling(6, 1, 32, 1)), video, tmp_path / name, frames_shown=2).metrics


def test_foreground_mass_of_constructed_maps():
    rng = np.random.default_rng(0)
    mask = rng.random((4, 16, 16)) < 0.2
    assert foreground_mass(np.full(mask.shape, 3.0), mask) == pytest.approx(mask.mean(), abs=1e-12)
    assert foreground_mass(np.where(mask, rng.random(mask.shape), 0.0), mask) == pytest.approx(1.0)
    assert foreground_mass(np.where(mask, 0.0, 1.0), mask) == 0.0
    assert foreground_mass(np.zeros(mask.shape), mask) == 0.0
    with pytest.raises(VdiagError, match="non-negative"):
        foreground_mass(rng.normal(size=mask.shape), mask)


def test_uniform_map_scores_the_area_share_and_a_foreground_map_scores_one(tiny_synth, tmp_path):
    uniform = _activation(tiny_synth, tmp_path, Affine(1.0, 0.0), "uniform")
    for name in ("video", "static", "difference"):
        assert uniform[f"fg_mass_{name}"] == pytest.approx(uniform[f"fg_area_{name}"], rel=1e-5)
        assert 0 < uniform[f"fg_area_{name}"] < 0.5
    assert uniform["fg_area"] == uniform["fg_area_video"]
    # the difference's foreground is the union of two frames' masks: larger than one frame's
    assert uniform["fg_area_difference"] >= uniform["fg_area_video"] * 0.99
    foreground = _activation(tiny_synth, tmp_path, Foreground(), "foreground")
    assert foreground["fg_mass_video"] > 0.95 and foreground["fg_mass_static"] > 0.95


def test_a_slight_preference_moves_the_mass_slightly(tiny_synth, tmp_path):
    """1 + 0.01·x: the foreground's response is a few % larger; min-max made this fg_mass ≈ 1."""
    slight = _activation(tiny_synth, tmp_path, Affine(1.0, 0.01), "slight")
    assert slight["fg_area_video"] < slight["fg_mass_video"] < 1.1 * slight["fg_area_video"]


class Classifier(nn.Module):
    """A method-like holder of a linear classifier on a one-channel embedding."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(1, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.classifier.bias.zero_()


def test_saliency_masses_of_a_model_that_weighs_every_pixel_equally(tiny_synth, tmp_path):
    """y = mean of every pixel and channel: gradient saliency is uniform, so its mass is fg_area;
    integrated gradients is |x − baseline| times a constant, so its mass is fg_input_share (and
    above fg_area on pale shapes: the number measures input contrast as much as the model)."""
    from vdiag.viz.saliency import viz_saliency

    root, _ = tiny_synth
    model = DiagnosticModel(VideoBackbone("mean", Affine(0.0, 1.0), 1), Path("mean.pt"), method=Classifier(), fingerprint="mean")
    metrics = viz_saliency(
        Extractor(model, Sampling(6, 1, 32, 1)), root / "videos" / "test" / "test_00001.mp4", tmp_path, frames_shown=2
    ).metrics
    assert metrics["fg_mass_gradient"] == pytest.approx(metrics["fg_area"], rel=1e-4)
    assert metrics["fg_mass_integrated_gradients"] == pytest.approx(metrics["fg_input_share"], rel=1e-3)
    assert metrics["fg_input_share"] > metrics["fg_area"]
