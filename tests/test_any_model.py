"""Every kind of architecture runs the diagnostics: static bias, Koopman eigenvalues, saliency.

One representative per kind of output (tokens with a class token, windowed tokens, two pathways, a
user's module), random weights saved as a third-party state dict under a wrapper prefix, at 32 px
and 8 frames, read through the model adapter exactly as `vdiag probe … --backbone NAME` reads them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdiag.console import set_quiet
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, Sampling
from vdiag.diagnostics.model import load_model
from vdiag.diagnostics.static_bias import static_bias
from vdiag.models.backbones import build_backbone
from vdiag.viz.eig import viz_eig
from vdiag.viz.saliency import viz_saliency

ARCHITECTURES = ["mvit_v2_s", "swin3d_t", "slowfast_r50", "mvit_base_16x4"]


@pytest.fixture(autouse=True)
def _quiet():
    set_quiet(True)
    yield
    set_quiet(False)


def _saved(name: str, path):
    torch.manual_seed(0)
    state = build_backbone(name).body.state_dict()
    torch.save({"state_dict": {f"module.backbone.{k}": v for k, v in state.items()}}, path)
    return path


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_diagnostic_runs_on_each_kind_of_architecture(name, tiny_synth, tmp_path):
    root, _ = tiny_synth
    path = _saved(name, tmp_path / f"{name}.pth")
    data = DataRef(str(root))
    sampling = Sampling(frames=8, stride=1, size=32, clips=1)
    bias = static_bias(Extractor(load_model(path, backbone=name), sampling, workers=0), data, target="bg_color").metrics
    assert 0.0 <= bias["acc_real"] <= 1.0 and np.isfinite(bias["sim_shuffled"])
    temporal = Extractor(load_model(path, backbone=name, keep_temporal=True), sampling, workers=0)
    eig = viz_eig(temporal, data, tmp_path / "eig", figure_format="svg")
    assert all(np.isfinite(v) for v in eig.metrics.values() if isinstance(v, float))
    saved = np.load(next((tmp_path / "eig").glob("*.npz")))
    assert any(array.size for array in saved.values())
    video = next((root / "videos" / "test").glob("*.mp4"))
    saliency = viz_saliency(Extractor(load_model(path, backbone=name), Sampling(8, 1, 32, 1)), video, tmp_path / "saliency", frames_shown=2)
    assert all(np.isfinite(v) for v in saliency.metrics.values())


def test_an_in_memory_module_runs_a_diagnostic_without_a_checkpoint(tiny_synth):
    """The Python route of docs/diagnosing-your-own-model.md: wrap a module, diagnose it."""
    from pathlib import Path

    from vdiag.diagnostics.model import DiagnosticModel
    from vdiag.models.backbones import VideoBackbone
    from vdiag.models.bodies import ModuleBody

    root, _ = tiny_synth
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 8, 3, padding=1), torch.nn.ReLU()).eval()
    model = DiagnosticModel(
        VideoBackbone("in-memory", ModuleBody(net, "in-memory"), embed_dim=8), Path("in-memory"), fingerprint="in-memory-v1"
    )
    metrics = static_bias(
        Extractor(model, Sampling(frames=8, stride=1, size=32, clips=1), workers=0), DataRef(str(root)), target="bg_color"
    ).metrics
    assert 0.0 <= metrics["acc_real"] <= 1.0 and np.isfinite(metrics["sim_reversed"])
