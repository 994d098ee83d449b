"""PySlowFast checkpoints → pytorchvideo names, for `slow_r50` and `slowfast_r50`.

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
CONVERTIBLE = ("slow_r50", "slowfast_r50")


def is_pyslowfast(state: dict[str, torch.Tensor]) -> bool:
    """Whether a flat state dict uses PySlowFast's names (a `s1.pathway0_stem.conv.weight` key)."""
    return any(re.search(r"(?:^|\.)s1\.pathway0_stem\.conv\.weight$", key) for key in state)


def pyslowfast_name(key: str, *, two_pathways: bool) -> str | None:
    """The pytorchvideo name of one PySlowFast key, or None for a key outside the backbone's stages.

    Args:
        key: e.g. `model_state.s3.pathway0_res2.branch2.b_bn.running_var`.
        two_pathways: the target is SlowFast (`multipathway_blocks.{p}`) rather than a one-pathway ResNet.

    Returns:
        e.g. `model_state.blocks.2.res_blocks.2.branch2.norm_b.running_var` (slow_r50).
    """
    if key.endswith("head.projection.weight") or key.endswith("head.projection.bias"):
        prefix = key[: key.index("head.projection.")]
        return f"{prefix}blocks.{6 if two_pathways else 5}.proj.{key.rsplit('.', 1)[1]}"
    match = _KEY.match(key)
    if not match:
        return None
    prefix, stage, rest = match["prefix"], match["stage"], match["rest"]
    block = int(stage[1]) - 1
    module, _, parameter = rest.rpartition(".")
    if stage.endswith("_fuse"):
        if module not in _FUSE:
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
        backbone: `slow_r50` or `slowfast_r50`.

    Returns:
        The renamed state dict (same tensors).

    Raises:
        VdiagError: `backbone` has no PySlowFast conversion.
    """
    if backbone not in CONVERTIBLE:
        raise VdiagError(
            f"this file uses PySlowFast's parameter names (s1.pathway0_stem…), which vdiag converts for {', '.join(CONVERTIBLE)}; "
            f"use one of those as --backbone (got {backbone!r})"
        )
    two_pathways = backbone == "slowfast_r50"
    converted = {}
    for key, value in state.items():
        converted[pyslowfast_name(key, two_pathways=two_pathways) or key] = value
    return converted
