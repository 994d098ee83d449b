"""Koopman operators of per-frame features: estimation, eigen-split, modes (seed 000 §4.1–4.2; BOD-VCL).

A clip's per-frame features u_1 … u_L ∈ R^M (rows of `features`, shape (B, L, M)) are read as a
linear dynamical system u_{t+1} ≈ K̂ u_t. seed 000 Eq. 5 estimates K̂ = U_fore U_back^† from one clip.
The methods and the diagnostics share this module, which never assumes the features came from a
Koopman-trained model.

**Estimators.**
- `estimator="clip"`: one operator per clip, K̂ = U_fore U_back^† with the pseudo-inverse truncated
  at `rtol` × the largest singular value (the authors' `pinv(rtol=1e-4)`). With M ≥ L − 1 this fit
  reproduces the clip's own frames exactly, so a prediction loss on those frames is zero up to
  round-off and carries no training signal (`prediction_loss` of such an operator is ~1e-12). It is
  what the diagnostics need to describe each clip's own dynamics.
- `estimator="shared"` (the training default): one operator for the whole (global) batch, fitted by
  ridge regression on all B(L − 1) transitions, K̂ = Y^T X (X^T X + λI)^{-1} with λ = ridge · tr(X^T X)/M.
  With B(L − 1) > M transitions the fit cannot be exact, so ‖U_fore − K̂ U_back‖² measures how far the
  features are from evolving linearly, and its gradient moves them towards it. The solve is a
  Cholesky solve of a λ-shifted Gram matrix: no explicit inverse, no NaN on constant clips or
  repeated frames. Under DDP the two M × M Gram matrices are summed over ranks (with gradient), so
  every rank fits the same operator as one process over the whole batch.

**Eigen-decomposition and split.** K̂ = Φ Λ Φ^{-1} (`torch.linalg.eig`, complex). A mode is static
(time-invariant) under
- seed 000 §4.2 ("bolddi"): |λ| ≥ ξ and |Arg λ| ≤ ω (ξ = 0.9, ω = 0.1, Tables 11–12);
- BOD-VCL ("bodvcl"): |λ − 1| ≤ r (r = 0.1);
and dynamic otherwise. Both rules are symmetric under conjugation, so a conjugate pair always lands
on one side and projections onto either set are real.

**What is detached.** Eigen-decompositions run on the detached operator. The split is a discrete
choice, and the backward of `eig` divides by λ_i − λ_j, which explodes for the (near-)degenerate and
conjugate eigenvalues real features produce. Gradients reach the features through the projections
(Z · φ_j with φ_j fixed for the step) and through the operator of the prediction loss (a smooth
ridge solve).

Example:
    >>> features = torch.randn(32, 8, 128)                  # 32 clips, 8 frames, M = 128
    >>> operator = fit_operator(features)                   # (128, 128), shared
    >>> loss = prediction_loss(features, operator)
    >>> eigenvalues, eigenvectors = eigen(operator)
    >>> static = static_modes(eigenvalues, rule="bolddi")   # bool (128,)
"""

from __future__ import annotations

import torch

from vdiag import distributed as dist
from vdiag.errors import VdiagError

RULES = ("bolddi", "bodvcl")


