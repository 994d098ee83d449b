"""What every method shares: the backbone, ρ-clip batches, momentum (EMA) updates.

A method is an `nn.Module` that owns everything it trains and everything it keeps between steps
(projector, momentum encoder, queue, prototypes), so its `state_dict()` is the whole training
state a checkpoint needs. The trainer calls, per step:

    method.start_epoch(epoch)       # once per epoch, and again on resume (schedules, refreshes)
    losses = method(batch)          # {'loss': total, plus named parts, all scalars}
    losses['loss'].backward(); method.before_optimizer_step(); optimizer.step()
    method.after_step(progress)     # progress in [0, 1]: momentum updates, step counters

`batch['clips']` is `(n, ρ, C, T + extra_frames, H, W)`: n videos, ρ augmented clips each
(BOLD-DI §3.1). A method that takes temporal derivatives or frame differences sets `extra_frames`
so that the data layer samples that many frames after each clip instead of wrapping around.

The wrappers compose with a base objective by inheritance (`class ViDiDiSimCLR(ViDiDi, SimCLR)`,
`class BODVCLMoCo(BODVCL, MoCo)`) and call these hooks of the base, all declared on `Method`:

    forward(batch)                 the base loss (ViDiDi on derivative views; `KoopmanBilevel.base_forward`)
    encode(clips, head, backbone)  one backbone pass + head, (n, ρ, D) (BOLD-DI / BOD-VCL override it to
                                   keep the per-frame features)
    projector                      the head from backbone features to the loss's space (the Koopman
                                   features u_t of BOLD-DI / BOD-VCL are its per-frame outputs)
    representations(batch)         the tensors the loss compares, with side effects done (queues fed)
    objective(representations, transform=None, temperature=None)
                                   the loss on those tensors, or on their parts v Pᵀ for a (D, D)
                                   projector P, with another temperature (BOD-VCL's L_A and L_M)

so that `forward(batch) == objective(representations(batch))` for a base objective. SimCLR, MoCo,
BYOL, SwAV and VICReg (every base a wrapper composes with) implement all of them; the hooks of
`Method` itself raise NotImplementedError naming the method and the missing hook.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vdiag.errors import VdiagError
from vdiag.losses.precision import float32_island
from vdiag.models.backbones import VideoBackbone


class Method(nn.Module):
    """A training objective: an `nn.Module` holding the backbone and everything it trains or keeps.

    Subclasses set the class attributes below, define `forward`, and (base objectives that wrappers
    compose with) `representations`, `objective` and a `projector`; see the module docstring for
    the contract and when each hook is called.

    Args:
        backbone: the video backbone (`vdiag.models.build_backbone`); its output is (N, embed_dim).
    """

    name = "method"
    min_positives = 2  # clips per video the objective needs
    max_positives: int | None = None  # two-view objectives (ViDiDi, DCLR, concepts) set 2
    sync_batchnorm = True  # SyncBN under DDP on GPU (BOLD-DI §5.1: all methods but MoCo)
    extra_frames = 0  # frames sampled after each clip (derivatives, frame differences)
    accumulates_exactly = False  # a mean over independent samples, so micro-batches add up to the batch (`train.accumulate`)
    recomputable = True  # `train.activation_checkpointing` may recompute the backbone's blocks in backward

    def __init__(self, backbone: VideoBackbone):
        super().__init__()
        self.backbone = backbone
        self.epoch = 0

    def start_epoch(self, epoch: int) -> None:
        """Called before the first step of every epoch (0-based), and on resume with the resumed
        epoch. State that must not change when an epoch is resumed belongs in buffers."""
        self.epoch = epoch

    def encode(self, clips: torch.Tensor, head: nn.Module, backbone: nn.Module | None = None) -> torch.Tensor:
        """(n, ρ, C, T, H, W) → head(backbone(clip)) as (n, ρ, D), in one backbone pass."""
        n, positives = clips.shape[:2]
        features = (backbone or self.backbone)(clips.flatten(0, 1))
        return head(features).view(n, positives, -1)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """The step's losses, {'loss': total, plus named parts}, all scalars; `batch['clips']` is (n, ρ, C, T, H, W)."""
        raise NotImplementedError(f"{type(self).__name__} defines no forward(batch); every method must")

    def representations(self, batch: dict) -> dict[str, torch.Tensor]:
        """The tensors the loss compares (e.g. {'z': (n, ρ, D)}), with the step's side effects done
        (a queue fed with this batch's keys); `objective` turns them into the loss."""
        raise NotImplementedError(
            f"{type(self).__name__} does not expose representations(batch); a wrapper that splits the loss "
            "(BOD-VCL) needs a base objective that does (see vdiag.methods.base)"
        )

    def objective(self, representations: dict, transform: torch.Tensor | None = None, temperature: float | None = None) -> torch.Tensor:
        """The scalar loss on `representations`; with a (D, D) `transform` P, on the parts v Pᵀ (BOD-VCL's
        static / dynamic parts), and with `temperature` instead of the method's own where it has one."""
        raise NotImplementedError(
            f"{type(self).__name__} does not define objective(representations, transform, temperature); a wrapper "
            "that splits the loss (BOD-VCL) needs a base objective that does (see vdiag.methods.base)"
        )

    def before_optimizer_step(self) -> None:
        """Called between backward and the optimiser step (e.g. to hold some parameters still)."""

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """Called after each optimiser step with the fraction of training done."""


@float32_island
def apply_transform(vectors: torch.Tensor, transform: torch.Tensor | None) -> torch.Tensor:
    """Rows of `vectors` (…, D) through a linear map P: v Pᵀ; identity when `transform` is None.

    In float32 whatever the autocast state: P is BOD-VCL's eigen-projector (`vdiag.koopman.split_projectors`)."""
    return vectors if transform is None else vectors @ transform.to(vectors.dtype).T


def loss_terms(spec: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """'vs,vd,sd' → ('vs', 'vd', 'sd'): the terms an ablation option selects, checked against `allowed`.

    Raises:
        VdiagError: an empty list or a term outside `allowed`.
    """
    terms = tuple(t.strip() for t in str(spec).split(",") if t.strip())
    if not terms or any(t not in allowed for t in terms):
        raise VdiagError(f"method_args.losses must be a comma-separated list of {', '.join(allowed)}; got {spec!r}")
    return terms


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy for a momentum (target) network: same weights, no gradients."""
    target = copy.deepcopy(module)
    for parameter in target.parameters():
        parameter.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """θ_m ← γ θ_m + (1 − γ) θ (BOLD-DI §3.1; ViDiDi A.3 writes ξ ← τξ + (1 − τ)θ).

    Parameters are averaged; buffers (BN running statistics) are copied from the online network.

    Args:
        target: the momentum network θ_m, updated in place.
        online: the online network θ (same architecture).
        momentum: γ in [0, 1] (1 keeps the target as it is).
    """
    online_params = [p.detach() for p in online.parameters()]
    target_params = list(target.parameters())
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1 - momentum)
    for target_buffer, online_buffer in zip(target.buffers(), online.buffers()):
        target_buffer.copy_(online_buffer)


class StepSeed(nn.Module):
    """Per-step random draws that every rank agrees on and a resumed run repeats.

    The seed is drawn once from torch's RNG at construction (seeded by the run's seed; DDP
    broadcasts it from rank 0) and kept, with the step count, as buffers, so it travels with the
    checkpoint. `generator()` is seeded by (seed, step); `advance()` moves to the next step.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("seed", torch.randint(0, 2**62, ()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.seed) + int(self.steps))

    @torch.no_grad()
    def advance(self) -> None:
        self.steps += 1
