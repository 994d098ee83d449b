"""vdiag checkpoints: one `.pt` file that loads with `torch.load(path, weights_only=True)`.

    {
      "format": "vdiag", "version": 1, "vdiag_version": "0.1.0",
      "config":   the resolved training config (plain JSON-able values),
      "model":    the method's state dict (backbone under `backbone.body.`, heads, momentum
                  encoders, queues, prototypes),
      "position": {"epoch": e, "step": s, "global_step": g, "finished": bool}
                  (e epochs and s steps of epoch e are done),
      "optimizer", "scaler": their state dicts (scaler None without fp16),
      "rng":      {"torch": ByteTensor, "cuda": [ByteTensor, …]},
      "history":  [per-epoch summaries],
    }

Written to a temporary file and renamed, so a crash never leaves a broken checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vdiag import __version__
from vdiag.errors import VdiagError
from vdiag.io import atomic_path

CHECKPOINT_FORMAT = "vdiag"
CHECKPOINT_VERSION = 1


def read_state_file(path: str | Path, what: str = "weights file") -> dict:
    """`torch.load(weights_only=True)` with one-line errors for missing or foreign files.

    Args:
        path: the file.
        what: how the error messages name it ('weights file', 'checkpoint').

    Returns:
        The loaded dict, tensors on the CPU.

    Raises:
        VdiagError: the file is missing, holds pickled objects besides tensors, is truncated or
            not a PyTorch file, or holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise VdiagError(f"{what} {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle of arbitrary objects, truncated file, not a torch file
        raise VdiagError(load_failure_message(path, err)) from None
    if not isinstance(obj, dict):
        raise VdiagError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def load_failure_message(path: Path, err: Exception) -> str:
    """One line for a failed `torch.load(weights_only=True)`: what the file is and what to do."""
    if "Weights only load failed" in str(err):
        return (
            f"{path} holds pickled Python objects besides tensors, which vdiag never unpickles; "
            "save the weights alone with torch.save(model.state_dict(), path)"
        )
    return f"{path} is not a complete PyTorch file (truncated, or another format); copy or save it again"


def save_checkpoint(path: str | Path, **content) -> Path:
    """Write a checkpoint atomically; `content` supplies config, model, position, ….

    Tensors are moved to the CPU so that the file loads on any machine.

    Returns:
        `path`, as a Path.

    Raises:
        VdiagError: the folder cannot be created or written to.
    """
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "vdiag_version": __version__}
    state.update({key: _to_cpu(value) for key, value in content.items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a vdiag checkpoint safely; anything else is a one-line error saying what it is.

    Returns:
        The checkpoint dict (see the module docstring). Its `config` may predate settings added
        since: pass it through `vdiag.train.config.migrate_config` before building from it.

    Raises:
        VdiagError: see `read_state_file` and `check_checkpoint`.
    """
    return check_checkpoint(read_state_file(Path(path), what="checkpoint"), Path(path))


def check_checkpoint(state: dict, path: Path) -> dict:
    """`state` (already read with weights_only=True) if it is a usable vdiag checkpoint, else a one-line error.

    Raises:
        VdiagError: not a vdiag checkpoint (another tool's weights), written by a newer vdiag, or
            missing its config, model or position.
    """
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise VdiagError(
            f"{path} is not a vdiag checkpoint (no format: 'vdiag'); to diagnose another tool's weights "
            "pass them with --backbone NAME, to start training from them use --weights"
        )
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise VdiagError(f"{path} was written by a newer vdiag (checkpoint version {state['version']}); upgrade vdiag")
    for key in ("config", "model", "position"):
        if key not in state:
            raise VdiagError(f"{path} is a vdiag checkpoint without {key!r}; it is damaged")
    return state


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
