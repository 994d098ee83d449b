"""The losses of Static & Dynamic Concepts (Qian et al. 2022): alignment, local contrast.

Concept alignment (Eq. 4), for one pair of concept codes q_a, q_b `(B, K)` (cosine similarities to
the prototypes, Eq. 3) with Sinkhorn-Knopp soft codes q̄ (uniform prior over concepts, as SwAV):

    L = − Σ_k q̄_b^(k) log softmax(q_a / τ)^(k) − Σ_k q̄_a^(k) log softmax(q_b / τ)^(k)

Local concept contrast (Eq. 9), for local features F_a, F_b `(B, K, C)` of the same concepts in
two inputs of each video and a mask of valid concepts (Eq. 8):

    l(F_a, F_b) = Σ_{k valid} ‖F_a^k − F_b^k‖² + Σ_{F̃ ∈ N} max(λ − ‖F_a^k − F̃_b^k‖, 0)²

with N the same concept's local features F_b^k of the other videos in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdiag.distributed import all_reduce_sum, gather_with_grad, rank, world_size
from vdiag.losses.precision import float32_island
from vdiag.losses.swav import sinkhorn


@float32_island
def concept_alignment(
    codes_a: torch.Tensor, codes_b: torch.Tensor, *, temperature: float = 0.1, epsilon: float = 0.05, iterations: int = 3
) -> torch.Tensor:
    """Eq. 4 for one pair of code sets, averaged over the batch.

    Runs in float32 whatever the autocast state (Sinkhorn and the log-softmax of Eq. 4).

    Args:
        codes_a, codes_b: `(B, K)` concept codes (cosines) of two inputs of the same videos.
        temperature: τ of the softmax; epsilon, iterations: Sinkhorn-Knopp's entropy and steps.

    Example:
        >>> q_v_static, q_s = torch.rand(16, 50), torch.rand(16, 50)
        >>> concept_alignment(q_v_static, q_s)
    """
    targets_a = sinkhorn(codes_a.detach(), epsilon, iterations)  # q̄: no gradient, as SwAV's codes
    targets_b = sinkhorn(codes_b.detach(), epsilon, iterations)
    log_a = F.log_softmax(codes_a / temperature, dim=1)
    log_b = F.log_softmax(codes_b / temperature, dim=1)
    return -((targets_b * log_a).sum(1) + (targets_a * log_b).sum(1)).mean()


def valid_concepts(codes_a: torch.Tensor, codes_b: torch.Tensor, top_k: int) -> torch.Tensor:
    """Eq. 8: concepts among the top-K of both codes, as a mask `(B, K_concepts)`."""

    def top(codes):
        mask = torch.zeros_like(codes, dtype=torch.bool)
        return mask.scatter_(1, codes.topk(min(top_k, codes.shape[1]), dim=1).indices, True)

    return top(codes_a) & top(codes_b)


@float32_island
def local_concept_contrast(local_a: torch.Tensor, local_b: torch.Tensor, valid: torch.Tensor, *, margin: float = 1.0) -> torch.Tensor:
    """Eq. 9, l(F_a, F_b), on L2-normalised local features, averaged over valid (video, concept) pairs.

    Args:
        local_a, local_b: `(n, K, C)` local features of the same K concepts in two inputs of each
            of this rank's n videos; the negatives F̃_b are `local_b` of the other videos of the
            global batch (gathered with gradient).
        valid: `(n, K)` bool, the valid concepts of each video (Eq. 8).
        margin: λ, on distances between unit vectors (so in [0, 2]).

    The negative term is averaged over the negatives rather than summed, so that the loss does not
    grow with the batch size. Returns 0 (with a gradient path) when no concept is valid.

    Example:
        >>> a, b = torch.randn(8, 50, 128), torch.randn(8, 50, 128)
        >>> local_concept_contrast(a, b, torch.rand(8, 50) > 0.9)
    """
    a, b = F.normalize(local_a, dim=-1), F.normalize(local_b, dim=-1)
    n = a.shape[0]
    positive = (a - b).pow(2).sum(-1)  # (n, K)
    others = gather_with_grad(b.flatten(1)).view(-1, *b.shape[1:])  # (N, K, C)
    cosine = torch.einsum("nkc,mkc->nkm", a, others)  # (n, K, N)
    distance = (2 - 2 * cosine).clamp_min(1e-12).sqrt()  # ‖x − y‖ of unit vectors; finite gradient at 0
    own = torch.arange(n, device=a.device) + rank() * n
    is_other = (torch.arange(others.shape[0], device=a.device)[None, :] != own[:, None]).float()  # (n, N)
    hinge = F.relu(margin - distance).pow(2) * is_other[:, None, :]
    negative = hinge.sum(-1) / is_other.sum(1)[:, None].clamp_min(1)  # (n, K)
    per_pair = (positive + negative) * valid
    # divide by the global count over the ranks' mean, so the mean over ranks is the whole batch's mean
    count = all_reduce_sum(valid.sum().float()) / world_size()
    return per_pair.sum() / count.clamp_min(1.0 / world_size())
