"""`vdiag viz`: figures checked for content on models whose answer is known (a linear system for
the eigenvalues, a foreground detector for the activation maps)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_pretrain import run_cli
from torch import nn

from vdiag.diagnostics.features import Extractor, Sampling
from vdiag.diagnostics.model import DiagnosticModel
from vdiag.models.backbones import VideoBackbone
from vdiag.viz.eig import clip_eigenvalues, viz_eig

ANGLE, DECAY = 0.5, 0.95
KNOWN = np.array([1.0, 0.5, DECAY * np.exp(1j * ANGLE), DECAY * np.exp(-1j * ANGLE)])


class LinearSystem(nn.Module):
    """Feature map u_t = K^t u_0 (B, 4, T, 1, 1) with u_0 scaled by the clip's first-frame mean:
    a static mode (λ = 1), a decaying one (0.5) and a damped rotation (0.95 e^{±0.5i})."""

    def __init__(self):
        super().__init__()
        a, b = DECAY * math.cos(ANGLE), DECAY * math.sin(ANGLE)
        operator = torch.tensor([[1.0, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, a, -b], [0, 0, b, a]])
        self.register_buffer("operator", operator)
        self.register_buffer("start", torch.tensor([1.0, 0.7, -0.4, 0.9]))

    def forward(self, clips):
        scale = 1.5 + clips[:, :, 0].mean(dim=(1, 2, 3))  # (B,)
        state = scale[:, None] * self.start  # (B, 4)
        steps = []
        for _ in range(clips.shape[2]):
            steps.append(state)
            state = state @ self.operator.T
        return torch.stack(steps, dim=2)[..., None, None]


def test_known_linear_system(tiny_synth, tmp_path):
    from vdiag.diagnostics.data import DataRef

    root, _ = tiny_synth
    model = DiagnosticModel(
        VideoBackbone("linear", LinearSystem(), 4, keep_temporal=True), Path("linear-system.pt"), fingerprint="linear-system"
    )
    result = viz_eig(Extractor(model, Sampling(8, 1, 32, 2), workers=0), DataRef(str(root)), tmp_path, colour_by="label")
    saved = np.load(tmp_path / "eig.npz")
    per_clip = saved["eigenvalues"].reshape(-1, 4)
    assert len(per_clip) == 2 * 8  # 8 test videos × 2 clips, four eigenvalues each
    for values in per_clip:
        ordered = sorted(values, key=lambda v: (round(abs(v), 3), v.imag))
        np.testing.assert_allclose(ordered, sorted(KNOWN, key=lambda v: (round(abs(v), 3), v.imag)), atol=1e-4)
    assert result.metrics["static_fraction_bolddi"] == pytest.approx(0.25)  # λ = 1 only: the rotation's |Arg| = 0.5 > ω
    assert result.metrics["static_fraction_bodvcl"] == pytest.approx(0.25)
    assert result.metrics["spectral_radius_max"] == pytest.approx(1.0, abs=1e-4)
    wide = viz_eig(Extractor(model, Sampling(8, 1, 32, 2), workers=0), DataRef(str(root)), tmp_path / "wide", xi=0.9, omega=0.6)
    assert wide.metrics["static_fraction_bolddi"] == pytest.approx(0.75)  # the rotation joins at ω = 0.6
    with Image.open(tmp_path / "eig.png") as image:
        assert image.size[0] > 1000 and image.size[1] > 500


def test_shared_estimator_and_too_few_frames():
    rng = np.random.default_rng(0)
    operator = np.diag([1.0, 0.8, -0.5])
    clips = np.empty((6, 10, 3))
    clips[:, 0] = rng.normal(size=(6, 3))
    for t in range(1, 10):
        clips[:, t] = clips[:, t - 1] @ operator.T
    values, clip = clip_eigenvalues(clips, estimator="shared", ridge=1e-9)
    np.testing.assert_allclose(sorted(values.real), [-0.5, 0.8, 1.0], atol=1e-5)
    assert (clip == -1).all()
    from vdiag.errors import VdiagError

    with pytest.raises(VdiagError, match="at least 3 frames"):
        clip_eigenvalues(clips[:, :2])


def test_cli_viz_eig_any_checkpoint(tiny_synth, tmp_path):
    from vdiag.models.backbones import build_backbone

    root, _ = tiny_synth
    torch.manual_seed(0)
    torch.save(build_backbone("tiny").body.state_dict(), tmp_path / "random.pt")
    proc = run_cli(
        "viz",
        "eig",
        str(tmp_path / "random.pt"),
        "--backbone",
        "tiny",
        "--data",
        str(root),
        "--clips",
        "1",
        "--frames",
        "6",
        "--size",
        "32",
        "--workers",
        "0",
        "--format",
        "svg",
        "--out",
        str(tmp_path / "out"),
        "--json",
    )
    result = json.loads(proc.stdout)
    assert result["figures"] == [str(tmp_path / "out" / "eig.svg")] and (tmp_path / "out" / "eig.svg").read_text().startswith("<?xml")
    assert result["config"]["keep_temporal"] is True and 0 <= result["metrics"]["static_fraction_bodvcl"] <= 1
    assert result["metrics"]["eigenvalues"] <= 8 * 5  # at most L − 1 non-zero eigenvalues per clip


class ForegroundDetector(nn.Module):
    """A feature map that is non-zero only where a pixel is light (the synthetic foreground: light
    shapes on darker backgrounds): relu(mean over RGB of the normalised frame − 1)."""

    def forward(self, clips):
        return torch.relu(clips.mean(dim=1, keepdim=True) - 1.0)


def test_activation_maps_find_the_foreground(tiny_synth, tmp_path):
    from vdiag.viz.activation import viz_activation

    root, _ = tiny_synth
    model = DiagnosticModel(VideoBackbone("foreground", ForegroundDetector(), 1), Path("foreground.pt"), fingerprint="foreground")
    video = root / "videos" / "test" / "test_00001.mp4"
    result = viz_activation(Extractor(model, Sampling(6, 1, 32, 1)), video, tmp_path, frames_shown=3)
    metrics = result.metrics
    assert metrics["fg_mass_video"] > 0.9 and metrics["fg_mass_static"] > 0.9
    assert metrics["fg_mass_difference"] > 0.8  # the object's leading edge: inside the union of the two frames' masks
    assert metrics["fg_mass_video"] > 4 * metrics["fg_area"]
    saved = np.load(tmp_path / "activation-test_00001.npz")
    assert saved["map_video"].shape == (6, 32, 32) and saved["map_difference"].shape == (5, 32, 32) and saved["mask"].shape == (6, 32, 32)
    with Image.open(tmp_path / "activation-test_00001.png") as image:
        assert image.size[0] > 600 and image.size[1] > 800


def test_cli_activation_any_video(tiny_synth, tmp_path):
    """A video outside a synthetic dataset: the figure, no fg metrics; a missing video is one line."""
    import shutil

    from vdiag.models.backbones import build_backbone

    root, _ = tiny_synth
    torch.manual_seed(0)
    torch.save(build_backbone("tiny").body.state_dict(), tmp_path / "random.pt")
    shutil.copy(root / "videos" / "train" / "train_00002.mp4", tmp_path / "clip.mp4")
    common = ["--backbone", "tiny", "--frames", "4", "--size", "32", "--out", str(tmp_path / "out")]
    result = json.loads(run_cli("viz", "activation", str(tmp_path / "random.pt"), str(tmp_path / "clip.mp4"), *common, "--json").stdout)
    assert result["metrics"] == {} and Path(result["figures"][0]).is_file()
    missing = run_cli("viz", "activation", str(tmp_path / "random.pt"), str(tmp_path / "nope.mp4"), *common, check=False)
    assert missing.returncode == 2 and "nope.mp4" in missing.stderr and "Traceback" not in missing.stderr


class ForegroundClassifier(nn.Module):
    """A method-like holder of a classifier on the one-channel foreground embedding."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(1, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.classifier.bias.zero_()


