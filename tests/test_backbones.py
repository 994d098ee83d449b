"""Backbones: the three outputs, keep-temporal, and weights from local files in common layouts."""

import pytest
import torch

from vdiag.checkpoint import save_checkpoint
from vdiag.errors import VdiagError
from vdiag.models import BACKBONES, build_backbone
from vdiag.models.weights import load_backbone_weights, match_prefix

# input side per backbone: small, but large enough for each network's pooling
SIDE = {"tiny": 32, "slow_r50": 64, "x3d_s": 64, "r2plus1d_r50": 64, "s3d": 64}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_outputs_and_keep_temporal(name):
    side = SIDE.get(name, 32)
    clips = torch.randn(1, 3, 8, side, side)
    for keep in (False, True):
        backbone = build_backbone(name, keep_temporal=keep).eval()
        with torch.no_grad():
            feature_map = backbone.feature_map(clips)
            pooled, per_time = backbone(clips), backbone.time_features(clips)
        assert feature_map.shape[:2] == (1, backbone.embed_dim)
        assert pooled.shape == (1, backbone.embed_dim)
        assert per_time.shape == (1, backbone.embed_dim, feature_map.shape[2])
        assert torch.allclose(pooled, per_time.mean(-1), atol=1e-5)
        if keep:
            assert per_time.shape[-1] == 8  # one feature per input frame


def test_keep_temporal_changes_no_weight_shapes():
    plain, kept = build_backbone("r2plus1d_18"), build_backbone("r2plus1d_18", keep_temporal=True)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in kept.state_dict().items()}


def test_tiny_is_small():
    assert sum(p.numel() for p in build_backbone("tiny").parameters()) < 1.5e6


def test_unknown_backbone():
    with pytest.raises(VdiagError, match="unknown backbone 'r50'"):
        build_backbone("r50")


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_torchvision_state_dict_with_ddp_prefix_and_head(tmp_path):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(weights=None, num_classes=7)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "ddp.pth")
    backbone = build_backbone("r3d_18")
    report = load_backbone_weights(backbone, tmp_path / "ddp.pth")
    assert report["prefix"] == "state_dict.module."
    assert report["ignored"] == 2  # fc.weight, fc.bias
    assert "prefix 'state_dict.module.'" in report["summary"] and "2 other entries ignored" in report["summary"]
    assert torch.equal(backbone.body.layer4[1].conv2[0].weight, model.layer4[1].conv2[0].weight)


def test_moco_layout_picks_the_query_encoder(tmp_path):
    torch.manual_seed(1)
    query, key = build_backbone("tiny"), build_backbone("tiny")
    state = {f"module.encoder_k.{k}": v for k, v in key.body.state_dict().items()}
    state |= {f"module.encoder_q.{k}": v for k, v in query.body.state_dict().items()}
    state["module.queue"] = torch.zeros(4, 4)
    torch.save({"state_dict": state}, tmp_path / "moco.pth.tar")
    target = build_backbone("tiny")
    report = load_backbone_weights(target, tmp_path / "moco.pth.tar")
    assert report["prefix"] == "state_dict.module.encoder_q."
    assert "online network" in report["summary"] and "encoder_k" in report["summary"]
    assert _same_weights(target.body, query.body)


def test_dino_layout_picks_the_teacher_and_says_so(tmp_path):
    torch.manual_seed(4)
    student, teacher = build_backbone("tiny"), build_backbone("tiny")
    state = {
        "student": {f"module.backbone.{k}": v for k, v in student.body.state_dict().items()}
        | {"module.head.last_layer.weight": torch.ones(3, 3)},
        "teacher": {f"backbone.{k}": v for k, v in teacher.body.state_dict().items()} | {"head.last_layer.weight": torch.ones(3, 3)},
        "epoch": 100,
    }
    torch.save(state, tmp_path / "dino.pth")
    target = build_backbone("tiny")
    report = load_backbone_weights(target, tmp_path / "dino.pth")
    assert report["prefix"] == "teacher.backbone."
    assert "teacher" in report["copy"] and "DINO" in report["summary"]
    assert _same_weights(target.body, teacher.body) and not _same_weights(target.body, student.body)
    # without DINO's layout the online copy still wins over a 'teacher' one (mean-teacher style files)
    flat = {f"model.{k}": v for k, v in student.body.state_dict().items()} | {
        f"teacher.{k}": v for k, v in teacher.body.state_dict().items()
    }
    torch.save(flat, tmp_path / "mean_teacher.pth")
    assert load_backbone_weights(target, tmp_path / "mean_teacher.pth")["prefix"] == "model."
    assert _same_weights(target.body, student.body)


