"""v-SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-Knopp cluster codes.

Scores are cosine similarities between projections z and K prototypes c_k. Codes q come from the
scores by Sinkhorn-Knopp (equal-partition optimal transport, entropy ε = 0.05, 3 iterations):

    Q = diag(u) exp(Cᵀ Z / ε) diag(v),  rows summing to 1/K, columns to 1/B

and each clip predicts the codes of the video's other clips:

    ℓ = − Σ_k q_k^(b) log softmax(z^(a)ᵀ c / τ)_k        for every ordered pair a ≠ b

averaged over videos and pairs (ρ = 2 is SwAV's two-crop loss divided by 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdiag.distributed import all_reduce_sum


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Codes `(B, K)` (rows sum to 1) from scores `(B, K)`; B is summed over ranks under DDP."""
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


def swav_loss(scores: torch.Tensor, codes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Swapped prediction over ordered pairs of clips.

    Args:
        scores: `(n, ρ, K)` cosine scores of this rank's clips against the prototypes.
        codes: `(n, ρ, K)` Sinkhorn codes of the same clips (targets, no gradient).
        temperature: τ (0.1, seed 000 §5.1).

    Example:
        >>> scores = torch.randn(8, 2, 100); swav_loss(scores, sinkhorn(scores.flatten(0, 1)).view(8, 2, 100))
    """
    n, positives, _ = scores.shape
    if positives < 2:
        raise ValueError("SwAV needs at least 2 clips per video (ρ ≥ 2)")
    log_p = F.log_softmax(scores / temperature, dim=-1)
    cross = -torch.einsum("nbk,nak->nab", codes.detach(), log_p)  # (n, a = predicting clip, b = code clip)
    off_diagonal = ~torch.eye(positives, dtype=torch.bool, device=scores.device)
    return cross[:, off_diagonal].mean()