def test_saliency_tubes_find_the_foreground(tiny_synth, tmp_path):
    """The model's output depends on foreground pixels only: every method's mass lies on the mask."""
    from vdiag.viz.saliency import viz_saliency

    root, _ = tiny_synth
    model = DiagnosticModel(
        VideoBackbone("foreground", ForegroundDetector(), 1), Path("foreground.pt"), method=ForegroundClassifier(), fingerprint="fg"
    )
    result = viz_saliency(Extractor(model, Sampling(6, 1, 32, 1)), root / "videos" / "test" / "test_00001.mp4", tmp_path, frames_shown=3)
    metrics = result.metrics
    assert result.config["target"] == "class logit 0"
    assert metrics["fg_mass_gradient"] > 0.9 and metrics["fg_mass_integrated_gradients"] > 0.9
    assert metrics["fg_mass_grad_cam"] > 0.8 and metrics["fg_area"] < 0.3
    with Image.open(tmp_path / "saliency-test_00001.gif") as animation:
        assert animation.n_frames == 6 and animation.size[0] == 4 * animation.size[1]  # frame + three overlays
    saved = np.load(tmp_path / "saliency-test_00001.npz")
    assert saved["grad_cam"].shape == saved["gradient"].shape == (6, 32, 32)


def test_cli_saliency_similarity_target(tiny_synth, tmp_path):
    from vdiag.models.backbones import build_backbone

    root, _ = tiny_synth
    torch.manual_seed(0)
    torch.save(build_backbone("tiny").body.state_dict(), tmp_path / "random.pt")
    video = root / "videos" / "test" / "test_00002.mp4"
    result = json.loads(
        run_cli(
            "viz",
            "saliency",
            str(tmp_path / "random.pt"),
            str(video),
            "--backbone",
            "tiny",
            "--frames",
            "4",
            "--size",
            "32",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ).stdout
    )
    assert result["config"]["target"].startswith("cosine similarity")
    assert all(np.isfinite(v) for v in result["metrics"].values()) and set(result["metrics"]) >= {"fg_mass_grad_cam", "fg_area"}
    assert all(Path(f).is_file() for f in result["figures"])


