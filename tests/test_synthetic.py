import dataclasses
import json

import numpy as np
import pytest

from vdiag.data import synthetic
from vdiag.data.decode import read_frames
from vdiag.data.formats import load_index
from vdiag.data.synthetic import COLORS, SynthConfig, cramers_v, draw_video_params, generate_dataset, load_mask, render_video
from vdiag.errors import VdiagError


def rendered(config, factors, index=0):
    """Render a val video with the given factor values (others at their first value)."""
    single = {name: [values[0]] for name, values in config.factors().items()} | {k: [v] for k, v in factors.items()}
    fixed = dataclasses.replace(config, **single)
    params = draw_video_params(fixed, "val", index)
    return render_video(fixed, params), params


def test_background_colour_is_what_the_label_says():
    config = SynthConfig(size=48, frames=8, pixel_noise=0)
    for colour in ("blue", "green", "red"):
        for k in range(3):
            (video, masks), params = rendered(config, {"bg_color": colour}, k)
            background = video[~masks].reshape(-1, 3).astype(float).mean(0)
            direction = background / np.linalg.norm(background)
            truth = np.array(COLORS[colour], float)
            assert direction @ (truth / np.linalg.norm(truth)) > 0.97


def test_brightness_change_direction():
    """Every frame step moves the background level the labelled way, except at most one reset
    (the level is cyclic, so that single frames do not show the direction: generator version 2)."""
    config = SynthConfig(size=48, frames=8)
    resets = 0
    for k in range(8):
        for value, sign in (("brightening", 1), ("darkening", -1), ("steady", 0)):
            (video, masks), params = rendered(
                dataclasses.replace(config, bg_brightness=["brightening", "darkening", "steady"]), {"bg_brightness": value}, k
            )
            level = np.array([video[t][~masks[t]].mean() for t in range(config.frames)])
            steps = np.diff(level) * (sign or 1)
            if sign == 0:
                assert np.abs(steps).max() < 1.0
                continue
            wrong = steps < 0
            assert wrong.sum() <= 1 and steps[~wrong].min() > 1.0 and steps[~wrong].sum() > 12
            resets += int(wrong.sum())
    assert 0 < resets < 16  # about a third of the clips restart their ramp once


def test_shape_area_matches_the_geometry():
    """Mask area / R²: circle π, pentagon (5/2)·sin 72°, square 2, triangle (3√3)/4."""
    config = SynthConfig(size=96, frames=4)
    expected = {"circle": np.pi, "pentagon": 2.5 * np.sin(np.radians(72)), "square": 2.0, "triangle": 3 * np.sqrt(3) / 4}
    for shape, ratio in expected.items():
        (_, masks), params = rendered(config, {"fg_shape": shape, "fg_trajectory": "rotation"})
        assert masks[0].sum() / params["radius"] ** 2 == pytest.approx(ratio, rel=0.06)


def test_trajectory_moves_the_mask_as_labelled():
    config = SynthConfig(size=64, frames=12)
    for k in range(3):
        (_, masks), params = rendered(config, {"fg_trajectory": "linear"}, k)
        centres = np.array([np.argwhere(m).mean(0) for m in masks])
        steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        # moved far at constant speed; a reflection at a wall (generator version 2) shortens one step
        assert steps.sum() > 0.25 * 64 and np.median(np.abs(steps - np.median(steps))) < 0.5
        (_, masks), _ = rendered(config, {"fg_trajectory": "rotation"}, k)
        centres = np.array([np.argwhere(m).mean(0) for m in masks])
        assert np.abs(centres - centres[0]).max() < 1.5  # spins in place
        assert not np.array_equal(masks[0], masks[-1])  # ... visibly


def test_foreground_stays_inside_the_frame():
    config = SynthConfig(size=32, frames=16, fg_trajectory=["rotation", "linear", "orbit", "bounce"])
    for trajectory in config.fg_trajectory:
        for k in range(10):
            (_, masks), params = rendered(config, {"fg_trajectory": trajectory}, k)
            area = masks.sum((1, 2))
            assert area.min() > 0.7 * area.max()  # never cut off by the border


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9])
def test_achieved_correlation_per_split(p):
    config = SynthConfig(correlation=p, num_train=3000)
    rows = [draw_video_params(config, "train", i) for i in range(3000)]
    val = [draw_video_params(config, "val", i) for i in range(3000)]
    for dynamic, static in config.pairing.items():
        train_v = cramers_v(np.array([r["factor_index"][dynamic] for r in rows]), np.array([r["factor_index"][static] for r in rows]))
        val_v = cramers_v(np.array([r["factor_index"][dynamic] for r in val]), np.array([r["factor_index"][static] for r in val]))
        assert train_v == pytest.approx(p, abs=0.05)
        assert val_v < 0.05


