"""vdiag.koopman on linear systems whose operator, eigenvalues and modes are known."""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest
import torch

from vdiag import koopman
from vdiag.errors import VdiagError


def _rotation(angle: float, modulus: float = 1.0) -> np.ndarray:
    c, s = math.cos(angle) * modulus, math.sin(angle) * modulus
    return np.array([[c, -s], [s, c]])


# eigenvalues: 1, 1 (static), 0.9·e^{±0.09i} (static for BOLD-DI only), e^{±0.3i} (rotation),
# 0.5 (decay), 0.8·e^{±1.2i} (decaying oscillation)
BLOCKS = [np.eye(2), _rotation(0.09, 0.9), _rotation(0.3), np.array([[0.5]]), _rotation(1.2, 0.8)]
STATIC_BOLDDI = {1.0 + 0j: True, cmath.rect(0.9, 0.09): True, cmath.rect(1, 0.3): False, 0.5 + 0j: False, cmath.rect(0.8, 1.2): False}
STATIC_BODVCL = {1.0 + 0j: True, cmath.rect(0.9, 0.09): False, cmath.rect(1, 0.3): False, 0.5 + 0j: False, cmath.rect(0.8, 1.2): False}


def _system(seed: int = 0, blocks: list[np.ndarray] = BLOCKS) -> np.ndarray:
    dim = sum(b.shape[0] for b in blocks)
    block = np.zeros((dim, dim))
    i = 0
    for b in blocks:
        block[i : i + b.shape[0], i : i + b.shape[0]] = b
        i += b.shape[0]
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0] + 0.3 * rng.normal(size=(dim, dim))  # well conditioned, not orthogonal
    return basis @ block @ np.linalg.inv(basis)


def _trajectories(operator: np.ndarray, clips: int, frames: int, seed: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    states = [rng.normal(size=(clips, operator.shape[0]))]
    for _ in range(frames - 1):
        states.append(states[-1] @ operator.T)
    return torch.from_numpy(np.stack(states, axis=1))  # (B, L, M)


def _sorted(values) -> np.ndarray:
    values = np.asarray(values, dtype=complex)
    return values[np.lexsort((values.imag.round(6), values.real.round(6)))]


@pytest.mark.parametrize("estimator", ["shared", "clip"])
def test_estimators_recover_known_eigenvalues(estimator):
    # one clip's trajectory spans one direction of a repeated eigenvalue's eigenspace, so the
    # per-clip fit gets a system whose eigenvalue 1 is simple
    operator = _system(blocks=BLOCKS if estimator == "shared" else [np.ones((1, 1))] + BLOCKS[1:])
    features = _trajectories(operator, clips=16, frames=12)  # 11 transitions per clip ≥ M
    fitted = koopman.fit_operator(features, estimator=estimator, ridge=1e-12, rtol=1e-14)
    fitted = fitted if estimator == "shared" else fitted[3]
    assert np.allclose(fitted.numpy(), operator, atol=1e-6)
    eigenvalues, _ = koopman.eigen(fitted)
    assert np.allclose(_sorted(eigenvalues.numpy()), _sorted(np.linalg.eigvals(operator)), atol=1e-6)


@pytest.mark.parametrize("rule, truth", [("bolddi", STATIC_BOLDDI), ("bodvcl", STATIC_BODVCL)])
def test_split_rules_put_each_mode_on_its_side(rule, truth):
    eigenvalues, _ = koopman.eigen(torch.from_numpy(_system()))
    static = koopman.static_modes(eigenvalues, rule)
    for value, is_static in zip(eigenvalues.tolist(), static.tolist()):
        expected = next(
            s for v, s in truth.items() if abs(abs(v) - abs(value)) < 1e-6 and abs(abs(cmath.phase(v)) - abs(cmath.phase(value))) < 1e-6
        )
        assert is_static == expected, (rule, value)
    # conjugate pairs never split
    for value, is_static in zip(eigenvalues.tolist(), static.tolist()):
        partner = min(range(len(eigenvalues)), key=lambda j: abs(eigenvalues[j].item() - value.conjugate()))
        assert bool(static[partner]) == is_static


def test_mode_amplitudes_follow_lambda_to_the_k():
    operator = _system()
    features = _trajectories(operator, clips=3, frames=10)
    eigenvalues, eigenvectors = koopman.eigen(torch.from_numpy(operator))
    amplitudes = koopman.mode_amplitudes(features, eigenvectors)  # (3, 10, M)
    k = torch.arange(10, dtype=torch.float64)[:, None]
    expected = amplitudes[:, :1] * eigenvalues[None, None, :] ** k
    assert torch.allclose(amplitudes, expected, atol=1e-8)
    static = koopman.static_modes(eigenvalues, "bodvcl")
    assert torch.allclose(amplitudes[..., static], amplitudes[:, :1, static].expand(-1, 10, -1), atol=1e-8)  # flat


def test_projectors_split_features_into_constant_and_moving_parts():
    operator = _system()
    features = _trajectories(operator, clips=4, frames=9)
    eigenvalues, eigenvectors = koopman.eigen(torch.from_numpy(operator))
    static, dynamic = koopman.split_projectors(eigenvectors, koopman.static_modes(eigenvalues, "bodvcl"))
    assert torch.allclose(static + dynamic, torch.eye(9, dtype=static.dtype))
    assert torch.allclose(static @ static, static, atol=1e-9)
    static_part = koopman.project(features, static)
    assert torch.allclose(static_part, static_part[:, :1].expand_as(static_part), atol=1e-8)  # λ = 1: constant in time
    assert koopman.project(features, dynamic).std(dim=1).mean() > 0.1
    assert torch.allclose(static_part + koopman.project(features, dynamic), features, atol=1e-9)


@pytest.mark.parametrize("kind", ["constant", "duplicated", "zeros"])
@pytest.mark.parametrize("estimator", ["shared", "clip"])
def test_rank_deficient_input_gives_no_nan(kind, estimator):
    base = torch.randn(4, 1, 16)
    features = (
        {
            "constant": base.expand(4, 8, 16),
            "duplicated": torch.randn(4, 4, 16).repeat_interleave(2, dim=1),
            "zeros": torch.zeros(4, 8, 16),
        }[kind]
        .clone()
        .requires_grad_(True)
    )
    operator = koopman.fit_operator(features, estimator=estimator)
    loss = koopman.prediction_loss(features, operator)
    loss.backward()
    assert torch.isfinite(operator).all() and torch.isfinite(loss) and torch.isfinite(features.grad).all()
    eigenvalues, eigenvectors = koopman.eigen(operator)
    assert torch.isfinite(eigenvalues).all() and torch.isfinite(eigenvectors).all()
    eigenvalues, modes = koopman.dmd(features)
    assert torch.isfinite(eigenvalues).all() and torch.isfinite(modes).all()


def test_per_clip_fit_is_exact_so_only_the_shared_loss_carries_signal():
    torch.manual_seed(0)
    features = torch.randn(16, 8, 32, dtype=torch.float64, requires_grad=True)  # M = 32 ≥ L − 1 = 7
    clip_loss = koopman.prediction_loss(features, koopman.fit_operator(features, estimator="clip"))
    (clip_grad,) = torch.autograd.grad(clip_loss, features)
    assert clip_loss < 1e-20 and clip_grad.abs().max() < 1e-9  # exact fit: nothing to learn
    shared_loss = koopman.prediction_loss(features, koopman.fit_operator(features, estimator="shared"))
    (shared_grad,) = torch.autograd.grad(shared_loss, features)
    assert shared_loss > 0.1 * features.detach().pow(2).mean()  # 112 transitions > 32 unknowns per row
    # informative: a small step against the gradient lowers the loss by about the predicted amount
    step = 1e-3 * shared_grad / shared_grad.norm()
    moved = features.detach() - step
    after = koopman.prediction_loss(moved, koopman.fit_operator(moved, estimator="shared"))
    predicted = shared_loss.detach() - (shared_grad * step).sum()
    assert after < shared_loss.detach() and abs(float(after - predicted)) < 1e-3 * float(shared_loss.detach() - after)


def test_shared_loss_gradient_is_correct():
    torch.manual_seed(0)
    features = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: koopman.prediction_loss(f, koopman.fit_operator(f, ridge=1e-2)), (features,))


