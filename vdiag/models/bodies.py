"""Bodies whose output is not a plain feature map: two pathways, tokens, a user's module.

Each body maps clips (B, 3, T, H, W) to one feature map (B, C, T', H', W'), the backbone contract
that every diagnostic reads (`VideoBackbone`: the pooled embedding is its global average, the
per-time-step features its spatial average). The library's parameter names are kept, so published
checkpoints load with only a prefix change.

- SlowFast (two pathways): the slow pathway is subsampled by α at the input; the output puts both
  pathways on the fast time axis, the slow channels repeated over the α fast steps each covers.
- Token models (MViT, Video Swin): the class token is dropped; the patch / tubelet tokens after the
  final norm are laid back on their (T', H', W') grid. The pooled embedding is then the mean token
  (VideoMAE's classifier pools so; MViT's classifier reads its class token instead, which is not a
  function of the grid and so has no per-time-step or spatial version).
- A user's module (`--backbone package.module:builder`): its single tensor output is made 5-D.
"""

from __future__ import annotations

import torch
from torch import nn

from vdiag.errors import VdiagError


class SlowFastBody(nn.Module):
    """pytorchvideo's SlowFast without its pooling and head (names unchanged: `blocks.0.multipathway_blocks…`).

    Input packing (pytorchvideo's `PackPathway`): the fast pathway gets all T frames, the slow pathway
    T/α of them (indices `linspace(0, T − 1, T/α)`; ⌈T/α⌉ when α does not divide T); with `keep_temporal` both get all T frames and
    the fast→slow fusion convolutions lose their temporal stride, so the pathways stay aligned.

    Output: (B, C_slow + C_fast, T_fast, H', W') on the fast pathway's time axis, each slow step
    repeated over the α fast steps it covers, so that the global average is the concatenation of the
    two pathways' averages, exactly what pytorchvideo's head pools (SlowFast, Feichtenhofer et al. 2019, §3.4).

    Args:
        model: `pytorchvideo.models.hub.slowfast_r50(pretrained=False)` or another `create_slowfast` net.
        alpha: the frame-rate ratio α between the pathways (4 for slowfast_r50 8×8).
    """

    def __init__(self, model: nn.Module, *, alpha: int):
        super().__init__()
        self.blocks = nn.ModuleList(list(model.blocks)[:-2])  # without PoolConcatPathway and the head
        self.alpha = alpha
        self.keep_temporal = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        if self.keep_temporal:
            slow = x
        else:  # ⌈T/α⌉ frames: T/α as pytorchvideo packs, and what the fusion's stride-α convolution yields for any T
            count = -(-frames // self.alpha)
            slow = x.index_select(2, torch.linspace(0, frames - 1, count, device=x.device).long())
        pathways = [slow, x]
        for block in self.blocks:
            pathways = block(pathways)
        slow, fast = pathways
        repeat = fast.shape[2] // slow.shape[2]
        if repeat * slow.shape[2] != fast.shape[2]:
            slow = nn.functional.interpolate(slow, size=fast.shape[2:], mode="nearest")
        elif repeat > 1:
            slow = slow.repeat_interleave(repeat, dim=2)
        return torch.cat([slow, fast], dim=1)


def interpolate_grid(table: torch.Tensor, grid: tuple[int, ...], target: tuple[int, ...]) -> torch.Tensor:
    """A position table laid out on `grid`, resized to `target` (returned unchanged when they are equal).

    Args:
        table: (prod(grid), C).
        grid: its 1-D (T) or 2-D (H, W) layout.
        target: the wanted layout, same length as `grid`.

    Returns:
        (prod(target), C): linear (1-D) or bicubic (2-D) interpolation, as ViT fine-tuning at a new size does.
    """
    if tuple(grid) == tuple(target):
        return table
    mode = {1: "linear", 2: "bicubic"}[len(grid)]
    resized = nn.functional.interpolate(table.T.reshape(1, -1, *grid), size=tuple(target), mode=mode, align_corners=False)
    return resized.reshape(table.shape[1], -1).T


class TorchvisionMViTBody(nn.Module):
    """torchvision's MViT (v1 / v2) without its head (names unchanged: `conv_proj`, `pos_encoding`, `blocks.…`, `norm`).

    Tokens → feature map: the class token is dropped and the T'·H'·W' patch tokens after the final norm
    are laid back on their grid, (B, C, T', H', W') (16×224×224 input: 768 × 8 × 7 × 7). Any input size
    works: v1's absolute position tables are interpolated to the token grid (unchanged at the native
    size), v2's relative ones are interpolated by torchvision itself.

    Args:
        model: `torchvision.models.video.mvit_v1_b(weights=None)` / `mvit_v2_s` or any `MViT`.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.conv_proj, self.pos_encoding, self.blocks, self.norm = model.conv_proj, model.pos_encoding, model.blocks, model.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x)
        thw = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        encoding = self.pos_encoding
        x = torch.cat((encoding.class_token.expand(x.size(0), 1, -1), x), dim=1)
        if encoding.spatial_pos is not None:
            native = (encoding.temporal_size, *encoding.spatial_size)
            spatial = interpolate_grid(encoding.spatial_pos, native[1:], thw[1:])
            temporal = interpolate_grid(encoding.temporal_pos, native[:1], thw[:1])
            grid = (temporal[:, None, :] + spatial[None, :, :]).reshape(-1, spatial.shape[1])
            x = x + torch.cat((encoding.class_pos[None], grid), dim=0)[None]
        for block in self.blocks:
            x, thw = block(x, thw)
        x = self.norm(x)
        return x[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, *thw)


class SwinBody(nn.Module):
    """torchvision's Video Swin without its head (names unchanged: `patch_embed.proj`, `features.…`, `norm`).

    Feature map: the last stage's tokens after the final norm, (B, C, T/2, H/32, W/32) (no class
    token; windows tile the grid). With `keep_temporal` the 2-frame tubelets slide by one frame (the
    last frame repeated once at the end), so there is one token column per input frame.

    Args:
        model: `torchvision.models.video.swin3d_t(weights=None)` (or `_s`, `_b`, any `SwinTransformer3d`).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.patch_embed, self.pos_drop, self.features, self.norm = model.patch_embed, model.pos_drop, model.features, model.norm
        self.keep_temporal = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keep_temporal:
            embed = self.patch_embed
            kt, kh, kw = embed.proj.kernel_size
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, kt - 1, -1, -1)], dim=2)
            x = nn.functional.pad(x, (0, -x.shape[4] % kw, 0, -x.shape[3] % kh))
            x = embed.norm(embed.proj(x).permute(0, 2, 3, 4, 1))
        else:
            x = self.patch_embed(x)
        x = self.norm(self.features(self.pos_drop(x)))
        return x.permute(0, 4, 1, 2, 3)


