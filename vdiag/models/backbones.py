"""One interface over the video backbones vdiag trains and diagnoses.

Every backbone is a `VideoBackbone` wrapping the library's own model without its classifier, under
the attribute `body`, so that the library's parameter names are kept (`body.layer1.0.conv1.0.weight`
for torchvision, `body.blocks.1.res_blocks…` for pytorchvideo) and its published checkpoints load
with only a prefix change. The families: vdiag's `tiny`; torchvision's video ResNets, S3D, MViT and
Video Swin; pytorchvideo's ResNets, SlowFast, X3D, CSN and MViT (`BACKBONES`, each with the clips its
published weights take, `default_sampling`); a local Hugging Face folder (`build_huggingface_backbone`);
any module of yours (`build_module_backbone`). Two-pathway and token models are made to fit the
contract in `vdiag.models.bodies` (docs/backbones.md says what their outputs mean). It offers the
three outputs of the design's backbone contract:

- `feature_map(x)`: `(B, C', T', H', W')`, the last stage (a token model's tokens laid on their grid);
- `forward(x)` / `embed(x)`: the pooled embedding `(B, C')` (global average over time and space);
- `time_features(x)`: `(B, C', T'')`, spatially pooled, one vector per time step.

`keep_temporal=True` removes every temporal stride (convolutions and pools), as the BOD-VCL authors
do with R(2+1)D-18, so that T'' equals the number of input frames, which Koopman analysis needs.
Weight shapes do not change, so the same checkpoint loads either way.

Two training options change how the body runs, never what it computes (docs/training.md):
`set_channels_last_3d` (NDHWC memory format for 3-D CNNs) and `set_activation_checkpointing` (each
block's activations recomputed in backward, Chen et al. 2016, `torch.utils.checkpoint`).

Builders take plain keyword arguments and nothing downloads: weights come from local files only
(`load_backbone_weights`).

Example:
    >>> backbone = build_backbone("r3d_18", keep_temporal=True)
    >>> backbone.time_features(torch.zeros(1, 3, 8, 112, 112)).shape
    torch.Size([1, 512, 8])
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from vdiag.errors import VdiagError
from vdiag.models.bodies import ModuleBody, PyTorchVideoMViTBody, SlowFastBody, SwinBody, TorchvisionMViTBody
from vdiag.models.huggingface import is_huggingface_folder
from vdiag.models.tiny import TinyVideoNet

_TOKEN_BODIES = (TorchvisionMViTBody, SwinBody, PyTorchVideoMViTBody)


class VideoBackbone(nn.Module):
    """A video model without its classifier: feature map, pooled embedding, per-time-step features.

    Args:
        name: the builder name (recorded in checkpoints).
        body: the library model with its head removed; `body(x)` gives the feature map.
        embed_dim: C', the channel count of the feature map.
        keep_temporal: whether temporal strides were removed.
    """

    def __init__(self, name: str, body: nn.Module, embed_dim: int, keep_temporal: bool = False):
        super().__init__()
        self.name = name
        self.body = body
        self.embed_dim = embed_dim
        self.keep_temporal = keep_temporal
        self.default_sampling: dict | None = None  # the clips its published weights take (BackboneSpec.default_sampling)
        self.channels_last_3d = False
        self.checkpointed_blocks: list[nn.Module] | None = None  # set by `set_activation_checkpointing`

    def feature_map(self, clips: torch.Tensor, recompute: bool | None = None) -> torch.Tensor:
        """(B, 3, T, H, W) → (B, C', T', H', W'): the last stage, or the last layer's tokens on their grid.

        Args:
            clips: the input clips.
            recompute: for this call, recompute each block's activations in backward (True) or keep
                them (False); None follows `set_activation_checkpointing`. Only in training with
                gradients enabled.

        Raises:
            VdiagError: `recompute=True` for a body without known blocks (`body_blocks`).
        """
        if self.channels_last_3d and clips.dim() == 5:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        blocks = self.checkpointed_blocks if recompute is None else (self._recompute_blocks() if recompute else None)
        if blocks and self.training and torch.is_grad_enabled():
            for block in blocks:
                clips = checkpoint(block, clips, use_reentrant=False, context_fn=partial(_recompute_contexts, block))
            return clips
        return self.body(clips)

    def set_channels_last_3d(self, enabled: bool = True) -> VideoBackbone:
        """Weights and inputs in the channels-last (N, T, H, W, C) memory format (cuDNN's fast 3-D kernels).

        Raises:
            VdiagError: a token model (MViT, Video Swin, Hugging Face): its attention layers gain nothing.
        """
        if enabled and (isinstance(self.body, _TOKEN_BODIES) or self.name.startswith(("mvit", "swin")) or is_huggingface_folder(self.name)):
            raise VdiagError(f"train.channels_last_3d is for 3-D CNN backbones; {self.name} is a token model: set it to false")
        self.channels_last_3d = bool(enabled)
        return self.to(memory_format=torch.channels_last_3d if enabled else torch.contiguous_format)

    def _recompute_blocks(self) -> list[nn.Module]:
        blocks = body_blocks(self.body)
        if not blocks:
            raise VdiagError(
                f"recomputing activations supports tiny, torchvision's video ResNets and S3D, and pytorchvideo's "
                f"single-pathway networks; {self.name} is not one"
            )
        return blocks

    def set_activation_checkpointing(self, enabled: bool = True) -> VideoBackbone:
        """Recompute each block's activations in backward instead of keeping them (training only).

        Gradients and batch-norm statistics are those of the plain forward: the recomputation restores
        the running statistics it updates a second time.

        Raises:
            VdiagError: a body whose forward is not a sequence of blocks vdiag knows (`body_blocks`).
        """
        blocks = body_blocks(self.body) if enabled else None
        if enabled and not blocks:
            raise VdiagError(
                f"train.activation_checkpointing supports tiny, torchvision's video ResNets and S3D, and pytorchvideo's "
                f"single-pathway networks; {self.name} is not one: set it to false"
            )
        self.checkpointed_blocks = blocks
        return self

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) → pooled embedding (B, C')."""
        return self.feature_map(clips).mean(dim=(2, 3, 4))

    embed = forward

    def time_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) → (B, C', T''): one vector per time step (T'' = T with keep_temporal)."""
        return self.feature_map(clips).mean(dim=(3, 4))


class _VideoResNetBody(nn.Module):
    """torchvision's VideoResNet (r3d_18, r2plus1d_18, mc3_18) up to layer4, names unchanged."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.stem, self.layer1, self.layer2 = model.stem, model.layer1, model.layer2
        self.layer3, self.layer4 = model.layer3, model.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class _S3DBody(nn.Module):
    """torchvision's S3D `features` (names unchanged: `features.…`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.features = model.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class _PyTorchVideoBody(nn.Module):
    """A pytorchvideo `Net` without its head block (names unchanged: `blocks.0…`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(list(model.blocks)[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def body_blocks(body: nn.Module) -> list[nn.Module] | None:
    """The blocks whose composition is `body`'s forward (checkpointing units), or None for another body."""
    if isinstance(body, TinyVideoNet):
        return [body.stem, *body.stages]
    if isinstance(body, _VideoResNetBody):
        return [body.stem, *body.layer1, *body.layer2, *body.layer3, *body.layer4]
    if isinstance(body, _PyTorchVideoBody):
        return list(body.blocks)
    if isinstance(body, _S3DBody):
        return list(body.features)
    return None


def _recompute_contexts(block: nn.Module):
    """(forward context, recompute context) for `torch.utils.checkpoint`: the recomputation keeps BN statistics."""
    return nullcontext(), _batchnorm_statistics_kept(block)


@contextmanager
def _batchnorm_statistics_kept(module: nn.Module):
    """Batch-norm running statistics of `module` as they were on entry, whatever runs inside.

    Their version counters too: a pass of the same layers that was not checkpointed saved these
    buffers for its backward, and they are back to the very values it saved.
    """
    saved = [
        (buffer, buffer.detach().clone())
        for m in module.modules()
        if isinstance(m, _BatchNorm)
        for buffer in (m.running_mean, m.running_var, m.num_batches_tracked)
        if buffer is not None
    ]
    with torch.autograd._unsafe_preserve_version_counter(tuple(buffer for buffer, _ in saved)):
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, value in saved:
                    buffer.copy_(value)


def _torchvision(builder_name: str) -> Callable[[], tuple[nn.Module, int]]:
    def build() -> tuple[nn.Module, int]:
        import torchvision.models.video as video_models

        model = getattr(video_models, builder_name)(weights=None)
        if builder_name == "s3d":
            return _S3DBody(model), 1024
        if builder_name.startswith("mvit"):
            return TorchvisionMViTBody(model), model.norm.normalized_shape[0]
        if builder_name.startswith("swin3d"):
            return SwinBody(model), model.norm.normalized_shape[0]
        return _VideoResNetBody(model), 512

    return build


def _pytorchvideo(builder_name: str, embed_dim: int) -> Callable[[], tuple[nn.Module, int]]:
    def build() -> tuple[nn.Module, int]:
        from pytorchvideo.models import hub

        model = getattr(hub, builder_name)(pretrained=False)
        if builder_name.startswith("slowfast"):
            return SlowFastBody(model, alpha=4), embed_dim
        if builder_name.startswith("mvit"):
            return PyTorchVideoMViTBody(model), embed_dim
        return _PyTorchVideoBody(model), embed_dim

    return build


def _tiny(frame_wise: bool = False) -> Callable[[], tuple[nn.Module, int]]:
    def build() -> tuple[nn.Module, int]:
        body = TinyVideoNet(frame_wise=frame_wise)
        return body, body.out_channels

    return build


class BackboneSpec(NamedTuple):
    """A `BACKBONES` entry: how to build the body, one line for `--help`, and the native sampling.

    Attributes:
        builder: () → (body, embed_dim); the body maps (B, 3, T, H, W) to the feature map.
        description: one line (family, parameters, what the tokens / pathways are).
        default_sampling: the clips the published weights were trained and evaluated on: `frames` (T),
            `stride` (δ, in frames of a 30 fps video), `size` (crop side, pixels), `mean` / `std`
            (per-channel normalisation of [0, 1] RGB), and `alpha` for SlowFast. Diagnostics default to
            these for third-party weights (docs/backbones.md).
    """

    builder: Callable[[], tuple[nn.Module, int]]
    description: str
    default_sampling: dict


_TV_MEAN, _TV_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)  # torchvision's Kinetics statistics
_PTV_MEAN, _PTV_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)  # pytorchvideo / PySlowFast / torchvision MViT
_IN_MEAN, _IN_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet (torchvision Swin3D)


