"""v-BYOL regression loss (BOLD-DI Eq. 2; ViDiDi Eq. 7): no negatives.

For every ordered pair of clips (j, k ≠ j) of a video, the online prediction p_j regresses the
target projection t_k (stop-gradient):

    ℓ = 2 − 2 · cos(p_j, sg(t_k))

averaged over videos and ordered pairs. With ρ = 2 this is BYOL's symmetrised loss divided by 2
(ViDiDi Eq. 7's 1/(2B) normalisation); its minimum 0 is reached when predictions align with targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdiag.losses.precision import float32_island


@float32_island
def byol_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of 2 − 2 cos(p_j, sg(t_k)) over videos and ordered pairs j ≠ k.

    Runs in float32 whatever the autocast state (Eq. 2's cosines).

    Args:
        predictions: `(n, ρ, D)` online predictor outputs.
        targets: `(n, ρ, D)` target projector outputs (detached here in any case).

    Example:
        >>> byol_loss(torch.randn(8, 2, 256), torch.randn(8, 2, 256))
    """
    n, positives, _ = predictions.shape
    if positives < 2:
        raise ValueError("BYOL needs at least 2 clips per video (ρ ≥ 2)")
    p = F.normalize(predictions, dim=-1)
    t = F.normalize(targets.detach(), dim=-1)
    cosine = torch.einsum("njd,nkd->njk", p, t)  # (n, ρ, ρ)
    off_diagonal = ~torch.eye(positives, dtype=torch.bool, device=p.device)
    return (2 - 2 * cosine[:, off_diagonal]).mean()
