"""Where a training step's memory goes, measured exactly on any device (issue 21).

Peak accelerator memory in training is dominated by the tensors autograd keeps for backward. Two
measures, both exact on CPU and independent of the allocator (they count tensor storages, not pages):

- `SavedTensors`: the bytes of the distinct storages autograd saves during a forward
  (`torch.autograd.graph.saved_tensors_hooks`), per named stage, and the peak of those still alive
  (a storage saved by a graph that is later dropped, e.g. behind a `.detach()`, stops counting).
  Storages are counted once however many ops save them (a view saves its base's storage).
  A checkpointed block (`torch.utils.checkpoint`, non-reentrant) keeps only its inputs, and those
  are counted; what it recomputes in backward is transient and only `step_peak_memory` sees it.
- `step_peak_memory`: the peak of live tensor bytes over one whole optimiser step (forward,
  backward, optimiser), by category (activations, temporaries, parameters, gradients, optimiser
  state), from torch's `MemTracker` (a dispatch mode that follows every storage). It includes the
  no-gradient passes' transient tensors and the recomputation of checkpointed blocks; it does not see
  a backend's private workspaces (cuDNN, oneDNN).

Example:
    >>> meter = SavedTensors()
    >>> with meter, meter.stage("backbone"):
    ...     loss = model(batch)["loss"]
    >>> meter.bytes_by_stage()   # {'backbone': …}
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef


class SavedTensors:
    """Bytes of the distinct storages autograd saves for backward, per stage, and their live peak.

    Args:
        ignore: tensors whose storages are not counted (the parameters and buffers, which a layer
            saves for its backward but which exist anyway).

    Use as a context manager around a forward; `stage(name)` labels what is saved inside it
    (nested stages: the innermost wins; outside any stage: "other"). `label_modules` and
    `label_method` set stages from module forwards or bound methods without editing them.

    A storage is attributed to the stage that saved it first. Its size is the whole storage's
    (`untyped_storage().nbytes()`), so a saved slice of a larger tensor counts the larger tensor,
    which is what stays allocated.
    """

    def __init__(self, ignore: Iterable[torch.Tensor] = ()) -> None:
        self._ignore = {StorageWeakRef(t.untyped_storage()).cdata for t in ignore}
        self._stages: list[str] = ["other"]
        self._saved: dict[int, tuple[StorageWeakRef, int, str]] = {}  # storage id → (weak ref, bytes, stage)
        self._totals: dict[str, int] = {}
        self.peak_live = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)  # not for double backward
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Attribute what is saved inside to `name`."""
        self._stages.append(name)
        try:
            yield
        finally:
            self._stages.pop()

    def label_modules(self, stages: dict[str, nn.Module]) -> None:
        """Attribute what each module's forward saves to its stage name (until the context exits)."""
        for name, module in stages.items():
            before = module.register_forward_pre_hook(lambda *_, name=name: self._push(name))
            after = module.register_forward_hook(lambda *_: self._pop())
            self._undo += [before.remove, after.remove]

    def _push(self, name: str) -> None:
        self._stages.append(name)

    def _pop(self) -> None:
        self._stages.pop()

    def label_method(self, owner: object, attribute: str, name: str) -> None:
        """Attribute what `owner.attribute(...)` saves to `name` (an instance attribute shadows the method until exit)."""
        original = getattr(owner, attribute)

        def labelled(*args, **kwargs):
            with self.stage(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, labelled)
        self._undo.append(lambda: delattr(owner, attribute))

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        ref = StorageWeakRef(storage)
        if ref.cdata in self._ignore:
            return tensor.detach()
        known = self._saved.get(ref.cdata)
        if known is None or known[0].expired():
            size, stage = storage.nbytes(), self._stages[-1]
            self._saved[ref.cdata] = (ref, size, stage)
            self._totals[stage] = self._totals.get(stage, 0) + size
            self.peak_live = max(self.peak_live, self.live_bytes())
        return tensor.detach()  # the same storage; keeping `tensor` itself would tie a saved output to its own graph

    def live_bytes(self) -> int:
        """Bytes of the saved storages still allocated now."""
        return sum(size for ref, size, _ in self._saved.values() if not ref.expired())

    def bytes_by_stage(self) -> dict[str, int]:
        """Bytes saved per stage (each storage once, to the stage that saved it first)."""
        return dict(self._totals)

    @property
    def total(self) -> int:
        """Bytes saved over all stages."""
        return sum(self._totals.values())


class _NoHook:
    def remove(self) -> None:
        pass


def step_peak_memory(step: Callable[[], None], *tracked: object) -> dict[str, int]:
    """Peak live tensor bytes over `step()` (torch's MemTracker), by category at the peak.

    Args:
        step: one optimiser step (forward, backward, optimiser).
        tracked: modules, optimisers and tensors created before the call (parameters, optimiser
            state, the batch), so that they count.

    Returns:
        {'total', 'activation', 'temporary', 'parameter', 'buffer', 'gradient', 'optimizer', 'other'}:
        bytes at the moment of the peak, summed over devices (each storage rounded up to 512 bytes,
        as the CUDA caching allocator does).
    """
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(*tracked)
    for module in tracked:  # MemTracker hooks every parameter's gradient; a frozen one (a momentum copy) has none
        if isinstance(module, nn.Module):
            for parameter in module.parameters():
                if not parameter.requires_grad:
                    tracker._param_to_grad_hook_handles[parameter] = (_NoHook(), _NoHook())
    with tracker:
        step()
    names = {
        "Parameter": "parameter",
        "Buffer": "buffer",
        "Gradient": "gradient",
        "Activation": "activation",
        "Temp": "temporary",
        "Optstate": "optimizer",
        "Other": "other",
        "Total": "total",
    }
    out = dict.fromkeys(names.values(), 0)
    for per_device in tracker.get_tracker_snapshot("peak").values():
        for key, value in per_device.items():
            out[names[getattr(key, "value", key)]] += int(value)
    return out
