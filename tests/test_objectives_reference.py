"""VICReg and SwAV match their reference implementations by default; the printed / joint forms
stay available. Checked against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from vdiag.losses.swav import sinkhorn, swav_codes
from vdiag.losses.vicreg import vicreg_loss

# N = 2, D = 2. Z: dim 0 has Var 0.125 (std 0.3536, hinge 0.6464), dim 1 Var 2 (no hinge), Cov 0.5;
# Z': dim 0 constant (hinge 1), dim 1 Var 2, no covariance. Z − Z' = ±0.25 in dim 0.
Z = torch.tensor([[0.25, 1.0], [-0.25, -1.0]], dtype=torch.float64)
Z_PRIME = torch.tensor([[0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
V_Z, V_Z_PRIME = (1 - math.sqrt(0.125)) / 2, 0.5
COV = 0.5**2 * 2 / 2  # two off-diagonal entries of 0.5, squared, over D = 2 (Z' has none)


def test_vicreg_reference_form_by_hand():
    """facebookresearch/vicreg: 25·mse_loss + 25·(std_x/2 + std_y/2) + 1·(cov_x + cov_y)."""
    parts = vicreg_loss(torch.stack([Z, Z_PRIME], 1), 25.0, 25.0, 1.0, eps=0.0)
    repr_loss = (2 * 0.25**2) / 4  # mean over N·D
    std_loss = V_Z / 2 + V_Z_PRIME / 2
    assert float(parts["invariance"]) == pytest.approx(repr_loss)
    assert float(parts["variance"]) == pytest.approx(std_loss)
    assert float(parts["covariance"]) == pytest.approx(COV)
    assert float(parts["loss"]) == pytest.approx(25 * 0.03125 + 25 * 0.41161165235168157 + 0.25)  # 11.3215…


def test_vicreg_paper_form_by_hand_and_the_weight_equivalence():
    """The printed equations: s sums over D, v is summed over the two views; (λ, μ, ν) of the paper
    form is (λ·D, 2μ, ν) of the reference form."""
    z = torch.stack([Z, Z_PRIME], 1)
    parts = vicreg_loss(z, 25.0, 25.0, 1.0, eps=0.0, form="paper")
    assert float(parts["invariance"]) == pytest.approx(2 * 0.25**2 / 2)  # 1/N Σ_i ‖z_i − z'_i‖²
    assert float(parts["variance"]) == pytest.approx(V_Z + V_Z_PRIME)
    assert float(parts["loss"]) == pytest.approx(25 * 0.0625 + 25 * (V_Z + V_Z_PRIME) + COV)  # 22.393…
    torch.manual_seed(0)
    wide = torch.randn(32, 3, 16)
    dim = wide.shape[-1]
    for weights in ((25.0, 25.0, 1.0), (1.0, 1.0, 0.05)):
        lam, mu, nu = weights
        paper = vicreg_loss(wide, lam, mu, nu, form="paper")["loss"]
        reference = vicreg_loss(wide, lam * dim, 2 * mu, nu, form="reference")["loss"]
        assert torch.allclose(paper, reference, rtol=1e-5)
    with pytest.raises(ValueError, match="form"):
        vicreg_loss(wide, form="printed")


def test_sinkhorn_per_view_by_hand():
    """Two samples per view; view 0 prefers prototype 0 and view 1 prototype 1 by exp(Δs/ε) = 3.

    One problem per view (facebookresearch/swav, lightly): each view must spread its own batch over
    both prototypes, and its two identical samples get (½, ½). One problem over both views: the
    views already balance each other, and each sample keeps its softmax (¾, ¼)."""
    epsilon = 0.05
    high = epsilon * math.log(3.0)
    view_0 = torch.tensor([[high, 0.0], [high, 0.0]])
    scores = torch.stack([view_0, view_0.flip(1)], dim=1)  # (n = 2, ρ = 2, K = 2)
    for iterations in (1, 3, 20):
        per_view = swav_codes(scores, epsilon, iterations)
        joint = swav_codes(scores, epsilon, iterations, per_view=False)
        assert torch.allclose(per_view, torch.full((2, 2, 2), 0.5), atol=1e-6)
        assert torch.allclose(joint[:, 0], torch.tensor([0.75, 0.25]).expand(2, 2), atol=1e-6)
        assert torch.allclose(joint[:, 1], torch.tensor([0.25, 0.75]).expand(2, 2), atol=1e-6)
    assert torch.equal(swav_codes(scores)[:, 1], sinkhorn(scores[:, 1]))