def test_safetensors_files_load_by_suffix_or_header(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(5)
    source = build_backbone("tiny")
    tensors = {f"encoder.{k}": v.contiguous() for k, v in source.body.state_dict().items()}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    target = build_backbone("tiny")
    assert load_backbone_weights(target, tmp_path / "model.safetensors")["prefix"] == "encoder."
    assert _same_weights(target.body, source.body)
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "model.safetensors").read_bytes())
    assert _same_weights(build_backbone("tiny", weights=str(tmp_path / "renamed.bin")).body, source.body)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(VdiagError, match="not a complete safetensors file"):
        build_backbone("tiny", weights=str(tmp_path / "cut.safetensors"))


def test_vdiag_checkpoint_gives_the_online_backbone(tmp_path):
    from vdiag.methods import build_method

    torch.manual_seed(2)
    method = build_method("byol", build_backbone("tiny"), projector_hidden=16, predictor_hidden=16)
    method.momentum_backbone.body.stem[0].weight.data.add_(1.0)  # make the copies differ
    save_checkpoint(tmp_path / "run.pt", config={}, model=method.state_dict(), position={})
    target = build_backbone("tiny", weights=str(tmp_path / "run.pt"))
    assert _same_weights(target.body, method.backbone.body)


def test_pytorchvideo_hub_layout(tmp_path):
    from pytorchvideo.models import hub

    torch.manual_seed(3)
    net = hub.x3d_s(pretrained=False)
    torch.save({"model_state": net.state_dict()}, tmp_path / "x3d.pyth")
    backbone = build_backbone("x3d_s", weights=str(tmp_path / "x3d.pyth"))
    assert torch.equal(backbone.body.blocks[0].conv.conv_t.weight, net.blocks[0].conv.conv_t.weight)


