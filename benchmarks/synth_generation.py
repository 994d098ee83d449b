"""Synthetic-dataset generation speed, side by side.

Reports videos/s for: rendering alone (numpy), rendering + H.264 encoding on one process, and the
full generator on 1 and on all cores. The ratios say where the time goes and how well the
generator uses the cores. Run: `.venv/bin/python benchmarks/synth_generation.py` (or `make bench`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from vdiag.console import set_quiet
from vdiag.data.synthetic import SynthConfig, _write_one, draw_video_params, generate_dataset, render_video

COUNT = 200


def rate(fn, count: int) -> float:
    started = time.perf_counter()
    fn()
    return count / (time.perf_counter() - started)


def main() -> None:
    set_quiet(True)
    config = SynthConfig(num_train=COUNT, num_val=0, num_test=0)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for split in ("videos/train", "masks/train"):
            (tmp / "manual" / split).mkdir(parents=True)
        results = {
            "render only (1 process)": rate(
                lambda: [render_video(config, draw_video_params(config, "train", i)) for i in range(COUNT)], COUNT
            ),
            "render + encode (1 process)": rate(
                lambda: [_write_one((dataclasses.asdict(config), "train", i, str(tmp / "manual"))) for i in range(COUNT)], COUNT
            ),
            "generate_dataset, 1 worker": rate(lambda: generate_dataset(config, tmp / "one", workers=1), COUNT),
            f"generate_dataset, {cores} workers": rate(lambda: generate_dataset(config, tmp / "all", workers=cores), COUNT),
        }
    reference = results["generate_dataset, 1 worker"]
    lines = [
        f"Synthetic generation, {COUNT} videos of {config.size}×{config.size}×{config.frames}, {cores} cores",
        "",
        "| step | videos/s | ratio to 1 worker |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {value:.1f} | {value / reference:.2f} |" for name, value in results.items()]
    print("\n".join(lines))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "synth_generation.json").write_text(json.dumps({"videos": COUNT, "cores": cores, "videos_per_second": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
