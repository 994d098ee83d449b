"""The synthetic dataset's truth does not leak: what a factor's kind forbids, no probe can read.

A dynamic factor must be unreadable from any single frame, and a static factor from the signed
difference of two frames; each must be readable from the view its kind allows. Checked with
scikit-learn logistic-regression probes on a held-out half of the `test` split (factors drawn
independently there), at several times in the clip.

What is exact and what is not (see vdiag/data/synthetic.py):
- single frames: every frame's distribution is the same for every value of a dynamic factor (level
  uniform on a cycle, position uniform over the frame, angle uniform), so *any* decoder is at chance;
- signed differences: the generator is stationary and time-reversible given the static factors, so
  each static class's difference Δ is distributed like −Δ and a probe on odd features of Δ (Δ
  itself, or Δ clipped) is at chance. Even features (|Δ|) show moving edges and the size of the
  brightness step, which reveal shape and colour in any video; no generator can hide that.
"""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vdiag.data.synthetic import DYNAMIC_FACTORS, FACTOR_KINDS, STATIC_FACTORS, SynthConfig, draw_video_params, render_video

VIDEOS, FRAMES = 600, 8
CHANCE_TOLERANCE = 0.1  # 300 held-out videos: one standard error of a chance probe is 0.029


@pytest.fixture(scope="module")
def dataset():
    config = SynthConfig(size=32, frames=FRAMES)
    videos, labels = [], {name: [] for name in FACTOR_KINDS}
    for index in range(VIDEOS):
        params = draw_video_params(config, "test", index)
        videos.append(render_video(config, params)[0])
        for name in FACTOR_KINDS:
            labels[name].append(params["factor_index"][name])
    pooled = np.stack(videos).astype(np.float32).reshape(VIDEOS, FRAMES, 16, 2, 16, 2, 3).mean((3, 5))
    return pooled, {name: np.array(values) for name, values in labels.items()}


def spectrum(images: np.ndarray) -> np.ndarray:
    """Log magnitude of the 2-D Fourier transform per channel: blind to where the shape is."""
    centred = images - images.mean((1, 2), keepdims=True)
    return np.log1p(np.abs(np.fft.fft2(centred, axes=(1, 2)))).reshape(len(images), -1)


