"""Load backbone weights from local files, whatever layout the checkpoint has.

Accepted files (nothing is ever unpickled: `torch.load(path, weights_only=True)`, or safetensors):
- a vdiag checkpoint (`format: "vdiag"`): the online backbone of its method;
- a plain state dict of a torchvision / pytorchvideo video model, or of any wrapper around one,
  possibly nested under `state_dict`, `model`, `model_state`, `net`, `network`, `student`, `teacher`, …,
  with prefixes such as `module.`, `backbone.`, `encoder_q.`, `encoder.` in front of the library's own names;
- a `.safetensors` file of such a state dict;
- a PySlowFast checkpoint (`s1.pathway0_stem.conv.weight`, …) of Slow-R50, SlowFast-R50, I3D-R50 or C2D-R50: its names are
  converted to pytorchvideo's (`vdiag.models.pyslowfast`).

Nested dicts are flattened to dotted names (`{"teacher": {"backbone.x": …}}` → `teacher.backbone.x`),
and the prefix is found, not guessed from a list: for every key that ends with one of the backbone's
own parameter names, the part in front is a candidate prefix, and the candidate that covers the most
parameters wins. Ties go to the online network over `encoder_k.` / `target` / `momentum` / `ema`
copies, except in DINO's layout (top-level `student` and `teacher`), where the teacher wins: DINO
evaluates its teacher (DINO, Caron et al. 2021, §3.1: "we use the teacher network … for evaluation").
Classifier heads and other extra keys are ignored; a missing parameter or a shape mismatch is an
error that names the file, the first few offending names, and what to do.

`load_backbone_weights` returns a report whose `summary` is one line saying which prefix and which
copy were taken, for the caller to print (`vdiag.console.note`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from torch import nn

from vdiag.checkpoint import read_state_file
from vdiag.errors import VdiagError
from vdiag.models.pyslowfast import convert_pyslowfast, is_pyslowfast

SECONDARY_COPIES = ("encoder_k", "target", "momentum", "teacher", "ema", "key_encoder")
DINO_COPIES = ("student", "teacher")


def detect_checkpoint_kind(path: str | Path) -> str:
    """What a path given where a checkpoint goes is, before reading it: 'huggingface' or 'file'.

    'huggingface': a folder with `config.json` (build it with `build_backbone(str(path))`, no
    `--backbone` needed); 'file': a weights file (vdiag checkpoint, state dict, safetensors), read
    with `read_state_file`.

    Args:
        path: the checkpoint path.

    Returns:
        'huggingface' or 'file'.

    Raises:
        VdiagError: the path does not exist, or is a folder without `config.json`.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return "huggingface"
        raise VdiagError(f"{path} is a folder without config.json; pass a weights file, or a Hugging Face model folder")
    if not path.is_file():
        raise VdiagError(f"checkpoint {path} does not exist")
    return "file"


def tensor_state(obj: dict) -> dict[str, torch.Tensor]:
    """The flat name → tensor mapping inside a checkpoint: nested dicts become dotted names.

    A vdiag checkpoint gives its `model` entry (the method's state dict) unchanged.

    Args:
        obj: what `read_state_file` returned.

    Returns:
        {dotted name: tensor}, e.g. `{"state_dict.module.layer1.0.conv1.0.weight": …}`.
    """
    if obj.get("format") == "vdiag" and isinstance(obj.get("model"), dict):
        return obj["model"]
    flat: dict[str, torch.Tensor] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, torch.Tensor):
                flat[f"{prefix}{key}"] = value
            elif isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(obj, "")
    return flat


def is_dino_layout(obj: dict) -> bool:
    """Whether a checkpoint holds DINO's two copies side by side: top-level `student` and `teacher` dicts."""
    return all(isinstance(obj.get(key), dict) for key in DINO_COPIES)


