"""Load backbone weights from local files, whatever layout the checkpoint has.

Accepted files (all through `torch.load(path, weights_only=True)`; nothing is unpickled):
- a vdiag checkpoint (`format: "vdiag"`): the online backbone of its method;
- a plain state dict of a torchvision / pytorchvideo video model, or of any wrapper around one,
  possibly nested under `state_dict`, `model`, `model_state`, `net` or `network`, with prefixes such
  as `module.`, `backbone.`, `encoder_q.`, `encoder.` in front of the library's own names.

The prefix is found, not guessed from a list: for every key that ends with one of the backbone's own
parameter names, the part in front is a candidate prefix, and the candidate that covers the most
parameters wins (ties go to the online network over `encoder_k.` / `target` / `momentum` / `teacher`
copies). Classifier heads and other extra keys are ignored; a missing parameter or a shape mismatch
is an error that names the file, the first few offending names, and what to do.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from torch import nn

from vdiag.checkpoint import read_state_file
from vdiag.errors import VdiagError

NESTED_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "net", "network", "backbone")
SECONDARY_COPIES = ("encoder_k", "target", "momentum", "teacher", "ema", "key_encoder")


def tensor_state(obj: dict) -> dict[str, torch.Tensor]:
    """The flat name → tensor mapping inside a checkpoint (unwrapping vdiag and common nestings)."""
    if obj.get("format") == "vdiag" and isinstance(obj.get("model"), dict):
        return obj["model"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for key in NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict):
            nested = tensor_state(inner)
            if len(nested) > len(tensors):
                tensors = nested
    return tensors


def match_prefix(file_keys: list[str], model_keys: list[str]) -> tuple[str, int]:
    """The prefix p for which the most model keys appear as p + key in the file; (p, count)."""
    model_set = set(model_keys)
    counts: Counter[str] = Counter()
    for key in file_keys:
        parts = key.split(".")
        for cut in range(len(parts)):
            suffix = ".".join(parts[cut:])
            if suffix in model_set:
                counts[".".join(parts[:cut]) + ("." if cut else "")] += 1
    if not counts:
        return "", 0

    def rank(item):
        prefix, count = item
        secondary = any(word in prefix for word in SECONDARY_COPIES)
        return (count, not secondary, -len(prefix))

    prefix, count = max(counts.items(), key=rank)
    return prefix, count


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> dict:
    """Load a local checkpoint into `backbone.body`; returns {'prefix', 'loaded', 'ignored'}.

    The file may be a bare state dict, a torchvision / pytorchvideo checkpoint or a vdiag one (its
    backbone sits under `backbone.body.`): the key prefix that matches the most parameters is used.

    Args:
        backbone: a `VideoBackbone` (or any module with a `.body`).
        path: the local file, read with `torch.load(weights_only=True)`.

    Returns:
        {'prefix': the stripped key prefix, 'loaded': parameters loaded, 'ignored': other entries}.

    Raises:
        VdiagError: the file is missing or unreadable, has no weights for this backbone, lacks some
            of its parameters, or has parameters of other shapes.
    """
    state = tensor_state(read_state_file(path))
    body = backbone.body
    target = body.state_dict()
    prefix, _ = match_prefix(list(state), list(target))
    # a vdiag checkpoint stores the method: its backbone sits under 'backbone.body.'
    mapped = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    needed = [k for k in target if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in mapped]
    name = getattr(backbone, "name", type(body).__name__)
    if len(missing) > len(needed) / 2:
        raise VdiagError(
            f"{path} has no weights for backbone {name!r} (only {len(needed) - len(missing)} of its {len(needed)} "
            f"parameter names appear; the file starts with {', '.join(list(state)[:2]) or 'nothing'}); pick the matching --backbone"
        )
    if missing:
        raise VdiagError(
            f"{path} does not match backbone {name!r}: {len(missing)} of its parameters are missing "
            f"(e.g. {', '.join(missing[:3])}); check --backbone"
        )
    wrong = [f"{k} {tuple(mapped[k].shape)} vs {tuple(v.shape)}" for k, v in target.items() if k in mapped and mapped[k].shape != v.shape]
    if wrong:
        raise VdiagError(
            f"{path} does not match backbone {name!r}: {len(wrong)} shape mismatches "
            f"(e.g. {'; '.join(wrong[:2])}); check --backbone and its width options"
        )
    body.load_state_dict({k: mapped[k] for k in target if k in mapped}, strict=False)
    return {"prefix": prefix, "loaded": len(target), "ignored": len(state) - len(target)}
