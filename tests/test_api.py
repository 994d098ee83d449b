"""`vdiag.api`: a module held in memory gives the numbers the CLI gives for the same module saved to a file."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from test_pretrain import run_cli

import vdiag.api as vd
from vdiag.diagnostics.features import Sampling
from vdiag.errors import VdiagError

MODULE = '''
import torch
from torch import nn


class Net(nn.Module):
    """(B, 3, T, H, W) → a feature map (B, 16, T/2, H/4, W/4): a temporal stride that keep_temporal removes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv3d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv3d(8, 16, 3, stride=(1, 2, 2), padding=1)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))


class DictNet(Net):
    """The same network returning a dict: needs an adapter."""

    def forward(self, x):
        return {"features": super().forward(x)}


def build():
    return Net()
'''
ARGS = ["--clips", "1", "--frames", "8", "--stride", "1", "--size", "32", "--workers", "0", "--json"]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "api_user_models.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("api_user_models")


def _close(left: dict, right: dict):
    assert set(left) == set(right)
    for key, value in left.items():
        if isinstance(value, float):
            assert value == pytest.approx(right[key], rel=1e-6, abs=1e-9, nan_ok=True), key


def test_in_memory_module_gives_the_cli_numbers(user_module, tiny_synth, tmp_path):
    root, _ = tiny_synth
    net = user_module.Net()
    results = vd.diagnose(
        net,
        root,
        diagnostics=("static-bias", "shuffle", "eig"),
        frames=8,
        stride=1,
        size=32,
        clips=1,
        workers=0,
        out=tmp_path / "api",
        name="my-net",
    )
    assert list(results) == ["static-bias", "shuffle", "eig"]
    assert net.conv1.stride == (2, 2, 2)  # eig ran on a copy without temporal strides; the module is unchanged
    torch.save(net.state_dict(), tmp_path / "net.pt")
    for diagnostic, command in (("static-bias", ("probe", "static-bias")), ("shuffle", ("probe", "shuffle")), ("eig", ("viz", "eig"))):
        cli = json.loads(
            run_cli(
                *command, tmp_path / "net.pt", "--backbone", "api_user_models:build", "--data", root, *ARGS, "--out", tmp_path / "cli"
            ).stdout
        )
        _close(results[diagnostic].metrics, cli["metrics"])
        written = json.loads((tmp_path / "api" / f"{diagnostic}.json").read_text())  # the same JSON file the CLI writes
        assert written["command"] == cli["command"] and set(written["metrics"]) == set(cli["metrics"])
        for key in ("frames", "stride", "size", "mean", "std"):
            assert written["config"][key] == cli["config"][key], key
    assert results["eig"].config["keep_temporal"] and not results["static-bias"].config["keep_temporal"]
    # a forward that returns a dict: the adapter picks the tensor, and the numbers are the plain module's
    adapted = vd.diagnose(
        user_module.DictNet(),
        root,
        diagnostics=("static-bias",),
        adapter=lambda module, clips: module(clips)["features"],
        sampling=Sampling(frames=8, stride=1, size=32, clips=1),
        workers=0,
    )
    _close(adapted["static-bias"].metrics, results["static-bias"].metrics)
    with pytest.raises(VdiagError, match="unknown diagnostic 'nope'"):
        vd.diagnose(net, root, diagnostics=("nope",))
    with pytest.raises(VdiagError, match="DictNet returned a dict"):
        vd.diagnose(user_module.DictNet(), root, diagnostics=("static-bias",), workers=0)


def test_report_of_a_module_and_a_checkpoint(user_module, tiny_synth, tmp_path):
    """`vd.report`: an in-memory module beside a state dict on disk, each at its own clips."""
    from vdiag.models.backbones import build_backbone

    root, _ = tiny_synth
    torch.manual_seed(1)
    (tmp_path / "tiny").mkdir()
    torch.save(build_backbone("tiny").body.state_dict(), tmp_path / "tiny" / "weights.pt")
    result = vd.report(
        [user_module.Net(), tmp_path / "tiny" / "weights.pt"],
        root,
        tmp_path / "report",
        samplings=[Sampling(8, 1, 32, 1), Sampling(6, 1, 32, 1)],
        backbones=[None, "tiny"],
        names=["my-net", None],
        workers=0,
    )
    models = result.config["models"]
    assert [(m["backbone"], m["frames"]) for m in models] == [("my-net", 8), ("tiny", 6)]
    assert np.isfinite(result.metrics["0.eig.static_fraction_bolddi"]) and "diff.1-0.static-bias.acc_real" in result.metrics
    assert (tmp_path / "report" / "report.html").is_file()
    with pytest.raises(VdiagError, match="samplings has 3 entries for 2 models"):
        vd.report([user_module.Net(), user_module.Net()], root, tmp_path / "r2", samplings=[None] * 3)
