"""Koopman operators of per-frame features: estimation, eigen-split, modes (BOLD-DI §4.1–4.2; BOD-VCL).

A clip's per-frame features u_1 … u_L ∈ R^M (rows of `features`, shape (B, L, M)) are read as a
linear dynamical system u_{t+1} ≈ K̂ u_t. BOLD-DI Eq. 5 estimates K̂ = U_fore U_back^† from one clip.
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
- BOLD-DI §4.2 ("bolddi"): |λ| ≥ ξ and |Arg λ| ≤ ω (ξ = 0.9, ω = 0.1, Tables 11–12);
- BOD-VCL ("bodvcl"): |λ − 1| ≤ r (r = 0.1);
and dynamic otherwise. Both rules are symmetric under conjugation, so a conjugate pair always lands
on one side and projections onto either set are real.

**What is detached.** Eigen-decompositions run on the detached operator. The split is a discrete
choice, and the backward of `eig` divides by λ_i − λ_j, which explodes for the (near-)degenerate and
conjugate eigenvalues real features produce. Gradients reach the features through the projections
(Z · φ_j with φ_j fixed for the step) and through the operator of the prediction loss (a smooth
ridge solve).

**Precision.** `fit_operator`, `prediction_loss`, `eigen`, `mode_amplitudes`, `split_projectors` and
`project` run in float32 or wider whatever the autocast state (`vdiag.losses.precision.float32_island`):
under bf16 autocast the Gram matrices of Eq. 5 would keep ~3 significant digits, and CUDA's solve
refused the mixed dtypes outright.

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
from vdiag.console import warn
from vdiag.errors import VdiagError
from vdiag.losses.precision import float32_island

RULES = ("bolddi", "bodvcl")
NOISE_FLOOR = 1e-3  # singular values below NOISE_FLOOR × the largest (energy < 1e-6 of it) are noise
_warned: set[str] = set()  # conditions already warned about in this process


def transitions(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, M) → (U_back, U_fore) as rows (B, L − 1, M): frames 1..L−1 and 2..L (BOLD-DI Eq. 5).

    Args:
        features: (B, L, M) per-frame features, time along dim 1.

    Returns:
        (U_back, U_fore), each (B, L − 1, M), views of `features`.

    Raises:
        VdiagError: `features` is not 3-D or has fewer than 2 frames.
    """
    if features.dim() != 3 or features.shape[1] < 2:
        raise VdiagError(f"Koopman estimation needs features of shape (clips, frames ≥ 2, M); got {tuple(features.shape)}")
    return features[:, :-1], features[:, 1:]


@float32_island
def fit_operator(features: torch.Tensor, estimator: str = "shared", ridge: float = 1e-3, rtol: float = 1e-4) -> torch.Tensor:
    """K̂ with u_{t+1} ≈ K̂ u_t.

    Runs in float32 or wider whatever the autocast state (the ridge solve of BOLD-DI Eq. 5).

    Args:
        features: (B, L, M) per-frame features, time along dim 1.
        estimator: 'shared' (one operator, ridge over all clips' transitions, DDP-global) or
            'clip' (one operator per clip, rank-truncated pseudo-inverse).
        ridge: λ relative to the mean squared feature norm ('shared').
        rtol: singular values below rtol × the largest are dropped ('clip').

    Returns:
        (M, M) for 'shared', (B, M, M) for 'clip'; float32 or wider.

    Raises:
        VdiagError: bad `features` shape or an unknown estimator.

    With 'shared', B(L − 1) transitions over all ranks give B(L − 1) equations per row of K̂ for M
    unknowns: when B(L − 1) ≤ M the fit is exact (up to the ridge), the prediction loss is ~0 and
    carries no training signal. That is warned about once per process (with the fix).
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
    _warn_if_exact(x.shape[0] * dist.world_size(), x.shape[1], features.shape[1])
    gram = dist.all_reduce_sum_with_grad(x.T @ x)  # Σ u_t u_tᵀ over the global batch, (M, M)
    cross = dist.all_reduce_sum_with_grad(y.T @ x)  # Σ u_{t+1} u_tᵀ
    dim = gram.shape[0]
    shift = ridge * gram.diagonal().sum() / dim + torch.finfo(dtype).tiny ** 0.5
    regularised = gram + shift * torch.eye(dim, dtype=dtype, device=gram.device)
    # K̂ (XᵀX + λI) = YᵀX  ⇔  (XᵀX + λI) K̂ᵀ = (YᵀX)ᵀ, a symmetric positive-definite solve.
    factor = torch.linalg.cholesky(regularised)
    return torch.cholesky_solve(cross.T, factor).T


def _warn_if_exact(equations: int, unknowns: int, frames: int) -> None:
    """Warn once when the shared regression has no more equations (transitions) than unknowns (M)."""
    if equations > unknowns or "exact-shared-fit" in _warned:
        return
    _warned.add("exact-shared-fit")
    clips = -(-(unknowns + 1) // (frames - 1))
    warn(
        f"the shared Koopman fit has {equations} transitions (clips × (frames − 1), all processes) for M = {unknowns} "
        f"unknowns per row, so it is exact: the prediction loss is ~0 and gives no training signal (and the operator fits "
        f"any sequence). Use at least {clips} clips per fit (training: a larger --batch-size or --positives; a diagnostic: "
        f"more videos or --clips) or fewer feature dimensions M (a narrower projector or --layer)."
    )


@float32_island
def prediction_loss(features: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
    """‖U_fore − K̂ U_back‖² averaged over transitions and dimensions (BOLD-DI Eq. 6; BOD-VCL L_pred).

    Eq. 6 as printed compares f(X_back) with K̂ f(X_fore), the reverse of Eq. 5's direction; we
    predict each frame from the one before, as Eq. 5 and Eq. 8 define K̂.
    """
    back, fore = transitions(features)
    operator = operator.to(back.dtype)
    predicted = back @ operator.transpose(-1, -2)  # rows: (K̂ u_t)ᵀ
    return (fore - predicted).pow(2).mean()


@float32_island
def eigen(operator: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K̂ = Φ Λ Φ^{-1}: eigenvalues (…, M) and eigenvectors as columns (…, M, M), complex, detached."""
    eigenvalues, eigenvectors = torch.linalg.eig(operator.detach().double())
    return eigenvalues, eigenvectors


