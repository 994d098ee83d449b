"""Losses against hand computations, reference forms, invariances and gradient flow."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vdiag.losses import byol_loss, info_nce, moco_info_nce, sinkhorn, swav_loss, vicreg_loss
from vdiag.losses.vicreg import covariance_term, variance_term


def nt_xent(z1, z2, temperature):
    """SimCLR's two-view NT-Xent written the usual way (cross-entropy over 2B − 1 candidates)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, targets)


def eq1_by_loops(z, temperature):
    """BOLD-DI Eq. 1 written literally with Python loops over anchors (numpy, float64)."""
    z = z.detach().double().numpy()
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    n, rho, _ = z.shape
    losses = []
    for i in range(n):
        for j in range(rho):
            anchor = z[i, j]
            pos = sum(np.exp(anchor @ z[i, k] / temperature) for k in range(rho) if k != j)
            everything = sum(np.exp(anchor @ z[a, b] / temperature) for a in range(n) for b in range(rho) if (a, b) != (i, j))
            losses.append(-np.log(pos / everything))
    return float(np.mean(losses))


def test_info_nce_with_two_positives_is_nt_xent():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 16), torch.randn(6, 16)
    ours = info_nce(torch.stack([z1, z2], dim=1), temperature=0.1)
    assert torch.allclose(ours, nt_xent(z1, z2, 0.1), atol=1e-5)


@pytest.mark.parametrize("rho", [2, 4])
def test_info_nce_matches_eq1_written_out(rho):
    torch.manual_seed(rho)
    z = torch.randn(3, rho, 5)
    assert float(info_nce(z, temperature=0.2)) == pytest.approx(eq1_by_loops(z, 0.2), rel=1e-5)


def test_info_nce_known_value_at_perfect_alignment():
    # clips of a video identical, videos orthonormal: ℓ = log(1 + (2B − 2) e^{−1/α}) for ρ = 2
    batch, temperature = 4, 0.1
    e = torch.eye(batch, dtype=torch.float64)  # float64: the loss is a small difference of two logsumexps
    z = torch.stack([e, e], dim=1)
    expected = math.log(1 + (2 * batch - 2) * math.exp(-1 / temperature))
    assert float(info_nce(z, temperature)) == pytest.approx(expected, rel=1e-5)
    # and misaligned positives cost more
    shuffled = torch.stack([e, e[[1, 2, 3, 0]]], dim=1)
    assert float(info_nce(shuffled, temperature)) > expected + 1


def test_info_nce_is_invariant_to_video_and_clip_order():
    torch.manual_seed(1)
    z = torch.randn(5, 3, 8)
    base = info_nce(z)
    assert torch.allclose(info_nce(z[[4, 2, 0, 1, 3]]), base, atol=1e-6)
    assert torch.allclose(info_nce(z[:, [2, 0, 1]]), base, atol=1e-6)


def test_moco_with_two_positives_is_symmetrised_moco_v2():
    torch.manual_seed(2)
    q, k = torch.randn(4, 2, 8), torch.randn(4, 2, 8)
    queue = F.normalize(torch.randn(10, 8), dim=1)
    ours = moco_info_nce(q, k, queue, temperature=0.1)

    def one_direction(query, key):  # MoCo's logits: [q·k+, q·queue] / α, label 0
        query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)
        logits = torch.cat([(query * key).sum(1, keepdim=True), query @ queue.T], dim=1) / 0.1
        return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long))

    reference = (one_direction(q[:, 0], k[:, 1]) + one_direction(q[:, 1], k[:, 0])) / 2
    assert torch.allclose(ours, reference, atol=1e-5)


def test_moco_keys_get_no_gradient():
    q = torch.randn(3, 2, 4, requires_grad=True)
    k = torch.randn(3, 2, 4, requires_grad=True)
    moco_info_nce(q, k, F.normalize(torch.randn(5, 4), dim=1)).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


