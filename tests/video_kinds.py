"""Video files of the kinds found in real datasets, built from frames that carry their own index.

Every frame has its index written as an 8-bit binary code in blocks along the bottom edge (black = 0,
white = 1, 8 px wide, 8 px high), which survives lossy coding; above it a coloured background and a
moving square make consecutive frames differ. `frame_index(frame)` reads the code back from a
decoded frame in its stored orientation (`unrotate` undoes a display rotation first).

The kinds: H.264 MP4 with B-frames, MPEG-4 part 2 AVI with B-frames (Xvid-style), MPEG-2 program
stream (.mpg), VP9 WebM, H.264 MKV, variable frame rate MP4 (irregular timestamps), animated GIF and a
folder of JPEG frames, all written with PyAV / Pillow; and with the ffmpeg binary shipped by the
`imageio-ffmpeg` package: a stream-copy trim (MP4 edit list) and a video with 90° display rotation.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from fractions import Fraction
from pathlib import Path

import av  # (imported before decord: decord's bundled old libvpx would otherwise take over PyAV's VP9 encoder)
import numpy as np

HEIGHT, WIDTH = 32, 64
BITS = 8
BLOCK = WIDTH // BITS


def coded_frames(num_frames: int, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """uint8 `(T, H, W, 3)` frames whose bottom 8 rows spell the frame index in binary."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[:, : height - 8] = rng.integers(40, 200, 3)
    block = width // BITS
    for t in range(num_frames):
        for bit in range(BITS):
            frames[t, height - 8 :, bit * block : (bit + 1) * block] = 235 if (t >> bit) & 1 else 16
        x = (3 * t) % (width - 8)
        frames[t, 4:14, x : x + 8] = (255, 255, 0)
        frames[t, 16:20, :] = (7 * t) % 256
    return frames


def frame_index(frame: np.ndarray) -> int:
    """The index coded in a decoded frame (stored orientation)."""
    block = frame.shape[1] // BITS
    bits = [frame[-6:-2, b * block + 2 : (b + 1) * block - 2].mean() > 125 for b in range(BITS)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def unrotate(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Undo a display rotation of `rotation` degrees counter-clockwise on `(T, H, W, 3)` frames."""
    return np.ascontiguousarray(np.rot90(frames, -(rotation // 90) % 4, axes=(1, 2)))


def frame_indices(frames: np.ndarray, rotation: int = 0) -> list[int]:
    """The coded index of each frame of a decoded `(T, H, W, 3)` array."""
    return [frame_index(f) for f in unrotate(frames, rotation)]


def ffmpeg_exe() -> str | None:
    """The ffmpeg binary of imageio-ffmpeg, else the system's, else None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return shutil.which("ffmpeg")


def _ffmpeg(*args: str) -> None:
    exe = ffmpeg_exe()
    if exe is None:
        raise RuntimeError("no ffmpeg binary (pip install imageio-ffmpeg)")
    subprocess.run([exe, "-v", "error", "-y", *args], check=True, capture_output=True)


def ffmpeg_codes(path: Path) -> list[int]:
    """The codes of the frames the ffmpeg binary presents (every frame once, in presentation order)."""
    raw = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return frame_indices(np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH, 3))


def write_pyav(path: Path, frames: np.ndarray, codec: str, fps: int = 25, options: dict | None = None, pts=None, **attrs) -> Path:
    """Encode `frames` with PyAV; `pts` (in 1/1000 s) gives irregular timestamps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        container = av.open(str(path), mode="w")
    try:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        for key, value in attrs.items():
            setattr(stream, key, value)
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for t, frame in enumerate(frames):
            video = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if codec != "gif":
                video = video.reformat(format="yuv420p")
            if pts is not None:
                video.pts = int(pts[t])
                video.time_base = Fraction(1, 1000)
            for packet in stream.encode(video):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return path


def make_kind(kind: str, folder: Path, num_frames: int = 60) -> tuple[Path, int, int]:
    """Write one video of `kind` under `folder`: (path, presented frame count, display rotation).

    Frame k of the presented stream carries code k for every kind but the edit-list trim, whose
    presented frames are those the ffmpeg binary shows (`ffmpeg_codes`; the count returned is theirs).
    """
    frames = coded_frames(num_frames)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "h264-mp4":
        return write_pyav(folder / "h264.mp4", frames, "libx264", options={"crf": "16", "bf": "3", "g": "12"}), num_frames, 0
    if kind == "mpeg4-avi-bframes":
        path = write_pyav(folder / "xvid.avi", frames, "mpeg4", options={"bf": "2", "g": "12", "qscale": "2"}, bit_rate=4_000_000)
        return path, num_frames, 0
    if kind == "mpeg2-ps":
        return write_pyav(folder / "mpeg2.mpg", frames, "mpeg2video", options={"bf": "2", "g": "12"}, bit_rate=4_000_000), num_frames, 0
    if kind == "vp9-webm":
        return write_pyav(folder / "vp9.webm", frames, "libvpx-vp9", options={"crf": "10", "b": "0", "g": "12"}), num_frames, 0
    if kind == "h264-mkv":
        return write_pyav(folder / "h264.mkv", frames, "libx264", options={"crf": "16", "bf": "3", "g": "12"}), num_frames, 0
    if kind == "vfr-mp4":
        steps = [40 if t < num_frames // 2 else 120 for t in range(num_frames)]  # 25 fps, then 8.3 fps
        pts = np.concatenate([[0], np.cumsum(steps)[:-1]])
        path = write_pyav(folder / "vfr.mp4", frames, "libx264", options={"crf": "16", "bf": "2", "g": "12"}, pts=pts)
        return path, num_frames, 0
    if kind == "gif":
        return write_pyav(folder / "anim.gif", frames, "gif", fps=10), num_frames, 0
    if kind == "jpeg-folder":
        from PIL import Image

        target = folder / "frames"
        target.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(target / f"img_{t + 1:05d}.jpg", quality=95)
        return target, num_frames, 0
    if kind == "editlist-trim":
        # A long-GOP source, cut with `-ss 1.0 -c copy`: the cut keeps the packets from the key frame
        # before the start and hides them with an edit list.
        source = write_pyav(folder / "long.mp4", frames, "libx264", options={"crf": "16", "bf": "2", "g": "250", "keyint_min": "250"})
        path = folder / "trim.mp4"
        _ffmpeg("-ss", "1.0", "-i", str(source), "-t", "0.8", "-c", "copy", str(path))
        return path, len(ffmpeg_codes(path)), 0
    if kind == "rotation":
        source = write_pyav(folder / "upright.mp4", frames, "libx264", options={"crf": "16", "bf": "2", "g": "12"})
        path = folder / "rotated.mp4"
        _ffmpeg("-display_rotation", "90", "-i", str(source), "-c", "copy", str(path))
        return path, num_frames, 90
    raise ValueError(f"unknown kind {kind}")


KINDS = ("h264-mp4", "mpeg4-avi-bframes", "mpeg2-ps", "vp9-webm", "h264-mkv", "vfr-mp4", "gif", "jpeg-folder", "editlist-trim", "rotation")
FFMPEG_KINDS = ("editlist-trim", "rotation")