def static_modes(eigenvalues: torch.Tensor, rule: str = "bolddi", xi: float = 0.9, omega: float = 0.1, radius: float = 0.1) -> torch.Tensor:
    """True where a mode is static (time-invariant) under the split rule; dynamic elsewhere.

    bolddi (BOLD-DI §4.2): |λ| ≥ ξ and |Arg λ| ≤ ω. bodvcl: |λ − 1| ≤ radius.
    (Algorithm 1, line 11, calls a mode dynamic only when |λ| < ξ *and* Arg λ > ω, which is not
    the complement of §4.2's rule; we follow §4.2, so every mode is either static or dynamic.)

    Args:
        eigenvalues: complex eigenvalues, any shape.
        rule: 'bolddi' or 'bodvcl'.
        xi, omega: the BOLD-DI thresholds ξ (modulus) and ω (radians).
        radius: the BOD-VCL radius around 1.

    Returns:
        bool tensor of the eigenvalues' shape.

    Raises:
        VdiagError: an unknown rule.
    """
    if rule == "bolddi":
        return (eigenvalues.abs() >= xi) & (eigenvalues.angle().abs() <= omega)
    if rule == "bodvcl":
        return (eigenvalues - 1).abs() <= radius
    raise VdiagError(f"unknown eigen-split rule {rule!r}; choose one of {', '.join(RULES)}")


@float32_island
def mode_amplitudes(features: torch.Tensor, eigenvectors: torch.Tensor) -> torch.Tensor:
    """b(t) = Φ^{-1} u_t for every frame (BOLD-DI Eq. 8–9): (…, L, M) complex.

    For an exactly linear system b(t + k) = Λ^k b(t): modes with λ ≈ 1 stay flat, the others rotate
    by Arg λ and scale by |λ| per step. Solved with `linalg.solve`, not an explicit inverse.
    """
    columns = features.to(eigenvectors.dtype).transpose(-1, -2)  # (…, M, L)
    return torch.linalg.solve(eigenvectors, columns).transpose(-1, -2)


