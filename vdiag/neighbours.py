"""Nearest neighbours by inner product, in blocks of queries: never a full N × N similarity matrix.

One function, `nearest`, serves both the online kNN monitor of pretraining (`vdiag.train.monitor`)
and the diagnostics that rank neighbours (`eval retrieval`, the best-retrieved classes of
`eval cluster` and `viz tsne`), so the number logged while training and the number reported after
it come from the same code.

    queries (Q, C), gallery (G, C) → per block of B queries: (B, G) similarities → the k largest,
    ties broken by the lower gallery index (the order of a stable sort) → (Q, k) similarities, indices

Peak memory is about B · G · 16 bytes (the block's similarities, its masks and a running count),
with B chosen from `memory_bytes` unless given; the gallery lives on `device` once. Rows are taken
as they are: L2-normalise them first for cosine similarity (ViDiDi App. B.4).

`knn_classify` turns neighbours into a weighted vote (Wu et al. 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", §3.4: weights exp(s / τ), τ = 0.07, k = 200 in
the paper; solo-learn's online monitor uses k = 20).
"""

from __future__ import annotations

import numpy as np
import torch

from vdiag.errors import VdiagError

DEFAULT_MEMORY = 256 * 2**20  # bytes per block of queries
BYTES_PER_PAIR = 16  # similarity (≤ 8) + three boolean masks + an int32 running count, rounded up


def block_rows(gallery_size: int, *, memory_bytes: int = DEFAULT_MEMORY) -> int:
    """Queries per block so that a block's working set stays near `memory_bytes` (at least 1)."""
    return max(1, int(memory_bytes // (BYTES_PER_PAIR * max(gallery_size, 1))))


def _tensor(array, device) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    if not tensor.is_floating_point():
        tensor = tensor.float()
    return tensor.to(device)


def nearest(
    queries,
    gallery,
    k: int,
    *,
    exclude_self: bool = False,
    rows: int | None = None,
    memory_bytes: int = DEFAULT_MEMORY,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most similar gallery rows of every query (inner product), ties to the lower gallery index.

    Args:
        queries: `(Q, C)` array or tensor; gallery: `(G, C)`; same dtype kept (float64 stays float64).
        k: neighbours per query; more than the gallery holds (less the query itself with
            `exclude_self`) gives all of them.
        exclude_self: queries and gallery are the same rows (leave-one-out): query i never finds row i.
        rows: queries per block; None chooses it from `memory_bytes` (`block_rows`).
        memory_bytes: the working set a block aims at.
        device: where to compute [the gallery's device; CPU for arrays].

    Returns:
        `(similarities, indices)`, both `(Q, k')` on the CPU, k' = min(k, available), most similar
        first; equal similarities keep gallery order (as `np.argsort(-s, kind="stable")`).

    Raises:
        VdiagError: widths differ, or `exclude_self` with queries and gallery of different lengths.
    """
    gallery_t = _tensor(gallery, device if device is not None else getattr(gallery, "device", "cpu"))
    queries_t = torch.as_tensor(queries)
    if queries_t.ndim != 2 or gallery_t.ndim != 2 or queries_t.shape[1] != gallery_t.shape[1]:
        raise VdiagError(f"queries {tuple(queries_t.shape)} and gallery {tuple(gallery_t.shape)} must be (N, C) of one width C")
    if exclude_self and len(queries_t) != len(gallery_t):
        raise VdiagError("exclude_self needs the queries to be the gallery's own rows")
    size = len(gallery_t)
    k = max(0, min(k, size - int(exclude_self)))
    count = len(queries_t)
    if k == 0 or count == 0:
        return torch.zeros(count, k, dtype=gallery_t.dtype), torch.zeros(count, k, dtype=torch.long)
    step = rows or block_rows(size, memory_bytes=memory_bytes)
    out_sim, out_idx = [], []
    for start in range(0, count, step):
        block = queries_t[start : start + step].to(gallery_t.device, gallery_t.dtype)
        similarity = block @ gallery_t.T  # (B, G)
        if exclude_self:
            here = torch.arange(len(block), device=similarity.device)
            similarity[here, here + start] = -torch.inf
        values, indices = _stable_topk(similarity, k)
        out_sim.append(values.cpu())
        out_idx.append(indices.cpu())
    return torch.cat(out_sim), torch.cat(out_idx)


def _stable_topk(similarity: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`topk` whose ties at the k-th value go to the lower column (torch leaves them unspecified)."""
    kth = similarity.topk(k, dim=1).values[:, -1:]
    greater = similarity > kth
    equal = similarity == kth
    room = k - greater.sum(dim=1, keepdim=True, dtype=torch.int32)
    take = greater | (equal & (equal.cumsum(dim=1, dtype=torch.int32) <= room))
    indices = take.nonzero()[:, 1].view(len(similarity), k)  # each row's k columns, ascending
    values = similarity.gather(1, indices)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices  # ties stay in column order
    return values.gather(1, order), indices.gather(1, order)


def knn_classify(
    similarities: torch.Tensor, indices: torch.Tensor, gallery_labels, num_classes: int, *, temperature: float = 0.07
) -> torch.Tensor:
    """A weighted kNN vote: each neighbour adds exp(s / τ) to its class (Wu et al. 2018, §3.4).

    Args:
        similarities, indices: `(Q, k)` from `nearest` (cosine similarities of normalised rows).
        gallery_labels: `(G,)` int class of every gallery row.
        num_classes: classes (columns of the vote).
        temperature: τ of the weights.

    Returns:
        `(Q,)` int64 predicted classes; equal votes go to the lower class index.
    """
    labels = torch.as_tensor(np.asarray(gallery_labels), dtype=torch.long)[indices]
    weights = torch.exp((similarities.double() - 1.0) / temperature)  # shifted by the largest cosine: no overflow
    votes = torch.zeros(len(indices), num_classes, dtype=torch.float64).scatter_add_(1, labels, weights)
    return votes.argmax(dim=1)
