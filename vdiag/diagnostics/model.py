"""The model adapter: any checkpoint → a frozen backbone the diagnostics can run.

`load_model` accepts
- a vdiag checkpoint (`format: "vdiag"`): the method is rebuilt from its recorded config and its
  state loaded, so the backbone comes with the checkpoint's own settings (keep_temporal, width) and
  the method stays at hand for method-specific figures (concepts, classifier heads);
- a plain state dict of a torchvision / pytorchvideo video model (or a wrapper of one) with
  `backbone="r3d_18"` etc.: prefixes such as `module.` or `encoder_q.` are found by
  `vdiag.models.weights.load_backbone_weights`, which names missing and mismatched keys when the
  file does not fit.

`layer` probes an intermediate stage: the output of the module `body.<layer>` (e.g. `layer3` for
torchvision's R3D, `stages.2` for `tiny`, `blocks.3` for pytorchvideo) replaces the last stage's
feature map; the forward pass stops there.

Every tensor of the loaded model (parameters and buffers) must be finite: a diverged checkpoint is
refused in one line naming its first non-finite tensor, rather than probed into NaN metrics.

The fingerprint (a hash of the tensors actually loaded, the recorded config, backbone, layer and
keep_temporal) keys the feature cache, so a retrained checkpoint at the same path never reuses
stale features, and a file rewritten while a diagnostic runs cannot be hashed after it was read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vdiag.checkpoint import read_state_file
from vdiag.console import note
from vdiag.errors import VdiagError
from vdiag.models.backbones import BACKBONES, VideoBackbone, build_backbone


class _StopForward(Exception):
    def __init__(self, output: torch.Tensor):
        self.output = output


@dataclass
class DiagnosticModel:
    """A frozen backbone with its provenance. All outputs are computed without gradient by callers.

    Attributes:
        backbone: the `VideoBackbone` (eval mode, on `device`).
        path: the checkpoint file.
        config: the training config of a vdiag checkpoint, else None.
        method: the rebuilt method of a vdiag checkpoint (heads, concepts), else None.
        layer: the probed module under `backbone.body`, or None for the last stage.
        fingerprint: content hash used by the feature cache.
    """

    backbone: VideoBackbone
    path: Path
    config: dict | None = None
    method: nn.Module | None = None
    layer: str | None = None
    fingerprint: str = ""
    device: str = "cpu"
    _hook: object = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.backbone.name

    @property
    def method_name(self) -> str | None:
        return self.config["method"] if self.config else None

    def feature_map(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) → (B, C, T', H', W') at the probed layer."""
        if self.layer is None:
            return self.backbone.feature_map(clips)
        try:
            self.backbone.body(clips)
        except _StopForward as stop:
            return stop.output
        raise VdiagError(f"layer {self.layer!r} was not reached by the forward pass; pick another --layer")

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) → (B, C): global average over time and space."""
        return self.feature_map(clips).mean(dim=(2, 3, 4))

    def time_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) → (B, C, T'): spatial average, one vector per time step."""
        return self.feature_map(clips).mean(dim=(3, 4))


def load_model(
    path: str | Path,
    *,
    backbone: str | None = None,
    layer: str | None = None,
    keep_temporal: bool | None = None,
    device: str = "cpu",
) -> DiagnosticModel:
    """Load any supported checkpoint as a frozen `DiagnosticModel` (eval mode, on `device`).

    Args:
        path: a vdiag checkpoint; a state dict (`.pt`, `.pth`, `.safetensors`) of any supported
            architecture; or a Hugging Face model folder (`config.json` + weights: no `backbone`).
        backbone: the architecture of a third-party state dict (a `BACKBONES` name or
            `package.module:builder`); for a vdiag checkpoint it must be omitted or equal the recorded one.
        layer: module name under `backbone.body` to probe instead of the last stage.
        keep_temporal: remove temporal strides, so that every input frame keeps a feature (default:
            as recorded; False for third-party weights). The weights are unchanged.
        device: where the model runs.

    Returns:
        The model, with its fingerprint (the loaded tensors, config, backbone, layer, keep_temporal) set.

    Raises:
        VdiagError: a third-party state dict without `backbone`; a vdiag checkpoint with another
            `backbone`; a file that does not fit its model; a parameter or buffer holding NaN or
            infinity (`check_finite`); an unknown `layer`.
    """
    from vdiag.models.weights import detect_checkpoint_kind, load_backbone_weights

    path = Path(path)
    if detect_checkpoint_kind(path) == "huggingface":  # a folder: config.json + weights, no --backbone needed
        model = DiagnosticModel(build_backbone(str(path), keep_temporal=bool(keep_temporal)), path)
        return _finish(model, path, layer, device)
    state = read_state_file(path, what="checkpoint")
    if state.get("format") == "vdiag":
        model = _from_vdiag(path, state, backbone, keep_temporal)
    else:
        if backbone is None:
            raise VdiagError(
                f"{path} is not a vdiag checkpoint; for a torchvision / pytorchvideo state dict pass "
                f"--backbone NAME (one of: {', '.join(BACKBONES)})"
            )
        net = build_backbone(backbone, keep_temporal=bool(keep_temporal))
        note(load_backbone_weights(net, path)["summary"])  # which prefix / copy was taken, what was ignored
        model = DiagnosticModel(net, path)
    return _finish(model, path, layer, device)


