"""BOD-VCL (Song et al., later version of BOLD-DI; summary only): decoupled losses on the
time-invariant and time-variant parts of a Koopman decomposition, bi-level.

Per training step, on top of v-SimCLR, v-BYOL or v-MoCo:

1. Stage 1 (Fig. 3a, d): L_pred = ‖U_fore − K̂_θ U_back‖² makes the per-frame features evolve
   linearly, so that the estimated operator K̂_θ describes inter-frame evolution. This is the inner
   loss: θ* = θ − γ∇L_pred(θ).
2. Stage 2 (Fig. 3b–d), at θ*: K̂_θ* = ΦΛΦ^{-1} (detached: "given this operator"); modes with
   |λ − 1| ≤ 0.1 are time-invariant (static), the others time-variant (dynamic). The real projectors
   P_A = Re(Φ_S Φ^{-1}[S]) and P_M = I − P_A split every representation z into z P_Aᵀ + z P_Mᵀ; the
   base objective is applied to each part separately, L_A on the static parts with temperature τ_A
   and L_M on the dynamic parts with τ_M. The outer loss is L_A + L_M.

The hypergradient (AID-FD by default), the Koopman features and the shared estimator are those of
BOLD-DI (`KoopmanBilevel`, `vdiag.koopman`). Where the summary is silent we follow BOLD-DI and say so
in docs/methods/bodvcl.md: the shared ridge estimator instead of the authors' per-clip `pinv` (which
makes L_pred identically zero), the base objective's own form for L_A and L_M (InfoNCE for SimCLR and
MoCo, whose queue is projected too; regression for BYOL, which has no temperature), and τ_A = τ_M = the
base temperature unless set.

Example:
    >>> method = build_method("bodvcl-simclr", build_backbone("tiny", keep_temporal=True))
    >>> losses = method({"clips": torch.randn(4, 2, 3, 8, 64, 64)})   # loss, static, dynamic, inner, static_modes
"""

from __future__ import annotations

import torch

from vdiag import koopman
from vdiag.errors import VdiagError
from vdiag.methods.bilevel import KoopmanBilevel
from vdiag.methods.byol import BYOL
from vdiag.methods.moco import MoCo
from vdiag.methods.simclr import SimCLR
from vdiag.models.backbones import VideoBackbone


class BODVCL(KoopmanBilevel):
    """Args:
    radius: a mode is time-invariant when |λ − 1| ≤ radius (0.1).
    static_temperature, dynamic_temperature: τ_A and τ_M (None: the base temperature).
    ridge: relative ridge of the shared Koopman estimator.
    **arguments: `KoopmanBilevel`'s (inner_steps, inner_lr, hypergradient, …) and the base
        objective's options.
    """

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        radius: float = 0.1,
        static_temperature: float | None = None,
        dynamic_temperature: float | None = None,
        ridge: float = 1e-3,
        **arguments,
    ):
        super().__init__(backbone, **arguments)
        if radius <= 0 or ridge <= 0 or any(t is not None and t <= 0 for t in (static_temperature, dynamic_temperature)):
            raise VdiagError("BOD-VCL needs radius > 0, ridge > 0 and positive temperatures")
        self.radius = radius
        self.static_temperature = static_temperature
        self.dynamic_temperature = dynamic_temperature
        self.ridge = ridge

    def inner_loss(self, batch: dict, constants: dict | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
        """Stage 1: L_pred of the batch's operator (a smooth function of θ: nothing held fixed)."""
        self.encode(batch["clips"], self.projector)
        features = self.koopman_features()
        return self.linearity_loss(features), {}, {}

    def outer_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Stage 2: L_A + L_M on the static and dynamic parts under this batch's operator."""
        representations = self.representations(batch)
        features = self.koopman_features()
        operator = koopman.fit_operator(features.detach(), "shared", self.ridge)
        eigenvalues, eigenvectors = koopman.eigen(operator)
        static = koopman.static_modes(eigenvalues, "bodvcl", radius=self.radius)
        static_projector, dynamic_projector = koopman.split_projectors(eigenvectors, static)
        static_loss = self.objective(representations, static_projector, self.static_temperature)  # L_A
        dynamic_loss = self.objective(representations, dynamic_projector, self.dynamic_temperature)  # L_M
        with torch.no_grad():
            prediction = koopman.prediction_loss(features, operator)
        return {
            "loss": static_loss + dynamic_loss,
            "static": static_loss.detach(),
            "dynamic": dynamic_loss.detach(),
            "prediction": prediction,
            "static_modes": static.sum().float(),
        }


class BODVCLSimCLR(BODVCL, SimCLR):
    """v-SimCLR + BOD-VCL: InfoNCE on each part."""

    name = "bodvcl-simclr"


class BODVCLBYOL(BODVCL, BYOL):
    """v-BYOL + BOD-VCL: prediction-to-target regression on each part."""

    name = "bodvcl-byol"


class BODVCLMoCo(BODVCL, MoCo):
    """v-MoCo + BOD-VCL: InfoNCE against the (projected) queue on each part."""

    name = "bodvcl-moco"
