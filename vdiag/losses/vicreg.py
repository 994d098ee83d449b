"""VICReg (Bardes et al. 2022; ViDiDi App. A.4, Eq. 8–11): invariance, variance, covariance.

Two normalisations of the same three terms exist, and the weights mean different things in each:

- `form="reference"` (default): the VICReg reference implementation (facebookresearch/vicreg,
  main_vicreg.py, `VICReg.forward`; solo-learn and lightly's `VICRegLoss` do the same)::

      repr = 1/(B·D) Σ_i ‖z_i − z'_i‖²                    F.mse_loss(x, y)
      std  = ½ [1/D Σ_j max(0, γ − √(Var(z^j) + ε))] + ½ [same for Z']
      cov  = 1/D Σ_{i≠j} C(Z)_{ij}² + 1/D Σ_{i≠j} C(Z')_{ij}²
      L    = λ repr + μ std + ν cov                        λ, μ, ν = 25, 25, 1 in the reference

- `form="paper"`: the equations as printed (VICReg paper Eq. 1–6; ViDiDi Eq. 8–11)::

      s(Z, Z') = 1/B Σ_i ‖z_i − z'_i‖²                    (summed over the D dimensions)
      v(Z)     = 1/D Σ_j max(0, γ − √(Var(z^j) + ε))
      c(Z)     = 1/D Σ_{i≠j} C(Z)_{ij}²
      L = λ s(Z, Z') + μ [v(Z) + v(Z')] + ν [c(Z) + c(Z')]

  so the paper form with (λ, μ, ν) equals the reference form with (λ·D, 2μ, ν): the printed
  (25, 25, 1) with the printed equations is not what the authors trained.

With ρ clips per video, invariance averages over the ρ(ρ−1)/2 pairs and variance / covariance
average over the ρ views (times 2 for the sums over two views), so ρ = 2 is each form exactly.
Batch statistics (Var, C) are computed over the global batch, gathered across ranks with gradient,
as in the reference code.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from vdiag.distributed import gather_with_grad
from vdiag.losses.precision import float32_island

FORMS = ("reference", "paper")


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """v(Z) for one view (VICReg Eq. 1; ViDiDi Eq. 9): hinge on each dimension's regularised std.

    Args:
        z: `(B, D)` embeddings of one view.
        gamma: target standard deviation γ.
        eps: ε added to the variance (unbiased, over the batch).

    Returns:
        Scalar 1/D Σ_j max(0, γ − √(Var(z^j) + ε)).
    """
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """c(Z) for one view (VICReg Eq. 3–4; ViDiDi Eq. 10): squared off-diagonal covariances / D.

    Args:
        z: `(B, D)` embeddings of one view.

    Returns:
        Scalar 1/D Σ_{i≠j} C(Z)_{ij}², C the unbiased batch covariance.
    """
    batch, dim = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (batch - 1)
    off_diagonal = cov - torch.diag(torch.diag(cov))
    return off_diagonal.pow(2).sum() / dim


@float32_island
def vicreg_loss(
    embeddings: torch.Tensor,
    invariance_weight: float = 1.0,
    variance_weight: float = 1.0,
    covariance_weight: float = 0.05,
    gamma: float = 1.0,
    eps: float = 1e-4,
    form: str = "reference",
) -> dict[str, torch.Tensor]:
    """VICReg over ρ views; returns {'loss', 'invariance', 'variance', 'covariance'} (unweighted parts).

    Runs in float32 whatever the autocast state (variances and covariances, Eq. 9–10).

    Args:
        embeddings: `(n, ρ, D)` expander outputs.
        invariance_weight, variance_weight, covariance_weight: λ, μ, ν (the reference code and the
            VICReg paper: 25, 25, 1; ViDiDi B.3: 1, 1, 0.05).
        gamma, eps: the variance hinge's target γ and ε.
        form: 'reference' (facebookresearch/vicreg's normalisation, the default) or 'paper' (the
            printed equations); see the module docstring.

    Returns:
        dict of scalars: the weighted `loss` and its three unweighted terms in the chosen form.

    Raises:
        ValueError: fewer than 2 clips per video, or an unknown form.

    Example:
        >>> vicreg_loss(torch.randn(32, 2, 2048), 25.0, 25.0, 1.0)["loss"]
    """
    n, positives, dim = embeddings.shape
    if positives < 2:
        raise ValueError("VICReg needs at least 2 clips per video (ρ ≥ 2)")
    if form not in FORMS:
        raise ValueError(f"unknown VICReg form {form!r}; choose one of {', '.join(FORMS)}")
    pairs = list(itertools.combinations(range(positives), 2))
    invariance = torch.stack([F.mse_loss(embeddings[:, j], embeddings[:, k]) for j, k in pairs]).mean()  # mean over B·D
    views = [gather_with_grad(embeddings[:, j]) for j in range(positives)]
    variance = torch.stack([variance_term(z, gamma, eps) for z in views]).mean()  # reference: ½ v(Z) + ½ v(Z')
    covariance = 2 * torch.stack([covariance_term(z) for z in views]).mean()  # both forms: c(Z) + c(Z')
    if form == "paper":  # sums over dimensions (s) and over the two views (v), as printed
        invariance, variance = invariance * dim, variance * 2
    loss = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
    return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}
