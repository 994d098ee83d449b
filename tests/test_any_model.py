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


# ---------------------------------------------------------------- PySlowFast I3D / C2D checkpoints

# PySlowFast's video_model_builder._TEMPORAL_KERNEL_BASIS: stem, then res2…res5 (cycled over a stage's blocks)
_TEMPORAL_KERNELS = {"i3d_r50": ([5], [3], [3, 1], [3, 1], [1, 3]), "c2d_r50": ([1], [1], [1], [1], [1])}


def _pyslowfast_resnet(arch: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of PySlowFast's ResNet-50 (MODEL.ARCH i3d / c2d) in registration order, from its
    builder's rules alone: stem 64 channels, stages of 3, 4, 6, 3 bottlenecks (inner 64·2^k, out 256·2^k),
    temporal kernels of `_TEMPORAL_KERNEL_BASIS` on each bottleneck's first convolution, a 400-way head."""
    stem, *stages = _TEMPORAL_KERNELS[arch]

    def bn(name: str, channels: int) -> list[tuple[str, tuple[int, ...]]]:
        stats = [(f"{name}.{b}", (channels,)) for b in ("weight", "bias", "running_mean", "running_var")]
        return stats + [(f"{name}.num_batches_tracked", ())]

    names = [("s1.pathway0_stem.conv.weight", (64, 3, stem[0], 7, 7)), *bn("s1.pathway0_stem.bn", 64)]
    width = 64
    for k, (depth, basis) in enumerate(zip((3, 4, 6, 3), stages)):
        inner, out = 64 * 2**k, 256 * 2**k
        kernels = (basis * depth)[:depth]
        for i in range(depth):
            block = f"s{k + 2}.pathway0_res{i}"
            if i == 0:
                names += [(f"{block}.branch1.weight", (out, width, 1, 1, 1)), *bn(f"{block}.branch1_bn", out)]
            names += [
                (f"{block}.branch2.a.weight", (inner, width if i == 0 else out, kernels[i], 1, 1)),
                *bn(f"{block}.branch2.a_bn", inner),
            ]
            names += [(f"{block}.branch2.b.weight", (inner, inner, 1, 3, 3)), *bn(f"{block}.branch2.b_bn", inner)]
            names += [(f"{block}.branch2.c.weight", (out, inner, 1, 1, 1)), *bn(f"{block}.branch2.c_bn", out)]
        width = out
    return names + [("head.projection.weight", (400, 2048)), ("head.projection.bias", (400,))]


@pytest.mark.parametrize("name", ["i3d_r50", "c2d_r50"])
def test_pyslowfast_i3d_and_c2d_checkpoints_convert_on_load(name, tmp_path):
    """A state dict in PySlowFast's naming and shapes loads into pytorchvideo's i3d_r50 / c2d_r50: the
    shapes PySlowFast's rules give agree with pytorchvideo's at every position, and every tensor lands
    where pytorchvideo registers it (blocks.2 is the parameterless pool, so s3 → blocks.3)."""
    from pytorchvideo.models import hub

    from vdiag.errors import VdiagError
    from vdiag.models.weights import load_backbone_weights

    torch.manual_seed(11)
    reference = getattr(hub, name)(pretrained=False).state_dict()
    names = _pyslowfast_resnet(name.split("_")[0] + "_r50")
    assert [shape for _, shape in names] == [tuple(t.shape) for t in reference.values()]
    state = {f"module.{key}": tensor for (key, _), tensor in zip(names, reference.values())}
    torch.save({"model_state": state, "epoch": 196}, tmp_path / f"{name}.pyth")
    backbone = build_backbone(name)
    report = load_backbone_weights(backbone, tmp_path / f"{name}.pyth")
    assert report["converted"] == "pyslowfast" and report["ignored"] == 2  # the classifier
    for key, value in backbone.body.state_dict().items():
        assert torch.equal(value, reference[key]), key
    state["module.s3.pathway0_nonlocal1.conv_theta.weight"] = torch.zeros(256, 512, 1, 1, 1)  # I3D NLN: refused, not half-loaded
    torch.save({"model_state": state}, tmp_path / "nln.pyth")
    with pytest.raises(VdiagError, match="non-local"):
        load_backbone_weights(build_backbone(name), tmp_path / "nln.pyth")
