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
    """Read a weights file safely: `torch.load(weights_only=True)`, or safetensors for `.safetensors` files.

    A safetensors file is recognised by its suffix or by its header (8 bytes of little-endian length,
    then a JSON object), so a renamed one loads too. Nothing is ever unpickled.

    Args:
        path: the file.
        what: how the error messages name it ('weights file', 'checkpoint').

    Returns:
        The loaded dict, tensors on the CPU (a safetensors file gives its flat name → tensor dict).

    Raises:
        VdiagError: the file is missing (or is a folder), holds pickled objects besides tensors, is
            truncated or not a PyTorch / safetensors file, or holds something other than a dict.
    """
    path = Path(path)
    if path.is_dir():
        raise VdiagError(
            f"{what} {path} is a folder; a Hugging Face model folder (config.json + model.safetensors) is read by the "
            "model adapter, anything else needs the path of the weights file inside it"
        )
    if not path.is_file():
        raise VdiagError(f"{what} {path} does not exist")
    if is_safetensors(path):
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle of arbitrary objects, truncated file, not a torch file
        raise VdiagError(load_failure_message(path, err)) from None
    if not isinstance(obj, dict):
        raise VdiagError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def is_safetensors(path: Path) -> bool:
    """Whether `path` is a safetensors file: its suffix, or a header of 8-byte length + '{'."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header_length = int.from_bytes(head[:8], "little")
    return 2 <= header_length <= min(path.stat().st_size - 8, 100_000_000)


def _read_safetensors(path: Path) -> dict:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise VdiagError(f"{path} is a safetensors file and the safetensors package is missing; pip install safetensors") from None
    try:
        return dict(load_file(str(path), device="cpu"))
    except (SafetensorError, OSError, ValueError) as err:
        raise VdiagError(f"{path} is not a complete safetensors file ({str(err).splitlines()[0]}); copy or save it again") from None


def load_failure_message(path: Path, err: Exception) -> str:
    """One message for a failed `torch.load(weights_only=True)`: what the file is and what to do.

    For pickled objects (a training script's `args`, a whole `nn.Module`), the message carries two
    lines of Python that extract the tensors where the user trusts the file; vdiag never unpickles.
    """
    if "Weights only load failed" in str(err):
        out = path.with_name(path.stem + ".weights.pt")
        return (
            f"{path} holds pickled Python objects besides tensors, which vdiag never unpickles; if you trust the file, "
            f"extract its weights in your own Python environment with these two lines, then pass {out}:\n"
            f"    import torch; ckpt = torch.load({str(path)!r}, map_location='cpu', weights_only=False)\n"  # text only (weights_only=True)
            "    torch.save({k: v.state_dict() if hasattr(v, 'state_dict') else v for k, v in (ckpt if isinstance(ckpt, dict) "
            "else {'model': ckpt}).items() if hasattr(v, 'state_dict') or isinstance(v, (dict, torch.Tensor))}, "
            f"{str(out)!r})"
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


def non_finite_tensors(*states: dict) -> list[str]:
    """Names of the floating-point tensors holding NaN or ±inf in nested state dicts (model, optimiser).

    Every tensor is checked, parameters and buffers alike (a batch-norm running variance can
    overflow while the loss is still finite).

    Args:
        *states: state dicts, possibly nested (an optimiser's `state`).

    Returns:
        Dotted names of the non-finite tensors, in order; empty when all are finite.
    """
    bad: list[str] = []

    def visit(value, name: str) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                bad.append(name)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{name}.{key}" if name else str(key))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{name}.{i}" if name else str(i))

    for state in states:
        visit(state, "")
    return bad


def dataset_fingerprint(records, root: str | Path) -> str:
    """A cheap fingerprint of a dataset split: SHA-256 (16 hex digits) of its videos' paths relative
    to `root` and their labels, in order. No video is opened.

    Args:
        records: the split's `VideoRecord`s (anything with `path` and `label`).
        root: the dataset's root folder (paths are taken relative to it where they lie inside it).

    Returns:
        "<number of videos>:<16 hex digits>".
    """
    import hashlib

    digest = hashlib.sha256()
    root = Path(root)
    for record in records:
        path = Path(record.path)
        try:
            path = path.relative_to(root)
        except ValueError:
            pass
        digest.update(f"{path.as_posix()}\t{record.label}\n".encode())
    return f"{len(records)}:{digest.hexdigest()[:16]}"


def check_recorded_data(config: dict, *, load_split=None) -> None:
    """Whether the dataset a run recorded is the one found at its recorded path now.

    Call it when a diagnostic reads a checkpoint's recorded `data.path` (no `--data` given). A
    relative path (stored as typed by vdiag before 0.2) names a different folder from each working
    directory, so it is refused; a recorded fingerprint (`data.fingerprint`, written by the trainer)
    is compared with the training split found at the path now.

    Args:
        config: the checkpoint's config.
        load_split: `load_index(path, format, split, split_id)` (vdiag.data.formats), called only
            when the config records a fingerprint.

    Raises:
        VdiagError: the recorded path is relative, or the split found there is not the one trained on.
    """
    data = (config or {}).get("data") or {}
    path = data.get("path")
    if not path:
        return
    if not Path(path).is_absolute():
        raise VdiagError(
            f"this checkpoint records its data as the relative path {path!r}, which depends on the folder vdiag runs in; "
            "pass the dataset with --data"
        )
    recorded = data.get("fingerprint")
    if not recorded or load_split is None:
        return
    index = load_split(path, data.get("format", "auto"), data.get("split", "train"), data.get("split_id", 1))
    found = dataset_fingerprint(index.records, index.root)
    if found != recorded:
        raise VdiagError(
            f"the dataset at {path} is not the one this checkpoint was trained on (its {data.get('split', 'train')} split "
            f"fingerprint is {found}, the run recorded {recorded}); pass the right dataset with --data"
        )
