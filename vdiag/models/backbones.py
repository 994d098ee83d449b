"""One interface over the video backbones vdiag trains and diagnoses.

Every backbone is a `VideoBackbone` wrapping the library's own model without its classifier, under
the attribute `body`, so that the library's parameter names are kept (`body.layer1.0.conv1.0.weight`
for torchvision, `body.blocks.1.res_blocks…` for pytorchvideo) and its published checkpoints load
with only a prefix change. It offers the three outputs of the design's backbone contract:

- `feature_map(x)`: `(B, C', T', H', W')`, the last convolutional stage;
- `forward(x)` / `embed(x)`: the pooled embedding `(B, C')` (global average over time and space);
- `time_features(x)`: `(B, C', T'')`, spatially pooled, one vector per time step.

`keep_temporal=True` removes every temporal stride (convolutions and pools), as the BOD-VCL authors
do with R(2+1)D-18, so that T'' equals the number of input frames, which Koopman analysis needs.
Weight shapes do not change, so the same checkpoint loads either way.

Builders take plain keyword arguments and nothing downloads: weights come from local files only
(`load_backbone_weights`).

Example:
    >>> backbone = build_backbone("r3d_18", keep_temporal=True)
    >>> backbone.time_features(torch.zeros(1, 3, 8, 112, 112)).shape
    torch.Size([1, 512, 8])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vdiag.errors import VdiagError
from vdiag.models.tiny import TinyVideoNet


class VideoBackbone(nn.Module):
    """A video model without its classifier: feature map, pooled embedding, per-time-step features.

    Args:
        name: the builder name (recorded in checkpoints).
        body: the library model with its head removed; `body(x)` gives the feature map.
        embed_dim: C', the channel count of the feature map.
        keep_temporal: whether temporal strides were removed.
    """

    def __init__(self, name: str, body: nn.Module, embed_dim: int, *, keep_temporal: bool = False):
        super().__init__()
        self.name = name
        self.body = body
        self.embed_dim = embed_dim
        self.keep_temporal = keep_temporal

    def feature_map(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) → (B, C', T', H', W')."""
        return self.body(clips)

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


def _torchvision(builder_name: str) -> Callable[[], tuple[nn.Module, int]]:
    def build() -> tuple[nn.Module, int]:
        import torchvision.models.video as video_models

        model = getattr(video_models, builder_name)(weights=None)
        if builder_name == "s3d":
            return _S3DBody(model), 1024
        return _VideoResNetBody(model), 512

    return build


def _pytorchvideo(builder_name: str, embed_dim: int) -> Callable[[], tuple[nn.Module, int]]:
    def build() -> tuple[nn.Module, int]:
        from pytorchvideo.models import hub

        return _PyTorchVideoBody(getattr(hub, builder_name)(pretrained=False)), embed_dim

    return build


def _tiny(frame_wise: bool = False) -> Callable[[], tuple[nn.Module, int]]:
    def build() -> tuple[nn.Module, int]:
        body = TinyVideoNet(frame_wise=frame_wise)
        return body, body.out_channels

    return build


# name → (builder, one-line description). Plain functions, no registry magic.
BACKBONES: dict[str, tuple[Callable[[], tuple[nn.Module, int]], str]] = {
    "tiny": (_tiny(), "small 3-D ResNet (0.9 M parameters), the CPU default"),
    "tiny2d": (_tiny(frame_wise=True), "tiny with 1-frame kernels: a per-frame 2-D model averaged over time (appearance-only reference)"),
    "r3d_18": (_torchvision("r3d_18"), "torchvision R3D-18 (33 M)"),
    "r2plus1d_18": (_torchvision("r2plus1d_18"), "torchvision R(2+1)D-18 (31 M)"),
    "mc3_18": (_torchvision("mc3_18"), "torchvision MC3-18 (12 M)"),
    "s3d": (_torchvision("s3d"), "torchvision S3D (8 M)"),
    "slow_r50": (_pytorchvideo("slow_r50", 2048), "pytorchvideo Slow-only R50 (32 M), seed 000's backbone"),
    "x3d_s": (_pytorchvideo("x3d_s", 192), "pytorchvideo X3D-S (3.8 M)"),
    "r2plus1d_r50": (_pytorchvideo("r2plus1d_r50", 2048), "pytorchvideo R(2+1)D-50 (28 M)"),
}


def build_backbone(name: str = "tiny", keep_temporal: bool = False, weights: str | None = None) -> VideoBackbone:
    """Build a backbone by name, optionally without temporal strides and with local weights.

    Args:
        name: one of `BACKBONES` (`tiny`, `r3d_18`, `r2plus1d_18`, `mc3_18`, `s3d`, `slow_r50`,
            `x3d_s`, `r2plus1d_r50`).
        keep_temporal: remove temporal strides so every input frame keeps its own feature.
        weights: a local checkpoint to load into the backbone (see `load_backbone_weights`).

    Returns:
        The backbone, on the CPU: clips (N, C, T, H, W) → embeddings (N, embed_dim).

    Raises:
        VdiagError: an unknown backbone name; a weights file that is missing, unreadable or does
            not fit the architecture.
    """
    if name not in BACKBONES:
        raise VdiagError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    builder, _ = BACKBONES[name]
    body, embed_dim = builder()
    if keep_temporal:
        remove_temporal_strides(body)
    backbone = VideoBackbone(name, body, embed_dim, keep_temporal=keep_temporal)
    if weights:
        from vdiag.console import note
        from vdiag.models.weights import load_backbone_weights

        backbone.weights_report = load_backbone_weights(backbone, weights)
        note(backbone.weights_report["summary"])
    return backbone


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