def test_cramers_v_extremes():
    a = np.array([0, 1, 2] * 50)
    assert cramers_v(a, a) == pytest.approx(1.0)
    assert cramers_v(a, (a + 1) % 3) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    assert cramers_v(rng.integers(0, 3, 5000), rng.integers(0, 3, 5000)) < 0.05


def test_same_options_and_seed_give_identical_labels_and_frames(tmp_path):
    config = SynthConfig(size=32, frames=8, num_train=6, num_val=3, num_test=3, seed=11)
    one = generate_dataset(config, tmp_path / "one", workers=1)
    two = generate_dataset(config, tmp_path / "two", workers=2)
    assert (tmp_path / "one" / "labels.csv").read_text() == (tmp_path / "two" / "labels.csv").read_text()
    for record in load_index(tmp_path / "one", split="all").records:
        other = tmp_path / "two" / record.path.relative_to(tmp_path / "one")
        assert np.array_equal(read_frames(record.path, range(8)), read_frames(other, range(8)))
    assert one["correlation"] == two["correlation"]
    different = generate_dataset(dataclasses.replace(config, seed=12), tmp_path / "three", workers=1)
    assert (tmp_path / "three" / "labels.csv").read_text() != (tmp_path / "one" / "labels.csv").read_text()
    assert different["counts"] == one["counts"]


def test_written_dataset_matches_its_labels(tiny_synth):
    root, config = tiny_synth
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["factors"]["fg_trajectory"] == ["rotation", "linear"]
    assert manifest["summary"]["counts"] == {"train": 24, "val": 8, "test": 8}
    for record in load_index(root, split="all").records:
        masks = load_mask(root, record.video_id)
        frames = read_frames(record.path, range(config.frames))
        assert masks.shape == (8, 32, 32) and frames.shape == (8, 32, 32, 3)
        colour = config.bg_color[record.factors["bg_color"]]
        background = frames[~masks].reshape(-1, 3).astype(float).mean(0)
        truth = np.array(COLORS[colour], float)
        assert background @ truth / (np.linalg.norm(background) * np.linalg.norm(truth)) > 0.95
        foreground = frames[masks].reshape(-1, 3).astype(float).mean(0)
        assert np.abs(foreground - background).sum() > 100  # the mask covers the pale shape


def test_rerun_reuses_and_conflicts_are_errors(tmp_path, tiny_synth):
    root, config = tiny_synth
    again = generate_dataset(config, root)
    assert again["reused"] is True
    with pytest.raises(VdiagError, match="other parameters"):
        generate_dataset(dataclasses.replace(config, seed=99), root)
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("mine")
    with pytest.raises(VdiagError, match="not a vdiag synthetic dataset"):
        generate_dataset(config, tmp_path / "occupied")


def test_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    config = SynthConfig(size=32, frames=4, num_train=4, num_val=0, num_test=0)
    real = synthetic._write_one

    def failing(job):
        if job[2] == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(synthetic, "_write_one", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(config, tmp_path / "out", workers=1)
    assert list(tmp_path.iterdir()) == []


def test_default_folder_depends_on_parameters():
    assert synthetic.default_dataset_dir(SynthConfig()).name == "synth-default"
    assert synthetic.default_dataset_dir(SynthConfig(seed=1)).name.startswith("synth-")
    assert synthetic.default_dataset_dir(SynthConfig(seed=1)) != synthetic.default_dataset_dir(SynthConfig(seed=2))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"size": 33}, "even"),
        ({"correlation": 1.5}, "correlation"),
        ({"fg_shape": ["blob", "circle"]}, "fg_shape"),
        ({"fg_shape": ["circle"]}, "two or more"),
        ({"label_factor": "speed"}, "label-factor"),
    ],
)
def test_bad_parameters(changes, message):
    with pytest.raises(VdiagError, match=message):
        dataclasses.replace(SynthConfig(), **changes).validate()


def test_preview_has_a_panel_per_value(tmp_path):
    from PIL import Image

    from vdiag.viz.synth_preview import plot_factor_grid

    config = SynthConfig(fg_shape=["pentagon", "circle", "star"])
    path = plot_factor_grid(config, tmp_path / "preview.png")
    with Image.open(path) as image:
        width, height = image.size
    assert width > 1.5 * height  # three columns of four-frame strips
    assert height > 400


def test_outputs_get_the_usual_file_mode(tmp_path, tiny_synth):
    import os
    import stat

    from vdiag.viz.synth_preview import plot_factor_grid

    root, config = tiny_synth
    assert stat.S_IMODE(os.stat(root).st_mode) & 0o055 == 0o055  # group/others may read and enter
    preview = plot_factor_grid(config, tmp_path / "p.png")
    assert stat.S_IMODE(os.stat(preview).st_mode) & 0o044 == 0o044
