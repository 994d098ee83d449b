"""The caches are keyed on content: a replaced video or a rewritten checkpoint never serves stale
results, and `vdiag cache verify` finds (and `--prune` removes) exactly the entries whose sources changed."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
import torch
from test_pretrain import run_cli

from vdiag.console import set_quiet
from vdiag.data import frameindex
from vdiag.diagnostics import model as model_module
from vdiag.diagnostics.cache import TEMPORARY_AGE, cache_entries, verify_cache
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, Sampling, extract_features
from vdiag.diagnostics.model import load_model
from vdiag.io import cache_dir, content_digest
from vdiag.models.backbones import build_backbone

SAMPLING = Sampling(frames=8, stride=1, size=32, clips=1)


def _pad_mp4(path, size: int) -> None:
    """Append an MP4 `free` box so that the file is `size` bytes (a valid file: players skip the box)."""
    extra = size - path.stat().st_size
    assert extra >= 8
    with open(path, "ab") as f:
        f.write(extra.to_bytes(4, "big") + b"free" + bytes(extra - 8))


@pytest.fixture
def dataset(tiny_synth, tmp_path, monkeypatch):
    """A private cache folder; a private copy of the tiny synthetic dataset whose first two test videos
    have one size; a random `tiny`."""
    monkeypatch.setenv("VDIAG_CACHE_DIR", str(tmp_path / "cache"))
    frameindex.forget()
    source, _ = tiny_synth
    root = tmp_path / "data"
    shutil.copytree(source, root)
    data = DataRef(str(root))
    first, second = (record.path for record in data.split("test").records[:2])
    common = max(first.stat().st_size, second.stat().st_size) + 64
    _pad_mp4(first, common)
    _pad_mp4(second, common)
    torch.manual_seed(0)
    weights = tmp_path / "random-tiny.pt"
    torch.save(build_backbone("tiny").body.state_dict(), weights)
    set_quiet(True)
    yield data, first, second, weights
    set_quiet(False)


def _replace_keeping_size_and_mtime(target, source) -> None:
    """Write `source`'s bytes over `target` (same size) and set `target`'s mtime back."""
    stat = target.stat()
    assert source.stat().st_size == stat.st_size
    target.write_bytes(source.read_bytes())
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def test_a_video_replaced_with_the_same_size_and_mtime_is_recomputed(dataset):
    data, first, second, weights = dataset
    extractor = Extractor(load_model(weights, backbone="tiny"), SAMPLING, workers=0)
    before = extract_features(extractor, data.split("test"))["real"]
    assert not np.allclose(before.features[0], before.features[1])  # the two videos differ
    _replace_keeping_size_and_mtime(first, second)
    frameindex.forget()
    assert frameindex.cached_index(first) is None  # the frame index sees the new content too
    after = extract_features(extractor, data.split("test"))["real"]
    assert not np.allclose(after.features[0], before.features[0])  # recomputed, not served from the cache
    np.testing.assert_allclose(after.features[0], before.features[1], rtol=1e-5, atol=1e-6)  # now the second video's
    np.testing.assert_array_equal(after.features[2:], before.features[2:])
    index = frameindex.frame_index(first)
    assert index.digest == content_digest(first)
    for entry in (cache_dir() / "features").glob("*.npz"):  # a truncated entry is recomputed, not a crash
        entry.write_bytes(entry.read_bytes()[:100])
    again = extract_features(extractor, data.split("test"))["real"]
    np.testing.assert_array_equal(again.features, after.features)


def test_a_frame_index_survives_chmod_and_follows_content(dataset):
    data, first, second, _ = dataset
    entry = frameindex.frame_index(first)
    frameindex.forget()
    os.chmod(first, 0o600)  # new ctime, same bytes: still valid (digest compared), stamp refreshed
    again = frameindex.cached_index(first)
    assert again is not None and again.digest == entry.digest and again.ctime_ns == first.stat().st_ctime_ns


def _vdiag_checkpoint(path, seed: int) -> None:
    from vdiag.checkpoint import save_checkpoint
    from vdiag.methods import build_model
    from vdiag.train.config import resolve_config

    config = resolve_config("simclr", "cpu", options={"backbone": {"name": "tiny"}})
    torch.manual_seed(seed)
    save_checkpoint(path, config=config, model=build_model(config).state_dict(), position={"epoch": 1, "step": 0, "finished": True})


@pytest.mark.parametrize("kind", ["vdiag", "state dict"])
def test_a_checkpoint_rewritten_after_it_was_read_keeps_the_fingerprint_of_what_was_loaded(dataset, tmp_path, monkeypatch, kind):
    """The fingerprint (the feature cache's model key) is of the tensors the model holds, never of the file as it is later."""
    backbone = None if kind == "vdiag" else "tiny"
    path, first, second = tmp_path / "run.pt", tmp_path / "first.pt", tmp_path / "second.pt"
    for target, seed in ((first, 0), (second, 1)):
        if kind == "vdiag":
            _vdiag_checkpoint(target, seed)
        else:
            torch.manual_seed(seed)
            torch.save(build_backbone("tiny").body.state_dict(), target)
    shutil.copy(first, path)
    read, reads = model_module.read_state_file, []

    def read_then_rewrite(file, *args, **kwargs):
        state = read(file, *args, **kwargs)
        if not reads:
            shutil.copy(second, path)  # a training step rewrites the file right after the diagnostic read it
        reads.append(file)
        return state

    monkeypatch.setattr(model_module, "read_state_file", read_then_rewrite)
    loaded = load_model(path, backbone=backbone)
    monkeypatch.undo()
    expected = {name: load_model(file, backbone=backbone) for name, file in (("first", first), ("second", second))}
    held = [
        name
        for name, model in expected.items()
        if all(torch.equal(a, b) for a, b in zip(model.backbone.state_dict().values(), loaded.backbone.state_dict().values()))
    ]
    assert len(held) == 1
    assert loaded.fingerprint == expected[held[0]].fingerprint  # the hash of what was loaded
    if kind == "vdiag":  # one read: the model is the file as it was read, whatever the file holds now
        assert held == ["first"]


def test_verify_finds_the_planted_entries_and_prune_removes_only_them(dataset):
    data, first, second, weights = dataset
    extractor = Extractor(load_model(weights, backbone="tiny"), SAMPLING, workers=0)
    extract_features(extractor, data.split("test"), ("real", "static"))
    extract_features(extractor, data.split("val"))
    root = cache_dir()
    clean = verify_cache()
    assert clean.metrics["stale"] == clean.metrics["corrupt"] == 0, clean.details
    assert clean.metrics["features_entries"] == 3 and clean.metrics["frame-index_entries"] >= 16
    # plant: a corrupt feature file, a feature file of an older vdiag, an old frame-index format,
    # an old and a fresh temporary, and a changed video (stales the 2 test entries and its index)
    (root / "features" / "0123456789abcdef0123456789abcdef.npz").write_bytes(b"PK\x03\x04 truncated")
    np.savez(
        root / "features" / "fedcba9876543210fedcba9876543210.npz", features=np.zeros((1, 1, 2)), labels=np.zeros(1), meta=json.dumps({})
    )
    (root / "frame-index" / "v1" / "ab").mkdir(parents=True)
    (root / "frame-index" / "v1" / "ab" / "ab.json").write_text("{}")
    old_temporary = root / "features" / ".x.npz.1.tmp"
    old_temporary.write_bytes(b"half")
    os.utime(old_temporary, (time.time() - TEMPORARY_AGE - 5,) * 2)
    fresh_temporary = root / "features" / ".y.npz.2.tmp"
    fresh_temporary.write_bytes(b"being written")
    _replace_keeping_size_and_mtime(first, second)
    before = {entry.path for entry in cache_entries()} | {fresh_temporary}

    report = verify_cache()
    bad = {row["path"]: row for row in report.details["entries"]}
    assert report.metrics["features_stale"] == 3  # the two test-split entries and the older vdiag's
    assert report.metrics["features_corrupt"] == 1
    assert report.metrics["frame-index_stale"] == 2  # the changed video's index and the v1 folder
    assert report.metrics["temporary_stale"] == 1 and str(fresh_temporary) not in bad
    assert str(frameindex.cache_file(first)) in bad and "video changed" in bad[str(frameindex.cache_file(first))]["reason"]
    assert report.metrics["remaining"] == 7
    assert run_cli("cache", "verify", "--json", check=False).returncode == 1

    pruned = run_cli("cache", "verify", "--prune", "--json")
    assert json.loads(pruned.stdout)["metrics"]["pruned"] == 7
    after = {entry.path for entry in cache_entries()} | ({fresh_temporary} if fresh_temporary.exists() else set())
    assert after == before - {__import__("pathlib").Path(p) for p in bad}  # only the flagged ones are gone
    assert fresh_temporary.exists() and not any(p.name.endswith(".tmp") and p.parent == root / "frame-index" for p in root.rglob("*"))
    final = verify_cache()
    assert final.metrics["remaining"] == 0 and final.metrics["features_entries"] == 1  # the val split's entry stays
    assert run_cli("cache", "verify").returncode == 0
    info = json.loads(run_cli("cache", "info", "--json").stdout)
    assert info["metrics"]["features_entries"] == 1 and info["metrics"]["bytes"] > 0


def test_verify_sees_a_changed_checkpoint(dataset):
    data, _, _, weights = dataset
    extractor = Extractor(load_model(weights, backbone="tiny"), SAMPLING, workers=0)
    extract_features(extractor, data.split("val"))
    assert verify_cache().metrics["stale"] == 0
    torch.manual_seed(5)
    torch.save(build_backbone("tiny").body.state_dict(), weights)
    report = verify_cache()
    assert report.metrics["features_stale"] == 1
    assert report.details["entries"][0]["reason"].startswith("checkpoint changed")
    weights.unlink()
    assert verify_cache().details["entries"][0]["reason"].startswith("checkpoint missing")


def test_features_of_a_video_changed_during_extraction_are_not_cached(dataset, monkeypatch):
    import vdiag.diagnostics.features as features_module

    data, first, second, weights = dataset
    extractor = Extractor(load_model(weights, backbone="tiny"), SAMPLING, workers=0)
    extract = features_module._extract

    def extract_then_change(*args, **kwargs):
        out = extract(*args, **kwargs)
        _replace_keeping_size_and_mtime(first, second)  # rewritten while the batch was being computed
        return out

    monkeypatch.setattr(features_module, "_extract", extract_then_change)
    extract_features(extractor, data.split("test"))
    monkeypatch.undo()
    assert not list((cache_dir() / "features").glob("*.npz"))  # the key would name the old content


def test_cache_commands_have_examples_in_help():
    for name in (["cache"], ["cache", "info"], ["cache", "verify"]):
        help_text = run_cli(*name, "--help").stdout
        assert "Examples:" in help_text and "vdiag cache" in help_text.split("Examples:")[1], name


def test_real_features_do_not_depend_on_the_difference_view_beside_them(dataset):
    """Extracting the frame-difference view (one extra frame per clip) beside the real one moves no
    clip of the real view: the same features, and padding counted per view. Before, the real clips
    were placed by the longer span, so a diagnostic's numbers depended on which ran first."""
    data, _, _, weights = dataset
    model = load_model(weights, backbone="tiny")
    # two 4-frame clips of 8-frame videos: placed by a 5-frame span they would start 1 frame earlier
    extractor = Extractor(model, Sampling(frames=4, stride=1, size=32, clips=2), workers=0, cache=False)
    alone = extract_features(extractor, data.split("test"), ("real",))["real"]
    both = extract_features(extractor, data.split("test"), ("real", "difference"))
    np.testing.assert_array_equal(alone.features, both["real"].features)
    # whole-video clips (8 of 8 frames): the real view is not padded, the difference view is
    extractor = Extractor(model, Sampling(frames=8, stride=1, size=32, clips=2), workers=0, cache=False)
    both = extract_features(extractor, data.split("test"), ("real", "difference"))
    clips = len(data.split("test").records) * 2
    assert both["real"].reading["padded_clips"] == 0
    assert both["difference"].reading["padded_clips"] == clips