def transitions(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, M) → (U_back, U_fore) as rows (B, L − 1, M): frames 1..L−1 and 2..L (seed 000 Eq. 5)."""
    if features.dim() != 3 or features.shape[1] < 2:
        raise VdiagError(f"Koopman estimation needs features of shape (clips, frames ≥ 2, M); got {tuple(features.shape)}")
    return features[:, :-1], features[:, 1:]


def fit_operator(features: torch.Tensor, estimator: str = "shared", ridge: float = 1e-3, rtol: float = 1e-4) -> torch.Tensor:
    """K̂ with u_{t+1} ≈ K̂ u_t.

    Args:
        features: (B, L, M) per-frame features, time along dim 1.
        estimator: 'shared' (one operator, ridge over all clips' transitions, DDP-global) or
            'clip' (one operator per clip, rank-truncated pseudo-inverse).
        ridge: λ relative to the mean squared feature norm ('shared').
        rtol: singular values below rtol × the largest are dropped ('clip').

    Returns:
        (M, M) for 'shared', (B, M, M) for 'clip'; float32 or wider.
    """
    back, fore = transitions(features)
    dtype = torch.promote_types(features.dtype, torch.float32)
    back, fore = back.to(dtype), fore.to(dtype)
    if estimator == "clip":
        # K̂ᵀ = U_back_rows^† U_fore_rows: the least-squares solution with rank truncation.
        return (torch.linalg.pinv(back, rtol=rtol) @ fore).transpose(1, 2)
    if estimator != "shared":
        raise VdiagError(f"unknown Koopman estimator {estimator!r}; choose 'shared' or 'clip'")
    x, y = back.reshape(-1, back.shape[-1]), fore.reshape(-1, fore.shape[-1])
    gram = dist.all_reduce_sum_with_grad(x.T @ x)  # Σ u_t u_tᵀ over the global batch, (M, M)
    cross = dist.all_reduce_sum_with_grad(y.T @ x)  # Σ u_{t+1} u_tᵀ
    dim = gram.shape[0]
    shift = ridge * gram.diagonal().sum() / dim + torch.finfo(dtype).tiny ** 0.5
    regularised = gram + shift * torch.eye(dim, dtype=dtype, device=gram.device)
    # K̂ (XᵀX + λI) = YᵀX  ⇔  (XᵀX + λI) K̂ᵀ = (YᵀX)ᵀ, a symmetric positive-definite solve.
    factor = torch.linalg.cholesky(regularised)
    return torch.cholesky_solve(cross.T, factor).T


def prediction_loss(features: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
    """‖U_fore − K̂ U_back‖² averaged over transitions and dimensions (seed 000 Eq. 6; BOD-VCL L_pred).

    Eq. 6 as printed compares f(X_back) with K̂ f(X_fore), the reverse of Eq. 5's direction; we
    predict each frame from the one before, as Eq. 5 and Eq. 8 define K̂.
    """
    back, fore = transitions(features)
    operator = operator.to(back.dtype)
    predicted = back @ operator.transpose(-1, -2)  # rows: (K̂ u_t)ᵀ
    return (fore - predicted).pow(2).mean()


def eigen(operator: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K̂ = Φ Λ Φ^{-1}: eigenvalues (…, M) and eigenvectors as columns (…, M, M), complex, detached."""
    eigenvalues, eigenvectors = torch.linalg.eig(operator.detach().double())
    return eigenvalues, eigenvectors


def static_modes(eigenvalues: torch.Tensor, rule: str = "bolddi", xi: float = 0.9, omega: float = 0.1, radius: float = 0.1) -> torch.Tensor:
    """True where a mode is static (time-invariant) under the split rule; dynamic elsewhere.

    bolddi (seed 000 §4.2): |λ| ≥ ξ and |Arg λ| ≤ ω. bodvcl: |λ − 1| ≤ radius.
    (Algorithm 1, line 11, calls a mode dynamic only when |λ| < ξ *and* Arg λ > ω, which is not
    the complement of §4.2's rule; we follow §4.2, so every mode is either static or dynamic.)
    """
    if rule == "bolddi":
        return (eigenvalues.abs() >= xi) & (eigenvalues.angle().abs() <= omega)
    if rule == "bodvcl":
        return (eigenvalues - 1).abs() <= radius
    raise VdiagError(f"unknown eigen-split rule {rule!r}; choose one of {', '.join(RULES)}")


def mode_amplitudes(features: torch.Tensor, eigenvectors: torch.Tensor) -> torch.Tensor:
    """b(t) = Φ^{-1} u_t for every frame (seed 000 Eq. 8–9): (…, L, M) complex.

    For an exactly linear system b(t + k) = Λ^k b(t): modes with λ ≈ 1 stay flat, the others rotate
    by Arg λ and scale by |λ| per step. Solved with `linalg.solve`, not an explicit inverse.
    """
    columns = features.to(eigenvectors.dtype).transpose(-1, -2)  # (…, M, L)
    return torch.linalg.solve(eigenvectors, columns).transpose(-1, -2)


def split_projectors(eigenvectors: torch.Tensor, static: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real (M, M) projectors P_static = Re(Φ_S Φ^{-1}[S]) and P_dynamic = I − P_static.

    u = Φ b splits as Φ_S b_S + Φ_D b_D; applied to row features, `u @ P.T` gives each part.
    """
    identity = torch.eye(eigenvectors.shape[-1], dtype=eigenvectors.dtype, device=eigenvectors.device)
    inverse = torch.linalg.solve(eigenvectors, identity)  # Φ^{-1}; Φ is well conditioned for generic K̂
    projector = ((eigenvectors * static.to(eigenvectors.dtype).unsqueeze(-2)) @ inverse).real
    identity = identity.real
    return projector, identity - projector


def project(features: torch.Tensor, projector: torch.Tensor) -> torch.Tensor:
    """Rows of `features` (…, M) through a real (M, M) projector from `split_projectors`."""
    return features @ projector.to(features.dtype).transpose(-1, -2)


def continuous_eigenvalues(eigenvalues: torch.Tensor, stride: float = 1.0) -> torch.Tensor:
    """log(λ)/δ: growth rate (real part, per frame) and angular frequency (imaginary, rad per frame).

    Frequencies are only defined up to 2π/δ (the principal branch of log): motion faster than half a
    turn per sampled step aliases. λ = 0 maps to −inf real part (an instantly vanishing mode).
    """
    return torch.log(eigenvalues) / stride


def dmd(features: torch.Tensor, rank: int | None = None, rtol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact DMD per clip (Tu et al. 2014): the eigenvalues and modes of K̂ on the data's subspace.

    A per-clip operator from L − 1 transitions in M ≫ L dimensions has rank ≤ L − 1, so most of its
    M eigenvalues are zeros that say nothing about the clip. DMD projects on the leading left
    singular vectors of U_back (rank r), eigendecomposes the r × r reduced operator
    Ã = Q_rᵀ U_fore V_r Σ_r^{-1}, and returns its eigenvalues (B, r) and the exact modes
    Φ = U_fore V_r Σ_r^{-1} W (B, M, r); the eigenvalues are those non-zero ones of `fit_operator(
    features, 'clip')`. Singular values below rtol × the largest count as zero (their eigenvalues
    are returned as 0 and their modes as zero vectors, so shapes stay fixed across clips).
    """
    back, fore = transitions(features.detach().double())
    x, y = back.transpose(1, 2), fore.transpose(1, 2)  # columns, (B, M, L − 1)
    left, singular, right_h = torch.linalg.svd(x, full_matrices=False)
    r = min(rank or singular.shape[-1], singular.shape[-1])
    left, singular, right = left[..., :r], singular[..., :r], right_h[..., :r, :].transpose(-1, -2)
    keep = singular > rtol * singular[..., :1]
    inverse_singular = torch.where(keep, 1.0 / singular.clamp_min(torch.finfo(singular.dtype).tiny), torch.zeros_like(singular))
    scaled = y @ right * inverse_singular[..., None, :]  # U_fore V Σ^{-1}, (B, M, r)
    reduced = left.transpose(-1, -2) @ scaled  # (B, r, r)
    eigenvalues, w = torch.linalg.eig(reduced)
    modes = scaled.to(w.dtype) @ w
    return eigenvalues, modes


def eigenvalue_summary(eigenvalues: torch.Tensor, xi: float = 0.9, omega: float = 0.1, radius: float = 0.1) -> dict[str, float]:
    """Scalar summaries of a set of eigenvalues: static fraction per rule, spectral radius stats."""
    flat = eigenvalues.reshape(-1)
    if flat.numel() == 0:
        raise VdiagError("no eigenvalues to summarise")
    per_operator = eigenvalues.abs().reshape(-1, eigenvalues.shape[-1]).amax(dim=1)
    return {
        "static_fraction_bolddi": float(static_modes(flat, "bolddi", xi, omega).double().mean()),
        "static_fraction_bodvcl": float(static_modes(flat, "bodvcl", radius=radius).double().mean()),
        "spectral_radius_mean": float(per_operator.double().mean()),
        "spectral_radius_max": float(per_operator.double().max()),
        "modulus_mean": float(flat.abs().double().mean()),
        "argument_abs_mean": float(flat.angle().abs().double().mean()),
    }
