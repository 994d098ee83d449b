"""VICReg (Bardes et al. 2022; ViDiDi App. A.4, Eq. 8–11): invariance, variance, covariance.

    s(Z, Z') = 1/B Σ_i ‖z_i − z'_i‖²                               invariance (Eq. 8)
    v(Z)     = 1/D Σ_j max(0, γ − √(Var(z^j) + ε))                 variance   (Eq. 9)
    c(Z)     = 1/D Σ_{i≠j} C(Z)_{ij}²                              covariance (Eq. 10)
    L = λ s(Z, Z') + μ [v(Z) + v(Z')] + ν [c(Z) + c(Z')]           (Eq. 11)

With ρ clips per video, invariance averages over the ρ(ρ−1)/2 pairs and variance / covariance
average over the ρ views, so ρ = 2 is Eq. 11 exactly. Batch statistics (Var, C) are computed over
the global batch, gathered across ranks with gradient, as in the VICReg reference code.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from vdiag.distributed import gather_with_grad


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Eq. 9 for one view `(B, D)`: hinge on the regularised standard deviation of each dimension."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Eq. 10 for one view `(B, D)`: squared off-diagonal covariances, divided by D."""
    batch, dim = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (batch - 1)
    off_diagonal = cov - torch.diag(torch.diag(cov))
    return off_diagonal.pow(2).sum() / dim


def vicreg_loss(
    embeddings: torch.Tensor,
    invariance_weight: float = 1.0,
    variance_weight: float = 1.0,
    covariance_weight: float = 0.05,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> dict[str, torch.Tensor]:
    """Eq. 11 over ρ views; returns {'loss', 'invariance', 'variance', 'covariance'} (unweighted parts).

    Args:
        embeddings: `(n, ρ, D)` expander outputs.
        invariance_weight, variance_weight, covariance_weight: λ, μ, ν (ViDiDi B.3: 1, 1, 0.05;
            the VICReg paper: 25, 25, 1).

    Example:
        >>> vicreg_loss(torch.randn(32, 2, 2048))["loss"]
    """
    n, positives, _ = embeddings.shape
    if positives < 2:
        raise ValueError("VICReg needs at least 2 clips per video (ρ ≥ 2)")
    pairs = list(itertools.combinations(range(positives), 2))
    invariance = torch.stack([F.mse_loss(embeddings[:, j], embeddings[:, k], reduction="none").sum(1).mean() for j, k in pairs]).mean()
    views = [gather_with_grad(embeddings[:, j]) for j in range(positives)]
    # Eq. 11 sums v and c over the two views; for ρ views: 2 × their mean, so ρ = 2 is Eq. 11
    variance = 2 * torch.stack([variance_term(z, gamma, eps) for z in views]).mean()
    covariance = 2 * torch.stack([covariance_term(z) for z in views]).mean()
    loss = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
    return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}