class PyTorchVideoMViTBody(nn.Module):
    """pytorchvideo's MViT without its head (names unchanged: `patch_embed.patch_model`, `cls_positional_encoding.…`, `blocks.…`).

    As `TorchvisionMViTBody`: class token dropped, tokens laid back on their (T', H', W') grid after
    `norm_embed`; separable position tables interpolated to the token grid when it is not the native one.

    Args:
        model: `pytorchvideo.models.hub.mvit_base_16x4(pretrained=False)` or another
            `create_multiscale_vision_transformers` net.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.patch_embed, self.cls_positional_encoding = model.patch_embed, model.cls_positional_encoding
        self.blocks, self.norm_embed = model.blocks, model.norm_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.patch_model(x)
        thw = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        encoding = self.cls_positional_encoding
        native = tuple(encoding.patch_embed_shape)
        if encoding.cls_embed_on:
            x = torch.cat((encoding.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        if encoding.sep_pos_embed:
            spatial = interpolate_grid(encoding.pos_embed_spatial[0], native[1:], thw[1:])
            temporal = interpolate_grid(encoding.pos_embed_temporal[0], native[:1], thw[:1])
            pos = (temporal[:, None, :] + spatial[None, :, :]).reshape(1, -1, spatial.shape[1])
            if encoding.cls_embed_on:
                pos = torch.cat([encoding.pos_embed_class, pos], dim=1)
        elif thw == native:
            pos = encoding.pos_embed
        else:
            raise VdiagError(
                f"this MViT takes token grids of {native} only (one joint position table), got {thw}; use its native input size"
            )
        x = x + pos
        for block in self.blocks:
            x, thw = block(x, thw)
        if self.norm_embed is not None:
            x = self.norm_embed(x)
        if encoding.cls_embed_on:
            x = x[:, 1:]
        return x.transpose(1, 2).reshape(x.shape[0], -1, *thw)


class ModuleBody(nn.Module):
    """A user's module (`--backbone package.module:builder`) under `model`, its output made a feature map.

    The module maps (B, 3, T, H, W) to one tensor: (B, C, T', H', W') (a feature map, used as is),
    (B, C, T') (per-time-step features: H' = W' = 1) or (B, C) (a pooled embedding: T' = H' = W' = 1,
    so per-time-step diagnostics such as Koopman figures see a single step).

    Args:
        model: the user's module.
        spec: `package.module:builder`, for error messages.
    """

    def __init__(self, model: nn.Module, spec: str):
        super().__init__()
        self.model = model
        self.spec = spec

    def weights_target(self) -> nn.Module:
        """The module a weights file fills: the user's own, so a state dict saved from it loads as is."""
        return self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if not isinstance(out, torch.Tensor):
            raise VdiagError(f"{self.spec} returned a {type(out).__name__}; its forward must return one tensor (see docs/backbones.md)")
        if out.dim() == 2:
            return out[:, :, None, None, None]
        if out.dim() == 3:
            return out[:, :, :, None, None]
        if out.dim() == 5:
            return out
        raise VdiagError(
            f"{self.spec} returned a tensor of shape {tuple(out.shape)}; it must be (B, C, T, H, W), (B, C, T) or (B, C) "
            "(see docs/backbones.md)"
        )
