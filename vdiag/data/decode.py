"""Video decoding: decord by default, PyAV as the fallback.

Both readers are opened per call (safe in DataLoader workers: nothing is shared between
processes) and decode only the frames a clip needs. Frames come back as uint8 arrays of shape
`(T, H, W, 3)` in RGB order, indexed from 0 in presentation order; the two decoders agree on the
same file (tests/test_decode.py checks this on H.264 mp4 and MPEG-4 avi).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vdiag.errors import DecodeError, VdiagError

DECODERS = ("auto", "decord", "pyav")

# Frame indices, or a function from the video's frame count to frame indices (lets the caller pick
# clip positions without opening the file twice).
FrameSelection = Sequence[int] | Callable[[int], Sequence[int]]


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    height: int
    width: int


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:  # ImportError, or a broken native library
        return False
    return True


def resolve_decoder(decoder: str) -> str:
    """Map 'auto' to the best decoder present; reject unknown names with a fix."""
    if decoder not in DECODERS:
        raise VdiagError(f"unknown decoder {decoder!r}; choose one of: {', '.join(DECODERS)}")
    if decoder == "decord" and not decord_available():
        raise VdiagError("decoder 'decord' is not installed here; use --decoder pyav (or auto)")
    return decoder


def video_info(path: str | Path, decoder: str = "auto") -> VideoInfo:
    """Frame count, frame rate and size of a video, without decoding its frames."""
    path = _existing(path)
    return _with_fallback(path, decoder, _decord_info, _pyav_info)


def read_frames(path: str | Path, indices: FrameSelection, decoder: str = "auto") -> np.ndarray:
    """Decode the frames at `indices` (any order, repeats allowed) as uint8 `(T, H, W, 3)`.

    `indices` may be a function of the video's frame count returning the indices. With decoder
    'auto', decord is tried first and PyAV takes over if decord is missing or fails on this file.
    """
    path = _existing(path)
    select = indices if callable(indices) else (lambda _count, fixed=list(indices): fixed)
    return _with_fallback(path, decoder, lambda p: _decord_read(p, select), lambda p: _pyav_read(p, select))


def _checked(path: Path, indices: Sequence[int], num_frames: int) -> list[int]:
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("read_frames needs at least one frame index")
    if min(indices) < 0:
        raise ValueError(f"negative frame index in {indices}")
    if max(indices) >= num_frames:
        raise DecodeError(path, f"frame {max(indices)} requested but the video has {num_frames}")
    return indices


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DecodeError(path, "no such file")
    return path


def _with_fallback(path: Path, decoder: str, with_decord, with_pyav):
    decoder = resolve_decoder(decoder)
    if decoder == "pyav" or (decoder == "auto" and not decord_available()):
        return with_pyav(path)
    try:
        return with_decord(path)
    except DecodeError:
        if decoder == "decord":
            raise
        return with_pyav(path)


# --- decord -------------------------------------------------------------------------------


def _decord_reader(path: Path):
    import decord

    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as err:  # decord raises DECORDError / RuntimeError on bad files
        raise DecodeError(path, f"decord: {_first_line(err)}") from err


def _decord_info(path: Path) -> VideoInfo:
    reader = _decord_reader(path)
    num_frames = len(reader)
    if num_frames == 0:
        raise DecodeError(path, "decord: the video has no frames")
    height, width = reader[0].shape[:2]
    return VideoInfo(num_frames, float(reader.get_avg_fps()), int(height), int(width))


def _decord_read(path: Path, select) -> np.ndarray:
    reader = _decord_reader(path)
    num_frames = len(reader)
    if num_frames == 0:
        raise DecodeError(path, "decord: the video has no frames")
    indices = _checked(path, select(num_frames), num_frames)
    try:
        unique = sorted(set(indices))
        frames = reader.get_batch(unique).asnumpy()
    except Exception as err:
        raise DecodeError(path, f"decord: {_first_line(err)}") from err
    position = {index: k for k, index in enumerate(unique)}
    return np.ascontiguousarray(frames[[position[i] for i in indices]])


# --- PyAV ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _pyav_stream(path: Path):
    """Open a file's first video stream with PyAV; any failure becomes a DecodeError."""
    import av

    try:
        container = av.open(str(path))
    except Exception as err:  # av.error.InvalidDataError, FileNotFoundError, ...
        raise DecodeError(path, f"PyAV: {_first_line(err)}") from err
    try:
        if not container.streams.video:
            raise DecodeError(path, "PyAV: the file has no video stream")
        yield container, container.streams.video[0]
    except DecodeError:
        raise
    except Exception as err:
        raise DecodeError(path, f"PyAV: {_first_line(err)}") from err
    finally:
        container.close()


def _frame_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise ValueError("unknown frame rate")
    return Fraction(rate)


def _pyav_frame_count(path: Path, container, stream) -> int:
    num_frames = int(stream.frames or 0)
    if num_frames == 0:  # some containers do not record a count: decode to count, then rewind
        num_frames = sum(1 for _ in container.decode(stream))
        container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)
    if num_frames == 0:
        raise DecodeError(path, "PyAV: the video has no frames")
    return num_frames


def _pyav_info(path: Path) -> VideoInfo:
    with _pyav_stream(path) as (container, stream):
        num_frames = _pyav_frame_count(path, container, stream)
        return VideoInfo(num_frames, float(_frame_rate(stream)), stream.height, stream.width)


def _pyav_read(path: Path, select) -> np.ndarray:
    """Decode from the key frame before the first wanted frame up to the last wanted one.

    A frame's index is computed from its presentation time, which is what keeps PyAV in step with
    decord after a seek (decoding order differs from presentation order with B-frames).
    """
    found: dict[int, np.ndarray] = {}
    with _pyav_stream(path) as (container, stream):
        num_frames = _pyav_frame_count(path, container, stream)
        indices = _checked(path, select(num_frames), num_frames)
        wanted = set(indices)
        first, last = min(wanted), max(wanted)
        stream.thread_type = "AUTO"
        rate = _frame_rate(stream)
        start = stream.start_time or 0
        time_base = stream.time_base

        def index_of(frame) -> int:
            return int(round((frame.pts - start) * time_base * rate))

        if first > 0:
            # Seek a little before the first wanted frame; `backward` lands on a key frame.
            target_pts = start + int((Fraction(max(first - 1, 0)) / rate) / time_base)
            container.seek(target_pts, stream=stream, backward=True, any_frame=False)
        sequential = 0
        for frame in container.decode(stream):
            index = index_of(frame) if frame.pts is not None else sequential
            sequential = index + 1
            if index in wanted and index not in found:
                found[index] = frame.to_ndarray(format="rgb24")
            if index >= last and len(found) == len(wanted):
                break
            if index > last + 16:  # well past the last wanted frame: stop decoding
                break
    missing = sorted(wanted - found.keys())
    if missing:
        raise DecodeError(path, f"PyAV: frames {missing[:5]} not found (the video may be shorter or truncated)")
    return np.stack([found[i] for i in indices])


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


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