def test_dmd_matches_the_non_zero_eigenvalues_of_the_clip_operator():
    torch.manual_seed(0)
    features = torch.randn(5, 6, 24, dtype=torch.float64)
    eigenvalues, modes = koopman.dmd(features)
    assert eigenvalues.shape == (5, 5) and modes.shape == (5, 24, 5)
    full = torch.linalg.eigvals(koopman.fit_operator(features, estimator="clip", rtol=1e-12))
    for clip in range(5):
        nonzero = full[clip][full[clip].abs() > 1e-8]
        assert np.allclose(_sorted(nonzero.numpy()), _sorted(eigenvalues[clip].numpy()), atol=1e-6)
    # modes are eigenvectors of the clip operator: K φ = λ φ
    operator = koopman.fit_operator(features, estimator="clip", rtol=1e-12).to(modes.dtype)
    assert torch.allclose(operator @ modes, modes * eigenvalues[:, None, :], atol=1e-6)


def test_dmd_recovers_a_low_dimensional_system_embedded_in_many_features():
    operator = _system(blocks=[np.ones((1, 1))] + BLOCKS[1:])  # simple eigenvalues: one clip identifies them
    low = _trajectories(operator, clips=2, frames=12)  # 8-dimensional state
    lift = torch.from_numpy(np.random.default_rng(3).normal(size=(8, 64)))
    eigenvalues, _ = koopman.dmd(low @ lift, rank=8, rtol=1e-14)
    for clip in range(2):
        assert np.allclose(_sorted(eigenvalues[clip].numpy()), _sorted(np.linalg.eigvals(operator)), atol=1e-6)


def test_continuous_eigenvalues_and_summary():
    rates = torch.tensor([complex(-0.1, 0.4), complex(0.0, 0.0), complex(-0.5, -0.7)], dtype=torch.complex128)  # |Im| δ < π: no aliasing
    stride = 4.0
    assert torch.allclose(koopman.continuous_eigenvalues(torch.exp(rates * stride), stride), rates)
    summary = koopman.eigenvalue_summary(torch.tensor([1.0, 0.95, 0.5, -1.0], dtype=torch.complex128))
    assert summary["static_fraction_bolddi"] == 0.5 and summary["static_fraction_bodvcl"] == 0.5
    assert summary["spectral_radius_max"] == 1.0


def test_bad_shapes_and_names_are_user_errors():
    with pytest.raises(VdiagError, match="frames ≥ 2"):
        koopman.fit_operator(torch.randn(4, 1, 8))
    with pytest.raises(VdiagError, match="estimator"):
        koopman.fit_operator(torch.randn(4, 3, 8), estimator="nope")
    with pytest.raises(VdiagError, match="rule"):
        koopman.static_modes(torch.ones(3, dtype=torch.complex64), "nope")
