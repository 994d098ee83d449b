"""v-SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-Knopp cluster codes.

Scores are cosine similarities between projections z and K prototypes c_k. Codes q come from the
scores by Sinkhorn-Knopp (equal-partition optimal transport, entropy ε = 0.05, 3 iterations):

    Q = diag(u) exp(Cᵀ Z / ε) diag(v),  rows summing to 1/K, columns to 1/B

and each clip predicts the codes of the video's other clips:

    ℓ = − Σ_k q_k^(b) log softmax(z^(a)ᵀ c / τ)_k        for every ordered pair a ≠ b

averaged over videos and pairs (ρ = 2 is SwAV's two-crop loss divided by 2).

**One Sinkhorn per view** (`swav_codes`, default): SwAV's reference code (facebookresearch/swav,
main_swav.py: `q = distributed_sinkhorn(out)[-bs:]` for each crop in `crops_for_assign`) and
lightly's `SwaVLoss` (one `sinkhorn` call per high-resolution crop) solve the equal-partition
problem separately for each view's batch, so each view's codes spread the batch over the
prototypes on their own. `per_view=False` solves one problem over all clips of all views (vdiag's
earlier behaviour; not a paper's form): two views that favour different prototypes then balance
each other and keep their sharp codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdiag.distributed import all_reduce_sum
from vdiag.losses.precision import float32_island


@float32_island
@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Sinkhorn-Knopp codes (SwAV §3.1, Eq. 3; facebookresearch/swav `distributed_sinkhorn`).

    Runs in float32 whatever the autocast state (exp of scores / ε).

    Args:
        scores: `(B, K)` cosine scores (≤ 1) of B samples against K prototypes; B is summed over
            ranks under DDP.
        epsilon: entropy ε.
        iterations: alternating normalisations.

    Returns:
        `(B, K)` codes, each row a distribution; at convergence every prototype receives B/K.
    """
    # scores are cosines (≤ 1): shifting by 1 keeps exp finite for small ε and is the same
    # constant on every rank, so the normalisations below are unchanged
    q = torch.exp((scores.float() - 1.0) / epsilon).T  # (K, B)
    num_prototypes = q.shape[0]
    batch = all_reduce_sum(torch.tensor(float(q.shape[1]), device=q.device))
    q /= all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True))
        q /= num_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= batch
    return (q * batch).T


@float32_island
@torch.no_grad()
def swav_codes(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3, per_view: bool = True) -> torch.Tensor:
    """Codes `(n, ρ, K)` of every clip: one Sinkhorn problem per view (the reference), or one overall.

    Args:
        scores: `(n, ρ, K)` cosine scores of this rank's clips (n videos × ρ views) against K
            prototypes.
        epsilon, iterations: Sinkhorn's ε and number of iterations.
        per_view: True (default): `sinkhorn` on each view's `(n, K)` batch separately, as
            facebookresearch/swav and lightly do; False: one problem over all n·ρ clips.

    Returns:
        `(n, ρ, K)` codes, no gradient.
    """
    if per_view:
        return torch.stack([sinkhorn(scores[:, view], epsilon, iterations) for view in range(scores.shape[1])], dim=1)
    return sinkhorn(scores.flatten(0, 1), epsilon, iterations).view_as(scores)


@float32_island
def swav_loss(scores: torch.Tensor, codes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Swapped prediction over ordered pairs of clips.

    Runs in float32 whatever the autocast state (the log-softmax of the swapped prediction).

    Args:
        scores: `(n, ρ, K)` cosine scores of this rank's clips against the prototypes.
        codes: `(n, ρ, K)` Sinkhorn codes of the same clips (targets, no gradient).
        temperature: τ (0.1, BOLD-DI §5.1).

    Returns:
        Scalar: the cross-entropy averaged over videos and ordered pairs of clips.

    Raises:
        ValueError: fewer than 2 clips per video.

    Example:
        >>> scores = torch.randn(8, 2, 100); swav_loss(scores, swav_codes(scores))
    """
    n, positives, _ = scores.shape
    if positives < 2:
        raise ValueError("SwAV needs at least 2 clips per video (ρ ≥ 2)")
    log_p = F.log_softmax(scores / temperature, dim=-1)
    cross = -torch.einsum("nbk,nak->nab", codes.detach(), log_p)  # (n, a = predicting clip, b = code clip)
    off_diagonal = ~torch.eye(positives, dtype=torch.bool, device=scores.device)
    return cross[:, off_diagonal].mean()
