"""VICReg (Bardes et al. 2022; ViDiDi App. A.4, B.2–B.3).

Backbone → 3-layer MLP expander (hidden 2048, output 2048, ViDiDi B.2) → invariance between the
video's clips, variance and covariance regularisation of each view's batch (Eq. 8–11). Weights
λ, μ, ν: 1, 1, 0.05 in ViDiDi B.3 (the `paper` preset), 25, 25, 1 in the VICReg paper.
"""

from __future__ import annotations

import torch

from vdiag.losses.vicreg import vicreg_loss
from vdiag.methods.base import Method, apply_transform
from vdiag.models.backbones import VideoBackbone
from vdiag.models.heads import mlp


class VICReg(Method):
    """Args: invariance_weight λ, variance_weight μ, covariance_weight ν, expander widths and depth."""

    name = "vicreg"

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        invariance_weight: float = 1.0,
        variance_weight: float = 1.0,
        covariance_weight: float = 0.05,
        projector_hidden: int = 2048,
        projector_dim: int = 2048,
        projector_layers: int = 3,
    ):
        super().__init__(backbone)
        self.weights = dict(invariance_weight=invariance_weight, variance_weight=variance_weight, covariance_weight=covariance_weight)
        self.projector = mlp(backbone.embed_dim, projector_hidden, projector_dim, num_layers=projector_layers)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        parts = vicreg_loss(self.representations(batch)["z"], **self.weights)  # Eq. 11
        return {"loss": parts["loss"], **{k: v.detach() for k, v in parts.items() if k != "loss"}}

    def representations(self, batch: dict) -> dict[str, torch.Tensor]:
        """The expander outputs z, (n, ρ, D)."""
        return {"z": self.encode(batch["clips"], self.projector)}

    def objective(self, representations: dict, transform: torch.Tensor | None = None, temperature: float | None = None) -> torch.Tensor:
        """Eq. 11 on z, or on z Pᵀ for a (D, D) `transform` P (VICReg has no temperature: ignored)."""
        return vicreg_loss(apply_transform(representations["z"], transform), **self.weights)["loss"]