@float32_island
def split_projectors(eigenvectors: torch.Tensor, static: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real (M, M) projectors P_static = Re(Φ_S Φ^{-1}[S]) and P_dynamic = I − P_static.

    u = Φ b splits as Φ_S b_S + Φ_D b_D; applied to row features, `u @ P.T` gives each part.
    """
    identity = torch.eye(eigenvectors.shape[-1], dtype=eigenvectors.dtype, device=eigenvectors.device)
    inverse = torch.linalg.solve(eigenvectors, identity)  # Φ^{-1}; Φ is well conditioned for generic K̂
    projector = ((eigenvectors * static.to(eigenvectors.dtype).unsqueeze(-2)) @ inverse).real
    identity = identity.real
    return projector, identity - projector


@float32_island
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


def eigenvalue_summary(
    eigenvalues: torch.Tensor, xi: float = 0.9, omega: float = 0.1, radius: float = 0.1, below_noise_floor: int | None = None
) -> dict[str, float]:
    """Scalar summaries of a set of eigenvalues: static fraction per rule, spectral radius stats.

    The static fractions are the papers' eigenvalue counts (BOLD-DI §4.2; BOD-VCL): the share of
    eigenvalues in each static region. They count modes, not how much of the trajectory each mode
    carries; `static_energy` measures that.

    Args:
        eigenvalues: complex eigenvalues (…, K), after any noise-floor truncation.
        xi, omega, radius: the split rules' thresholds (see `static_modes`).
        below_noise_floor: how many eigenvalues were dropped before (directions below the noise
            floor); reported as `eigenvalues_below_noise_floor` when given.

    Returns:
        dict: static_fraction_bolddi, static_fraction_bodvcl, spectral_radius_mean / _max,
        modulus_mean, argument_abs_mean (and eigenvalues_below_noise_floor).

    Raises:
        VdiagError: no eigenvalues.
    """
    flat = eigenvalues.reshape(-1)
    if flat.numel() == 0:
        raise VdiagError("no eigenvalues to summarise")
    per_operator = eigenvalues.abs().reshape(-1, eigenvalues.shape[-1]).amax(dim=1)
    dropped = {} if below_noise_floor is None else {"eigenvalues_below_noise_floor": float(below_noise_floor)}
    return {
        **dropped,
        "static_fraction_bolddi": float(static_modes(flat, "bolddi", xi, omega).double().mean()),
        "static_fraction_bodvcl": float(static_modes(flat, "bodvcl", radius=radius).double().mean()),
        "spectral_radius_mean": float(per_operator.double().mean()),
        "spectral_radius_max": float(per_operator.double().max()),
        "modulus_mean": float(flat.abs().double().mean()),
        "argument_abs_mean": float(flat.angle().abs().double().mean()),
    }


def static_energy(
    features: torch.Tensor,
    rule: str = "bodvcl",
    xi: float = 0.9,
    omega: float = 0.1,
    radius: float = 0.1,
    noise_floor: float = NOISE_FLOOR,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Share of each clip's feature trajectory carried by its static (time-invariant) DMD modes.

    Counting eigenvalues (`eigenvalue_summary`'s static fractions) is a step function of the data:
    a mode holding 99 % of a clip and one holding 0.001 % count the same. Here each mode is weighted
    by its energy in the trajectory:

    1. per clip, the SVD of U_back (columns u_1 … u_{L−1}); directions with σ_i < noise_floor · σ_1
       are noise (dropped and counted);
    2. exact DMD on the kept rank-r subspace (Tu et al. 2014; `dmd`): Ã = Qᵀ U_fore V Σ^{-1} = W Λ W^{-1};
    3. every frame's coordinates c_t = Qᵀ u_t (t = 1 … L) split along the eigenvectors:
       c_t = W_S b_S(t) + W_D b_D(t), b(t) = W^{-1} c_t, S the static modes under `rule`
       (BOLD-DI §4.2 or BOD-VCL, as in `static_modes`); conjugate pairs fall on one side, so both
       parts are real;
    4. static_energy = Σ_t ‖W_S b_S(t)‖² / (Σ_t ‖W_S b_S(t)‖² + Σ_t ‖W_D b_D(t)‖²).

    For u_t = c + (a part that rotates or decays), it is ‖c‖²·L / (‖c‖²·L + Σ_t ‖moving part‖²)
    (exact when the two parts lie in orthogonal subspaces): 1 for features that do not change,
    0 for features that only move, and monotone in between. The split is oblique when the modes are
    not orthogonal, so the two energies need not add up to Σ‖u_t‖²; the share is still in [0, 1].

    Args:
        features: (B, L, M) per-frame features, L ≥ 3.
        rule: 'bolddi' or 'bodvcl'.
        xi, omega, radius: the rule's thresholds.
        noise_floor: relative singular-value floor (default 1e-3: directions with less than 1e-6
            of the leading direction's energy are not resolved).

    Returns:
        (share (B,) float64, NaN for an all-zero clip; dropped (B,) int64, directions below the floor).

    Raises:
        VdiagError: bad shape, fewer than 3 frames, or an unknown rule.
    """
    if rule not in RULES:
        raise VdiagError(f"unknown eigen-split rule {rule!r}; choose one of {', '.join(RULES)}")
    back, fore = transitions(features.detach().double())
    if features.shape[1] < 3:
        raise VdiagError(f"a static-energy split needs at least 3 frames per clip, got {features.shape[1]}")
    frames = features.detach().double()
    shares = torch.full((features.shape[0],), float("nan"), dtype=torch.float64)
    dropped = torch.zeros(features.shape[0], dtype=torch.int64)
    for clip in range(features.shape[0]):
        x, y = back[clip].T, fore[clip].T  # columns, (M, L − 1)
        left, singular, right_h = torch.linalg.svd(x, full_matrices=False)
        if singular.numel() == 0 or singular[0] <= 0:
            dropped[clip] = singular.numel()
            continue
        keep = int((singular >= noise_floor * singular[0]).sum())
        dropped[clip] = singular.numel() - keep
        basis, scale, right = left[:, :keep], singular[:keep], right_h[:keep].T
        reduced = basis.T @ y @ right / scale  # Ã, (r, r)
        eigenvalues, vectors = torch.linalg.eig(reduced)
        static = static_modes(eigenvalues, rule, xi, omega, radius)
        coordinates = (basis.T @ frames[clip].T).to(vectors.dtype)  # c_t as columns, (r, L)
        amplitudes = torch.linalg.solve(vectors, coordinates)  # b(t), (r, L)
        static_part = (vectors[:, static] @ amplitudes[static]).real
        dynamic_part = (vectors[:, ~static] @ amplitudes[~static]).real
        energy_static, energy_dynamic = static_part.pow(2).sum(), dynamic_part.pow(2).sum()
        shares[clip] = energy_static / (energy_static + energy_dynamic).clamp_min(torch.finfo(torch.float64).tiny)
    return shares, dropped
