"""Float32 islands: numerically sensitive code runs in float32 whatever the autocast state.

Under mixed precision (`train.amp`, bf16 or fp16 autocast) the backbone's matmuls and convolutions
run in 16 bits, which is what makes them fast. A few computations must not: a bf16 mantissa holds
about 3 significant digits, so

- log-sum-exp of similarities over a batch (InfoNCE, BOLD-DI Eq. 1; SwAV's log-softmax; DCLR Eq. 2)
  rounds logits of size 1/α = 10 to ±0.04;
- Sinkhorn-Knopp (SwAV §3.1 Eq. 3) exponentiates scores divided by ε = 0.05;
- the Koopman least squares (BOLD-DI Eq. 5) solves with Gram matrices whose entries are sums over
  thousands of transitions, and Cholesky needs them symmetric positive definite to the last digit;
- the finite-difference hypergradient (BOLD-DI App. E, DARTS Eq. 8) subtracts two gradients that
  differ by ε·Hv, about 1 % of either, below bf16's resolution.

`float32_island` (a decorator or a context manager) disables autocast on every device type where
it is enabled and, as a decorator, promotes 16-bit floating tensor arguments (also inside lists, tuples and dicts) to float32 (float64
and complex inputs are kept). The loss inputs are (n, ρ, D) embeddings: the island costs nothing
measurable next to the backbone.
"""

from __future__ import annotations

import functools
from contextlib import ExitStack, contextmanager

import torch

_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def at_least_float32(value):
    """A 16-bit floating tensor as float32; any other tensor or value unchanged (lists, tuples and dicts element-wise)."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in _LOW_PRECISION else value
    if isinstance(value, (list, tuple)):
        return type(value)(at_least_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: at_least_float32(v) for k, v in value.items()}
    return value


@contextmanager
def autocast_disabled():
    """Autocast off on every device type where it is on (a no-op without autocast)."""
    with ExitStack() as stack:
        for device_type in _DEVICE_TYPES:
            try:
                enabled = torch.is_autocast_enabled(device_type)
            except (RuntimeError, ValueError):  # a device type this build does not know
                continue
            if enabled:
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def float32_island(function):
    """Decorator: `function` runs with autocast disabled and 16-bit tensor arguments promoted to float32.

    Args:
        function: any callable taking tensors (positionally, by keyword, or in lists/tuples).

    Returns:
        The wrapped callable; its outputs are float32 (or wider) wherever its inputs were.
    """

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        with autocast_disabled():
            args = tuple(at_least_float32(a) for a in args)
            kwargs = {k: at_least_float32(v) for k, v in kwargs.items()}
            return function(*args, **kwargs)

    return wrapped
