"""Throughput and memory options of the trainer: each changes how a step runs, never what it computes."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch
from torch import nn

from vdiag.errors import VdiagError
from vdiag.methods import build_method
from vdiag.models import build_backbone
from vdiag.models.backbones import VideoBackbone
from vdiag.train.config import resolve_config
from vdiag.train.trainer import _apply_backbone_options, _train_step, micro_batches, pretrain

SMALL = ["data.size=32", "data.frames=4", "data.stride=2", "train.batch_size=12", "train.warmup_epochs=0"]


def _clips(n=4, frames=4, seed=1):
    torch.manual_seed(seed)
    return torch.randn(n, 3, frames, 32, 32)


def _parameter_gradients(module):
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


def test_activation_checkpointing_gives_the_same_gradients_and_batchnorm_statistics():
    torch.manual_seed(0)
    plain = build_backbone("tiny")
    checkpointed = build_backbone("tiny")
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_activation_checkpointing(True)
    for backbone in (plain, checkpointed):
        backbone.train()
        backbone(_clips()).pow(2).mean().backward()
    assert torch.allclose(_parameter_gradients(plain), _parameter_gradients(checkpointed), rtol=1e-5, atol=1e-7)
    for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers()):
        assert torch.equal(a, b), name  # one running-statistics update per step, not two
    with torch.no_grad():  # evaluation is unaffected
        assert torch.equal(plain.eval()(_clips()), checkpointed.eval()(_clips()))


def test_activation_checkpointing_refuses_a_body_it_cannot_split():
    backbone = VideoBackbone("mine", nn.Conv3d(3, 4, 1), 4)
    with pytest.raises(VdiagError, match="activation_checkpointing supports"):
        backbone.set_activation_checkpointing(True)


def test_channels_last_3d_changes_the_layout_not_the_result():
    torch.manual_seed(0)
    plain = build_backbone("tiny").eval()
    fast = build_backbone("tiny").eval()
    fast.load_state_dict(plain.state_dict())
    fast.set_channels_last_3d(True)
    assert fast.body.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        assert torch.allclose(plain(_clips()), fast(_clips()), rtol=1e-4, atol=1e-5)
    with pytest.raises(VdiagError, match="channels_last_3d is for 3-D CNN"):
        VideoBackbone("mvit_v2_s", nn.Identity(), 4).set_channels_last_3d(True)


def test_compile_and_layout_options_reach_the_right_backbones(monkeypatch):
    """train.compile compiles the trained backbone's body in place (parameter names unchanged);
    channels-last covers the momentum copy too."""
    compiled = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    method = build_method("byol", build_backbone("tiny"), projector_hidden=16, predictor_hidden=16)
    names = [name for name, _ in method.named_parameters()]
    train = {"channels_last_3d": True, "activation_checkpointing": True, "compile": True}
    _apply_backbone_options(method, train)
    assert compiled == [method.backbone.body]
    assert method.backbone.checkpointed_blocks and method.momentum_backbone.checkpointed_blocks is None
    assert method.momentum_backbone.channels_last_3d and method.backbone.channels_last_3d
    assert [name for name, _ in method.named_parameters()] == names


def _supervised():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.GELU(), nn.Conv3d(8, 8, 3, stride=2, padding=1))  # no BN: samples independent
    return build_method("supervised", VideoBackbone("plain", body, 8), num_classes=3)


@pytest.mark.parametrize("parts", [2, 3])
def test_gradient_accumulation_equals_the_big_batch_for_supervised(parts):
    torch.manual_seed(2)
    batch = {"clips": torch.randn(6, 1, 3, 4, 16, 16), "label": torch.tensor([0, 1, 2, 0, 1, 2]), "size": 6}
    results = []
    for accumulate in (1, parts):
        method = _supervised()
        optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
        losses = _train_step(method, method, optimizer, None, nullcontext, batch, "cpu", None, accumulate)
        results.append((losses, [p.detach().clone() for p in method.parameters()]))
    (big, after_big), (small, after_small) = results
    assert torch.allclose(big["loss"], small["loss"], atol=1e-6) and torch.allclose(big["accuracy"], small["accuracy"])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(after_big, after_small))


def test_micro_batches_split_every_per_video_entry():
    batch = {
        "clips": torch.zeros(5, 2, 3, 1, 1, 1),
        "label": torch.arange(5),
        "factors": {"speed": torch.arange(5)},
        "size": 5,
        "failures": [],
    }
    parts = micro_batches(batch, 2)
    assert [p["size"] for p, _ in parts] == [2, 3] or [p["size"] for p, _ in parts] == [3, 2]
    assert sum(share for _, share in parts) == pytest.approx(1.0)
    assert torch.equal(torch.cat([p["factors"]["speed"] for p, _ in parts]), torch.arange(5))


def test_gradient_accumulation_is_refused_for_contrastive_methods():
    with pytest.raises(VdiagError, match=r"train.accumulate=2 would change simclr's objective"):
        resolve_config("simclr", "cpu", assignments=["train.accumulate=2"])
    assert resolve_config("supervised", "cpu", assignments=["train.accumulate=2"])["train"]["accumulate"] == 2


def _step_losses(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["global_step"], r["loss"]) for r in lines if r["type"] == "step"]


def test_persistent_workers_and_deferred_checks_repeat_the_plain_run(tiny_synth, tmp_path):
    """One loader for the whole run (a worker that lives across epochs draws each epoch's clips), losses read
    back every 3 steps: the per-step losses of the plain run, and epoch checkpoints with --save-every."""
    root, _ = tiny_synth

    def config(*extra):
        return resolve_config("simclr", "cpu", options={"data": {"path": str(root)}, "train": {"epochs": 2}}, assignments=[*SMALL, *extra])

    pretrain(config("data.workers=0"), tmp_path / "plain")
    pretrain(
        config(
            "data.workers=1",
            "data.persistent_workers=true",
            "data.prefetch_factor=1",
            "train.check_finite_every=3",
            "train.save_every_epochs=1",
        ),
        tmp_path / "fast",
    )
    plain, fast = _step_losses(tmp_path / "plain"), _step_losses(tmp_path / "fast")
    assert len(plain) == 4 and plain == fast
    assert (tmp_path / "fast" / "epoch_0001.pt").is_file() and (tmp_path / "fast" / "epoch_0002.pt").is_file()
    assert not (tmp_path / "plain" / "epoch_0001.pt").exists()


def test_a_deferred_finiteness_check_names_the_step_that_failed(tiny_synth, tmp_path, monkeypatch):
    root, _ = tiny_synth
    from vdiag.methods.simclr import SimCLR

    original, calls = SimCLR.forward, []

    def nan_on_second(self, batch):
        calls.append(1)
        outputs = original(self, batch)
        return {k: v * float("nan") for k, v in outputs.items()} if len(calls) == 2 else outputs

    monkeypatch.setattr(SimCLR, "forward", nan_on_second)
    config = resolve_config(
        "simclr",
        "cpu",
        options={"data": {"path": str(root)}, "train": {"epochs": 1}},
        assignments=[*SMALL, "data.workers=0", "train.check_finite_every=5"],
    )
    with pytest.raises(VdiagError, match=r"loss became nan at epoch 1, step 2 "):
        pretrain(config, tmp_path / "run")


def test_activation_checkpointing_is_refused_for_bilevel_methods():
    """Their inner passes run at swapped-in parameters; a recomputation in backward would use the module's own."""
    with pytest.raises(VdiagError, match="activation_checkpointing does not work with bolddi-simclr"):
        resolve_config("bolddi-simclr", "cpu", assignments=["train.activation_checkpointing=true"])
    assert resolve_config("dclr", "cpu", assignments=["train.activation_checkpointing=true"])["train"]["activation_checkpointing"]
