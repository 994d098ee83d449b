"""BOLD-DI (Song et al., BOLD-DI §4, Algorithm 1): decoupled static and dynamic learning, bi-level.

Per training step, on top of a base v-CL objective (v-SimCLR, v-MoCo, v-BYOL, v-SwAV):

1. Dynamic module (§4.1): per-frame features u_t (`KoopmanBilevel.koopman_features`, M = the
   projector width, 128 by default as Table 13) and one Koopman operator K̂ for the batch
   (`vdiag.koopman.fit_operator`, shared ridge: see docs/koopman.md for why not Eq. 5 per clip);
   L_dynamic = ‖U_fore − K̂ U_back‖² (Eq. 6).
2. Stratify module (§4.2, Alg. 1 lines 8–14): K̂ = ΦΛΦ^{-1}; φ_m is static when |λ_m| ≥ ξ and
   |Arg λ_m| ≤ ω (ξ = 0.9, ω = 0.1, Tables 11–12), dynamic otherwise; the J dynamic eigenvectors
   (detached) are the strata of the backdoor adjustment.
3. Static module (§4.3): L_ct(f, do), InfoNCE with the backdoor-adjusted similarity averaged over
   the dynamic eigenvectors with P(φ_j) = 1/J (Eq. 10–11, `vdiag.losses.backdoor`).
4. Bi-level objective (Eq. 12–14): θ* = θ − γ∇L_ct(θ, do) (inner), then L_cl(θ*) + ν L_dynamic(θ*)
   (outer, ν = 0.1, Table 10) with the hypergradient of `KoopmanBilevel` (AID-FD by default).

Both levels re-estimate K̂ from their own parameters (Alg. 1 lines 6–7 and 22–23).

Example:
    >>> method = build_method("bolddi-simclr", build_backbone("tiny", keep_temporal=True))
    >>> losses = method({"clips": torch.randn(4, 2, 3, 8, 64, 64)})   # loss, info_nce, dynamic, inner, dynamic_modes
"""

from __future__ import annotations

import torch

from vdiag import koopman
from vdiag.errors import VdiagError
from vdiag.losses.backdoor import backdoor_info_nce
from vdiag.methods.bilevel import KoopmanBilevel
from vdiag.methods.byol import BYOL
from vdiag.methods.moco import MoCo
from vdiag.methods.simclr import SimCLR
from vdiag.methods.swav import SwAV
from vdiag.models.backbones import VideoBackbone


class BOLDDI(KoopmanBilevel):
    """Args:
    dynamic_weight: ν, weight of L_dynamic in the outer loss (0.1, Table 10).
    xi, omega: the stratify thresholds ξ and ω (0.9, 0.1).
    backdoor_temperature: α of Eq. 11 (0.1, as the base methods' α).
    ridge: relative ridge of the shared Koopman estimator.
    **arguments: `KoopmanBilevel`'s (inner_steps, inner_lr, hypergradient, …) and the base
        objective's options.
    """

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        dynamic_weight: float = 0.1,
        xi: float = 0.9,
        omega: float = 0.1,
        backdoor_temperature: float = 0.1,
        ridge: float = 1e-3,
        **arguments,
    ):
        super().__init__(backbone, **arguments)
        if dynamic_weight < 0 or not 0 < xi or not 0 <= omega <= torch.pi or backdoor_temperature <= 0 or ridge <= 0:
            raise VdiagError("BOLD-DI needs dynamic_weight ≥ 0, xi > 0, omega in [0, π], backdoor_temperature > 0, ridge > 0")
        self.dynamic_weight = dynamic_weight
        self.xi = xi
        self.omega = omega
        self.backdoor_temperature = backdoor_temperature
        self.ridge = ridge

    def inner_loss(self, batch: dict, constants: dict | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
        """L_ct(f, do) (Eq. 10–11) along the dynamic eigenvectors of this batch's K̂.

        The strata φ_j are "obtained in advance" (§4.3): estimated once per inner iterate and held
        fixed for the finite differences around it.
        """
        z = self.encode(batch["clips"], self.projector)  # Z, (n, ρ, M)
        features = self.koopman_features()
        if constants is None:
            operator = koopman.fit_operator(features.detach(), "shared", self.ridge)  # Eq. 5
            eigenvalues, eigenvectors = koopman.eigen(operator)  # lines 8–14
            dynamic = ~koopman.static_modes(eigenvalues, "bolddi", self.xi, self.omega)
            constants = {"directions": eigenvectors[:, dynamic]}
        directions = constants["directions"]
        loss = backdoor_info_nce(z, directions, self.backdoor_temperature)
        return loss, {"dynamic_modes": torch.tensor(float(directions.shape[-1]), device=z.device)}, constants

    def outer_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """L_cl + ν L_dynamic (Eq. 12), from one backbone pass."""
        outputs = self.base_forward(batch)  # L_cl, Eq. 1 or 2
        features = self.koopman_features()
        dynamic = self.linearity_loss(features)  # Eq. 6
        return {**outputs, "loss": outputs["loss"] + self.dynamic_weight * dynamic, "dynamic": dynamic.detach()}


class BOLDDISimCLR(BOLDDI, SimCLR):
    """v-SimCLR + BOLD-DI."""

    name = "bolddi-simclr"


class BOLDDIMoCo(BOLDDI, MoCo):
    """v-MoCo + BOLD-DI."""

    name = "bolddi-moco"


class BOLDDIBYOL(BOLDDI, BYOL):
    """v-BYOL + BOLD-DI (Z is the online projection)."""

    name = "bolddi-byol"


class BOLDDISwAV(BOLDDI, SwAV):
    """v-SwAV + BOLD-DI."""

    name = "bolddi-swav"