def probe_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Held-out accuracy of a logistic-regression probe trained on the first half."""
    half = len(labels) // 2
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=500))
    probe.fit(features[:half], labels[:half])
    return float(probe.score(features[half:], labels[half:]))


def chance(labels: np.ndarray) -> float:
    held_out = labels[len(labels) // 2 :]
    return float(np.bincount(held_out).max() / len(held_out))


@pytest.mark.parametrize("t", [0, FRAMES // 2, FRAMES - 1])
def test_single_frames_show_static_factors_only(dataset, t):
    videos, labels = dataset
    frame = videos[:, t]
    features = np.concatenate([frame.reshape(len(frame), -1), spectrum(frame)], 1)
    accuracy = {name: probe_accuracy(features, labels[name]) for name in FACTOR_KINDS}
    for name in DYNAMIC_FACTORS:
        assert accuracy[name] < chance(labels[name]) + CHANCE_TOLERANCE, (name, t, accuracy)
    assert accuracy["bg_color"] > 0.95, accuracy
    assert accuracy["fg_shape"] > 0.7, accuracy


@pytest.mark.parametrize("t", [0, FRAMES - 2])
def test_signed_frame_differences_show_dynamic_factors_only(dataset, t):
    videos, labels = dataset
    difference = videos[:, t + 1] - videos[:, t]
    for features in (difference.reshape(len(difference), -1), np.clip(difference, -4, 4).reshape(len(difference), -1)):
        for name in STATIC_FACTORS:
            accuracy = probe_accuracy(features, labels[name])
            assert accuracy < chance(labels[name]) + CHANCE_TOLERANCE, (name, t, accuracy)
    clipped = np.clip(difference, -4, 4).reshape(len(difference), -1)  # the brightness step, not the rare reset
    assert probe_accuracy(clipped, labels["bg_brightness"]) > 0.9
    assert probe_accuracy(spectrum(np.abs(difference)), labels["fg_trajectory"]) > 0.8  # where the edges moved


def test_every_frame_level_and_position_is_uniform_for_every_value():
    """The exact property behind the probes: per-frame level, position and angle are uniform and
    the same for every value of the dynamic factors (Kolmogorov–Smirnov against uniform)."""
    from scipy.stats import kstest

    from vdiag.data.synthetic import BRIGHTNESS_RANGE

    config = SynthConfig(size=32, frames=FRAMES, bg_brightness=["brightening", "darkening", "steady"])
    config.fg_trajectory = ["rotation", "linear", "orbit", "bounce"]
    params = [draw_video_params(config, "test", i) for i in range(4000)]
    low, high = BRIGHTNESS_RANGE
    for t in (0, FRAMES // 2, FRAMES - 1):
        for value in config.bg_brightness:
            levels = [(p["brightness"][t] - low) / (high - low) for p in params if p["factors"]["bg_brightness"] == value]
            assert kstest(levels, "uniform").pvalue > 1e-3, (value, t)
        for value in config.fg_trajectory:
            chosen = [p for p in params if p["factors"]["fg_trajectory"] == value]
            for key in ("x", "y"):
                room = [(p[key][t] - p["radius"] - 1.5) / (32 - 2 * p["radius"] - 3) for p in chosen]
                assert kstest(room, "uniform").pvalue > 1e-3, (value, key, t)
            angles = [(p["angle"][t] % (2 * np.pi)) / (2 * np.pi) for p in chosen]
            assert kstest(angles, "uniform").pvalue > 1e-3, (value, t)


# --- the static-shortcut knobs (texture, radius, speed, brightness change, colour offset) keep the truth hidden

KNOBS = {
    "texture": 0.3,
    "radius": [0.06, 0.1],
    "speed": 0.5,
    "brightness_change": 0.5,
    "color_offset": 30,
    "bg_color": ["blue", "green", "red", "yellow"],
}


@pytest.fixture(scope="module")
def knob_dataset():
    config = SynthConfig(size=32, frames=FRAMES, **KNOBS)
    videos, labels = [], {name: [] for name in FACTOR_KINDS}
    for index in range(VIDEOS):
        params = draw_video_params(config, "test", index)
        videos.append(render_video(config, params)[0])
        for name in FACTOR_KINDS:
            labels[name].append(params["factor_index"][name])
    pooled = np.stack(videos).astype(np.float32).reshape(VIDEOS, FRAMES, 16, 2, 16, 2, 3).mean((3, 5))
    return pooled, {name: np.array(values) for name, values in labels.items()}


@pytest.mark.parametrize("t", [0, FRAMES - 1])
def test_single_frames_show_no_dynamic_factor_with_every_knob_on(knob_dataset, t):
    videos, labels = knob_dataset
    frame = videos[:, t]
    features = np.concatenate([frame.reshape(len(frame), -1), spectrum(frame)], 1)
    for name in DYNAMIC_FACTORS:
        accuracy = probe_accuracy(features, labels[name])
        assert accuracy < chance(labels[name]) + CHANCE_TOLERANCE, (name, t, accuracy)
    assert probe_accuracy(features, labels["bg_color"]) > 0.9  # four colours, still readable under texture and offset


def test_knobs_keep_every_frame_uniform_for_every_trajectory():
    """Smaller shapes, other speeds and brightness changes: the per-frame position, angle and
    background level stay uniform (KS test)."""
    from scipy.stats import kstest

    from vdiag.data.synthetic import BRIGHTNESS_RANGE

    low, high = BRIGHTNESS_RANGE
    for radius, speed in (([0.06, 0.1], 0.5), ([0.2, 0.25], 2.0)):
        config = SynthConfig(size=32, frames=FRAMES, radius=radius, speed=speed, brightness_change=speed)
        config.fg_trajectory, config.bg_brightness = ["rotation", "linear", "orbit", "bounce"], ["brightening", "darkening", "steady"]
        params = [draw_video_params(config, "test", i) for i in range(2000)]
        assert all(radius[0] * 32 <= p["radius"] <= radius[1] * 32 for p in params)
        for value in config.bg_brightness:
            for t in (0, FRAMES - 1):
                levels = [(p["brightness"][t] - low) / (high - low) for p in params if p["factors"]["bg_brightness"] == value]
                assert kstest(levels, "uniform").pvalue > 1e-3, (speed, value, t)
        steps = [abs(p["brightness"][1] - p["brightness"][0]) for p in params if p["factors"]["bg_brightness"] == "brightening"]
        assert np.median(steps) == pytest.approx(speed * 0.25 / (FRAMES - 1), rel=0.1)  # the change scales
        for value in config.fg_trajectory:
            chosen = [p for p in params if p["factors"]["fg_trajectory"] == value]
            for t in (0, FRAMES - 1):
                for key in ("x", "y"):
                    room = [(p[key][t] - p["radius"] - 1.5) / (32 - 2 * p["radius"] - 3) for p in chosen]
                    assert kstest(room, "uniform").pvalue > 1e-3, (radius, speed, value, key, t)
                angles = [(p["angle"][t] % (2 * np.pi)) / (2 * np.pi) for p in chosen]
                assert kstest(angles, "uniform").pvalue > 1e-3, (radius, speed, value, t)


def test_speed_scales_the_path_and_texture_is_a_static_identity():
    from vdiag.data.synthetic import background_texture

    slow, fast = (SynthConfig(size=64, frames=FRAMES, speed=s, fg_trajectory=["linear", "rotation"]) for s in (0.5, 1.0))
    for index in range(20):
        a, b = draw_video_params(slow, "test", index), draw_video_params(fast, "test", index)
        assert a["factors"] == b["factors"] and a["radius"] == b["radius"]  # speed changes nothing else
        if a["factors"]["fg_trajectory"] == "rotation":
            assert np.diff(a["angle"]) == pytest.approx(0.5 * np.diff(b["angle"]), abs=1e-3)
    plain, textured = SynthConfig(size=32, frames=4), SynthConfig(size=32, frames=4, texture=0.3)
    p, q = draw_video_params(plain, "train", 3), draw_video_params(textured, "train", 3)
    assert "texture_seed" not in p and {k: v for k, v in q.items() if k != "texture_seed"} == p  # every other draw unchanged
    texture = background_texture(textured, q["texture_seed"])
    assert texture.shape == (32, 32, 3) and 0.7 <= texture.min() < 0.9 and 1.1 < texture.max() <= 1.3
    assert np.array_equal(texture, background_texture(textured, q["texture_seed"]))  # deterministic
    other = background_texture(textured, draw_video_params(textured, "train", 4)["texture_seed"])
    assert np.abs(texture - other).mean() > 0.05  # each video its own
    spread = []  # of the background within the first frame (the brightness level changes over the clip)
    for config, params in ((plain, p), (textured, q)):
        video, masks = render_video(config, params)
        spread.append(video[0].astype(float)[~masks[0]].std(0).mean())
    assert spread[1] > 2 * spread[0], spread
