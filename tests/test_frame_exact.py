"""Frame-exact reading on the file kinds datasets are made of, with each frame's index as ground truth.

Every frame carries its own index (tests/video_kinds.py); a clip read through either decoder must
return exactly the asked frames, displayed as a player shows them (rotation applied), on every kind.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from video_kinds import FFMPEG_KINDS, KINDS, coded_frames, ffmpeg_codes, ffmpeg_exe, frame_indices, make_kind

from vdiag.data import decode, frameindex
from vdiag.data.datasets import FailureTracker, VideoClipDataset, collate_clips
from vdiag.data.decode import read_frames, video_info
from vdiag.data.formats import DatasetIndex, VideoRecord
from vdiag.data.sampling import ClipSpec

DECODERS = ["pyav", "decord", "auto"] if decode.decord_available() else ["pyav", "auto"]
# Largest difference (levels, 0–255) allowed between the two decoders' RGB of the same frame where
# decord is used: both convert the same decoded YUV with FFmpeg's swscale, so they agree exactly here;
# one level allows for a different conversion rounding on other builds.
DECODER_PIXEL_BOUND = 1


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """{kind: (path, codes of the presented frames, rotation)} built once for the module."""
    root = tmp_path_factory.mktemp("kinds")
    built = {}
    for kind in KINDS:
        if kind in FFMPEG_KINDS and ffmpeg_exe() is None:
            continue
        path, count, rotation = make_kind(kind, root / kind)
        codes = list(range(count))
        if kind == "editlist-trim":  # the truth is what ffmpeg itself presents
            codes = ffmpeg_codes(path)
        built[kind] = (path, codes, rotation)
    return built


def _kind(kinds, kind):
    if kind not in kinds:
        pytest.skip("needs an ffmpeg binary (pip install imageio-ffmpeg)")
    return kinds[kind]


def _clips(count: int, rng) -> list[list[int]]:
    """Consecutive clips spread over the video, strided clips, and unsorted picks with repeats."""
    clips = [list(range(s, min(s + 8, count))) for s in np.linspace(0, count - 8, 6).round().astype(int)]
    clips += [list(range(s, count, 3))[:6] for s in (0, count // 3, count - 10)]
    clips += [rng.integers(0, count, 5).tolist() + [count - 1, 0] for _ in range(3)]
    return clips


@pytest.mark.parametrize("kind", KINDS)
def test_the_index_counts_the_frames_a_player_shows(kinds, kind):
    path, codes, rotation = _kind(kinds, kind)
    entry = frameindex.frame_index(path)
    assert entry.num_frames == len(codes)
    assert entry.rotation == rotation
    height, width = coded_frames(1).shape[1:3]
    assert (entry.height, entry.width) == ((width, height) if rotation % 180 else (height, width))
    info = video_info(path, "pyav")
    assert info.num_frames == len(codes) and (info.height, info.width) == (entry.height, entry.width)
    assert entry.vfr == (kind == "vfr-mp4" or (kind == "editlist-trim" and codes != list(range(codes[0], codes[0] + len(codes)))))
    assert entry.count_mismatch == (kind == "editlist-trim")


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_clip_returns_exactly_the_asked_frames(kinds, kind, decoder):
    path, codes, rotation = _kind(kinds, kind)
    rng = np.random.default_rng(len(kind))
    for clip in _clips(len(codes), rng):
        frames = read_frames(path, clip, decoder, report={})
        assert frames.dtype == np.uint8 and frames.shape[0] == len(clip)
        assert frame_indices(frames, rotation) == [codes[i] for i in clip], f"{kind} via {decoder}, asked {clip}"


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "jpeg-folder"])
def test_both_decoders_give_the_same_pixels(kinds, kind):
    if not decode.decord_available():
        pytest.skip("decord is not installed")
    path, codes, _ = _kind(kinds, kind)
    everything = list(range(len(codes)))
    report = {}
    by_decord = read_frames(path, everything, "decord", report=report).astype(int)
    by_pyav = read_frames(path, everything, "pyav")
    assert np.abs(by_decord - by_pyav).max() <= DECODER_PIXEL_BOUND
    if report["decoder"] == "decord":  # where decord is used it passed the per-file check
        assert frameindex.frame_index(path).decord == "ok"


@pytest.mark.parametrize("kind", ["mpeg4-avi-bframes", "mpeg2-ps", "editlist-trim"])
def test_decord_is_not_used_where_its_random_access_is_wrong(kinds, kind):
    if not decode.decord_available():
        pytest.skip("decord is not installed")
    path, codes, _ = _kind(kinds, kind)
    entry = frameindex.frame_index(path)
    assert entry.decord != "ok"
    import decord

    # the check is right: decord's own random access returns other frames (or another count) here
    reader = decord.VideoReader(str(path), num_threads=1)
    positions = frameindex.check_positions(entry.num_frames)
    if len(reader) == entry.num_frames:
        assert frame_indices(reader.get_batch(positions).asnumpy()) != [codes[i] for i in positions]
    report = {}
    read_frames(path, [0, 1], "decord", report=report)
    assert report["decoder"] == "pyav" and report["switched"].startswith("decord not used")
    assert str(path) in decode.decoder_switches()


def test_a_switch_is_counted_once_per_file(kinds):
    if not decode.decord_available():
        pytest.skip("decord is not installed")
    path, _, _ = _kind(kinds, "mpeg4-avi-bframes")
    index = DatasetIndex("csv", path.parent, "all", [VideoRecord(path, 0, "x")] * 3, ["a"])
    dataset = VideoClipDataset(index, ClipSpec(4, 2), clips_per_video=2, decoder="decord")
    warned = []
    tracker = FailureTracker(3, warn=warned.append)
    for _ in range(2):
        tracker.update(collate_clips([dataset[i] for i in range(3)]))
    assert tracker.summary()["decoder_switches"] == 1
    assert len([w for w in warned if "read with PyAV" in w]) == 1


def test_trimmed_file_clips_are_never_frozen_and_its_count_mismatch_is_listed(kinds, tmp_path):
    path, codes, _ = _kind(kinds, "editlist-trim")
    index = DatasetIndex("csv", path.parent, "all", [VideoRecord(path, 0, "trim")], ["a"])
    for decoder in DECODERS:
        dataset = VideoClipDataset(index, ClipSpec(8, stride=2), mode="eval", clips_per_video=10, decoder=decoder)
        sample = dataset[0]
        clips = sample["clips"].float()  # (10, C, T, H, W)
        motion = (clips[:, :, 1:] - clips[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))
        assert bool((motion > 0).all()), f"{decoder}: frozen clips"
        ids = [frame_indices(c.permute(1, 2, 3, 0).numpy()) for c in sample["clips"]]
        for start, got in zip(sample["starts"].tolist(), ids):
            assert got == [codes[start + 2 * k] for k in range(8)]
        assert not bool(sample["padded"].any())
        warned = []
        tracker = FailureTracker(1, warn=warned.append)
        tracker.update(collate_clips([sample]))
        entry = frameindex.frame_index(path)
        assert tracker.count_mismatches == {str(path): (entry.metadata_frames, len(codes))}
        assert any("decode" in w and str(len(codes)) in w for w in warned)


def test_files_without_timestamps_are_read_sequentially(kinds):
    path, codes, _ = _kind(kinds, "h264-mkv")
    entry = replace(frameindex.frame_index(path), pts=None)
    wanted = [50, 3, 3, 17]
    assert frame_indices(decode._pyav_read(path, entry, wanted)) == [codes[i] for i in wanted]


def test_when_seeking_finds_other_timestamps_frames_are_counted_from_the_start(kinds):
    path, codes, _ = _kind(kinds, "mpeg2-ps")
    entry = frameindex.frame_index(path)
    shifted = replace(entry, pts=tuple(p + 1 for p in entry.pts))  # no decoded frame matches a timestamp
    wanted = [40, 2, 41]
    assert frame_indices(decode._pyav_read(path, shifted, wanted)) == [codes[i] for i in wanted]


def test_the_index_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    path, count, _ = make_kind("h264-mp4", tmp_path, num_frames=20)
    first = frameindex.frame_index(path)
    frameindex.forget()
    calls = []
    real = frameindex.build_index
    monkeypatch.setattr(frameindex, "build_index", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert frameindex.frame_index(path) == first and calls == []  # from the cache file
    cache_file = frameindex._cache_file(path.absolute())
    assert cache_file.is_file() and str(frameindex.index_cache_folder()) in str(cache_file)
    make_kind("h264-mp4", tmp_path, num_frames=12)  # the file changes: the index is rebuilt
    assert frameindex.frame_index(path).num_frames == 12 and calls == [1]


def test_past_the_decodable_end_is_an_error_not_a_repeated_frame(kinds):
    path, codes, _ = _kind(kinds, "editlist-trim")
    entry = frameindex.frame_index(path)
    for decoder in DECODERS:
        with pytest.raises(decode.DecodeError, match=f"has {len(codes)} decodable"):
            read_frames(path, [entry.metadata_frames - 1], decoder)


def test_padding_of_a_short_video_is_marked_and_counted(tmp_path):
    path, count, _ = make_kind("h264-mp4", tmp_path, num_frames=6)
    index = DatasetIndex("csv", tmp_path, "all", [VideoRecord(path, 0, "short")], ["a"])
    sample = VideoClipDataset(index, ClipSpec(4, stride=2), clips_per_video=3)[0]
    assert sample["padded"].tolist() == [True, True, True]  # a 7-frame span in 6 frames
    tracker = FailureTracker(1)
    tracker.update(collate_clips([sample]))
    assert tracker.summary()["padded_clips"] == 3 and tracker.summary()["padded_videos"] == 1
    long_path, _, _ = make_kind("h264-mp4", tmp_path / "long", num_frames=30)
    index = DatasetIndex("csv", tmp_path, "all", [VideoRecord(long_path, 0, "long")], ["a"])
    sample = VideoClipDataset(index, ClipSpec(4, stride=2), clips_per_video=3)[0]
    assert not bool(sample["padded"].any()) and collate_clips([sample])["padded_clips"] == 0
    assert isinstance(sample["padded"], torch.Tensor)


def test_an_optional_extra_frame_moves_no_clip_and_pads_only_its_own_view(tmp_path):
    """The diagnostics read one frame past each clip for the frame-difference view only: the clips
    stay where they are without it, and a clip that fills its video is padded only in that view."""
    long_path, _, _ = make_kind("h264-mp4", tmp_path / "long", num_frames=30)
    short_path, _, _ = make_kind("h264-mp4", tmp_path / "short", num_frames=8)
    optional = ClipSpec(8, stride=2, extra_frames=1, extra_optional=True)
    for path in (long_path, short_path):
        index = DatasetIndex("csv", tmp_path, "all", [VideoRecord(path, 0, "v")], ["a"])
        plain = VideoClipDataset(index, ClipSpec(8, stride=2), "eval", clips_per_video=3)[0]
        extra = VideoClipDataset(index, optional, "eval", clips_per_video=3)[0]
        assert extra["starts"].tolist() == plain["starts"].tolist()
        assert torch.equal(extra["clips"][:, :, :8], plain["clips"])  # the same frames, one more after
        assert extra["padded"].tolist() == plain["padded"].tolist()
    assert extra["padded"].tolist() == [True] * 3  # the 8-frame video: a 15-frame span
    # a clip that exactly fills its video: real frames, and a padded frame past them
    index = DatasetIndex("csv", tmp_path, "all", [VideoRecord(short_path, 0, "v")], ["a"])
    sample = VideoClipDataset(index, ClipSpec(8, stride=1, extra_frames=1, extra_optional=True), "eval", clips_per_video=2)[0]
    assert sample["padded"].tolist() == [False, False] and sample["padded_extra"].tolist() == [True, True]
    tracker = FailureTracker(1)
    tracker.update(collate_clips([sample]))
    assert tracker.summary()["padded_clips"] == 0 and tracker.summary()["padded_videos"] == 0
    assert tracker.summary(with_extra=True)["padded_clips"] == 2 and tracker.summary(with_extra=True)["padded_videos"] == 1
    # training a method that takes derivatives: the extra frame is part of the clip
    sample = VideoClipDataset(index, ClipSpec(8, stride=1, extra_frames=1), "eval", clips_per_video=2)[0]
    assert sample["padded"].tolist() == [True, True]