def _finish(model: DiagnosticModel, path: Path, layer: str | None, device: str) -> DiagnosticModel:
    """Finite weights checked, fingerprint of what was loaded, eval mode on `device`, `layer` attached."""
    check_finite(model.method if model.method is not None else model.backbone, path)
    model.fingerprint = _fingerprint(model)
    model.backbone.to(device).eval()
    if model.method is not None:
        model.method.to(device).eval()
    model.device = device
    if layer:
        _attach_layer(model, layer)
        model.fingerprint = _fingerprint(model)
    return model


def _from_vdiag(path: Path, state: dict, backbone: str | None, keep_temporal: bool | None) -> DiagnosticModel:
    from vdiag.checkpoint import check_checkpoint
    from vdiag.methods import build_model
    from vdiag.train.config import migrate_config

    state = check_checkpoint(state, path)
    config = migrate_config(state["config"])  # a deep copy, with settings newer than the checkpoint filled in
    recorded = config["backbone"]["name"]
    if backbone and backbone != recorded:
        raise VdiagError(
            f"{path} is a vdiag checkpoint of backbone {recorded!r}; drop --backbone {backbone} (it is for other tools' weights)"
        )
    config["backbone"]["weights"] = None  # the checkpoint holds the weights; the original file may be gone
    if keep_temporal is not None:
        config["backbone"]["keep_temporal"] = keep_temporal
    method = build_model(config)
    try:
        method.load_state_dict(state["model"])
    except RuntimeError as err:
        raise VdiagError(f"{path} does not fit the model its config describes ({str(err).splitlines()[0]}); the file is damaged") from None
    return DiagnosticModel(method.backbone, path, config=config, method=method)


def _attach_layer(model: DiagnosticModel, layer: str) -> None:
    modules = dict(model.backbone.body.named_modules())
    if layer not in modules or layer == "":
        names = [name for name in modules if name and name.count(".") <= 1]
        raise VdiagError(f"backbone {model.name!r} has no layer {layer!r}; choose one of: {', '.join(names)}")

    def stop(module, inputs, output):
        raise _StopForward(output)

    model._hook = modules[layer].register_forward_hook(stop)
    model.layer = layer


def check_finite(module: nn.Module, path: str | Path) -> None:
    """Refuse a model with a non-finite parameter or buffer, naming the first one.

    Args:
        module: the loaded model (a vdiag method with its heads, or a backbone).
        path: the checkpoint, named in the message.

    Raises:
        VdiagError: a floating-point parameter or buffer holds NaN or ±inf (a diverged run).
    """
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = ~torch.isfinite(tensor)
            if bool(bad.any()):
                kinds = "NaN" if bool(tensor.isnan().any()) else "infinite"
                raise VdiagError(
                    f"{path} holds non-finite weights: {name} has {int(bad.sum())} {kinds} of {tensor.numel()} values "
                    "(the run diverged); diagnose an earlier checkpoint of the run"
                )


def _fingerprint(model: DiagnosticModel) -> str:
    """A hash of what was loaded (every tensor of the model, its config) and of what is probed."""
    digest = hashlib.sha256()
    module = model.method if model.method is not None else model.backbone
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"|{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    if model.config is not None:
        digest.update(json.dumps(model.config, sort_keys=True, default=str).encode())
    digest.update(f"|{model.name}|{model.layer}|{model.backbone.keep_temporal}".encode())
    return digest.hexdigest()[:24]
