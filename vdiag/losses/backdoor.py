"""BOLD-DI's backdoor-adjusted contrastive loss L_ct(f, do) (BOLD-DI §4.3, Eq. 10–11).

The similarity of an anchor and a candidate is measured along each dynamic Koopman eigenvector
φ_j separately, through the projections Z · φ_j (complex), and the per-direction InfoNCE losses are
averaged with P(φ_j) = 1/J (Eq. 10):

    ℓ_j = −log  Σ_{Z₊} exp(−|Z_i·φ_j − Z₊·φ_j| / α)  /  Σ_{t ≠ i} exp(−|Z_i·φ_j − Z_t·φ_j| / α)     (Eq. 11)
    L_ct = (1/J) Σ_j mean_i ℓ_j

Eq. 11 as printed has +|·| in the exponent, under which minimising the loss would push positives
apart along φ_j; the similarity is the negative distance, the only sign for which the loss does what
§4.3 says (positives close along every dynamic direction). Candidates are all clips of the global
batch (2ρN in Eq. 11's sum), the anchor's own clip excluded; positives are its video's other clips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdiag.distributed import gather_with_grad
from vdiag.losses.infonce import _multi_positive_nll, batch_masks
from vdiag.losses.precision import float32_island

# |x| is replaced by sqrt(|x|² + δ²) − δ: equal to within δ, and with curvature bounded by 1/δ instead
# of a kink at 0, where positives converge; the finite-difference hypergradient needs that.
# Projections of unit vectors on unit eigenvectors are about 1/√M ≈ 0.09 for M = 128.
SMOOTHING = 1e-3


@float32_island
def backdoor_info_nce(embeddings: torch.Tensor, directions: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """L_ct(f, do): InfoNCE per dynamic eigenvector, averaged over eigenvectors.

    Runs in float32 whatever the autocast state: the projections and log-sum-exp of Eq. 11.

    Args:
        embeddings: `(n, ρ, M)` clip representations Z (L2-normalised here).
        directions: `(M, J)` complex dynamic eigenvectors φ_j (treated as constants).
        temperature: α.

    Returns:
        scalar; zero (with a zero gradient) when J = 0.

    Example:
        >>> z = torch.randn(8, 2, 16)
        >>> phi = torch.linalg.eig(torch.randn(16, 16))[1][:, :5]
        >>> backdoor_info_nce(z, phi)
    """
    n, positives, dim = embeddings.shape
    if directions.shape[-1] == 0:
        return embeddings.sum() * 0.0
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    anchors = F.normalize(embeddings.reshape(n * positives, dim).to(dtype), dim=1)
    phi = directions.detach().to(torch.complex128 if dtype == torch.float64 else torch.complex64)
    # Z · φ_j as real and imaginary parts, (nρ, J, 2): real tensors gather on every backend
    projections = torch.stack([anchors @ phi.real, anchors @ phi.imag], dim=-1)
    candidates = gather_with_grad(projections)  # (Nρ, J, 2)
    difference = projections[:, None] - candidates[None, :]  # (nρ, Nρ, J, 2)
    distance = (difference.pow(2).sum(-1) + SMOOTHING**2).sqrt() - SMOOTHING  # |Z_i·φ_j − Z_t·φ_j|, softened at 0
    logits = (-distance / temperature).permute(2, 0, 1)  # (J, nρ, Nρ)
    positive, valid = batch_masks(n, positives, candidates.shape[0], device=anchors.device)
    count = logits.shape[0]
    return _multi_positive_nll(logits.reshape(-1, logits.shape[-1]), positive.repeat(count, 1), valid.repeat(count, 1))
