"""PySlowFast checkpoints → pytorchvideo names, for `slow_r50`, `slowfast_r50`, `i3d_r50` and `c2d_r50`.

PySlowFast (facebookresearch/SlowFast) and pytorchvideo build the same ResNets with different module
names. The ρMoCo / ρBYOL Slow-R50 models that BOLD-DI Fig. 2 studies (from "A Large-Scale Study on
Unsupervised Spatiotemporal Representation Learning", Feichtenhofer et al. 2021) are published in
PySlowFast's layout (`model_state`, or `model` for some self-supervised releases). The mapping,
derived from PySlowFast's `video_model_builder.ResNet` / `SlowFast`, `stem_helper.VideoModelStem`,
`resnet_helper.ResStage` / `ResBlock` / `BottleneckTransform` and pytorchvideo's `create_resnet` /
`create_slowfast`:

    PySlowFast                                 pytorchvideo slow_r50
    s1.pathway0_stem.conv / .bn                blocks.0.conv / .norm
    s{k}.pathway0_res{i}.branch1 / _bn         blocks.{k-1}.res_blocks.{i}.branch1_conv / branch1_norm
    s{k}.pathway0_res{i}.branch2.a / .a_bn     blocks.{k-1}.res_blocks.{i}.branch2.conv_a / .norm_a  (b, c likewise)
    head.projection                            blocks.5.proj

    PySlowFast                                 pytorchvideo slowfast_r50
    s1.pathway{p}_stem.conv / .bn              blocks.0.multipathway_blocks.{p}.conv / .norm
    s{k}.pathway{p}_res{i}.…                   blocks.{k-1}.multipathway_blocks.{p}.res_blocks.{i}.…
    s{k}_fuse.conv_f2s / .bn                   blocks.{k-1}.multipathway_fusion.conv_fast_to_slow / .norm
    head.projection                            blocks.6.proj

    PySlowFast ResNet (ARCH i3d / c2d)         pytorchvideo i3d_r50 / c2d_r50
    s1.pathway0_stem.conv / .bn                blocks.0.conv / .norm
    s2.pathway0_res{i}.…                       blocks.1.res_blocks.{i}.…
    (pathway0_pool: the temporal max-pool after res2, no parameters)   blocks.2 (MaxPool3d)
    s{k}.pathway0_res{i}.…, k = 3, 4, 5        blocks.{k}.res_blocks.{i}.…
    head.projection                            blocks.6.proj

The temporal kernels agree: PySlowFast's `_TEMPORAL_KERNEL_BASIS["i3d"]` (stem 5; res2 3; res3 and
res4 alternating 3, 1; res5 alternating 1, 3) is pytorchvideo's `i3d_r50`, and C2D has temporal
kernel 1 everywhere in both. I3D with non-local blocks (`I3D_NLN`, keys `s3.pathway0_nonlocal…`) has
no pytorchvideo counterpart and is refused rather than loaded without its non-local blocks.

Any prefix in front
of `s1.` (`module.`, `backbone.`, `model_state.`) is kept, so the usual prefix finder still applies.
"""

from __future__ import annotations

import re

import torch

from vdiag.errors import VdiagError

_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<stage>s[1-5](?:_fuse)?)\.(?P<rest>.+)$")
_BLOCK = {
    "branch1": "branch1_conv",
    "branch1_bn": "branch1_norm",
    "branch2.a": "branch2.conv_a",
    "branch2.a_bn": "branch2.norm_a",
    "branch2.b": "branch2.conv_b",
    "branch2.b_bn": "branch2.norm_b",
    "branch2.c": "branch2.conv_c",
    "branch2.c_bn": "branch2.norm_c",
}
_STEM = {"conv": "conv", "bn": "norm"}
_FUSE = {"conv_f2s": "conv_fast_to_slow", "bn": "norm"}
CONVERTIBLE = ("slow_r50", "slowfast_r50", "i3d_r50", "c2d_r50")
# pytorchvideo block index of PySlowFast's stage s1…s5 and of the head, per backbone (i3d / c2d have a
# parameterless temporal pool at blocks.2, after res2)
_BLOCKS = {
    "slow_r50": ({1: 0, 2: 1, 3: 2, 4: 3, 5: 4}, 5),
    "slowfast_r50": ({1: 0, 2: 1, 3: 2, 4: 3, 5: 4}, 6),
    "i3d_r50": ({1: 0, 2: 1, 3: 3, 4: 4, 5: 5}, 6),
    "c2d_r50": ({1: 0, 2: 1, 3: 3, 4: 4, 5: 5}, 6),
}
_NONLOCAL = re.compile(r"(?:^|\.)s[1-5]\.pathway\d_nonlocal\d+\.")


