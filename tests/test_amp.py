"""Mixed precision: every method trains under CPU bf16 autocast, and the float32 islands really run in float32.

CPU autocast runs matmuls and convolutions in bfloat16 as CUDA autocast does, so the dtype mistakes
that crash or degrade a GPU run (BOLD-DI's Koopman solve: "Expected b and A to have the same dtype")
show up here, on CI machines without a GPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vdiag import koopman
from vdiag.losses.backdoor import backdoor_info_nce
from vdiag.losses.byol import byol_loss
from vdiag.losses.cross_infonce import pair_info_nce
from vdiag.losses.infonce import info_nce, moco_info_nce
from vdiag.losses.precision import float32_island
from vdiag.losses.swav import sinkhorn, swav_loss
from vdiag.losses.vicreg import vicreg_loss
from vdiag.methods import METHODS, build_method, method_arguments
from vdiag.models import build_backbone
from vdiag.models.backbones import VideoBackbone
from vdiag.train.config import migrate_config, resolve_config
from vdiag.train.trainer import _mixed_precision, _train_step

# small values for whichever of these options a method takes (new methods are covered by name)
SMALL = dict(
    projector_hidden=32,
    projector_dim=16,
    predictor_hidden=32,
    queue_size=16,
    prototypes=8,
    freeze_prototypes_steps=0,
    num_classes=3,
    static_concepts=6,
    dynamic_concepts=6,
    top_k=2,
    warmup_epochs=0,
    refresh_every=1,
)


def small_method(name: str):
    options = {key: value for key, value in SMALL.items() if key in method_arguments(name)}
    torch.manual_seed(0)
    per_frame = name.startswith(("bolddi", "bodvcl"))  # Koopman methods need one feature per frame
    return build_method(name, build_backbone("tiny", keep_temporal=per_frame), **options)


def batch_for(method) -> dict:
    torch.manual_seed(1)
    positives = max(method.min_positives, 2 if method.max_positives != 1 else 1)
    return {"clips": torch.randn(4, positives, 3, 4 + method.extra_frames, 32, 32), "label": torch.tensor([0, 1, 2, 0]), "size": 4}


def cpu_bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_one_step_under_cpu_bf16_autocast(name):
    method = small_method(name)
    method.start_epoch(0)
    batch = batch_for(method)
    with cpu_bf16():
        outputs = method(batch)
    assert outputs["loss"].dtype == torch.float32, "the loss is computed in a float32 island"
    assert all(torch.isfinite(v) for v in outputs.values())

    method = small_method(name)
    method.start_epoch(0)
    before = [p.detach().clone() for p in method.backbone.parameters()]
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.01)
    autocast, scaler = _mixed_precision("cpu", True)
    losses = _train_step(method, method, optimizer, scaler, autocast, batch_for(method), "cpu", None)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    after = list(method.backbone.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "the optimiser stepped"
    assert all(p.dtype == torch.float32 for p in method.parameters()), "autocast never changes the weights' dtype"


def test_train_amp_true_enables_cpu_autocast_and_auto_keeps_cpu_in_float32():
    autocast, scaler = _mixed_precision("cpu", True)
    with autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert scaler is None
    for setting in ("auto", False):
        autocast, _ = _mixed_precision("cpu", setting)
        with autocast():
            assert not torch.is_autocast_enabled("cpu")
    assert resolve_config("simclr", "cpu")["train"]["amp"] == "auto"
    assert resolve_config("simclr", "cpu", assignments=["train.amp=true"])["train"]["amp"] is True


def test_a_config_stored_before_auto_keeps_its_meaning():
    """`amp: true` written before `auto` existed meant CUDA only: a resumed CPU run stays in float32."""
    old = resolve_config("simclr", "cpu")
    for key in ("accumulate", "check_finite_every", "channels_last_3d", "compile", "activation_checkpointing", "save_every_epochs"):
        del old["train"][key]
    old["train"]["amp"] = True
    assert migrate_config(old)["train"]["amp"] == "auto"
    explicit = resolve_config("simclr", "cpu", assignments=["train.amp=true"])
    assert migrate_config(explicit)["train"]["amp"] is True


def test_the_koopman_fit_under_autocast_is_the_float32_fit():
    """The shared ridge fit (BOLD-DI Eq. 5) and its prediction loss (Eq. 6) ignore autocast: under bf16
    matmuls the Gram matrices would carry ~3 significant digits (and CUDA's solve refused mixed dtypes)."""
    torch.manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(16, 6, 12), dim=-1)
    reference = koopman.fit_operator(features)
    with cpu_bf16():
        operator = koopman.fit_operator(features)
        loss = koopman.prediction_loss(features, operator)
        half = koopman.fit_operator(features.bfloat16())  # bf16 features (a bf16 head) are promoted first
    assert operator.dtype == torch.float32 and loss.dtype == torch.float32
    assert torch.allclose(operator, reference, rtol=0, atol=1e-6)
    assert torch.allclose(loss, koopman.prediction_loss(features, reference), rtol=0, atol=1e-7)
    assert torch.allclose(half, koopman.fit_operator(features.bfloat16().float()), rtol=0, atol=1e-6)
    with cpu_bf16():  # what an island prevents: the same products in bf16 are far off
        rough = (features[:, :-1].reshape(-1, 12).T @ features[:, :-1].reshape(-1, 12)).float()
    exact = features[:, :-1].reshape(-1, 12).T @ features[:, :-1].reshape(-1, 12)
    assert (rough - exact).abs().max() > 1e-3


