"""v-SwAV (Caron et al. 2020; Feichtenhofer et al. 2021; BOLD-DI §5.1).

Backbone → 3-layer MLP projector (2048 → 128) → L2-normalised z; scores against K L2-normalised
prototypes; Sinkhorn-Knopp codes (ε = 0.05, 3 iterations); each clip predicts the codes of its
video's other clips with temperature τ = 0.1.

Two stabilisers from SwAV's reference recipe:
- the prototypes stay frozen for the first `freeze_prototypes_steps` optimiser steps;
- an optional queue of earlier projections (`queue_size` > 0) joins the Sinkhorn problem once it
  is full, so that equal partition is imposed over more samples than a small batch holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vdiag.distributed import gather_no_grad
from vdiag.losses.precision import float32_island
from vdiag.losses.swav import sinkhorn, swav_loss
from vdiag.methods.base import Method, apply_transform
from vdiag.models.backbones import VideoBackbone
from vdiag.models.heads import mlp


class SwAV(Method):
    """Args: prototypes K, temperature τ, epsilon ε, sinkhorn_iterations, queue_size,
    freeze_prototypes_steps, projector widths and depth."""

    name = "swav"

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        prototypes: int = 1000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        queue_size: int = 0,
        freeze_prototypes_steps: int = 0,
        projector_hidden: int = 2048,
        projector_dim: int = 128,
        projector_layers: int = 3,
    ):
        super().__init__(backbone)
        self.temperature = temperature
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.projector = mlp(backbone.embed_dim, projector_hidden, projector_dim, num_layers=projector_layers)
        self.prototypes = nn.Linear(projector_dim, prototypes, bias=False)
        self.register_buffer("queue", torch.zeros(queue_size, projector_dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        loss = self.objective(self.representations(batch))
        return {"loss": loss, "swapped_prediction": loss.detach()}

    def representations(self, batch: dict) -> dict[str, torch.Tensor | None]:
        """L2-normalised projections z, (n, ρ, D), and the queue of earlier projections once it is full
        (as it was before this batch joined it; None otherwise). Normalises the prototypes first."""
        with torch.no_grad():  # SwAV normalises the prototypes before every step
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        z = F.normalize(self.encode(batch["clips"], self.projector), dim=-1)  # (n, ρ, D)
        size = self.queue.shape[0]
        queue = self.queue.clone() if size > 0 and int(self.queue_filled) >= size else None
        if self.training and size > 0:
            self._enqueue(z.detach().flatten(0, 1))
        return {"z": z, "queue": queue}

    @float32_island
    def objective(self, representations: dict, transform: torch.Tensor | None = None, temperature: float | None = None) -> torch.Tensor:
        """Swapped prediction of Sinkhorn codes; with a (D, D) `transform` P, on the renormalised parts
        z Pᵀ (and queue Pᵀ) against the same prototypes. Scores, Sinkhorn (SwAV Eq. 3) and the log-softmax
        run in float32 whatever the autocast state (`vdiag.losses.precision`)."""
        z, queue = representations["z"], representations["queue"]
        if transform is not None:
            z = F.normalize(apply_transform(z, transform), dim=-1)
            queue = None if queue is None else F.normalize(apply_transform(queue, transform), dim=-1)
        scores = z @ self.prototypes.weight.T  # (n, ρ, K)
        # one Sinkhorn problem per view, as facebookresearch/swav (per crop) and lightly solve it;
        # the queue (one, shared by the views) joins each problem
        codes = torch.stack([self._codes(scores[:, view].detach(), queue) for view in range(scores.shape[1])], dim=1)
        return swav_loss(scores, codes, temperature or self.temperature)

    @torch.no_grad()
    def _codes(self, scores: torch.Tensor, queue: torch.Tensor | None) -> torch.Tensor:
        if queue is None:
            return sinkhorn(scores, self.epsilon, self.sinkhorn_iterations)
        queued = queue @ self.prototypes.weight.T
        return sinkhorn(torch.cat([queued, scores]), self.epsilon, self.sinkhorn_iterations)[queue.shape[0] :]

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        z = gather_no_grad(z)
        size = self.queue.shape[0]
        keep = min(z.shape[0], size)
        self.queue.copy_(torch.cat([z[-keep:].to(self.queue.dtype), self.queue[: size - keep]]))
        self.queue_filled.fill_(min(size, int(self.queue_filled) + keep))

    def before_optimizer_step(self) -> None:
        if int(self.steps_done) < self.freeze_prototypes_steps:
            self.prototypes.weight.grad = None  # SwAV's `freeze_prototypes_niters`

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        self.steps_done += 1
