"""Test data in the real formats: videos written with PyAV whose frames say their own index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vdiag.data.decode import write_video


def indexed_frames(num_frames: int, height: int = 32, width: int = 40, seed: int = 0) -> np.ndarray:
    """Frames that say their index t after lossy coding, in grey (luma is coded at full resolution):
    the bottom-left strip is 16·(t mod 16), the bottom-right strip 24 + 24·(t div 16), so up to
    128 frames, robust to ±7 levels of coding error; above them a
    coloured background and a moving square."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[:, : height - 8] = rng.integers(0, 200, 3)
    half = width // 2
    for t in range(num_frames):
        frames[t, height - 8 :, :half] = 16 * (t % 16)
        frames[t, height - 8 :, half:] = 24 + 24 * (t // 16)
        x = (2 * t) % (width - 8)
        frames[t, 4:12, x : x + 8] = (255, 255, 0)
    return frames


def frame_ids(frames: np.ndarray) -> list[int]:
    """Recover the frame indices from decoded frames (read away from the square)."""
    half = frames.shape[2] // 2
    low = [float(f[-5:-2, 2 : half - 2].mean()) for f in frames]
    high = [float(f[-5:-2, half + 2 : -2].mean()) for f in frames]
    return [int(round(lo / 16)) + 16 * int(round((hi - 24) / 24)) for lo, hi in zip(low, high)]


def write_indexed_video(path: str | Path, num_frames: int = 24, height: int = 32, width: int = 40, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "mpeg4" if path.suffix == ".avi" else "libx264"
    write_video(path, indexed_frames(num_frames, height, width, seed), fps=8, codec=codec)
    return path