def test_mismatched_weights_are_clear_errors(tmp_path):
    torch.save(build_backbone("tiny").body.state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(VdiagError, match="no weights for backbone 'r3d_18'"):
        build_backbone("r3d_18", weights=str(tmp_path / "tiny.pt"))
    from vdiag.models.tiny import TinyVideoNet

    torch.save(TinyVideoNet(widths=(8, 16, 32, 64)).state_dict(), tmp_path / "narrow.pt")
    with pytest.raises(VdiagError, match="shape mismatches"):
        build_backbone("tiny", weights=str(tmp_path / "narrow.pt"))
    partial = {k: v for k, v in build_backbone("tiny").body.state_dict().items() if not k.startswith("stages.3")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(VdiagError, match="parameters are missing"):
        build_backbone("tiny", weights=str(tmp_path / "partial.pt"))


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    import argparse

    # a training script's arguments pickled next to the weights: not loadable with weights_only
    torch.save({"args": argparse.Namespace(lr=0.1), "model": build_backbone("tiny").body.state_dict()}, tmp_path / "pickled.pt")
    with pytest.raises(VdiagError, match="pickled Python objects") as refused:
        build_backbone("tiny", weights=str(tmp_path / "pickled.pt"))
    # the two lines the message offers extract the weights (run here, where the file is trusted)
    snippet = str(refused.value).split(":\n", 1)[1]
    assert len(snippet.splitlines()) == 2
    exec(snippet.replace("    ", "", 1).replace("\n    ", "\n"), {})
    assert (tmp_path / "pickled.weights.pt").is_file()
    build_backbone("tiny", weights=str(tmp_path / "pickled.weights.pt"))
    # a whole pickled module is extracted the same way
    torch.save(build_backbone("tiny").body, tmp_path / "module.pt")
    with pytest.raises(VdiagError, match="pickled Python objects") as refused:
        build_backbone("tiny", weights=str(tmp_path / "module.pt"))
    exec(str(refused.value).split(":\n", 1)[1].replace("    ", ""), {})
    build_backbone("tiny", weights=str(tmp_path / "module.weights.pt"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(VdiagError, match="not a complete PyTorch file"):
        build_backbone("tiny", weights=str(tmp_path / "notes.txt"))
    with pytest.raises(VdiagError, match="does not exist"):
        build_backbone("tiny", weights=str(tmp_path / "missing.pt"))


def test_match_prefix_prefers_the_prefix_covering_most_keys():
    model_keys = ["a.weight", "b.weight"]
    assert match_prefix(["x.a.weight", "x.b.weight", "y.a.weight"], model_keys) == ("x.", 2)
    assert match_prefix(["a.weight", "b.weight"], model_keys) == ("", 2)


# ---------------------------------------------------------------- new architectures: the body is the library's own network


def _pre_head_tokens(model, norm, clips):
    """The library's own forward pass, caught at its final norm (tokens, class token first)."""
    caught = {}
    handle = norm.register_forward_hook(lambda module, inputs, output: caught.setdefault("tokens", output))
    with torch.no_grad():
        model(clips)
    handle.remove()
    return caught["tokens"]


@pytest.mark.parametrize("builder", ["mvit_v1_b", "mvit_v2_s"])
def test_torchvision_mvit_tokens_are_the_library_tokens(builder):
    """At the model's native size the feature map is the library's own token sequence laid on its grid."""
    import torchvision

    from vdiag.models.bodies import TorchvisionMViTBody

    torch.manual_seed(6)
    model = getattr(torchvision.models.video, builder)(weights=None).eval()
    encoding = model.pos_encoding  # make 4×32×32 the native size (token grid 2×8×8) of this instance
    encoding.temporal_size, encoding.spatial_size = 2, (8, 8)
    if encoding.spatial_pos is not None:
        encoding.spatial_pos = torch.nn.Parameter(torch.randn(64, encoding.spatial_pos.shape[1]))
        encoding.temporal_pos = torch.nn.Parameter(torch.randn(2, encoding.temporal_pos.shape[1]))
    clips = torch.randn(2, 3, 4, 32, 32)
    tokens = _pre_head_tokens(model, model.norm, clips)
    with torch.no_grad():
        feature_map = TorchvisionMViTBody(model)(clips)
    b, c, t, h, w = feature_map.shape
    assert (t, h, w) == (2, 1, 1) and tokens.shape == (2, 1 + t * h * w, c)
    torch.testing.assert_close(feature_map.flatten(2).transpose(1, 2), tokens[:, 1:])
    # another input size: position tables are interpolated, the grid follows the input
    with torch.no_grad():
        assert TorchvisionMViTBody(model)(torch.randn(1, 3, 8, 64, 64)).shape == (1, c, 4, 2, 2)


def test_pytorchvideo_mvit_tokens_are_the_library_tokens():
    from pytorchvideo.models import hub

    from vdiag.models.bodies import PyTorchVideoMViTBody

    torch.manual_seed(7)
    model = hub.mvit_base_16x4(pretrained=False).eval()
    encoding = model.cls_positional_encoding  # make 4×32×32 the native size (token grid 2×8×8) of this instance
    encoding._patch_embed_shape, encoding.num_spatial_patch, encoding.num_temporal_patch = (2, 8, 8), 64, 2
    encoding.pos_embed_spatial = torch.nn.Parameter(torch.randn(1, 64, 96))
    encoding.pos_embed_temporal = torch.nn.Parameter(torch.randn(1, 2, 96))
    clips = torch.randn(2, 3, 4, 32, 32)
    tokens = _pre_head_tokens(model, model.norm_embed, clips)
    with torch.no_grad():
        feature_map = PyTorchVideoMViTBody(model)(clips)
    torch.testing.assert_close(feature_map.flatten(2).transpose(1, 2), tokens[:, 1:])
    with torch.no_grad():
        assert PyTorchVideoMViTBody(model)(torch.randn(1, 3, 8, 64, 64)).shape[2] == 4


def test_swin_feature_map_pools_to_the_library_embedding():
    import torchvision

    torch.manual_seed(8)
    model = torchvision.models.video.swin3d_t(weights=None).eval()
    caught = {}
    model.head.register_forward_pre_hook(lambda module, inputs: caught.setdefault("pooled", inputs[0]))
    clips = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        model(clips)
        backbone = build_backbone("swin3d_t").eval()
        backbone.body.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head")})
        torch.testing.assert_close(backbone(clips), caught["pooled"])


def test_slowfast_packing_and_pooling_match_pytorchvideo():
    """Pooled embedding = pytorchvideo's head input with its own packing (slow = every α-th frame)."""
    from pytorchvideo.models import hub

    torch.manual_seed(9)
    model = hub.slowfast_r50(pretrained=False, head_pool_kernel_sizes=((2, 2, 2), (8, 2, 2)), head_activation=None).eval()
    caught = {}
    model.blocks[-1].proj.register_forward_pre_hook(lambda module, inputs: caught.setdefault("pooled", inputs[0]))
    clips = torch.randn(2, 3, 8, 64, 64)
    slow = clips[:, :, torch.linspace(0, 7, 2).long()]
    with torch.no_grad():
        model([slow, clips])
        backbone = build_backbone("slowfast_r50").eval()
        backbone.body.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("blocks.6")})
        feature_map = backbone.feature_map(clips)
        torch.testing.assert_close(backbone(clips), caught["pooled"].reshape(2, -1))
    assert feature_map.shape == (2, 2304, 8, 2, 2)
    assert torch.equal(feature_map[:, :2048, 0], feature_map[:, :2048, 3])  # one slow step covers α = 4 fast steps
    with torch.no_grad():  # frame differences have T − 1 frames: ⌈7/4⌉ = 2 slow frames, as the fusion expects
        assert backbone.feature_map(torch.randn(1, 3, 7, 64, 64)).shape == (1, 2304, 7, 2, 2)


def test_x3d_sizes_are_separate_backbones():
    sampling = {name: BACKBONES[name].default_sampling for name in ("x3d_xs", "x3d_s", "x3d_m", "x3d_l")}
    assert [(s["frames"], s["stride"], s["size"]) for s in sampling.values()] == [(4, 12, 182), (13, 6, 182), (16, 5, 256), (16, 5, 356)]
    assert all(set(spec.default_sampling) >= {"frames", "stride", "size", "mean", "std"} for spec in BACKBONES.values())
    # X3D-L is deeper: an X3D-S file does not fit it
    assert len(build_backbone("x3d_l").body.state_dict()) > len(build_backbone("x3d_s").body.state_dict())


# ---------------------------------------------------------------- --backbone package.module:builder

USER_MODULE = """
import torch
from torch import nn

class Pooled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, padding=1, stride=(2, 2, 2))
    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3, 4))

class Mapped(Pooled):
    embed_dim = 6
    def forward(self, x):
        return self.conv(x)

def pooled():
    return Pooled()

def mapped():
    return Mapped()

def not_a_module():
    return 3
"""


def test_module_builder_backbones(tmp_path, monkeypatch):
    (tmp_path / "user_video_models.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    clips = torch.randn(2, 3, 8, 16, 16)
    pooled = build_backbone("user_video_models:pooled")
    assert pooled.embed_dim == 6 and pooled.feature_map(clips).shape == (2, 6, 1, 1, 1)
    torch.testing.assert_close(pooled(clips), pooled.body.model(clips))
    mapped = build_backbone("user_video_models:mapped", keep_temporal=True)
    assert mapped.time_features(clips).shape == (2, 6, 8)  # the temporal stride was removed
    torch.save({"state_dict": pooled.body.model.state_dict()}, tmp_path / "user.pt")
    loaded = build_backbone("user_video_models:mapped", weights=str(tmp_path / "user.pt"))
    assert torch.equal(loaded.body.model.conv.weight, pooled.body.model.conv.weight)
    with pytest.raises(VdiagError, match="not an nn.Module"):
        build_backbone("user_video_models:not_a_module")
    with pytest.raises(VdiagError, match="has no callable 'missing'"):
        build_backbone("user_video_models:missing")
    with pytest.raises(VdiagError, match="cannot import"):
        build_backbone("no_such_package_xyz:build")


# ---------------------------------------------------------------- PySlowFast checkpoints


def _pyslowfast_names(two_pathways: bool) -> list[str]:
    """PySlowFast's parameter names for Slow-R50 / SlowFast-R50, in its modules' registration order
    (video_model_builder: s1, s1_fuse, s2, s2_fuse, …; ResStage: pathway p's blocks res0…; ResBlock:
    branch1, branch1_bn, branch2 = a, a_bn, b, b_bn, c, c_bn; head.projection)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    pathways = (0, 1) if two_pathways else (0,)
    names = []
    for p in pathways:
        names += [f"s1.pathway{p}_stem.conv.weight"] + [f"s1.pathway{p}_stem.bn.{b}" for b in bn]
    if two_pathways:
        names += ["s1_fuse.conv_f2s.weight"] + [f"s1_fuse.bn.{b}" for b in bn]
    for stage, depth in zip((2, 3, 4, 5), (3, 4, 6, 3)):
        for p in pathways:
            for i in range(depth):
                block = f"s{stage}.pathway{p}_res{i}"
                if i == 0:
                    names += [f"{block}.branch1.weight"] + [f"{block}.branch1_bn.{b}" for b in bn]
                for part in "abc":
                    names += [f"{block}.branch2.{part}.weight"] + [f"{block}.branch2.{part}_bn.{b}" for b in bn]
        if two_pathways and stage < 5:
            names += [f"s{stage}_fuse.conv_f2s.weight"] + [f"s{stage}_fuse.bn.{b}" for b in bn]
    return names + ["head.projection.weight", "head.projection.bias"]


@pytest.mark.parametrize("name", ["slow_r50", "slowfast_r50"])
def test_pyslowfast_checkpoints_convert_on_load(name, tmp_path):
    """A state dict in PySlowFast's naming (tensors paired with pytorchvideo's by registration order:
    the shapes agree at every one of the ~300 positions) loads into the pytorchvideo backbone."""
    from pytorchvideo.models import hub

    torch.manual_seed(10)
    reference = getattr(hub, name)(pretrained=False)
    tensors = list(reference.state_dict().values())
    names = _pyslowfast_names(two_pathways=name == "slowfast_r50")
    assert len(names) == len(tensors)
    state = {f"module.{key}": tensor for key, tensor in zip(names, tensors)}
    torch.save({"model_state": state, "epoch": 200, "cfg": "MODEL:\n  ARCH: slow\n"}, tmp_path / "pyslowfast.pyth")
    backbone = build_backbone(name)
    report = load_backbone_weights(backbone, tmp_path / "pyslowfast.pyth")
    assert report["converted"] == "pyslowfast" and "PySlowFast" in report["summary"] and report["prefix"] == "model_state.module."
    assert report["ignored"] == 2  # the classifier
    for key, value in backbone.body.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key
    with pytest.raises(VdiagError, match="PySlowFast's parameter names"):
        build_backbone("r3d_18", weights=str(tmp_path / "pyslowfast.pyth"))
