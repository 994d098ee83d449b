"""Methods: which parameters learn, momentum updates, queues, optimiser and schedule pieces."""

import math

import pytest
import torch

from vdiag.errors import VdiagError
from vdiag.methods import METHODS, build_method
from vdiag.methods.base import ema_update
from vdiag.methods.byol import cosine_momentum
from vdiag.models import build_backbone
from vdiag.train.optim import LARS, learning_rate, parameter_groups

SMALL = {
    "simclr": dict(projector_hidden=32),
    "moco": dict(projector_hidden=32, queue_size=16),
    "byol": dict(projector_hidden=32, predictor_hidden=32),
    "swav": dict(projector_hidden=32, prototypes=8, queue_size=8, freeze_prototypes_steps=1),
    "vicreg": dict(projector_hidden=32, projector_dim=32),
    "supervised": dict(num_classes=3),
    "vididi-simclr": dict(projector_hidden=32),
    "vididi-byol": dict(projector_hidden=32, predictor_hidden=32),
    "vididi-vicreg": dict(projector_hidden=32, projector_dim=32),
    "dclr": dict(projector_hidden=32, queue_size=8, warmup_epochs=0, refresh_every=1),
    "concepts": dict(static_concepts=6, dynamic_concepts=6, top_k=2, warmup_epochs=0),
    "bolddi-simclr": dict(projector_hidden=32, projector_dim=16),
    "bolddi-moco": dict(projector_hidden=32, projector_dim=16, queue_size=16),
    "bolddi-byol": dict(projector_hidden=32, projector_dim=16, predictor_hidden=32),
    "bolddi-swav": dict(projector_hidden=32, projector_dim=16, prototypes=8),
    "bodvcl-simclr": dict(projector_hidden=32, projector_dim=16),
    "bodvcl-byol": dict(projector_hidden=32, projector_dim=16, predictor_hidden=32),
    "bodvcl-moco": dict(projector_hidden=32, projector_dim=16, queue_size=16),
}


def small_method(name):
    torch.manual_seed(0)
    koopman = name.startswith(("bolddi", "bodvcl"))  # one feature per frame
    return build_method(name, build_backbone("tiny", keep_temporal=koopman), **SMALL[name])


def batch(n=4, rho=2, extra_frames=0):
    torch.manual_seed(1)
    return {"clips": torch.randn(n, rho, 3, 4 + extra_frames, 32, 32), "label": torch.tensor([0, 1, 2, 0])[:n]}


@pytest.mark.parametrize("name", list(METHODS))
def test_backward_reaches_backbone_and_only_trainable_parts(name):
    method = small_method(name)
    method.start_epoch(0)
    losses = method(batch(extra_frames=method.extra_frames))
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert all(p.grad is not None for p in method.backbone.parameters())
    for module_name in ("momentum_backbone", "momentum_projector", "slow_backbone"):
        if hasattr(method, module_name):
            assert all(p.grad is None and not p.requires_grad for p in getattr(method, module_name).parameters())


@pytest.mark.parametrize("name", ["moco", "byol"])
def test_momentum_encoder_moves_only_by_ema(name):
    method = small_method(name)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    before_target = [p.clone() for p in method.momentum_backbone.parameters()]
    method(batch())["loss"].backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before_target, method.momentum_backbone.parameters()))  # step leaves it
    online = [p.detach().clone() for p in method.backbone.parameters()]
    momentum = method.momentum if name == "moco" else cosine_momentum(method.base_momentum, 0.5)
    method.after_step(0.5)
    for old, new, theta in zip(before_target, method.momentum_backbone.parameters(), online):
        assert torch.allclose(new, momentum * old + (1 - momentum) * theta, atol=1e-6)


def test_ema_update_formula_and_buffers():
    target, online = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    online.weight.data.fill_(2.0)
    online.running_mean.fill_(5.0)
    ema_update(target, online, 0.9)
    assert torch.allclose(target.weight, torch.full((3,), 0.9 * 1 + 0.1 * 2))
    assert torch.equal(target.running_mean, online.running_mean)


def test_byol_momentum_schedule():
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0) == pytest.approx(1.0)


def test_moco_queue_is_fifo_of_keys():
    method = small_method("moco")
    method(batch())
    assert int(method.queue_pointer) == 8
    keys_norm = method.queue[:8].norm(dim=1)
    assert torch.allclose(keys_norm, torch.ones(8), atol=1e-5)
    method(batch())
    method(batch())
    assert int(method.queue_pointer) == (24 % 16)