def is_pyslowfast(state: dict[str, torch.Tensor]) -> bool:
    """Whether a flat state dict uses PySlowFast's names (a `s1.pathway0_stem.conv.weight` key)."""
    return any(re.search(r"(?:^|\.)s1\.pathway0_stem\.conv\.weight$", key) for key in state)


def pyslowfast_name(key: str, *, two_pathways: bool = False, backbone: str | None = None) -> str | None:
    """The pytorchvideo name of one PySlowFast key, or None for a key outside the backbone's stages.

    Args:
        key: e.g. `model_state.s3.pathway0_res2.branch2.b_bn.running_var`.
        two_pathways: the target is SlowFast (`multipathway_blocks.{p}`) rather than a one-pathway ResNet
            (used when `backbone` is None: `slowfast_r50` if True, else `slow_r50`).
        backbone: the target, one of `CONVERTIBLE` (its block numbering: i3d / c2d have a pool at blocks.2).

    Returns:
        e.g. `model_state.blocks.2.res_blocks.2.branch2.norm_b.running_var` (slow_r50),
        `model_state.blocks.3.res_blocks.2.branch2.norm_b.running_var` (i3d_r50).
    """
    backbone = backbone or ("slowfast_r50" if two_pathways else "slow_r50")
    two_pathways = backbone == "slowfast_r50"
    stages, head = _BLOCKS[backbone]
    if key.endswith("head.projection.weight") or key.endswith("head.projection.bias"):
        prefix = key[: key.index("head.projection.")]
        return f"{prefix}blocks.{head}.proj.{key.rsplit('.', 1)[1]}"
    match = _KEY.match(key)
    if not match:
        return None
    prefix, stage, rest = match["prefix"], match["stage"], match["rest"]
    block = stages[int(stage[1])]
    module, _, parameter = rest.rpartition(".")
    if stage.endswith("_fuse"):
        if module not in _FUSE or not two_pathways:
            return None
        return f"{prefix}blocks.{block}.multipathway_fusion.{_FUSE[module]}.{parameter}"
    inner = re.match(r"^pathway(?P<p>\d)_(?:stem\.(?P<stem>\w+)|res(?P<i>\d+)\.(?P<part>.+))$", module)
    if not inner:
        return None
    pathway = f"multipathway_blocks.{inner['p']}." if two_pathways else ""
    if not two_pathways and inner["p"] != "0":
        return None
    if inner["stem"] is not None:
        if inner["stem"] not in _STEM:
            return None
        return f"{prefix}blocks.{block}.{pathway}{_STEM[inner['stem']]}.{parameter}"
    if inner["part"] not in _BLOCK:
        return None
    return f"{prefix}blocks.{block}.{pathway}res_blocks.{inner['i']}.{_BLOCK[inner['part']]}.{parameter}"


def convert_pyslowfast(state: dict[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """Rename a PySlowFast state dict to pytorchvideo's names for `backbone`; other keys are kept as they are.

    Args:
        state: the flat state dict (`vdiag.models.weights.tensor_state`).
        backbone: one of `CONVERTIBLE`: `slow_r50`, `slowfast_r50`, `i3d_r50` or `c2d_r50`.

    Returns:
        The renamed state dict (same tensors).

    Raises:
        VdiagError: `backbone` has no PySlowFast conversion; the file holds non-local blocks (I3D NLN),
            which pytorchvideo's `i3d_r50` lacks.
    """
    if backbone not in CONVERTIBLE:
        raise VdiagError(
            f"this file uses PySlowFast's parameter names (s1.pathway0_stem…), which vdiag converts for {', '.join(CONVERTIBLE)}; "
            f"use one of those as --backbone (got {backbone!r})"
        )
    nonlocal_keys = [key for key in state if _NONLOCAL.search(key)]
    if nonlocal_keys:
        raise VdiagError(
            f"this PySlowFast file has non-local blocks ({nonlocal_keys[0]}, …: an I3D NLN model), which {backbone} lacks; "
            "vdiag converts the plain I3D / C2D / Slow / SlowFast ResNets only"
        )
    return {pyslowfast_name(key, backbone=backbone) or key: value for key, value in state.items()}