def _losses() -> dict:
    """Each loss on fixed float32 inputs (made here, outside any autocast)."""
    torch.manual_seed(0)
    normalize = torch.nn.functional.normalize
    z, keys, queue = torch.randn(6, 2, 16), torch.randn(6, 2, 16), normalize(torch.randn(10, 16), dim=1)
    scores = normalize(z, dim=-1) @ normalize(torch.randn(8, 16), dim=1).T
    codes = torch.softmax(scores / 0.05, -1)
    directions = torch.linalg.eig(torch.randn(16, 16))[1][:, :4]
    return {
        "info_nce": lambda: info_nce(z),
        "moco_info_nce": lambda: moco_info_nce(z, keys, queue),
        "pair_info_nce": lambda: pair_info_nce(z[:, 0], keys[:, 0], z[:, 0], keys[:, 0]),
        "backdoor_info_nce": lambda: backdoor_info_nce(z, directions),
        "sinkhorn": lambda: sinkhorn(scores[:, 0]),
        "swav_loss": lambda: swav_loss(scores, codes),
        "byol_loss": lambda: byol_loss(z, keys),
        "vicreg_loss": lambda: vicreg_loss(z)["loss"],
    }


@pytest.mark.parametrize("name", list(_losses()))
def test_losses_under_autocast_equal_their_float32_value(name):
    loss = _losses()[name]
    reference = loss()
    with cpu_bf16():
        value = loss()
    assert value.dtype == torch.float32
    assert torch.equal(value, reference)


def test_float32_island_turns_autocast_off_and_promotes_only_16_bit_inputs():
    @float32_island
    def probe(a, b, pair):
        return torch.is_autocast_enabled("cpu"), a.dtype, b.dtype, [t.dtype for t in pair], (a @ a.T).dtype

    with cpu_bf16():
        enabled, a, b, pair, product = probe(
            torch.ones(2, 2, dtype=torch.bfloat16), torch.ones(2, dtype=torch.float64), [torch.ones(1).half()]
        )
        assert torch.is_autocast_enabled("cpu")  # restored on exit
    assert (enabled, a, b, pair, product) == (False, torch.float32, torch.float64, [torch.float32], torch.float32)


def _smooth_bilevel(name: str, **options):
    body = nn.Sequential(
        nn.Conv3d(3, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), nn.GELU(), nn.Conv3d(8, 16, 3, padding=1), nn.GELU()
    )
    torch.manual_seed(0)
    return build_method(name, VideoBackbone("smooth", body, 16, keep_temporal=True), projector_hidden=16, projector_dim=8, **options)


@pytest.mark.parametrize("hvp", ["central", "forward"])
def test_bilevel_finite_differences_run_in_float32_under_autocast(hvp):
    """The Hessian-vector product of AID-FD (BOLD-DI App. E) is the same with and without autocast: its
    gradients differ by ε·Hv, below bf16's resolution, so they are taken in float32."""
    method = _smooth_bilevel("bodvcl-simclr", hvp=hvp)
    torch.manual_seed(1)
    batch = {"clips": torch.randn(4, 2, 3, 6, 16, 16)}
    names = [n for n, p in method.named_parameters() if p.requires_grad]
    theta = [p.detach().clone().requires_grad_(True) for p in method.parameters() if p.requires_grad]
    v = [torch.randn_like(t) for t in theta]

    def product():
        at_theta = None
        if hvp == "forward":
            with torch.autocast("cpu", enabled=False):
                at_theta = list(torch.autograd.grad(method._call(names, theta, batch, "inner")[0], theta, materialize_grads=True))
        return torch.cat([h.flatten() for h in method._hessian_vector(names, theta, {}, v, batch, at_theta)])

    reference = product()
    with cpu_bf16():
        value = product()
    assert torch.allclose(value, reference, rtol=1e-5, atol=1e-6)


def test_bolddi_trains_end_to_end_with_train_amp_true_on_cpu(tiny_synth, tmp_path):
    """The issue's crash: `pretrain --method bolddi-simclr` under bf16 autocast (here CPU's)."""
    from vdiag.train.trainer import pretrain

    root, _ = tiny_synth
    config = resolve_config(
        "bolddi-simclr",
        "cpu",
        options={"data": {"path": str(root)}, "train": {"epochs": 1}},
        assignments=[
            "train.amp=true",
            "train.batch_size=12",
            "data.size=32",
            "data.frames=4",
            "data.workers=0",
            "method_args.projector_dim=16",
            "method_args.projector_hidden=32",
        ],
    )
    result = pretrain(config, tmp_path / "run")
    assert result.details["finished"] and result.metrics["steps_done"] == 2
    assert all(isinstance(v, float) and v == v for k, v in result.metrics.items() if k.startswith("final_"))