def test_modes_of_a_known_linear_system(tiny_synth, tmp_path):
    """The λ = 1 mode stays flat, the damped rotation follows Re(λ^t); the fit is linear (R² ≈ 1)."""
    from vdiag.diagnostics.data import DataRef
    from vdiag.viz.modes import viz_modes

    root, _ = tiny_synth
    model = DiagnosticModel(
        VideoBackbone("linear", LinearSystem(), 4, keep_temporal=True), Path("linear-system.pt"), fingerprint="linear-system"
    )
    video = root / "videos" / "test" / "test_00001.mp4"
    result = viz_modes(Extractor(model, Sampling(8, 1, 32, 2), workers=0), DataRef(str(root)), tmp_path, video=video, modes=3, ridge=1e-9)
    metrics = result.metrics
    assert metrics["linear_fit_r2"] > 0.999
    assert metrics["mode0_modulus"] == pytest.approx(1.0, abs=5e-3) and metrics["mode0_argument"] == pytest.approx(0.0, abs=1e-6)
    saved = np.load(tmp_path / "modes.npz")
    eigenvalues, chosen = saved["eigenvalues"], saved["chosen"]
    times = np.arange(8)
    np.testing.assert_allclose(saved[f"curve_{chosen[0]}"][1], 1.0, atol=2e-2)
    rotation = [j for j in chosen if abs(abs(eigenvalues[j]) - DECAY) < 1e-2]
    assert len(rotation) == 1 and eigenvalues[rotation[0]].imag > 0  # one of the conjugate pair
    expected = (eigenvalues[rotation[0]] ** times).real
    np.testing.assert_allclose(saved[f"curve_{rotation[0]}"][1], expected, atol=2e-2)
    np.testing.assert_allclose(expected, ((DECAY * np.exp(1j * ANGLE)) ** times).real, atol=2e-2)
    assert saved[f"spatial_{chosen[0]}"].shape == (8, 32, 32)


