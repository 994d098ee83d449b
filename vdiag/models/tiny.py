"""`tiny`: a small 3-D CNN, the CPU default.

Four stages of two 3×3×3 convolutions with batch norm and ReLU, with a residual shortcut in each
stage (a ResNet-10 in 3-D, widths 16-32-64-128 by default). Spatial stride 2 in the stem and the last three stages; temporal
stride 2 in the last two, so 8 input frames give 2 time steps, or 8 with `keep_temporal=True`.

`frame_wise=True` (the `tiny2d` backbone) makes every kernel 1 frame deep and drops the temporal
strides: each frame goes through the same 2-D network and only the final average mixes frames.
Its embedding is then exactly invariant to frame order, the appearance-only reference (an image
model averaged over time, as TSN-style models are) that the diagnostics' validity tests need.

About 0.9 M parameters at the default widths. A forward+backward on 32 clips of 8×64×64 takes about
0.6 s on two CPU cores (r3d_18 takes about 3 s for 8 clips), which is what lets `vdiag pretrain`
learn the synthetic dataset's factors in minutes (see benchmarks/).

Example:
    >>> body = TinyVideoNet()
    >>> body(torch.zeros(2, 3, 8, 64, 64)).shape
    torch.Size([2, 128, 2, 4, 4])
"""

from __future__ import annotations

import torch
from torch import nn


class TinyBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (strided 1×1×1) shortcut, then ReLU.

    Args:
        in_channels, out_channels: channels in and out.
        stride: (t, h, w) stride of the first convolution and the shortcut.
        temporal_kernel: temporal size of the 3D kernels (1: frame-wise).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int], *, temporal_kernel: int = 3):
        super().__init__()
        kernel, padding = (temporal_kernel, 3, 3), (temporal_kernel // 2, 1, 1)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.shortcut = nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm3d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class TinyVideoNet(nn.Module):
    """(B, 3, T, H, W) → feature map (B, widths[-1], T/4, H/16, W/16).

    Args:
        widths: channels of the four stages.
        temporal_strides: each stage's temporal stride (T/4 overall by default).
        frame_wise: temporal kernels of 1 and no temporal stride: every frame on its own (`tiny2d`).
    """

    def __init__(
        self, widths: tuple[int, ...] = (16, 32, 64, 128), temporal_strides: tuple[int, ...] = (1, 1, 2, 2), frame_wise: bool = False
    ):
        super().__init__()
        temporal_kernel = 1 if frame_wise else 3
        if frame_wise:
            temporal_strides = (1,) * len(widths)
        self.stem = nn.Sequential(
            nn.Conv3d(3, widths[0], (temporal_kernel, 5, 5), stride=(1, 2, 2), padding=(temporal_kernel // 2, 2, 2), bias=False),
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_channels = widths[0]
        for index, (width, t_stride) in enumerate(zip(widths, temporal_strides)):
            spatial = 1 if index == 0 else 2
            stages.append(TinyBlock(in_channels, width, (t_stride, spatial, spatial), temporal_kernel=temporal_kernel))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))
