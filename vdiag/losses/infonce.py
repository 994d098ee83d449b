"""Multi-positive InfoNCE (BOLD-DI Eq. 1): v-SimCLR over the batch, v-MoCo against a queue.

For an anchor clip j of video i, with positives Z₊ (the other ρ − 1 clips of video i) and
negatives Z₋:

    ℓ_ij = −log  Σ_{z∈Z₊} exp(sim(z_ij, z)/α)  /  Σ_{z∈Z₊∪Z₋} exp(sim(z_ij, z)/α)        (Eq. 1)

with sim the cosine similarity and α the temperature. The positives are summed inside the log, as
Eq. 1 writes it (not averaged outside, as in SupCon). With ρ = 2 this is exactly the NT-Xent loss
of SimCLR (ViDiDi Eq. 6). The loss is the mean of ℓ over anchors (Eq. 1's sum divided by nρ, so
that the learning rate does not depend on the batch size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdiag.distributed import gather_with_grad, rank
from vdiag.losses.precision import float32_island


def _multi_positive_nll(logits: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over rows of −log(Σ_pos exp(logits) / Σ_valid exp(logits)). Shapes (A, K), bool masks."""
    minus_inf = torch.finfo(logits.dtype).min
    numerator = torch.logsumexp(logits.masked_fill(~positive, minus_inf), dim=1)
    denominator = torch.logsumexp(logits.masked_fill(~valid, minus_inf), dim=1)
    return (denominator - numerator).mean()


def batch_masks(n: int, positives: int, candidates: int, *, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (nρ, Nρ) for this rank's anchors against the gathered batch: positives are the anchor's
    video's other clips, valid candidates every clip but the anchor itself.

    Args:
        n: videos on this rank.
        positives: ρ, clips per video.
        candidates: Nρ, clips in the batch gathered over all ranks (rank-major order).
        device: where the masks live.

    Returns:
        (positive, valid): boolean masks of shape (nρ, Nρ).
    """
    offset = rank() * n
    anchor_video = torch.arange(n, device=device).repeat_interleave(positives) + offset
    candidate_video = torch.arange(candidates // positives, device=device).repeat_interleave(positives)
    anchor_index = torch.arange(n * positives, device=device) + offset * positives
    not_self = anchor_index[:, None] != torch.arange(candidates, device=device)[None, :]
    same_video = anchor_video[:, None] == candidate_video[None, :]
    return same_video & not_self, not_self


@float32_island
def info_nce(embeddings: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """v-SimCLR: every other clip in the (global) batch is a candidate; same-video clips are positives.

    Runs in float32 whatever the autocast state: the similarities and log-sum-exp of Eq. 1.

    Args:
        embeddings: `(n, ρ, D)` projector outputs of this rank's n videos, ρ ≥ 2 clips each.
        temperature: α (0.1 in BOLD-DI §5.1 and ViDiDi B.3).

    Returns:
        scalar, the mean of Eq. 1 over this rank's nρ anchors. Under DDP the candidates are
        gathered from all ranks with gradient.

    Example:
        >>> z = torch.randn(8, 2, 128)
        >>> info_nce(z, temperature=0.1)
    """
    n, positives, dim = embeddings.shape
    if positives < 2:
        raise ValueError("InfoNCE needs at least 2 clips per video (ρ ≥ 2)")
    anchors = F.normalize(embeddings.reshape(n * positives, dim), dim=1)
    candidates = gather_with_grad(anchors)  # (Nρ, D), all ranks
    logits = anchors @ candidates.T / temperature  # (nρ, Nρ)

    positive, valid = batch_masks(n, positives, candidates.shape[0], device=anchors.device)
    return _multi_positive_nll(logits, positive, valid)


@float32_island
def moco_info_nce(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, *, temperature: float = 0.1) -> torch.Tensor:
    """v-MoCo: queries from the online network, positives the momentum keys of the same video's
    other clips, negatives the queue of earlier keys (Eq. 1 with Z₋ = queue).

    Runs in float32 whatever the autocast state: the similarities and log-sum-exp of Eq. 1.

    Args:
        queries: `(n, ρ, D)` online projector outputs (with gradient).
        keys: `(n, ρ, D)` momentum-encoder outputs (no gradient).
        queue: `(K, D)` L2-normalised keys of earlier batches.
        temperature: α.

    With ρ = 2 this is MoCo v2's symmetrised loss: q₁ against k₂ and q₂ against k₁.
    """
    n, positives, dim = queries.shape
    if positives < 2:
        raise ValueError("MoCo with ρ positives needs ρ ≥ 2 clips per video")
    q = F.normalize(queries.reshape(n * positives, dim), dim=1)
    k = F.normalize(keys.reshape(n * positives, dim), dim=1).detach()
    logits = torch.cat([q @ k.T, q @ queue.T.to(q.dtype)], dim=1) / temperature  # (nρ, nρ + K)
    video = torch.arange(n, device=q.device).repeat_interleave(positives)
    same_video = video[:, None] == video[None, :]
    not_self = ~torch.eye(n * positives, dtype=torch.bool, device=q.device)
    # the batch's keys count only as positives (other clips of the anchor's video); the queue as negatives
    positive = torch.cat([same_video & not_self, torch.zeros(n * positives, queue.shape[0], dtype=torch.bool, device=q.device)], 1)
    valid = torch.cat([same_video & not_self, torch.ones(n * positives, queue.shape[0], dtype=torch.bool, device=q.device)], 1)
    return _multi_positive_nll(logits, positive, valid)
