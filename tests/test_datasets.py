import pytest
import torch
from helpers import frame_ids, write_indexed_video
from torch.utils.data import DataLoader

from vdiag.data.datasets import FailureTracker, VideoClipDataset, collate_clips
from vdiag.data.formats import load_index
from vdiag.data.sampling import ClipSpec
from vdiag.data.views import SpatialAugment
from vdiag.errors import VdiagError


def folder_dataset(root, lengths=(40, 40, 40, 40)):
    for k, length in enumerate(lengths):
        write_indexed_video(root / ("a" if k % 2 else "b") / f"v{k}.mp4", num_frames=length)
    return load_index(root, split="all")


def ids_of(clips):
    """Frame indices of each clip, read back from the pixels."""
    return [frame_ids(c.permute(1, 2, 3, 0).numpy()) for c in clips]


def test_training_samples_rho_clips_at_independent_starts(tmp_path):
    index = folder_dataset(tmp_path)
    dataset = VideoClipDataset(index, ClipSpec(num_frames=4, stride=3), clips_per_video=4, seed=1)
    sample = dataset[0]
    assert sample["clips"].shape == (4, 3, 4, 32, 40) and sample["clips"].dtype == torch.uint8
    for clip_ids, start in zip(ids_of(sample["clips"]), sample["starts"].tolist()):
        assert clip_ids == [start + 3 * k for k in range(4)]
    assert len(set(sample["starts"].tolist())) > 1


def test_sampling_is_deterministic_per_seed_epoch_and_item(tmp_path):
    index = folder_dataset(tmp_path)

    def make(seed):
        return VideoClipDataset(index, ClipSpec(4, 2), clips_per_video=2, seed=seed)

    a, b = make(0), make(0)
    assert torch.equal(a[2]["starts"], b[2]["starts"])
    assert torch.equal(a[2]["clips"], b[2]["clips"])
    starts = {tuple(a[2]["starts"].tolist())}
    for epoch in range(1, 6):
        a.set_epoch(epoch)
        starts.add(tuple(a[2]["starts"].tolist()))
    assert len(starts) > 1  # new clips each epoch


def test_decord_and_pyav_give_the_same_samples(tmp_path):
    index = folder_dataset(tmp_path)
    spec = ClipSpec(6, 2, extra_frames=2)
    by_decord = VideoClipDataset(index, spec, clips_per_video=2, decoder="decord")[1]
    by_pyav = VideoClipDataset(index, spec, clips_per_video=2, decoder="pyav")[1]
    assert torch.equal(by_decord["starts"], by_pyav["starts"])
    assert (by_decord["clips"].int() - by_pyav["clips"].int()).abs().max() <= 1
    assert by_decord["clips"].shape[2] == 8  # 6 frames + 2 extra


def test_eval_mode_spreads_clips_uniformly(tmp_path):
    index = folder_dataset(tmp_path, lengths=(40, 40))
    sample = VideoClipDataset(index, ClipSpec(4, 1), mode="eval", clips_per_video=10)[0]
    starts = sample["starts"].tolist()
    assert starts[0] == 0 and starts[-1] == 36 and starts == sorted(starts)


def test_short_video_is_padded_not_a_crash(tmp_path):
    index = folder_dataset(tmp_path, lengths=(5, 40))
    short = next(i for i, r in enumerate(index.records) if r.path.name == "v0.mp4")
    sample = VideoClipDataset(index, ClipSpec(8, 2), clips_per_video=2)[short]
    assert ids_of(sample["clips"])[0] == [0, 2, 4, 4, 4, 4, 4, 4]
    assert sample["padded"].tolist() == [True, True]  # marked, never presented as real
    assert collate_clips([sample])["padded_clips"] == 2


def test_transform_runs_per_clip_in_the_dataset(tmp_path):
    index = folder_dataset(tmp_path)
    dataset = VideoClipDataset(index, ClipSpec(4, 2), clips_per_video=2, transform=SpatialAugment(size=16))
    clips = dataset[0]["clips"]
    assert clips.shape == (2, 3, 4, 16, 16) and clips.dtype == torch.float32


def test_dataloader_with_workers_matches_direct_access(tmp_path):
    index = folder_dataset(tmp_path)
    dataset = VideoClipDataset(index, ClipSpec(4, 2), clips_per_video=2, seed=5)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_clips)
    batches = list(loader)
    assert [b["size"] for b in batches] == [2, 2]
    assert torch.equal(batches[1]["clips"][0], dataset[2]["clips"])
    assert batches[0]["label"].tolist() == [index.records[0].label, index.records[1].label]


def test_corrupt_video_is_skipped_and_counted(tmp_path):
    index = folder_dataset(tmp_path)
    bad = index.records[1].path
    bad.write_bytes(b"\x00" * 500)
    dataset = VideoClipDataset(index, ClipSpec(4, 2), clips_per_video=2)
    assert dataset[1]["failed"] == str(bad)
    warnings = []
    tracker = FailureTracker(len(dataset), max_failure_share=0.5, warn=warnings.append, min_seen=1)
    for batch in DataLoader(dataset, batch_size=4, collate_fn=collate_clips):
        assert batch["size"] == 3 and batch["clips"].shape[0] == 3
        tracker.update(batch)
    assert tracker.failed == 1 and len(warnings) == 1 and str(bad) in warnings[0]
    strict = FailureTracker(len(dataset), max_failure_share=0.1, min_seen=1)
    with pytest.raises(VdiagError, match=f"could not be decoded.*{bad.name}"):
        strict.update(collate_clips([dataset[i] for i in range(4)]))


def test_an_all_bad_batch_collates_to_empty(tmp_path):
    batch = collate_clips([{"failed": "x.mp4", "error": "broken", "index": 0}])
    assert batch["size"] == 0 and batch["failures"] == [{"path": "x.mp4", "error": "broken"}]


def test_synthetic_dataset_samples_carry_factors(tiny_synth):
    root, _ = tiny_synth
    dataset = VideoClipDataset(load_index(root, split="val"), ClipSpec(8, 1), clips_per_video=1)
    sample = dataset[0]
    assert sample["clips"].shape == (1, 3, 8, 32, 32)
    assert set(sample["factors"]) == {"bg_color", "fg_shape", "bg_brightness", "fg_trajectory"}


def test_reading_warnings_are_one_per_file_and_capped():
    warned = []
    tracker = FailureTracker(100, warn=warned.append)
    notes = [{"path": f"v{k}.mp4", "num_frames": 10, "metadata_frames": 12, "switched": "decord not used: x"} for k in range(30)]
    for _ in range(2):  # the same files again: no new warning
        tracker.update({"size": 30, "failures": [], "reading": notes, "padded_clips": 0})
    assert len(warned) == 21 and "check-data" in warned[-1]
    assert "12 frames recorded but 10 decode" in warned[0] and "read with PyAV" in warned[0]
    summary = tracker.summary()
    assert summary["decoder_switches"] == 30 and summary["frame_count_mismatches"] == 30


def test_warnings_survive_brackets_in_names_and_errors():
    from vdiag.console import warn

    tracker = FailureTracker(10, warn=warn)  # rich markup: "[/x]" in a name must not be read as a tag
    notes = [{"path": "clips[/odd].gif", "num_frames": 3, "switched": "decord fails: [/clips[/odd].gif] broken metadata"}]
    tracker.update({"size": 1, "failures": [{"path": "[/bad].mp4", "error": "[/x] no"}], "reading": notes, "padded_clips": 0})
    assert tracker.summary()["decoder_switches"] == 1 and tracker.failed == 1
