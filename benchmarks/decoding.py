"""Clip loading through the frame index vs the previous loader, index build time, check-data throughput.

1. Clip loading: the same clips (ρ = 2 clips of 8 frames at stride 2 per video, starts drawn as
   training does) read by `vdiag.data.decode.read_frames` through the frame index, and by the
   previous reader (`vdiag/data/decode.py` at commit 5094a01, loaded from git: decord by its own
   frame count, PyAV by pts × average rate), per decoder, side by side on the same H.264 files:
   the default synthetic dataset (150 videos of 16 frames, 64×64) and longer videos (8 of 300
   frames, 160×120, one key frame per 250 frames). Best of 3 interleaved passes; the index is built
   before timing (it is built once per file and cached).
2. Index build: seconds to index videos from scratch (a sequential decode, plus decord's agreement
   check) at 160×120 (the long videos) and 640×360 (2 videos of 150 frames), per hour of 25 fps video.
3. `check-data` throughput (files/s, frames/s) on the synthetic dataset, cold (empty cache: the
   scan builds every index) and warm.

Run: `.venv/bin/python benchmarks/decoding.py` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vdiag.console import set_quiet
from vdiag.data import frameindex
from vdiag.data.check import check_data
from vdiag.data.decode import read_frames, write_video
from vdiag.data.formats import load_index
from vdiag.data.sampling import ClipSpec, random_starts
from vdiag.data.synthetic import SynthConfig, generate_dataset

VIDEOS = 150
LONG_VIDEOS, LONG_FRAMES, LONG_SIZE = 8, 300, (120, 160)
BUILD_SIZES = ((120, 160), (360, 640))  # index build time measured at these sizes (height, width)
PASSES = 3
LEGACY_COMMIT = "5094a01"
ROOT = Path(__file__).resolve().parent.parent


def legacy_reader():
    """`read_frames` of vdiag/data/decode.py before the frame index (from git)."""
    source = subprocess.run(
        ["git", "show", f"{LEGACY_COMMIT}:vdiag/data/decode.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "legacy_decode.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("legacy_decode", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["legacy_decode"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.read_frames


def clip_plan(paths, clip: ClipSpec, seed: int = 0):
    """The clips each pass reads: per video, a function of its frame count (as the dataset samples)."""
    plans = []
    for k, path in enumerate(paths):

        def select(count, k=k):
            starts = random_starts(count, clip, 2, torch.Generator().manual_seed(seed + k))
            return np.concatenate([clip.indices(s, count) for s in starts])

        plans.append((path, select))
    return plans


def clips_per_second(reader, plans, decoder: str) -> float:
    started = time.perf_counter()
    for path, select in plans:
        reader(path, select, decoder)
    return 2 * len(plans) / (time.perf_counter() - started)


def compare(paths, legacy, label: str) -> list[dict]:
    clip = ClipSpec(8, stride=2)
    plans = clip_plan(paths, clip)
    for path in paths:  # the index is built once per file, before any timing
        frameindex.frame_index(path)
    rows = []
    for decoder in ("decord", "pyav"):
        best = {"index": 0.0, "previous": 0.0}
        for _ in range(PASSES):  # interleaved, best of PASSES
            best["previous"] = max(best["previous"], clips_per_second(legacy, plans, decoder))
            best["index"] = max(best["index"], clips_per_second(read_frames, plans, decoder))
        rows.append({"data": label, "decoder": decoder, **best, "ratio": best["index"] / best["previous"]})
    return rows


def long_videos(folder: Path, size=LONG_SIZE, count: int = LONG_VIDEOS, frames: int = LONG_FRAMES) -> list[Path]:
    """H.264 videos of a texture scrolling down (x264 defaults: one key frame per 250 frames, B-frames)."""
    rng = np.random.default_rng(0)
    height, width = size
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        base = rng.integers(0, 255, (height // 4 + frames, width // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
        video = np.stack([base[4 * t : 4 * t + height] for t in range(frames)])
        path = folder / f"long{k}.mp4"
        write_video(path, video, fps=25, crf=23)
        paths.append(path)
    return paths


def index_build(folder: Path, size) -> dict:
    """Seconds to index videos of `size` from scratch, and per hour of 25 fps video."""
    count, frames = (LONG_VIDEOS, LONG_FRAMES) if size == LONG_SIZE else (2, 150)
    paths = long_videos(folder, size, count, frames)
    frameindex.forget()
    started = time.perf_counter()
    for path in paths:
        frameindex.frame_index(path)
    seconds = time.perf_counter() - started
    hours = count * frames / 25 / 3600
    return {
        "videos": count,
        "frames": count * frames,
        "size": f"{size[1]}x{size[0]}",
        "seconds": seconds,
        "seconds_per_hour_of_video": seconds / hours,
        "frames_per_second": count * frames / seconds,
    }


def main() -> None:
    set_quiet(True)
    legacy = legacy_reader()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["VDIAG_CACHE_DIR"] = str(tmp / "cache")
        generate_dataset(SynthConfig(num_train=VIDEOS, num_val=0, num_test=0), tmp / "data")
        synthetic = [r.path for r in load_index(tmp / "data", split="train").records]
        builds = [index_build(tmp / f"build{size[1]}", size) for size in BUILD_SIZES]
        long = sorted((tmp / f"build{LONG_SIZE[1]}").glob("*.mp4"))

        rows = compare(synthetic, legacy, f"synthetic, {VIDEOS} × 16 frames 64×64") + compare(
            long, legacy, f"long, {LONG_VIDEOS} × {LONG_FRAMES} frames {LONG_SIZE[1]}×{LONG_SIZE[0]}"
        )

        os.environ["VDIAG_CACHE_DIR"] = str(tmp / "cache-cold")
        frameindex.forget()
        cold = check_data(tmp / "data", split="train").metrics
        frameindex.forget()  # warm: from the cache files, not the process memo
        warm = check_data(tmp / "data", split="train").metrics
    throughput = {
        name: {"files_per_second": m["files_per_second"], "frames_per_second": m["frames_per_second"], "files": m["files"]}
        for name, m in (("cold", cold), ("warm", warm))
    }

    lines = [
        "Clip loading through the frame index vs the previous loader (commit 5094a01), same clips, one process",
        "(2 clips of 8 frames at stride 2 per video; best of 3 interleaved passes)",
        "",
        "| data | decoder | previous clips/s | frame index clips/s | ratio |",
        "|---|---|---:|---:|---:|",
        *[f"| {r['data']} | {r['decoder']} | {r['previous']:.1f} | {r['index']:.1f} | {r['ratio']:.2f} |" for r in rows],
        "",
        "Index build (one sequential decode + decord's agreement check), H.264 with B-frames, 25 fps:",
        "",
        "| size | videos × frames | seconds | frames/s | seconds per hour of video |",
        "|---|---|---:|---:|---:|",
        *[
            f"| {b['size']} | {b['videos']} × {b['frames'] // b['videos']} | {b['seconds']:.2f} | {b['frames_per_second']:.0f} "
            f"| {b['seconds_per_hour_of_video']:.0f} |"
            for b in builds
        ],
        "",
        "| check-data on the synthetic dataset | files/s | frames/s |",
        "|---|---:|---:|",
        *[f"| {name} cache | {t['files_per_second']:.1f} | {t['frames_per_second']:.0f} |" for name, t in throughput.items()],
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "decoding.md").write_text(text + "\n")
    payload = {"clip_loading": rows, "index_build": builds, "check_data": throughput, "python": sys.version.split()[0]}
    (out / "decoding.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
