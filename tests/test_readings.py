"""Diagnostics that cannot mislead (issue 18): no reading from non-finite weights or collapsed
features, never a test on training videos, width-0 intervals flagged, paired differences exact."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from test_pretrain import run_cli

from vdiag.data.formats import load_index
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import COLLAPSE_SPREAD, DegenerateFeatures, feature_health, load_extractor
from vdiag.diagnostics.model import load_model
from vdiag.diagnostics.probe import ceiling_flags
from vdiag.errors import VdiagError
from vdiag.models.backbones import build_backbone
from vdiag.report.card import Entry, paired_differences
from vdiag.results import Result

COMMON = ["--clips", "2", "--frames", "6", "--size", "32", "--workers", "0"]


def _tiny_weights(path, *, seed=0, edit=None):
    torch.manual_seed(seed)
    state = build_backbone("tiny").body.state_dict()
    if edit:
        edit(state)
    torch.save(state, path)
    return str(path)


def _collapse(state):
    """Stem batch norm with weight 0 and bias 1: every clip gives the same feature map, so one embedding."""
    state["stem.1.weight"].zero_()
    state["stem.1.bias"].fill_(1.0)


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, tiny_synth):
    def poison(state):
        state["stages.1.conv1.weight"][0, 0, 0, 0, 0] = float("inf")

    def poison_buffer(state):
        state["stem.1.running_var"][2] = float("nan")

    with pytest.raises(VdiagError, match=r"stages\.1\.conv1\.weight has 1 infinite of"):
        load_model(_tiny_weights(tmp_path / "inf.pt", edit=poison), backbone="tiny")
    with pytest.raises(VdiagError, match=r"stem\.1\.running_var has 1 NaN"):
        load_model(_tiny_weights(tmp_path / "nan.pt", edit=poison_buffer), backbone="tiny")
    root, _ = tiny_synth
    proc = run_cli("probe", "shuffle", str(tmp_path / "nan.pt"), "--backbone", "tiny", "--data", str(root), *COMMON, check=False)
    assert proc.returncode == 2 and "non-finite weights" in proc.stderr and "running_var" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "diagnostics").exists()


def test_fingerprint_is_of_the_loaded_tensors(tmp_path):
    """The cache key comes from what was loaded: the same weights in another file (with an unrelated
    extra entry) share it, one changed value does not, and rewriting the file afterwards changes nothing."""
    first = load_model(_tiny_weights(tmp_path / "a.pt"), backbone="tiny")
    torch.manual_seed(0)
    state = build_backbone("tiny").body.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": torch.tensor(3)}, tmp_path / "b.pt")
    assert load_model(tmp_path / "b.pt", backbone="tiny").fingerprint == first.fingerprint

    def nudge(s):
        s["stem.0.weight"][0, 0, 0, 0, 0] += 1e-3

    assert load_model(_tiny_weights(tmp_path / "c.pt", edit=nudge), backbone="tiny").fingerprint != first.fingerprint
    before = first.fingerprint
    _tiny_weights(tmp_path / "a.pt", seed=5)  # rewritten after it was read
    from vdiag.diagnostics.model import _fingerprint

    assert _fingerprint(first) == before


def test_feature_health_known_answers(rng):
    constant = np.ones((20, 3, 16)) * rng.normal(size=16)
    health = feature_health(constant)
    assert health["spread"] == 0 and health["effective_rank"] == 0 and health["dead_dims"] == 16
    noisy = constant + 1e-5 * rng.normal(size=constant.shape)  # 1e-5 of the scale: still one embedding
    assert feature_health(noisy)["spread"] < COLLAPSE_SPREAD
    isotropic = rng.normal(size=(400, 5, 8))
    health = feature_health(isotropic)
    assert health["spread"] == pytest.approx(1, abs=0.05) and 7 < health["effective_rank"] <= 8 and health["dead_dims"] == 0
    line = rng.normal(size=(400, 1)) * rng.normal(size=(1, 8)) + 3.0  # varies along one direction only
    assert feature_health(line)["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    scaled = feature_health(isotropic * 1e6 + 5e6)  # thresholds are relative to the features' own scale
    assert scaled["effective_rank"] == pytest.approx(health["effective_rank"], rel=1e-6)
    assert feature_health(isotropic * 1e6)["spread"] == pytest.approx(health["spread"], rel=1e-6)
    per_step = feature_health(rng.normal(size=(10, 2, 8, 4)))  # (N, K, C, T'): C is the feature axis
    assert per_step["dims"] == 8 and per_step["samples"] == 80


def test_collapsed_model_gets_no_reading_from_any_diagnostic(tmp_path, tiny_synth):
    from vdiag.diagnostics.cluster import cluster
    from vdiag.diagnostics.factors import factor_probe
    from vdiag.diagnostics.recognition import linear_eval
    from vdiag.diagnostics.retrieval import retrieval
    from vdiag.diagnostics.shuffle import shuffle_probe
    from vdiag.diagnostics.static_bias import static_bias

    root, _ = tiny_synth
    data = DataRef(str(root))
    extractor = load_extractor(
        _tiny_weights(tmp_path / "collapsed.pt", edit=_collapse), backbone="tiny", frames=6, size=32, clips=2, workers=0
    )
    for run in (
        lambda: static_bias(extractor, data),
        lambda: retrieval(extractor, data),
        lambda: shuffle_probe(extractor, data),
        lambda: linear_eval(extractor, data),
        lambda: factor_probe(extractor, data),
        lambda: cluster(extractor, data, tmp_path),
    ):
        with pytest.raises(DegenerateFeatures, match="collapsed"):
            run()
    proc = run_cli("probe", "static-bias", str(tmp_path / "collapsed.pt"), "--backbone", "tiny", "--data", str(root), *COMMON, check=False)
    assert proc.returncode == 2 and "no diagnostic reading" in proc.stderr and "Traceback" not in proc.stderr


def _folder_dataset(root, out):
    """The synthetic videos as plain class folders: no train/ test/ folders, no split column."""
    index = load_index(root, "synthetic", "all")
    for record in index.records:
        folder = out / index.class_names[record.label]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.path, folder / record.path.name)
    return len(index)


def test_dataset_without_split_is_split_by_video(tmp_path, tiny_synth):
    from vdiag.diagnostics.retrieval import retrieval

    root, _ = tiny_synth
    total = _folder_dataset(root, tmp_path / "folder")
    data = DataRef(str(tmp_path / "folder"))
    train, test = data.split("train"), data.split("test")
    train_paths, test_paths = {r.path for r in train.records}, {r.path for r in test.records}
    assert not train_paths & test_paths and len(train_paths | test_paths) == total
    for label in range(train.num_classes):  # every class in both, about 30 % tested
        n = sum(r.label == label for r in train.records + test.records)
        assert sum(r.label == label for r in test.records) == round(0.3 * n)
    assert [r.path for r in data.split("test").records] == [r.path for r in test.records]  # deterministic
    assert {r.path for r in DataRef(data.path, split_seed=1).split("test").records} != test_paths
    with pytest.raises(VdiagError, match="no split"):
        data.split("val")
    result = retrieval(load_extractor(_tiny_weights(tmp_path / "w.pt"), backbone="tiny", frames=6, size=32, clips=2, workers=0), data)
    recorded = result.config["data"]
    assert recorded["split_seed"] == 0 and recorded["test_videos"] == len(test) and recorded["train_videos"] == len(train)
    assert recorded["test_video_ids"] == result.details["per_video"]["video_ids"] == [r.video_id for r in test.records]
    assert result.config["test_videos"] == len(test) and result.config["train_videos"] == len(train)


def test_train_and_test_sharing_videos_is_refused(tmp_path, tiny_synth):
    root, _ = tiny_synth
    videos = sorted((root / "videos" / "train").glob("*.mp4"))[:6]
    rows = ["path,label,split"] + [f"{v},{'ab'[i % 2]},train" for i, v in enumerate(videos)] + [f"{videos[0]},a,test"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(VdiagError, match="both the train and the test split"):
        DataRef(str(tmp_path / "list.csv")).split("test")


def test_width_zero_intervals_are_flagged():
    metrics = {"R@10": 1.0, "R@10_ci_low": 1.0, "R@10_ci_high": 1.0, "R@1": 0.6, "R@1_ci_low": 0.4, "R@1_ci_high": 0.8, "chance": 0.5}
    flags = ceiling_flags(metrics, 60)
    assert set(flags) == {"R@10"} and "at ceiling: interval uninformative" in flags["R@10"] and "0.950" in flags["R@10"]
    assert "at floor" in ceiling_flags({"acc": 0.0, "acc_ci_low": 0.0, "acc_ci_high": 0.0}, 30)["acc"]


def _entry(label, real, static):
    per_video = {"video_ids": [f"v{i}" for i in range(len(real))], "correct_real": list(real), "correct_static": list(static)}
    return Entry(label, {"static-bias": Result("probe static-bias", details={"per_video": per_video})})


def test_paired_differences_are_exact_and_paired(rng):
    real = (rng.random(200) < 0.6).astype(int)
    static = (rng.random(200) < 0.5).astype(int)
    better = real.copy()
    better[np.flatnonzero(real == 0)[:20]] = 1  # B is right on 20 more of the same videos
    diff = paired_differences(_entry("A", real, static), _entry("B", better, static), seed=0)
    assert diff["static-bias.acc_real"] == pytest.approx(0.1)
    assert 0 < diff["static-bias.acc_real_ci_low"] <= 0.1 <= diff["static-bias.acc_real_ci_high"]  # paired: the interval excludes 0
    same = paired_differences(_entry("A", real, static), _entry("A again", real, static), seed=0)
    assert same["static-bias.acc_real"] == 0 and same["static-bias.acc_real_ci_low"] == same["static-bias.acc_real_ci_high"] == 0
    other_videos = _entry("C", real[:100], static[:100])
    assert paired_differences(_entry("A", real, static), other_videos) == {}  # not the same test videos: no comparison


def test_cli_records_the_split_and_flags(tmp_path, tiny_synth):
    root, _ = tiny_synth
    _folder_dataset(root, tmp_path / "folder")
    weights = _tiny_weights(tmp_path / "w.pt")
    proc = run_cli(
        "eval", "retrieval", weights, "--backbone", "tiny", "--data", str(tmp_path / "folder"), *COMMON, "--out", str(tmp_path / "o")
    )
    assert "has no split" in proc.stderr and "train and" in proc.stderr
    result = json.loads((tmp_path / "o" / "retrieval.json").read_text())
    assert result["config"]["data"]["split"].startswith("by video")
    assert "R@20" in result["details"]["flags"]  # 14 gallery videos per class: any 20 nearest hold a same-class one
    for name in result["details"]["flags"]:
        assert result["metrics"][f"{name}_ci_low"] == result["metrics"][f"{name}_ci_high"]
        assert name in proc.stdout.split("wrote")[0].split("†", 1)[1]
