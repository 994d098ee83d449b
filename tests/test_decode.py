import numpy as np
import pytest
from helpers import frame_ids, indexed_frames, write_indexed_video

from vdiag.data import decode
from vdiag.data.decode import read_frames, video_info
from vdiag.errors import DecodeError, VdiagError


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_decord_and_pyav_agree_frame_for_frame(tmp_path, suffix):
    path = write_indexed_video(tmp_path / f"v{suffix}", num_frames=30)
    indices = [0, 29, 7, 7, 13, 1, 22]  # unsorted, with a repeat, both ends
    by_decord = read_frames(path, indices, "decord")
    by_pyav = read_frames(path, indices, "pyav")
    assert by_decord.shape == (7, 32, 40, 3) and by_decord.dtype == np.uint8
    assert np.abs(by_decord.astype(int) - by_pyav).max() <= 1
    assert frame_ids(by_decord) == indices
    assert frame_ids(by_pyav) == indices


def test_decoded_frames_are_close_to_the_written_ones(tmp_path):
    path = write_indexed_video(tmp_path / "v.mp4", num_frames=12)
    truth = indexed_frames(12)
    decoded = read_frames(path, range(12), "pyav")
    assert np.abs(decoded.astype(float) - truth).mean() < 4


def test_pyav_seeks_into_a_long_video(tmp_path):
    path = write_indexed_video(tmp_path / "long.mp4", num_frames=120)
    wanted = [100, 103, 106]
    assert frame_ids(read_frames(path, wanted, "pyav")) == wanted
    assert frame_ids(read_frames(path, wanted, "decord")) == wanted


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_video_info(tmp_path, decoder):
    path = write_indexed_video(tmp_path / "v.mp4", num_frames=17, height=24, width=48)
    info = video_info(path, decoder)
    assert (info.num_frames, info.height, info.width) == (17, 24, 48)
    assert info.fps == pytest.approx(8.0)


@pytest.mark.parametrize("decoder", ["auto", "decord", "pyav"])
def test_missing_and_corrupt_files_raise_decode_error(tmp_path, decoder):
    with pytest.raises(DecodeError, match="no such file"):
        read_frames(tmp_path / "absent.mp4", [0], decoder)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(DecodeError):
        read_frames(garbage, [0], decoder)


def test_truncated_mp4_is_an_error_not_a_crash(tmp_path):
    path = write_indexed_video(tmp_path / "v.mp4", num_frames=40)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    for decoder in ("decord", "pyav", "auto"):
        with pytest.raises(DecodeError):
            read_frames(truncated, [35], decoder)


def test_frame_past_the_end_is_an_error(tmp_path):
    path = write_indexed_video(tmp_path / "v.mp4", num_frames=10)
    for decoder in ("decord", "pyav"):
        with pytest.raises(DecodeError, match="has 10"):
            read_frames(path, [10], decoder)


def test_auto_falls_back_to_pyav_when_decord_fails(tmp_path, monkeypatch):
    path = write_indexed_video(tmp_path / "v.mp4", num_frames=10)

    def broken(path, entry, indices):
        raise DecodeError(path, "decord: simulated failure")

    monkeypatch.setattr(decode, "_decord_read", broken)
    assert frame_ids(read_frames(path, [2, 5], "auto")) == [2, 5]
    with pytest.raises(DecodeError, match="simulated"):
        read_frames(path, [2], "decord")


def test_auto_uses_pyav_when_decord_is_missing(tmp_path, monkeypatch):
    path = write_indexed_video(tmp_path / "v.mp4", num_frames=10)
    monkeypatch.setattr(decode, "decord_available", lambda: False)
    assert frame_ids(read_frames(path, [4], "auto")) == [4]
    with pytest.raises(VdiagError, match="--decoder pyav"):
        read_frames(path, [4], "decord")


def test_unknown_decoder_is_a_user_error(tmp_path):
    path = write_indexed_video(tmp_path / "v.mp4", num_frames=4)
    with pytest.raises(VdiagError, match="unknown decoder"):
        read_frames(path, [0], "ffmpeg")
