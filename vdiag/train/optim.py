"""Optimisers (SGD, LARS, AdamW), weight-decay exclusions and the warm-up + cosine schedule.

LARS is written here (You et al. 2017, "Large Batch Training of Convolutional Networks", Alg. 1)
because no light dependency offers it: timm's `Lars` would pull in huggingface_hub and safetensors.
It is SGD with momentum whose per-layer step is scaled by the trust ratio η‖w‖ / ‖∇w + λw‖; as in
SimCLR, BYOL and timm, layers without weight decay (biases, norms) skip both decay and adaptation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vdiag.errors import VdiagError


class LARS(torch.optim.Optimizer):
    """SGD + momentum with layer-wise trust ratio (You et al. 2017, Alg. 1).

    For each parameter w with gradient g in a group with weight decay λ > 0:

        u = g + λ w;   r = trust_coefficient · ‖w‖ / ‖u‖   (1 when either norm is 0)
        v ← μ v + r · u;   w ← w − lr · v

    Groups with λ = 0 take a plain momentum-SGD step (no adaptation).

    Args:
        params: parameters or parameter groups (`parameter_groups`).
        lr: the learning rate.
        momentum: μ.
        weight_decay: λ of groups that do not set their own.
        trust_coefficient: η of the trust ratio (0.001, You et al.).
        eps: added to ‖u‖ against division by zero.

    Example:
        >>> optimizer = LARS(model.parameters(), lr=1.2, weight_decay=1e-6)
    """

    def __init__(
        self, params, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0, trust_coefficient: float = 0.001, eps: float = 1e-8
    ):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient, eps=eps)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if group["weight_decay"] > 0:
                    update = update.add(param, alpha=group["weight_decay"])
                    param_norm, update_norm = torch.linalg.vector_norm(param), torch.linalg.vector_norm(update)
                    trust = group["trust_coefficient"] * param_norm / (update_norm + group["eps"])
                    trust = torch.where((param_norm > 0) & (update_norm > 0), trust, torch.ones_like(trust))
                    update = update.mul(trust)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(update).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                param.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay; biases and normalisation parameters without (and, for
    LARS, without adaptation). Frozen parameters (momentum encoders) are left out.

    Args:
        model: the module to optimise.
        weight_decay: λ of the first group.

    Returns:
        [{'params': weights, 'weight_decay': λ}, {'params': biases and norms, 'weight_decay': 0}].
    """
    decay, no_decay = [], []
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if isinstance(module, norm_types) or name == "bias" or param.ndim <= 1:
                no_decay.append(param)
            else:
                decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, lr: float, *, weight_decay: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """The optimiser of `train.optimizer` over `parameter_groups(model, weight_decay)`.

    Args:
        model: the module whose parameters train.
        name: 'sgd' (with momentum), 'lars' (SGD + LARS, seed 000 §5.1, ViDiDi B.3) or 'adamw'.
        lr: the base learning rate (the trainer sets each step's value with `set_learning_rate`).
        weight_decay: L2 weight decay of the weights (not of biases and norm layers).
        momentum: SGD / LARS momentum (unused by AdamW).

    Returns:
        The optimiser.

    Raises:
        VdiagError: an unknown optimiser name.
    """
    groups = parameter_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise VdiagError(f"unknown optimizer {name!r}; choose sgd, lars or adamw")


def learning_rate(
    step: int,
    total_steps: int,
    base_lr: float,
    *,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
    schedule: str = "cosine",
    milestones: tuple[float, ...] | list[float] = (),
    gamma: float = 0.1,
) -> float:
    """Linear warm-up to `base_lr`, then
    - "cosine": η · 0.5 [cos(πk/K) + 1] down to `min_lr_ratio · base_lr` (ViDiDi B.3; k counts
      steps after warm-up, K the steps after warm-up);
    - "step": η · γ^m, m the number of `milestones` (fractions of the run) passed (ViDiDi B.5's
      fine-tuning: ×0.1 at epochs 60 and 80 of 100 = milestones [0.6, 0.8]).

    Args:
        step: the global step k about to be taken (0-based).
        total_steps: K, the run's steps (epochs × steps per epoch).
        base_lr: η, the peak learning rate.
        warmup_steps: steps of linear warm-up from η / warmup_steps to η.
        min_lr_ratio: the cosine schedule's floor as a fraction of η.
        schedule: 'cosine' or 'step'.
        milestones: for 'step', fractions of the run in (0, 1) where the rate is multiplied by γ.
        gamma: γ, the 'step' schedule's factor.

    Returns:
        The learning rate for this step.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "step":
        passed = sum(step >= round(m * total_steps) for m in milestones)
        return base_lr * gamma**passed
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    floor = base_lr * min_lr_ratio
    return floor + (base_lr - floor) * 0.5 * (math.cos(math.pi * progress) + 1)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set `lr` on every parameter group (the schedule's value for the coming step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
