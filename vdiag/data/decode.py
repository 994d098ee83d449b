"""Frame-exact video reading: `video_info` and `read_frames`, through one frame index per file.

Frame *i* of a video is the *i*-th frame a player shows: the count and each frame's position come
from the decoded stream (vdiag.data.frameindex, built once per file by a sequential decode and
cached), never from container metadata. Both decoders read through that index:

- PyAV seeks to the wanted frame's presentation timestamp and identifies every decoded frame by its
  timestamp, so B-frames, edit lists, variable frame rates and codecs without a recorded count read
  exactly (files without usable timestamps are read sequentially);
- decord is used for a file only when its random access agrees with the index there (checked once
  per file when the index is built); on any other file vdiag switches to PyAV, and says so once.

Frames come back as uint8 `(T, H, W, 3)` RGB as displayed: the display rotation is applied by both
decoders. On every file kind of tests/test_frame_exact.py the two decoders give the same frames
within 2 levels (mean) per frame: they convert the same decoded YUV, only the colour-conversion
rounding differs. A folder of images (one per frame) is read as a video with Pillow.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.markup import escape

from vdiag.console import warn
from vdiag.data.frameindex import FrameIndex, first_line, frame_files, frame_index
from vdiag.data.frameindex import pyav_read as _pyav_read
from vdiag.errors import DecodeError, VdiagError

DECODERS = ("auto", "decord", "pyav")

# Frame indices, or a function from the video's frame count to frame indices (lets the caller pick
# clip positions from the true frame count without a second call).
FrameSelection = Sequence[int] | Callable[[int], Sequence[int]]


@dataclass(frozen=True)
class VideoInfo:
    """A video's decodable frame count, average frame rate and displayed size (after rotation)."""

    num_frames: int
    fps: float
    height: int
    width: int


def decord_available() -> bool:
    """Whether decord imports here (it has no wheels for macOS / ARM)."""
    try:
        import decord  # noqa: F401
    except Exception:  # ImportError, or a broken native library
        return False
    return True


def resolve_decoder(decoder: str) -> str:
    """Check a decoder name ('auto', 'decord' or 'pyav') against what is installed.

    Raises:
        VdiagError: the name is unknown, or decord is asked for but not installed.
    """
    if decoder not in DECODERS:
        raise VdiagError(f"unknown decoder {decoder!r}; choose one of: {', '.join(DECODERS)}")
    if decoder == "decord" and not decord_available():
        raise VdiagError("decoder 'decord' is not installed here; use --decoder pyav (or auto)")
    return decoder


def video_info(path: str | Path, decoder: str = "auto") -> VideoInfo:
    """Decodable frame count, frame rate and displayed size of a video (or frame folder).

    The count is the frames that decode, from the file's frame index (built on first use), the
    same whichever decoder reads the frames.

    Raises:
        DecodeError: the file does not exist or does not decode.
        VdiagError: unknown or missing decoder.
    """
    resolve_decoder(decoder)
    entry = frame_index(path, check_decord=False)
    return VideoInfo(entry.num_frames, entry.fps, entry.height, entry.width)


_SWITCHES: dict[str, str] = {}
_SWITCH_LOCK = threading.Lock()


def decoder_switches() -> dict[str, str]:
    """Files this process read with PyAV instead of decord, and why (decord disagrees with the index)."""
    with _SWITCH_LOCK:
        return dict(_SWITCHES)


