"""v-SimCLR (Chen et al. 2020; Feichtenhofer et al. 2021; BOLD-DI §3.1 Eq. 1, §5.1).

ρ clips per video go through the backbone and a 3-layer MLP projector (hidden 2048, output 128);
every clip is an anchor whose positives are the video's other clips and whose negatives are all
clips of the other videos in the (global) batch: multi-positive InfoNCE with temperature α = 0.1.
"""

from __future__ import annotations

import torch

from vdiag.losses.infonce import info_nce
from vdiag.methods.base import Method, apply_transform
from vdiag.models.backbones import VideoBackbone
from vdiag.models.heads import mlp


class SimCLR(Method):
    """Args: temperature α; projector hidden / output widths and depth (BOLD-DI §5.1)."""

    name = "simclr"

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        temperature: float = 0.1,
        projector_hidden: int = 2048,
        projector_dim: int = 128,
        projector_layers: int = 3,
    ):
        super().__init__(backbone)
        self.temperature = temperature
        self.projector = mlp(backbone.embed_dim, projector_hidden, projector_dim, num_layers=projector_layers)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        loss = self.objective(self.representations(batch))
        return {"loss": loss, "info_nce": loss.detach()}

    def representations(self, batch: dict) -> dict[str, torch.Tensor]:
        """The vectors the loss compares: projector outputs z, (n, ρ, D)."""
        return {"z": self.encode(batch["clips"], self.projector)}

    def objective(self, representations: dict, transform: torch.Tensor | None = None, temperature: float | None = None) -> torch.Tensor:
        """Eq. 1 on z, or on z Pᵀ for a (D, D) `transform` P (BOD-VCL's static / dynamic parts)."""
        return info_nce(apply_transform(representations["z"], transform), temperature or self.temperature)