def match_prefix(file_keys: list[str], model_keys: list[str], *, prefer_teacher: bool = False) -> tuple[str, int]:
    """The prefix p for which the most model keys appear as p + key in the file; (p, count).

    Args:
        file_keys: the (flattened) names in the file.
        model_keys: the backbone body's own parameter names.
        prefer_teacher: break ties towards a `teacher` copy (DINO's layout) instead of away from it.

    Returns:
        (prefix, number of model keys found under it); ("", 0) when none match.
    """
    counts = prefix_counts(file_keys, model_keys)
    if not counts:
        return "", 0

    def rank(item):
        prefix, count = item
        words = prefix.split(".")
        if prefer_teacher:
            preferred = "teacher" in words
        else:
            preferred = not any(copy in prefix for copy in SECONDARY_COPIES)
        return (count, preferred, -len(prefix))

    prefix, count = max(counts.items(), key=rank)
    return prefix, count


def prefix_counts(file_keys: list[str], model_keys: list[str]) -> Counter:
    """For every prefix p, how many file keys are p + (one of the model's keys)."""
    model_set = set(model_keys)
    counts: Counter[str] = Counter()
    for key in file_keys:
        parts = key.split(".")
        for cut in range(len(parts)):
            if ".".join(parts[cut:]) in model_set:
                counts[".".join(parts[:cut]) + ("." if cut else "")] += 1
    return counts


def describe_choice(prefix: str, counts_by_prefix: Counter, *, dino: bool) -> str:
    """Which copy a prefix is, in words, naming the copies that were left (for the one-line summary)."""
    others = [p for p, count in counts_by_prefix.items() if p != prefix and count >= counts_by_prefix[prefix] / 2]
    if dino and "teacher" in prefix.split("."):
        return "the teacher, which DINO evaluates; the student is ignored"
    if dino:
        return "the student (no complete teacher in the file)"
    left = [p for p in others if any(copy in p for copy in SECONDARY_COPIES)]
    if left:
        return f"the online network; {', '.join(sorted(left)[:2])} ignored"
    return ""


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> dict:
    """Load a local checkpoint into `backbone.body`; returns what was taken, with a one-line summary.

    The file may be a bare state dict, a torchvision / pytorchvideo / PySlowFast checkpoint, a
    safetensors file or a vdiag one (its backbone sits under `backbone.body.`): the key prefix that
    matches the most parameters is used (the module docstring gives the rules).

    Args:
        backbone: a `VideoBackbone` (or any module with a `.body`).
        path: the local file.

    Returns:
        {'prefix': the stripped key prefix, 'copy': which copy in words ('' when only one),
        'converted': the source naming converted ('' or 'pyslowfast'), 'loaded': tensors loaded,
        'ignored': other entries, 'summary': one line for the user}.

    Raises:
        VdiagError: the file is missing or unreadable, has no weights for this backbone, lacks some
            of its parameters, or has parameters of other shapes.
    """
    raw = read_state_file(path)
    dino = is_dino_layout(raw)
    state = tensor_state(raw)
    body = backbone.body
    if hasattr(body, "weights_target"):  # a user's module under `body.model`: its own names
        body = body.weights_target()
    target = body.state_dict()
    name = getattr(backbone, "name", type(body).__name__)
    converted = ""
    if is_pyslowfast(state):
        state = convert_pyslowfast(state, name)
        converted = "pyslowfast"
    prefix, _ = match_prefix(list(state), list(target), prefer_teacher=dino)
    mapped = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    needed = [k for k in target if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in mapped]
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
    loaded = sum(1 for k in target if k in mapped)
    copy = describe_choice(prefix, prefix_counts(list(state), list(target)), dino=dino)
    summary = (
        f"{Path(path).name}: {loaded} tensors for {name} from "
        + (f"prefix {prefix!r}" if prefix else "the top level")
        + (f" ({copy})" if copy else "")
        + (" after converting PySlowFast names" if converted else "")
        + f"; {len(state) - loaded} other entries ignored"
    )
    return {"prefix": prefix, "copy": copy, "converted": converted, "loaded": loaded, "ignored": len(state) - loaded, "summary": summary}