def _sampling(frames: int, stride: int, size: int, mean=_PTV_MEAN, std=_PTV_STD, **extra) -> dict:
    return {"frames": frames, "stride": stride, "size": size, "mean": mean, "std": std, **extra}


def _spec(builder, description: str, sampling: dict) -> BackboneSpec:
    return BackboneSpec(builder, description, sampling)


# name → BackboneSpec. Plain functions, no registry magic. Sampling: the publishers' evaluation settings
# (torchvision's weight metadata; pytorchvideo's model zoo and hub tutorial).
BACKBONES: dict[str, BackboneSpec] = {
    "tiny": _spec(_tiny(), "small 3-D ResNet (0.9 M parameters), the CPU default", _sampling(8, 2, 64, _TV_MEAN, _TV_STD)),
    "tiny2d": _spec(
        _tiny(frame_wise=True),
        "tiny with 1-frame kernels: a per-frame 2-D model averaged over time (appearance-only reference)",
        _sampling(8, 2, 64, _TV_MEAN, _TV_STD),
    ),
    "r3d_18": _spec(_torchvision("r3d_18"), "torchvision R3D-18 (33 M)", _sampling(16, 2, 112, _TV_MEAN, _TV_STD)),
    "r2plus1d_18": _spec(_torchvision("r2plus1d_18"), "torchvision R(2+1)D-18 (31 M)", _sampling(16, 2, 112, _TV_MEAN, _TV_STD)),
    "mc3_18": _spec(_torchvision("mc3_18"), "torchvision MC3-18 (12 M)", _sampling(16, 2, 112, _TV_MEAN, _TV_STD)),
    "s3d": _spec(_torchvision("s3d"), "torchvision S3D (8 M)", _sampling(128, 2, 224, _TV_MEAN, _TV_STD)),
    "mvit_v1_b": _spec(_torchvision("mvit_v1_b"), "torchvision MViT-V1-B (37 M), tokens on a T/2 × H/32 grid", _sampling(16, 4, 224)),
    "mvit_v2_s": _spec(_torchvision("mvit_v2_s"), "torchvision MViT-V2-S (35 M), tokens on a T/2 × H/32 grid", _sampling(16, 4, 224)),
    "swin3d_t": _spec(
        _torchvision("swin3d_t"), "torchvision Video Swin-T (28 M), windowed tokens", _sampling(32, 2, 224, _IN_MEAN, _IN_STD)
    ),
    "swin3d_s": _spec(
        _torchvision("swin3d_s"), "torchvision Video Swin-S (50 M), windowed tokens", _sampling(32, 2, 224, _IN_MEAN, _IN_STD)
    ),
    "swin3d_b": _spec(
        _torchvision("swin3d_b"), "torchvision Video Swin-B (88 M), windowed tokens", _sampling(32, 2, 224, _IN_MEAN, _IN_STD)
    ),
    "slow_r50": _spec(_pytorchvideo("slow_r50", 2048), "pytorchvideo Slow-only R50 (32 M), BOLD-DI's backbone", _sampling(8, 8, 224)),
    "slowfast_r50": _spec(
        _pytorchvideo("slowfast_r50", 2304),
        "pytorchvideo SlowFast-R50 8×8, α=4 (34 M): slow 2048 + fast 256 channels",
        _sampling(32, 2, 224, alpha=4),
    ),
    "x3d_xs": _spec(_pytorchvideo("x3d_xs", 192), "pytorchvideo X3D-XS (3.8 M), 4×12 clips at 182 px", _sampling(4, 12, 182)),
    "x3d_s": _spec(_pytorchvideo("x3d_s", 192), "pytorchvideo X3D-S (3.8 M), 13×6 clips at 182 px", _sampling(13, 6, 182)),
    "x3d_m": _spec(_pytorchvideo("x3d_m", 192), "pytorchvideo X3D-M (3.8 M), 16×5 clips at 256 px", _sampling(16, 5, 256)),
    "x3d_l": _spec(_pytorchvideo("x3d_l", 192), "pytorchvideo X3D-L (6.2 M, deeper), 16×5 clips at 356 px", _sampling(16, 5, 356)),
    "csn_r101": _spec(_pytorchvideo("csn_r101", 2048), "pytorchvideo ir-CSN-101 (22 M), channel-separated", _sampling(32, 2, 224)),
    "i3d_r50": _spec(_pytorchvideo("i3d_r50", 2048), "pytorchvideo I3D-R50 (28 M)", _sampling(8, 8, 224)),
    "c2d_r50": _spec(_pytorchvideo("c2d_r50", 2048), "pytorchvideo C2D-R50 (24 M), 2-D kernels, temporal pooling", _sampling(8, 8, 224)),
    "r2plus1d_r50": _spec(_pytorchvideo("r2plus1d_r50", 2048), "pytorchvideo R(2+1)D-50 (28 M)", _sampling(16, 4, 224)),
    "mvit_base_16x4": _spec(
        _pytorchvideo("mvit_base_16x4", 768), "pytorchvideo MViT-B 16×4 (37 M), tokens on a T/2 × H/32 grid", _sampling(16, 4, 224)
    ),
}