def read_frames(path: str | Path, indices: FrameSelection, decoder: str = "auto", report: dict | None = None) -> np.ndarray:
    """Decode the displayed frames at `indices` (any order, repeats allowed) as uint8 `(T, H, W, 3)`.

    Args:
        path: a video file, or a folder of JPEG/PNG frames.
        indices: frame indices in presentation order (0 = first frame shown), or a function of the
            video's decodable frame count returning them.
        decoder: 'auto' (decord where it agrees with the frame index, else PyAV), 'decord' or 'pyav'.
        report: optional dict, filled with 'decoder' (the one used), 'switched' (why decord was not
            used for this file, else None), 'num_frames', 'metadata_frames' and 'count_mismatch'.
            Without it, a switch away from decord is reported once per file (a warning on stderr).

    Returns:
        uint8 array `(T, H, W, 3)`, RGB, rotation applied.

    Raises:
        DecodeError: the file does not exist or does not decode, or an index is past the last frame.
        VdiagError: unknown or missing decoder.
        ValueError: no index, or a negative one.
    """
    path = Path(path)
    decoder = resolve_decoder(decoder)
    has_decord = decoder != "pyav" and decord_available()
    entry = frame_index(path, check_decord=has_decord)
    select = indices if callable(indices) else (lambda _count, fixed=list(indices): fixed)
    wanted = _checked(path, select(entry.num_frames), entry.num_frames)
    switched = None
    if entry.kind == "frames":
        used, frames = "images", _images_read(path, entry, wanted)
    elif not has_decord:
        used, frames = "pyav", _pyav_read(path, entry, wanted)
    elif entry.decord != "ok":
        switched = f"decord not used: {entry.decord}"
        used, frames = "pyav", _pyav_read(path, entry, wanted)
    else:
        try:
            used, frames = "decord", _decord_read(path, entry, wanted)
        except DecodeError as err:
            if decoder == "decord":
                raise
            switched = f"decord failed: {err.reason}"
            used, frames = "pyav", _pyav_read(path, entry, wanted)
    if switched:
        with _SWITCH_LOCK:
            new = str(path) not in _SWITCHES
            _SWITCHES[str(path)] = switched
        if new and report is None:
            warn(escape(f"{path}: read with PyAV ({switched})"))
    if report is not None:
        report.update(
            decoder=used,
            switched=switched,
            num_frames=entry.num_frames,
            metadata_frames=entry.metadata_frames,
            count_mismatch=entry.count_mismatch,
        )
    return frames


def _checked(path: Path, indices: Sequence[int], num_frames: int) -> list[int]:
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("read_frames needs at least one frame index")
    if min(indices) < 0:
        raise ValueError(f"negative frame index in {indices}")
    if max(indices) >= num_frames:
        raise DecodeError(path, f"frame {max(indices)} requested but the video has {num_frames} decodable frames")
    return indices


# --- decord -------------------------------------------------------------------------------


def _decord_read(path: Path, entry: FrameIndex, indices: list[int]) -> np.ndarray:
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        if len(reader) != entry.num_frames:
            raise DecodeError(path, f"decord counts {len(reader)} frames, {entry.num_frames} decode")
        unique = sorted(set(indices))
        frames = reader.get_batch(unique).asnumpy()
    except DecodeError:
        raise
    except Exception as err:  # decord raises DECORDError / RuntimeError on bad files
        raise DecodeError(path, f"decord: {first_line(err)}") from err
    position = {index: k for k, index in enumerate(unique)}
    return np.ascontiguousarray(frames[[position[i] for i in indices]])


# --- PyAV ---------------------------------------------------------------------------------


def _images_read(path: Path, entry: FrameIndex, indices: list[int]) -> np.ndarray:
    from PIL import Image

    files = frame_files(path)
    if len(files) != entry.num_frames:
        raise DecodeError(path, f"the folder now holds {len(files)} frames, {entry.num_frames} when listed")
    found = {}
    for i in sorted(set(indices)):
        try:
            with Image.open(files[i]) as image:
                found[i] = np.asarray(image.convert("RGB"))
        except Exception as err:
            raise DecodeError(files[i], f"cannot read the image: {first_line(err)}") from err
        if found[i].shape[:2] != (entry.height, entry.width):
            raise DecodeError(files[i], f"frame of {found[i].shape[1]}x{found[i].shape[0]}, the first is {entry.width}x{entry.height}")
    return np.stack([found[i] for i in indices])


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8, codec: str = "libx264", crf: int = 18) -> None:
    """Write uint8 `(T, H, W, 3)` RGB frames as a video with PyAV (H.264 mp4 by default).

    `crf=0` writes lossless H.264 (qp 0): libx264's choices vary slightly from run to run here even
    with one thread, so only lossless coding guarantees the same decoded frames every time. Use
    codec 'mpeg4' for an .avi file.
    """
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        container = av.open(str(path), mode="w")
    try:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        if codec == "libx264":
            # Lossless: the preset changes only speed and size (veryfast: 2.3× faster than medium, +2% size).
            quality = {"qp": "0", "preset": "veryfast"} if crf == 0 else {"crf": str(crf), "preset": "medium"}
            stream.options = {**quality, "threads": "1"}
        elif codec == "mpeg4":
            stream.bit_rate = 8_000_000  # near-lossless; PyAV does not pass ffmpeg's -qscale through
        for frame in frames:
            yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