def test_byol_loss_values_and_stop_gradient():
    p = torch.randn(4, 2, 6, requires_grad=True)
    t = torch.randn(4, 2, 6, requires_grad=True)
    loss = byol_loss(p, t)
    cos = F.cosine_similarity
    expected = ((2 - 2 * cos(p[:, 0], t[:, 1], dim=1)).mean() + (2 - 2 * cos(p[:, 1], t[:, 0], dim=1)).mean()) / 2
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert t.grad is None and p.grad.abs().sum() > 0
    aligned = torch.randn(4, 1, 6).repeat(1, 3, 1)
    assert float(byol_loss(aligned * 2.0, aligned)) == pytest.approx(0.0, abs=1e-6)  # minimum, scale-free


def test_vicreg_terms_by_hand():
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    # Var (unbiased) per dim: [2/3, 8/3]; std ≈ [0.816, 1.633]; hinge at γ = 1: [0.184, 0]
    assert float(variance_term(z, gamma=1.0, eps=0.0)) == pytest.approx((1 - math.sqrt(2 / 3)) / 2, rel=1e-5)
    assert float(covariance_term(z)) == pytest.approx(0.0, abs=1e-7)  # uncorrelated dimensions
    correlated = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [2.0, 2.0], [-2.0, -2.0]])
    cov = 10 / 3  # Σx²/(B − 1)
    assert float(covariance_term(correlated)) == pytest.approx(2 * cov**2 / 2, rel=1e-5)


def test_vicreg_two_views_is_eq11():
    torch.manual_seed(3)
    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    parts = vicreg_loss(torch.stack([z1, z2], 1), 25.0, 25.0, 1.0, form="paper")
    invariance = ((z1 - z2) ** 2).sum(1).mean()
    expected = 25 * invariance + 25 * (variance_term(z1) + variance_term(z2)) + (covariance_term(z1) + covariance_term(z2))
    assert torch.allclose(parts["loss"], expected, rtol=1e-5)
    same = vicreg_loss(torch.stack([z1, z1], 1))
    assert float(same["invariance"]) == 0.0


def test_sinkhorn_gives_equal_partition_codes():
    torch.manual_seed(4)
    scores = F.normalize(torch.randn(64, 8), dim=1) @ F.normalize(torch.randn(16, 8), dim=1).T
    codes = sinkhorn(scores, epsilon=0.05, iterations=3)
    assert torch.allclose(codes.sum(1), torch.ones(64), atol=1e-5)  # each sample: a distribution
    imbalance = (codes.sum(0) - 64 / 16).abs().max()
    greedy = (torch.softmax(scores / 0.05, dim=1).sum(0) - 64 / 16).abs().max()
    assert imbalance < 0.8 * greedy  # three iterations already spread the samples over prototypes
    more = sinkhorn(scores, epsilon=0.05, iterations=50).sum(0)
    assert torch.allclose(more, torch.full((16,), 4.0), atol=1e-2)  # converges to it


def test_swav_loss_is_cross_entropy_of_swapped_codes():
    torch.manual_seed(5)
    scores = torch.randn(3, 2, 7)
    codes = torch.softmax(torch.randn(3, 2, 7), dim=-1)
    log_p = F.log_softmax(scores / 0.1, dim=-1)
    expected = (-(codes[:, 1] * log_p[:, 0]).sum(1).mean() - (codes[:, 0] * log_p[:, 1]).sum(1).mean()) / 2
    assert torch.allclose(swav_loss(scores, codes, 0.1), expected, atol=1e-5)


@pytest.mark.parametrize("loss", [info_nce, byol_loss, vicreg_loss, swav_loss])
def test_objectives_refuse_a_single_clip_per_video(loss):
    z = torch.randn(4, 1, 8)
    with pytest.raises(ValueError, match="2 clips"):
        loss(z, z) if loss in (byol_loss, swav_loss) else loss(z)
