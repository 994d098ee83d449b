"""Bi-level Koopman methods (BOLD-DI, BOD-VCL): the hypergradients against each other, the levels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vdiag.errors import VdiagError
from vdiag.methods import build_method
from vdiag.models import build_backbone
from vdiag.models.backbones import VideoBackbone


def smooth_backbone() -> VideoBackbone:
    """A small network without kinks (GELU), so finite differences converge to exact derivatives;
    ReLU networks' gradients jump at every activation crossing (see docs/methods/bolddi.md)."""
    body = nn.Sequential(
        nn.Conv3d(3, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(8), nn.GELU(),
        nn.Conv3d(8, 16, 3, stride=(1, 2, 2), padding=1), nn.GELU(),
    )  # fmt: skip
    return VideoBackbone("smooth", body, 16, keep_temporal=True)


def build(name: str, **options):
    torch.manual_seed(0)
    return build_method(name, smooth_backbone(), projector_hidden=16, projector_dim=8, **options).double()


def clips(n: int = 4) -> dict:
    torch.manual_seed(1)
    return {"clips": torch.randn(n, 2, 3, 6, 16, 16, dtype=torch.float64)}


def gradient(name: str, **options) -> torch.Tensor:
    method = build(name, **options)
    method({**clips()})["loss"].backward()
    return torch.cat([p.grad.flatten() for p in method.parameters() if p.requires_grad])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", ["bolddi-simclr", "bodvcl-simclr"])
@pytest.mark.parametrize("steps", [1, 3])
def test_finite_difference_hypergradient_matches_unrolled(name, steps):
    """ε = 1e-4/‖v‖: the projector's ReLUs put kinks in the gradient, which a larger ε straddles."""
    options = dict(inner_lr=0.5, inner_steps=steps)
    exact = gradient(name, hypergradient="itd", **options)
    finite = gradient(name, hypergradient="fd", fd_epsilon=1e-4, **options)
    first_order = gradient(name, hypergradient="first-order", **options)
    assert relative(finite, exact) < 5e-3
    assert relative(first_order, exact) > 10 * relative(finite, exact)  # the second-order term matters here


@pytest.mark.parametrize("name", ["bolddi-simclr", "bodvcl-simclr"])
def test_first_order_drops_exactly_the_curvature_term(name):
    """One inner step: ITD = v − γ H(θ) v with v = ∇L_outer(θ*); first-order = v."""
    gamma = 0.5
    exact = gradient(name, hypergradient="itd", inner_lr=gamma)
    first_order = gradient(name, hypergradient="first-order", inner_lr=gamma)
    method = build(name, inner_lr=gamma)
    names = [n for n, p in method.named_parameters() if p.requires_grad]
    params = [p for p in method.parameters() if p.requires_grad]
    inner_gradient = torch.autograd.grad(
        method._call(names, params, clips(), "inner")[0], params, create_graph=True, materialize_grads=True
    )
    step = [(p - gamma * g).detach().requires_grad_(True) for p, g in zip(params, inner_gradient)]
    v = torch.autograd.grad(build(name)._call(names, step, clips(), "outer")["loss"], step, materialize_grads=True)
    hessian_v = torch.autograd.grad(sum((g * vi).sum() for g, vi in zip(inner_gradient, v)), params, materialize_grads=True)
    predicted = torch.cat([g.flatten() for g in v]) - gamma * torch.cat([h.flatten() for h in hessian_v])
    assert relative(first_order, torch.cat([g.flatten() for g in v])) < 1e-9
    assert relative(exact, predicted) < 1e-4


def test_zero_inner_steps_is_the_outer_loss_and_single_level_adds_the_inner():
    method = build("bolddi-simclr", inner_steps=0)
    outer = method(clips())
    assert "inner" not in outer and torch.isclose(outer["loss"], outer["info_nce"] + 0.1 * outer["dynamic"])
    summed = build("bolddi-simclr", single_level=True)(clips())
    assert torch.isclose(summed["loss"], outer["loss"] + summed["inner"])


def test_bilevel_loss_value_is_the_outer_loss_at_the_inner_solution():
    method = build("bolddi-simclr", hypergradient="fd")
    outputs = method(clips())
    assert torch.isclose(outputs["loss"], outputs["info_nce"] + 0.1 * outputs["dynamic"])
    assert outputs["dynamic_modes"] >= 0 and outputs["inner"] > 0


def test_inner_passes_leave_batchnorm_statistics_to_the_outer_pass():
    plain = build("bolddi-simclr", inner_steps=0)
    bilevel = build("bolddi-simclr", inner_steps=3)
    plain(clips())
    bilevel(clips())
    for a, b in zip(plain.buffers(), bilevel.buffers()):
        if a.dtype == torch.long:
            assert torch.equal(a, b)  # num_batches_tracked: one update per step in both


def test_a_backbone_without_time_steps_is_a_user_error():
    method = build_method("bolddi-simclr", build_backbone("tiny"), projector_hidden=16)
    with pytest.raises(VdiagError, match="keep_temporal"):
        method({"clips": torch.randn(2, 2, 3, 4, 32, 32)})


def test_bad_options_are_user_errors():
    with pytest.raises(VdiagError, match="hypergradient"):
        build("bolddi-simclr", hypergradient="newton")
    with pytest.raises(VdiagError, match="inner_steps"):
        build("bodvcl-simclr", inner_steps=-1)


@pytest.mark.parametrize("name", ["bolddi-simclr", "bodvcl-simclr"])
def test_forward_difference_matches_central_to_first_order_in_epsilon(name):
    """Against the unrolled hypergradient: the one-sided H v's error halves with ε (O(ε)), the central
    difference's quarters (O(ε²)); small ε because the projector's ReLUs put kinks in the gradient."""
    options = dict(inner_lr=0.5, inner_steps=1)
    exact = gradient(name, hypergradient="itd", **options)
    forward = [relative(gradient(name, hypergradient="fd", hvp="forward", fd_epsilon=eps, **options), exact) for eps in (1e-4, 5e-5)]
    central = [relative(gradient(name, hypergradient="fd", fd_epsilon=eps, **options), exact) for eps in (1e-4, 5e-5)]
    assert 0 < forward[1] < 2e-2
    assert 1.8 < forward[0] / forward[1] < 2.2  # first order in ε
    assert 3.5 < central[0] / central[1] < 4.5  # second order in ε
    assert central[0] < forward[0]


def test_forward_difference_takes_one_inner_pass_less_per_step():
    """1 + 2k passes instead of 1 + 3k: counted as calls of the inner loss."""
    counts = {}
    for hvp in ("central", "forward"):
        method = build("bolddi-simclr", inner_steps=3, hvp=hvp)
        calls = []
        original = method.inner_loss
        method.inner_loss = lambda *a, calls=calls, original=original, **k: calls.append(1) or original(*a, **k)
        method(clips())
        counts[hvp] = len(calls)
    assert counts == {"central": 3 + 2 * 3, "forward": 3 + 3}


def test_unknown_hvp_is_a_user_error():
    with pytest.raises(VdiagError, match="hvp"):
        build("bolddi-simclr", hvp="backward")
