"""InfoNCE between two kinds of embeddings (DCLR Eq. 2, 6–10): I(a; b) with a and b from different inputs.

For a batch of N videos with anchor embeddings a_m (say f(v_i)) and positive embeddings b_m (say
f(s_j)), Eq. 2 contrasts anchor a_m with its positive b_m against the 2(N − 1) other embeddings of
the batch, {a_k, b_k : k ≠ m}:

    I(a_m; b_m) = −log  exp(sim(a_m, b_m)/τ) / [exp(sim(a_m, b_m)/τ) + Σ_{k≠m} exp(sim(a_m, a_k)/τ) + exp(sim(a_m, b_k)/τ)]

`pair_info_nce` generalises the positive to K candidates per anchor with weights p (Eq. 10: the
top-K motion neighbours found by the cross-video search, weighted by their similarity prior), each
candidate scored against the same negatives. Either side may be the retrieved one: anchors
(n, K, D) with positives (n, 1, D), or anchors (n, 1, D) with positives (n, K, D). The video's own
pair never appears among its negatives. Under DDP the negatives are gathered from all ranks with
gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdiag.distributed import gather_with_grad, rank
from vdiag.losses.precision import float32_island


@float32_island
def pair_info_nce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    anchor_pool: torch.Tensor,
    positive_pool: torch.Tensor,
    *,
    temperature: float = 0.1,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ_k p_k I(anchor_k; positive_k) averaged over this rank's videos (DCLR Eq. 2 and Eq. 10).

    Runs in float32 whatever the autocast state: the similarities and log-sum-exp of Eq. 2.

    Args:
        anchors: `(n, K, D)` or `(n, D)`: what each row contrasts from.
        positives: `(n, K, D)` or `(n, D)`: its positive(s); K broadcasts against `anchors`.
        anchor_pool, positive_pool: `(n, D)` this rank's batch embeddings of the two kinds; the
            negatives of video m are both pools' entries of every other video (all ranks).
        temperature: τ.
        weights: `(n, K)` summing to 1 over K (default: uniform).

    Example:
        >>> v, s = torch.randn(8, 128), torch.randn(8, 128)
        >>> pair_info_nce(v, s, v, s)            # Eq. 2 for the pair (v, s)
    """
    if anchors.dim() == 2:
        anchors = anchors[:, None]
    if positives.dim() == 2:
        positives = positives[:, None]
    anchors, positives = F.normalize(anchors, dim=-1), F.normalize(positives, dim=-1)
    n = anchor_pool.shape[0]
    pool = torch.cat([gather_with_grad(F.normalize(anchor_pool, dim=-1)), gather_with_grad(F.normalize(positive_pool, dim=-1))])  # (2N, D)
    total = pool.shape[0] // 2
    own = torch.arange(n, device=pool.device) + rank() * n
    candidate_video = torch.arange(total, device=pool.device).repeat(2)
    is_own = candidate_video[None, :] == own[:, None]  # (n, 2N)

    positive_logits = (anchors * positives).sum(-1) / temperature  # (n, K)
    negative_logits = torch.einsum("nkd,md->nkm", anchors, pool) / temperature  # (n, K, 2N)
    negative_logits = negative_logits.masked_fill(is_own[:, None, :], torch.finfo(negative_logits.dtype).min)
    log_denominator = torch.logaddexp(positive_logits, torch.logsumexp(negative_logits, dim=-1))
    nll = log_denominator - positive_logits  # (n, K)
    if weights is None:
        return nll.mean()
    return (weights * nll).sum(1).mean()