def test_concepts_figure_and_refusal(tiny_synth, tmp_path):
    """A concepts checkpoint: the most active static / dynamic concepts' maps and class similarity
    matrices that match the saved codes; any other checkpoint: one line naming the method to use."""
    from vdiag.train.config import resolve_config
    from vdiag.train.trainer import pretrain

    root, _ = tiny_synth
    options = {
        "data": {"path": str(root), "frames": 4, "stride": 2, "size": 32, "workers": 0},
        "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0},
    }
    checkpoint = pretrain(resolve_config("concepts", "cpu", options=options), tmp_path / "run", device="cpu").checkpoint
    video = root / "videos" / "test" / "test_00001.mp4"
    result = json.loads(
        run_cli(
            "viz", "concepts", checkpoint, str(video), "--clips", "2", "--workers", "0", "--out", str(tmp_path / "out"), "--json"
        ).stdout
    )
    saved = np.load(tmp_path / "out" / "concepts-test_00001.npz")
    static_count = 20
    assert result["metrics"]["static_concept"] == int(saved["codes"][:static_count].argmax())
    assert result["metrics"]["dynamic_concept"] == static_count + int(saved["codes"][static_count:].argmax())
    assert saved["attention_static"].shape == (4, 32, 32)
    from vdiag.viz.concepts import class_similarity

    expected = class_similarity(saved["video_codes"][:, static_count:], saved["labels"], len(saved["class_names"]))
    np.testing.assert_allclose(saved["similarity_dynamic"], expected)
    np.testing.assert_allclose(np.diag(saved["similarity_static"]), 1.0, atol=1e-6)
    other = pretrain(resolve_config("simclr", "cpu", options=options), tmp_path / "simclr", device="cpu").checkpoint
    refused = run_cli("viz", "concepts", other, str(video), "--out", str(tmp_path / "no"), check=False)
    assert refused.returncode == 2 and "trained with simclr" in refused.stderr and "--method concepts" in refused.stderr


def test_figures_say_when_their_clips_are_padded(tiny_synth, tmp_path):
    """A clip longer than the video is filled by repeating its last frame: the figure's result counts
    such clips and its title says so (issue: padding is an explicit, counted choice, never silent)."""
    from vdiag.diagnostics.data import DataRef
    from vdiag.viz.activation import viz_activation
    from vdiag.viz.style import clip_is_padded, clip_note, reading_note

    root, config = tiny_synth
    model = DiagnosticModel(
        VideoBackbone("linear", LinearSystem(), 4, keep_temporal=True), Path("linear-system.pt"), fingerprint="linear-system"
    )
    real = viz_eig(Extractor(model, Sampling(8, 1, 32, 2), workers=0), DataRef(str(root)), tmp_path / "real")
    assert real.config["test_padded_clips"] == 0 and reading_note(real.config, "test") == ""
    long = viz_eig(Extractor(model, Sampling(6, 2, 32, 2), workers=0), DataRef(str(root)), tmp_path / "long")  # span 11 > 8 frames
    assert long.config["test_padded_clips"] == long.config["test_clips"] == 2 * config.num_test
    assert reading_note(long.config, "test") == "; 16 of 16 clips padded (videos shorter than a clip)"
    assert clip_is_padded([0, 2, 4, 6, 7, 7]) and clip_is_padded([4, 6, 0, 2]) and not clip_is_padded([0, 2, 4, 6])
    assert clip_note([0, 1, 2]) == ""
    detector = DiagnosticModel(VideoBackbone("foreground", ForegroundDetector(), 1), Path("foreground.pt"), fingerprint="foreground")
    video = root / "videos" / "test" / "test_00001.mp4"
    assert viz_activation(Extractor(detector, Sampling(6, 1, 32, 1)), video, tmp_path / "a", frames_shown=3).config["padded_clip"] is False
    padded = viz_activation(Extractor(detector, Sampling(6, 2, 32, 1)), video, tmp_path / "b", frames_shown=3)
    assert padded.config["padded_clip"] is True
