"""v-BYOL (Grill et al. 2020; BOLD-DI Eq. 2; ViDiDi App. A.3).

Online: backbone → projector → predictor (2-layer MLPs, hidden 4096, output 256). Target: a
momentum copy of backbone + projector with stop-gradient, updated after each step with the
cosine-annealed rate τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2, τ_base = 0.99 (ViDiDi B.3). Every clip's
prediction regresses the target projections of the video's other clips; no negatives.
"""

from __future__ import annotations

import math

import torch

from vdiag.losses.byol import byol_loss
from vdiag.methods.base import Method, apply_transform, ema_update, momentum_copy
from vdiag.models.backbones import VideoBackbone
from vdiag.models.heads import mlp


def cosine_momentum(base: float, progress: float) -> float:
    """τ at training progress k/K ∈ [0, 1]: base at the start, 1 at the end (ViDiDi B.3)."""
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


class BYOL(Method):
    """Args: base_momentum τ_base; projector / predictor widths and depth."""

    name = "byol"

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        base_momentum: float = 0.99,
        projector_hidden: int = 4096,
        projector_dim: int = 256,
        projector_layers: int = 2,
        predictor_hidden: int = 4096,
    ):
        super().__init__(backbone)
        self.base_momentum = base_momentum
        self.projector = mlp(backbone.embed_dim, projector_hidden, projector_dim, num_layers=projector_layers)
        self.predictor = mlp(projector_dim, predictor_hidden, projector_dim, num_layers=2)
        self.momentum_backbone = momentum_copy(self.backbone)
        self.momentum_projector = momentum_copy(self.projector)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        loss = self.objective(self.representations(batch))
        return {"loss": loss, "regression": loss.detach()}

    def representations(self, batch: dict) -> dict[str, torch.Tensor]:
        """Online projections z and predictions p (with gradient), target projections (without)."""
        clips = batch["clips"]
        n, positives = clips.shape[:2]
        projections = self.encode(clips, self.projector)
        predictions = self.predictor(projections.flatten(0, 1)).view(n, positives, -1)
        with torch.no_grad():
            targets = self.encode(clips, self.momentum_projector, self.momentum_backbone)
        return {"z": projections, "predictions": predictions, "targets": targets}

    def objective(self, representations: dict, transform: torch.Tensor | None = None, temperature: float | None = None) -> torch.Tensor:
        """Eq. 2; with a (D, D) `transform` P, between the parts p Pᵀ and t Pᵀ (no temperature in BYOL)."""
        return byol_loss(apply_transform(representations["predictions"], transform), apply_transform(representations["targets"], transform))

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        momentum = cosine_momentum(self.base_momentum, progress)
        ema_update(self.momentum_backbone, self.backbone, momentum)
        ema_update(self.momentum_projector, self.projector, momentum)