def test_swav_prototypes_frozen_then_learning():
    method = small_method("swav")
    start = method.prototypes.weight.detach().clone()
    optimizer = torch.optim.SGD(method.parameters(), lr=1.0)
    for _ in range(2):
        optimizer.zero_grad()
        method(batch())["loss"].backward()
        method.before_optimizer_step()
        frozen = method.prototypes.weight.grad is None
        optimizer.step()
        method.after_step(0.0)
        if frozen:
            assert torch.allclose(
                torch.nn.functional.normalize(method.prototypes.weight, dim=1), torch.nn.functional.normalize(start, dim=1)
            )
    assert int(method.steps_done) == 2
    assert not torch.allclose(torch.nn.functional.normalize(method.prototypes.weight, dim=1), torch.nn.functional.normalize(start, dim=1))


def test_supervised_uses_a_factor_target():
    method = build_method("supervised", build_backbone("tiny"), num_classes=2, target="bg_color")
    out = method({"clips": torch.randn(2, 1, 3, 4, 32, 32), "factors": {"bg_color": torch.tensor([0, 1])}, "label": torch.tensor([5, 5])})
    assert math.isfinite(out["loss"].item())


def test_cli_name_lists_match_the_builders():
    from vdiag.catalog import BACKBONE_NAMES, METHOD_NAMES
    from vdiag.models import BACKBONES

    assert METHOD_NAMES == tuple(METHODS) and BACKBONE_NAMES == tuple(BACKBONES)


def test_unknown_method_option_is_a_user_error():
    with pytest.raises(VdiagError, match="no option 'temprature'"):
        build_method("simclr", build_backbone("tiny"), temprature=0.2)


def test_learning_rate_schedule():
    assert learning_rate(0, 100, 1.0, warmup_steps=10) == pytest.approx(0.1)
    assert learning_rate(9, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert learning_rate(10, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert learning_rate(55, 100, 1.0, warmup_steps=10) == pytest.approx(0.5)
    assert learning_rate(100, 100, 1.0, warmup_steps=10, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_no_weight_decay_for_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    decay, no_decay = parameter_groups(model, 0.1)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0


def test_lars_step_by_hand():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ‖w‖ = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    w.grad, b.grad = torch.tensor([0.0, 1.0]), torch.tensor([2.0])
    optimizer = LARS(
        [{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}], lr=1.0, momentum=0.9, trust_coefficient=0.01
    )
    optimizer.step()
    update = torch.tensor([0.3, 1.4])  # g + λw
    trust = 0.01 * 5 / update.norm()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - trust * update, atol=1e-6)
    assert torch.allclose(b.detach(), torch.tensor([-1.0]))  # no decay group: plain SGD step


def _wrapped_bases() -> list[type]:
    """The base objectives some wrapper (ViDiDi, BOLD-DI, BOD-VCL) in METHODS composes with."""
    from vdiag.methods.bilevel import KoopmanBilevel
    from vdiag.methods.vididi import ViDiDi

    wrappers = (ViDiDi, KoopmanBilevel)
    bases = {
        base
        for cls in METHODS.values()
        if issubclass(cls, wrappers)
        for base in cls.__mro__[1:]
        if base in METHODS.values() and not issubclass(base, wrappers)
    }
    return sorted(bases, key=lambda cls: cls.name)


def test_the_wrappers_compose_with_five_base_objectives():
    assert [cls.name for cls in _wrapped_bases()] == ["byol", "moco", "simclr", "swav", "vicreg"]


@pytest.mark.parametrize("name", [cls.name for cls in _wrapped_bases()])
def test_wrapped_base_objectives_implement_the_method_contract(name):
    """forward == objective(representations(batch)); an identity transform changes nothing; a projector."""
    import copy

    from vdiag.methods.base import Method

    cls = METHODS[name]
    assert all(getattr(cls, hook) is not getattr(Method, hook) for hook in ("forward", "representations", "objective"))
    method = small_method(name)
    twins = [copy.deepcopy(method) for _ in range(2)]
    clips = batch()
    loss = method(clips)["loss"]
    assert isinstance(method.projector, torch.nn.Module)
    assert torch.equal(twins[0].objective(twins[0].representations(clips)), loss)
    dim = twins[1].representations(clips)
    width = next(v for v in dim.values() if v is not None).shape[-1]
    assert torch.allclose(twins[1].objective(dim, torch.eye(width), None), loss, atol=1e-5)


def test_a_method_without_the_hooks_says_which_one_is_missing():
    method = small_method("supervised")
    with pytest.raises(NotImplementedError, match="Supervised does not expose representations"):
        method.representations(batch())
    with pytest.raises(NotImplementedError, match="Supervised does not define objective"):
        method.objective({})
