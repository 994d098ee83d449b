"""One frame index per video file, from the frames that actually decode.

Container metadata lies about frames: a stream-copy trim keeps hidden packets behind an MP4 edit
list (110 frames recorded, 32 shown), WebM / Matroska / MPEG-PS record no count, variable-frame-rate
files have no fixed time per frame, AVI with B-frames has no presentation times at all. So the
frame index of a file is built once from a sequential PyAV decode, in presentation order, exactly
as a player (or `ffmpeg -i FILE`) shows the video:

- `num_frames`: the frames that decode and are presented (what clips are sampled from);
- `pts`: each presented frame's timestamp, which lets a seek land on frame *i* exactly (VFR and
  B-frames included); `keyframes`: where a seek can start decoding;
- `rotation`: the display rotation (degrees counter-clockwise), applied by every reader;
- `metadata_frames`: the container's own count, listed when it disagrees;
- `duplicate_runs`: runs of repeated frames (frozen stretches);
- `decord`: whether decord's random access returns the same frames as the index on this file
  (`"ok"`, or the reason it does not; `None` when decord is not installed). A file where decord
  disagrees is read with PyAV (vdiag.data.decode counts and reports the switch).

Cache: one small JSON file per video under `<cache dir>/frame-index/v2/` (`$VDIAG_CACHE_DIR`, else
`~/.cache/vdiag`), named by a hash of the file's absolute path and valid while the file's size,
modification time and content digest (`vdiag.io.content_digest`, taken before the decode) are
unchanged: a video replaced by another of the same size and mtime is indexed again. The digest is
re-read only when the file's inode or ctime changed (`vdiag.io.file_stamp`), so an unchanged file
costs one `stat`. Training, every diagnostic and `vdiag check-data` share it; `vdiag cache verify`
checks it. Frame folders (a directory of JPEG/PNG images, one per frame) are indexed by listing,
not cached.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from stat import S_ISDIR, S_ISREG

import numpy as np

from vdiag.errors import DecodeError
from vdiag.io import cache_dir, content_digest

INDEX_VERSION = 2  # 2: entries record the file's content digest, inode and ctime
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Pixel formats whose first plane is 8-bit luma (read directly; others are converted to grey).
EIGHT_BIT_LUMA_FIRST = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv411p", "yuv440p", "nv12", "nv21", "gray")
# Frames a decord check compares: 4 pairs of consecutive frames spread over the video, and the last.
DECORD_CHECK_PAIRS = 4
# Largest mean absolute difference (0–255 levels) between decord's and PyAV's RGB of the same
# frame: both convert the same decoded YUV, so only the colour-conversion rounding differs.
DECORD_TOLERANCE = 2.0
# Consecutive frames whose luma differs by at most this mean (levels) count as repeats.
DUPLICATE_TOLERANCE = 0.25


@dataclass(frozen=True)
class FrameIndex:
    """What a file's decoded stream holds, frame by frame (see the module docstring).

    Attributes:
        path: the file or frame folder, absolute.
        kind: 'video' (a container file) or 'frames' (a folder of images, one per frame).
        num_frames: frames that decode and are presented.
        fps: average frames per second over the presented frames (0 when unknown, e.g. frame folders).
        height, width: size of the displayed frames, after rotation.
        rotation: display rotation in degrees counter-clockwise (0, 90, 180, 270).
        metadata_frames: the frame count the container records, None when it records none.
        vfr: whether the time between frames varies (variable frame rate).
        pts: presentation timestamp of each frame, None when the stream has none usable
            (missing or repeated): such a file is read sequentially.
        time_base: the unit of `pts` in seconds, as (numerator, denominator).
        keyframes: indices of frames a decode can start from.
        duplicate_runs: (first frame, length) of each run of ≥ 2 identical consecutive frames.
        decord: 'ok', the reason decord disagrees with this index, or None (not checked).
        error: why decoding stopped before the end of the file, None when it did not.
        codec: the video codec's name.
        size, mtime_ns: the file's size and modification time the index is valid for.
        digest: the file's `content_digest`, taken before it was decoded ('' for frame folders).
        inode, ctime_ns: the file's inode and ctime when `digest` was taken; while they are
            unchanged the digest is not read again.
    """

    path: str
    kind: str
    num_frames: int
    fps: float
    height: int
    width: int
    rotation: int = 0
    metadata_frames: int | None = None
    vfr: bool = False
    pts: tuple[int, ...] | None = None
    time_base: tuple[int, int] = (1, 1)
    keyframes: tuple[int, ...] = (0,)
    duplicate_runs: tuple[tuple[int, int], ...] = ()
    decord: str | None = None
    error: str | None = None
    codec: str = ""
    size: int = 0
    mtime_ns: int = 0
    digest: str = ""
    inode: int = 0
    ctime_ns: int = 0

    @property
    def count_mismatch(self) -> bool:
        """The container records a frame count that differs from the decodable frames."""
        return self.metadata_frames is not None and self.metadata_frames != self.num_frames

    @property
    def duplicate_frames(self) -> int:
        """Frames that repeat the frame before them."""
        return sum(length - 1 for _, length in self.duplicate_runs)

    def to_json(self) -> dict:
        """A JSON-able dict (timestamps run-length coded)."""
        data = asdict(self)
        data["pts"] = _encode_runs(self.pts) if self.pts is not None else None
        data["version"] = INDEX_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict) -> FrameIndex:
        """The inverse of `to_json`."""
        data = dict(data)
        data.pop("version", None)
        data["pts"] = _decode_runs(data["pts"]) if data.get("pts") is not None else None
        data["time_base"] = tuple(data["time_base"])
        data["keyframes"] = tuple(data["keyframes"])
        data["duplicate_runs"] = tuple(tuple(r) for r in data["duplicate_runs"])
        return cls(**data)


def _encode_runs(values) -> list:
    """[first, [delta, count], ...]: constant-rate timestamps take a few numbers."""
    values = list(values)
    if not values:
        return []
    runs: list[list[int]] = []
    for a, b in zip(values, values[1:]):
        delta = b - a
        if runs and runs[-1][0] == delta:
            runs[-1][1] += 1
        else:
            runs.append([delta, 1])
    return [values[0], runs]


def _decode_runs(data) -> tuple[int, ...]:
    if not data:
        return ()
    first, runs = data
    values = [first]
    for delta, count in runs:
        for _ in range(count):
            values.append(values[-1] + delta)
    return tuple(values)


# --- where the index lives ----------------------------------------------------------------

# Indexes this process has read, most recent last; bounded so that a dataset of a million files does
# not keep a million timestamp lists in every DataLoader worker (a cache file read costs ~0.2 ms).
_MEMO: OrderedDict[str, FrameIndex] = OrderedDict()
_MEMO_LOCK = threading.Lock()
MEMO_SIZE = 4096


def _remember(key: str, entry: FrameIndex) -> None:
    with _MEMO_LOCK:
        _MEMO[key] = entry
        _MEMO.move_to_end(key)
        while len(_MEMO) > MEMO_SIZE:
            _MEMO.popitem(last=False)


def index_cache_folder() -> Path:
    """The folder the frame-index cache files are written to."""
    return cache_dir() / "frame-index" / f"v{INDEX_VERSION}"


def _cache_file(path: Path) -> Path:
    digest = hashlib.sha1(str(path).encode()).hexdigest()
    return index_cache_folder() / digest[:2] / f"{digest}.json"


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def cache_file(path: str | Path) -> Path:
    """The frame-index cache file of a video (whether or not it exists)."""
    return _cache_file(Path(path).absolute())


def is_frame_folder(path: str | Path) -> bool:
    """Whether `path` is a folder of image files (one per frame)."""
    path = Path(path)
    return path.is_dir() and bool(frame_files(path))


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder in frame order (numbers in names compared as numbers)."""

    def key(p: Path):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", p.name)]

    try:
        files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    except OSError:
        return []
    return sorted(files, key=key)