def build_backbone(name: str = "tiny", keep_temporal: bool = False, weights: str | None = None) -> VideoBackbone:
    """Build a backbone by name (or `package.module:builder`), optionally without temporal strides and with local weights.

    Args:
        name: one of `BACKBONES` (`tiny`, `r3d_18`, `slow_r50`, `mvit_v2_s`, …; docs/backbones.md),
            `package.module:builder` (`build_module_backbone`), or a local Hugging Face model folder
            (`build_huggingface_backbone`; its weights come with it).
        keep_temporal: remove temporal strides so every input frame keeps its own feature.
        weights: a local checkpoint to load into the backbone (`load_backbone_weights`); the line saying
            which prefix and copy were taken is printed with `vdiag.console.note` and kept as
            `backbone.weights_report`.

    Returns:
        The backbone, on the CPU: clips (N, C, T, H, W) → embeddings (N, embed_dim).

    Raises:
        VdiagError: an unknown backbone name, or a builder that cannot be imported or returns no
            module; a weights file that is missing, unreadable or does not fit the architecture.
    """
    if is_huggingface_folder(name):
        backbone = build_huggingface_backbone(name, keep_temporal=keep_temporal)
    elif ":" in name and not Path(name).exists():
        backbone = build_module_backbone(name, keep_temporal=keep_temporal)
    else:
        if name not in BACKBONES:
            raise VdiagError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}, or give package.module:builder")
        body, embed_dim = BACKBONES[name].builder()
        if keep_temporal:
            remove_temporal_strides(body)
            if hasattr(body, "keep_temporal"):
                body.keep_temporal = True
        backbone = VideoBackbone(name, body, embed_dim, keep_temporal=keep_temporal)
        backbone.default_sampling = dict(BACKBONES[name].default_sampling)
    if weights:
        from vdiag.console import note
        from vdiag.models.weights import load_backbone_weights

        backbone.weights_report = load_backbone_weights(backbone, weights)
        note(backbone.weights_report["summary"])
    return backbone


