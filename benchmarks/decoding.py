"""Clip loading speed: decord vs PyAV through the real dataset, side by side.

Reads ρ = 2 clips of 8 frames at stride 2 per video from the default-size synthetic dataset with
`VideoClipDataset` (one process, no workers), once per decoder, and reports clips/s and the ratio
PyAV / decord. Run: `.venv/bin/python benchmarks/decoding.py`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from vdiag.console import set_quiet
from vdiag.data.datasets import VideoClipDataset
from vdiag.data.formats import load_index
from vdiag.data.sampling import ClipSpec
from vdiag.data.synthetic import SynthConfig, generate_dataset

VIDEOS = 150


def main() -> None:
    set_quiet(True)
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(SynthConfig(num_train=VIDEOS, num_val=0, num_test=0), Path(tmp) / "data")
        index = load_index(Path(tmp) / "data", split="train")
        results = {}
        for decoder in ("decord", "pyav"):
            dataset = VideoClipDataset(index, ClipSpec(8, 2), clips_per_video=2, decoder=decoder)
            dataset[0]  # warm-up
            started = time.perf_counter()
            for i in range(len(dataset)):
                dataset[i]
            results[decoder] = 2 * len(dataset) / (time.perf_counter() - started)
    print(f"Clip loading, {VIDEOS} videos × 2 clips of 8×64×64 (stride 2), one process\n")
    print("| decoder | clips/s | ratio to decord |\n|---|---:|---:|")
    for decoder, value in results.items():
        print(f"| {decoder} | {value:.1f} | {value / results['decord']:.2f} |")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "decoding.json").write_text(json.dumps({"videos": VIDEOS, "clips_per_second": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