def index_matches(entry: FrameIndex, path: Path, stat: os.stat_result) -> bool | None:
    """Whether a frame index still describes the file: same size, mtime and content digest.

    Returns:
        True (unchanged stamp: same inode and ctime, no read), None (same content under a new inode
        or ctime, e.g. after `chmod` or a copy: valid, its stamp to be refreshed), False (changed).
    """
    if (entry.size, entry.mtime_ns) != (stat.st_size, stat.st_mtime_ns) or not entry.digest:
        return False
    if (entry.inode, entry.ctime_ns) == (stat.st_ino, stat.st_ctime_ns):
        return True
    try:
        return None if content_digest(path, stat) == entry.digest else False
    except OSError:
        return False


def cached_index(path: str | Path, stat: os.stat_result | None = None) -> FrameIndex | None:
    """The cached index of `path` if it is still valid (same size, mtime and content digest), else None."""
    path = Path(path).absolute()
    try:
        stat = stat or path.stat()
    except OSError:
        return None
    key = str(path)
    with _MEMO_LOCK:
        memo = _MEMO.get(key)
    if memo is not None and (memo.size, memo.mtime_ns, memo.inode, memo.ctime_ns) == (
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ino,
        stat.st_ctime_ns,
    ):
        return memo
    try:
        data = json.loads(_cache_file(path).read_text())
        if data.get("version") != INDEX_VERSION:
            return None
        entry = FrameIndex.from_json(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if entry.path != key:
        return None
    match = index_matches(entry, path, stat)
    if match is False:
        return None
    if match is None:  # same content, new inode / ctime: remember the new stamp
        entry = replace(entry, inode=stat.st_ino, ctime_ns=stat.st_ctime_ns)
        _store(path, entry)
    _remember(key, entry)
    return entry


def frame_index(path: str | Path, check_decord: bool = True) -> FrameIndex:
    """The frame index of a video file or frame folder: from the cache, else built and cached.

    Args:
        path: a video file, or a folder of images (one per frame).
        check_decord: when building, also test decord's random access against the index.

    Returns:
        The file's `FrameIndex`.

    Raises:
        DecodeError: the file does not exist, or no frame of it decodes.
    """
    path = Path(path).absolute()
    try:
        stat = path.stat()
    except OSError:
        raise DecodeError(path, "no such file") from None
    if S_ISDIR(stat.st_mode):
        return _folder_index(path)
    if not S_ISREG(stat.st_mode):
        raise DecodeError(path, "not a regular file")
    entry = cached_index(path, stat)
    if entry is None:
        entry = build_index(path, check_decord=check_decord)
    elif entry.decord is not None or not check_decord or not _decord_available():
        return entry
    else:  # indexed where decord was missing or not asked for: check it now
        entry = replace(entry, decord=decord_agreement(path, entry))
    _store(path, entry)
    return entry


def _store(path: Path, entry: FrameIndex) -> None:
    _remember(str(path), entry)
    target = _cache_file(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(entry.to_json()))
        os.replace(tmp, target)
    except OSError:  # a read-only cache only costs a rebuild next time
        with contextlib.suppress(OSError):
            tmp.unlink()


def forget(path: str | Path | None = None) -> None:
    """Drop the in-process copy of one index (or all of them); the cache files stay."""
    with _MEMO_LOCK:
        if path is None:
            _MEMO.clear()
        else:
            _MEMO.pop(str(Path(path).absolute()), None)


# --- building -----------------------------------------------------------------------------


@contextlib.contextmanager
def pyav_stream(path: Path):
    """Open a file's first video stream with PyAV, multithreaded decoding set before the codec opens.

    Yields:
        (container, stream).

    Raises:
        DecodeError: the file cannot be opened, has no video stream, or fails while decoding.
    """
    import av

    try:
        container = av.open(str(path))
    except Exception as err:  # av.error.InvalidDataError, FileNotFoundError, ...
        raise DecodeError(path, f"PyAV: {first_line(err)}") from err
    try:
        if not container.streams.video:
            raise DecodeError(path, "PyAV: the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # must be set before the first decode opens the codec
        yield container, stream
    except DecodeError:
        raise
    except Exception as err:
        raise DecodeError(path, f"PyAV: {first_line(err)}") from err
    finally:
        container.close()


def first_line(err: BaseException) -> str:
    """The first line of an error message (at most 300 characters), without decord's "[time] file:line: " prefix."""
    text = str(err).strip() or type(err).__name__
    text = re.sub(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", text.splitlines()[0])
    return text[:300]


def _luma(frame) -> np.ndarray:
    """The luma plane (or a grey conversion) of a PyAV frame, as a (H, W) uint8 array."""
    if frame.format.name in EIGHT_BIT_LUMA_FIRST:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        return rows[: frame.height, : frame.width]
    return frame.to_ndarray(format="gray")


def normal_rotation(value) -> int:
    """A rotation in degrees as one of 0, 90, 180, 270 (counter-clockwise)."""
    return int(round(float(value or 0) / 90.0)) % 4 * 90


def _rotation(frame, stream) -> int:
    """The display rotation: PyAV's `frame.rotation` (from the display matrix), else the old `rotate` tag."""
    value = getattr(frame, "rotation", None)
    if value is None:
        value = (stream.metadata or {}).get("rotate", 0)
        value = -float(value or 0)  # the tag is clockwise, the display matrix counter-clockwise
    return normal_rotation(value)


def rotate(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise) to `(..., H, W, C)` frames."""
    if not rotation:
        return frames
    return np.ascontiguousarray(np.rot90(frames, rotation // 90, axes=(-3, -2)))


def build_index(path: str | Path, check_decord: bool = True) -> FrameIndex:
    """Decode a video once, sequentially, and record its frame index (not cached; see `frame_index`).

    Args:
        path: the video file.
        check_decord: also test decord's random access on this file against the index.

    Returns:
        The file's `FrameIndex`.

    Raises:
        DecodeError: the file cannot be opened or not one frame decodes.
    """
    path = Path(path).absolute()
    stat = path.stat()
    digest = content_digest(path, stat)  # of the bytes before the decode: a file rewritten meanwhile never matches
    pts: list[int | None] = []
    keyframes: list[int] = []
    duplicate_runs: list[list[int]] = []
    previous = None
    rotation = 0
    error = None
    with pyav_stream(path) as (container, stream):
        metadata = int(stream.frames or 0) or None
        codec = stream.codec_context.name
        time_base = stream.time_base or Fraction(1, 1)
        average_rate = float(stream.average_rate or stream.guessed_rate or 0)
        try:
            for frame in container.decode(stream):
                k = len(pts)
                if k == 0:
                    rotation = _rotation(frame, stream)
                    height, width = frame.height, frame.width
                pts.append(frame.pts)
                if frame.key_frame:
                    keyframes.append(k)
                luma = _luma(frame)[::2, ::2].astype(np.int16)  # every 4th pixel is enough to tell a repeat
                if previous is not None and previous.shape == luma.shape:
                    if np.abs(luma - previous).mean() <= DUPLICATE_TOLERANCE:
                        if duplicate_runs and duplicate_runs[-1][0] + duplicate_runs[-1][1] == k:
                            duplicate_runs[-1][1] += 1
                        else:
                            duplicate_runs.append([k - 1, 2])
                previous = luma
        except DecodeError:
            raise
        except Exception as err:  # a damaged or truncated stream: keep the frames before it
            error = f"decoding stopped after {len(pts)} frames: {first_line(err)}"
    if not pts:
        raise DecodeError(path, f"PyAV: no frame decodes ({error})" if error else "PyAV: the video has no frames")
    usable = all(p is not None for p in pts) and all(b > a for a, b in zip(pts, pts[1:]))
    fps, vfr = average_rate, False
    if usable and len(pts) >= 2:
        deltas = np.diff(np.asarray(pts, dtype=np.int64))
        span = float((pts[-1] - pts[0]) * time_base)
        fps = (len(pts) - 1) / span if span > 0 else average_rate
        vfr = bool(deltas.max() - deltas.min() > max(1, 0.1 * float(np.median(deltas))))
    if rotation % 180:
        height, width = width, height
    entry = FrameIndex(
        path=str(path),
        kind="video",
        num_frames=len(pts),
        fps=float(fps),
        height=int(height),
        width=int(width),
        rotation=rotation,
        metadata_frames=metadata,
        vfr=vfr,
        pts=tuple(int(p) for p in pts) if usable else None,
        time_base=(time_base.numerator, time_base.denominator),
        keyframes=tuple(keyframes) or (0,),
        duplicate_runs=tuple((a, b) for a, b in duplicate_runs),
        error=error,
        codec=codec,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        digest=digest,
        inode=stat.st_ino,
        ctime_ns=stat.st_ctime_ns,
    )
    if check_decord and _decord_available():
        entry = replace(entry, decord=decord_agreement(path, entry))
    return entry


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


def check_positions(num_frames: int, pairs: int = DECORD_CHECK_PAIRS) -> list[int]:
    """Frames a decoder check reads: `pairs` pairs of consecutive frames spread out, and the last."""
    starts = np.linspace(0, max(num_frames - 2, 0), pairs).round().astype(int)
    return sorted({int(i) for s in starts for i in (s, s + 1) if i < num_frames} | {num_frames - 1})


def decord_agreement(path: Path, entry: FrameIndex) -> str:
    """'ok' when decord's frame count and random access match the index on this file, else why not.

    The frames of `check_positions` are read by decord and by vdiag's PyAV reader (which seeks by
    the index's timestamps) and compared; they must agree within `DECORD_TOLERANCE` levels.
    """
    try:
        import decord

        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        count = len(reader)
        if count != entry.num_frames:
            return f"decord counts {count} frames, {entry.num_frames} decode"
        positions = check_positions(entry.num_frames)
        theirs = reader.get_batch(positions).asnumpy()
    except Exception as err:
        return f"decord fails: {first_line(err)}"
    try:
        ours = pyav_read(path, entry, positions)
    except DecodeError as err:
        return f"PyAV check failed: {err.reason}"
    if theirs.shape != ours.shape:
        return f"decord frames are {theirs.shape[1]}x{theirs.shape[2]}, displayed frames {ours.shape[1]}x{ours.shape[2]}"
    errors = np.abs(theirs.astype(np.int16) - ours).mean(axis=(1, 2, 3))
    wrong = [p for p, e in zip(positions, errors) if e > DECORD_TOLERANCE]
    if wrong:
        return f"decord returns other frames at {wrong[:4]} (mean difference up to {errors.max():.0f} levels)"
    return "ok"


# --- reading through the index with PyAV -------------------------------------------------


class _SeekMissed(Exception):
    """A seek landed after the wanted frame, or the wanted frame never came out: seek earlier."""


def pyav_read(path: Path, entry: FrameIndex, indices: list[int]) -> np.ndarray:
    """Decode the displayed frames at `indices` with PyAV, identifying each decoded frame by its timestamp.

    For each wanted frame (in order), decoding continues from where it is when no key frame lies
    between (cheaper than a seek), else seeks to the frame's timestamp (landing on the key frame
    before it). A seek that lands too late, or a wanted frame the decoder drops after a seek (a
    B-frame whose reference lies before the key frame), is retried from an earlier key frame, down
    to the start of the file. Files without usable timestamps are decoded from the start.
    """
    wanted = sorted(set(indices))
    found: dict[int, np.ndarray] = {}
    with pyav_stream(path) as (container, stream):
        if entry.pts is None:
            _pyav_sequential(path, entry, container, stream, wanted, found)
        else:
            try:
                _pyav_seeking(path, entry, container, stream, wanted, found)
            except DecodeError:
                seeking_failed = True
            else:
                seeking_failed = False
    if entry.pts is not None and seeking_failed:  # timestamps after a seek differ from the index's: count frames
        with pyav_stream(path) as (container, stream):
            _pyav_sequential(path, entry, container, stream, wanted, found)
    frames = np.stack([found[i] for i in indices])
    return rotate(frames, entry.rotation)


def _rgb(frame, entry: FrameIndex) -> np.ndarray:
    """A decoded frame as uint8 RGB in stored orientation, at the index's size (a stream may change size midway)."""
    width, height = (entry.height, entry.width) if entry.rotation % 180 else (entry.width, entry.height)
    if (frame.width, frame.height) == (width, height):
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=width, height=height)


def _pyav_sequential(path, entry, container, stream, wanted, found) -> None:
    wanted_set, last = set(wanted), wanted[-1]
    for k, frame in enumerate(container.decode(stream)):
        if k in wanted_set:
            found[k] = _rgb(frame, entry)
        if k >= last:
            return
    raise DecodeError(path, f"PyAV: frame {last} not found (the file has changed since it was indexed?)")


def _pyav_seeking(path, entry, container, stream, wanted, found) -> None:
    pts = entry.pts

    def index_of(timestamp) -> int | None:  # the timestamps are strictly increasing: bisect
        if timestamp is None:
            return None
        i = bisect.bisect_left(pts, timestamp)
        return i if i < len(pts) and pts[i] == timestamp else None

    keyframes = list(entry.keyframes)
    wanted_set = set(wanted)
    state = {"frames": None, "position": -1}

    def keyframe_before(i: int) -> int:
        k = bisect.bisect_right(keyframes, i) - 1
        return keyframes[k] if k >= 0 else 0

    def seek(target: int) -> None:
        if target <= 0:
            container.seek(0)  # the start of the file, in the container's own time
        else:
            container.seek(pts[target], stream=stream, backward=True, any_frame=False)
        state["frames"], state["position"] = container.decode(stream), -1

    def advance_to(w: int, after_seek: bool) -> None:
        for frame in state["frames"]:
            i = index_of(frame.pts)
            if i is None:
                continue
            if after_seek and state["position"] < 0 and i > w:
                raise _SeekMissed
            state["position"] = i
            if i in wanted_set and i not in found:
                found[i] = _rgb(frame, entry)
            if i >= w:
                if w not in found:
                    raise _SeekMissed
                return
        raise _SeekMissed

    for w in wanted:
        if w in found:
            continue
        position = state["position"]
        if state["frames"] is not None and position < w and keyframe_before(w) <= position + 1:
            try:
                advance_to(w, after_seek=False)
                continue
            except _SeekMissed:
                pass
        target = w
        while True:
            try:
                seek(target)
                advance_to(w, after_seek=True)
                break
            except _SeekMissed:
                if target <= 0:
                    raise DecodeError(path, f"PyAV: frame {w} not found (the file has changed since it was indexed?)") from None
                key = keyframe_before(target)
                target = keyframe_before(key - 1) if key > 0 else 0


def _folder_index(path: Path) -> FrameIndex:
    files = frame_files(path)
    if not files:
        raise DecodeError(path, "the folder holds no JPEG/PNG frames")
    from PIL import Image

    try:
        with Image.open(files[0]) as image:
            width, height = image.size
    except Exception as err:
        raise DecodeError(files[0], f"cannot read the image: {first_line(err)}") from err
    size, mtime = _stamp(path)
    return FrameIndex(str(path), "frames", len(files), 0.0, height, width, keyframes=tuple(range(len(files))), size=size, mtime_ns=mtime)