def build_huggingface_backbone(folder: str | Path, *, keep_temporal: bool = False) -> VideoBackbone:
    """A backbone from a local Hugging Face folder (VideoMAE, TimeSformer, ViViT, V-JEPA 2), weights included.

    Args:
        folder: `config.json` + `model.safetensors` (`vdiag.models.huggingface`).
        keep_temporal: one token column per input frame (each frame repeated over a tubelet).

    Returns:
        The backbone, named by the folder, its weights loaded and `default_sampling` read from the folder.

    Raises:
        VdiagError: see `load_huggingface_body`.
    """
    from vdiag.models.huggingface import load_huggingface_body

    body, embed_dim, sampling = load_huggingface_body(folder)
    body.keep_temporal = keep_temporal
    backbone = VideoBackbone(str(folder), body, embed_dim, keep_temporal=keep_temporal)
    backbone.default_sampling = sampling
    return backbone


def build_module_backbone(spec: str, *, keep_temporal: bool = False, probe_shape: tuple[int, ...] = (1, 3, 8, 64, 64)) -> VideoBackbone:
    """A backbone from `package.module:builder`: a callable without arguments that returns an `nn.Module`.

    The module is imported like any Python module (installed, or a `.py` file in the current folder),
    the builder called, and its output adapted (`bodies.ModuleBody`): (B, C, T', H', W') is the feature
    map, (B, C, T') per-time-step features, (B, C) a pooled embedding. A builder may also return a
    `VideoBackbone`, used as is. The embedding width is the module's integer `embed_dim` attribute,
    else read from one forward pass on zeros of `probe_shape`. The backbone's state dict keeps the
    module's own names under `body.model.`; a state dict saved from the module loads as is.

    Args:
        spec: `package.module:builder` (the builder may be a dotted attribute, `pkg.mod:Class.create`).
        keep_temporal: set the temporal stride of the module's 3-D convolutions and pools to 1.
        probe_shape: (B, 3, T, H, W) of the probe forward pass.

    Returns:
        The backbone, named `spec`.

    Raises:
        VdiagError: the module cannot be imported, has no such callable, or the callable does not
            return an `nn.Module`; the module's output is not one tensor of a supported shape.
    """
    import importlib
    import sys

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise VdiagError(f"--backbone {spec!r}: write package.module:builder (a callable returning an nn.Module)")
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise VdiagError(
            f"--backbone {spec!r}: cannot import {module_name} ({err}); install it or run from the folder holding it"
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    builder = module
    for part in attribute.split("."):
        builder = getattr(builder, part, None)
    if not callable(builder):
        raise VdiagError(f"--backbone {spec!r}: {module_name} has no callable {attribute!r}")
    model = builder()
    if isinstance(model, VideoBackbone):
        return model
    if not isinstance(model, nn.Module):
        raise VdiagError(f"--backbone {spec!r}: {attribute}() returned a {type(model).__name__}, not an nn.Module")
    body = ModuleBody(model, spec)
    if keep_temporal:
        remove_temporal_strides(body)
    embed_dim = getattr(model, "embed_dim", None)
    if not isinstance(embed_dim, int):
        was_training = body.training
        with torch.no_grad():
            embed_dim = body.eval()(torch.zeros(probe_shape)).shape[1]
        body.train(was_training)
    return VideoBackbone(spec, body, int(embed_dim), keep_temporal=keep_temporal)


def remove_temporal_strides(module: nn.Module) -> int:
    """Set every temporal stride to 1 in place; returns how many layers changed.

    A convolution keeps its kernel (so weights still fit) and, with the usual 'same' temporal
    padding, now preserves T. A pooling layer whose temporal window equals its stride and has no
    padding (S3D's 2×2×2 max-pool) would shrink T by window − 1, so its window becomes 1.
    """
    changed = 0
    for layer in module.modules():
        if not isinstance(layer, (nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d)):
            continue
        stride = _triple(layer.stride)
        if stride[0] == 1:
            continue
        layer.stride = (1, *stride[1:])
        if isinstance(layer, (nn.MaxPool3d, nn.AvgPool3d)):
            kernel, padding = _triple(layer.kernel_size), _triple(layer.padding)
            if kernel[0] == stride[0] and padding[0] == 0:
                layer.kernel_size = (1, *kernel[1:])
        changed += 1
    return changed


def _triple(value) -> tuple[int, int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value, value)
