"""`vdiag report` across architectures: a vdiag CNN, a pytorchvideo X3D and a Hugging Face VideoMAE folder
side by side, each at its own clips, on the same test videos (tiny sizes: 32 px, 1 clip per video)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_pretrain import run_cli

from vdiag.models.backbones import build_backbone
from vdiag.report.card import CARD

transformers = pytest.importorskip("transformers")


def _videomae(folder):
    """A 2-layer VideoMAE of 8 frames at 32 px (tubelets of 2 frames, 16-pixel patches), saved as save_pretrained does."""
    torch.manual_seed(0)
    config = transformers.VideoMAEConfig(
        image_size=32,
        patch_size=16,
        num_frames=8,
        tubelet_size=2,
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
    )
    transformers.VideoMAEModel(config).eval().save_pretrained(folder)
    return folder


def _state_dict(name, path):
    torch.manual_seed(1)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in build_backbone(name).body.state_dict().items()}}, path)
    return path


def test_three_architectures_side_by_side(tiny_synth, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, _ = tiny_synth
    tiny = _state_dict("tiny", tmp_path / "tiny" / "weights.pt")
    x3d = _state_dict("x3d_xs", tmp_path / "x3d" / "weights.pth")
    videomae = _videomae(tmp_path / "hf" / "videomae")
    out = tmp_path / "report"
    proc = run_cli(
        "report",
        f"{tiny}=tiny",
        f"{x3d}=x3d_xs",
        str(videomae),
        "--data",
        str(root),
        "--clips",
        "1",
        "--frames",
        "8,-,-",  # tiny 8, X3D-XS its own 4, VideoMAE its config's 8
        "--stride",
        "1,2,1",
        "--size",
        "32",
        "--workers",
        "0",
        "--out",
        str(out),
        "--json",
    )
    result = json.loads(proc.stdout)
    metrics, models = result["metrics"], result["config"]["models"]
    # a row per checkpoint: its architecture and its own clips and normalisation
    assert [(m["backbone"], m["frames"], m["stride"], m["size"]) for m in models] == [
        ("tiny", 8, 1, 32),
        ("x3d_xs", 4, 2, 32),
        ("videomae (Hugging Face)", 8, 1, 32),
    ]
    assert [m["normalisation"].split(" (")[0] for m in models] == ["Kinetics, torchvision", "Kinetics, pytorchvideo", "ImageNet"]
    for number in range(3):  # every card metric filled in every column (synthetic data: factors too)
        for diagnostic, name, *_ in CARD:
            assert np.isfinite(metrics[f"{number}.{diagnostic}.{name}"]), (number, diagnostic, name)
    for number in (1, 2):  # paired with the first on the same test videos, although the clips differ
        for key in ("static-bias.acc_real", "shuffle.acc", "retrieval.R@1", "factors.dynamic_score"):
            diff = metrics[f"diff.{number}-0.{key}"]
            diagnostic, name = key.split(".", 1)
            assert diff == pytest.approx(metrics[f"{number}.{key}"] - metrics[f"0.{key}"])
            assert metrics[f"diff.{number}-0.{key}_ci_low"] <= diff <= metrics[f"diff.{number}-0.{key}_ci_high"]
    per_model = [json.loads(next((out).glob(f"{number}-*/static-bias.json")).read_text())["config"] for number in range(3)]
    assert [(c["frames"], c["stride"], c["size"]) for c in per_model] == [(8, 1, 32), (4, 2, 32), (8, 1, 32)]
    assert len({c["test_videos"] for c in per_model}) == 1  # the same test videos
    html, markdown = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "Models and clips" in html and "videomae (Hugging Face)" in html and "4 × 2" in html and "8 × 1" in html
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and " px |" in line]
    assert len(rows) == 3 and "x3d_xs" in rows[1] and "| 4 × 2 | 32 px |" in rows[1]
    assert "–" not in markdown.split("## Paired differences")[1].split("![")[0]  # every difference computed


def test_per_checkpoint_values_are_checked(tiny_synth, tmp_path):
    root, _ = tiny_synth
    tiny = _state_dict("tiny", tmp_path / "a" / "weights.pt")
    proc = run_cli("report", f"{tiny}=tiny", f"{tiny}=tiny", "--data", str(root), "--frames", "8,8,8", check=False)
    assert proc.returncode != 0 and "--frames has 3 values for 2 checkpoints" in proc.stderr
    proc = run_cli("report", f"{tiny}=no_such_net", "--data", str(root), check=False)
    assert proc.returncode != 0 and "'no_such_net' is not a backbone" in proc.stderr
    proc = run_cli("report", str(tiny), "--data", str(root), "--size", "32,x", check=False)
    assert proc.returncode != 0 and "whole numbers" in proc.stderr
