"""Feature extraction: throughput against the bare backbone forward, and the cached repeat.

Same model (`tiny`, random weights), same clips (10 uniform clips of 8×64×64 per video of a
synthetic dataset of 16-frame 64-px videos):
- bare forward: `model.embed` on ready-made tensors of the same number of clips, batch 64, under
  `torch.inference_mode` — the ceiling;
- extraction: `extract_features` end to end (decode with decord in DataLoader workers, evaluation
  view, normalisation, forward), cache off;
- cached repeat: the same call with the cache warm.

The issue asks for extraction ≥ 0.9 × the bare forward and a cached repeat ≥ 10× faster.

Run: `.venv/bin/python benchmarks/extraction.py [--videos 200] [--workers 2]` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backbone", default="tiny")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vdiag-bench-"))
    os.environ["VDIAG_CACHE_DIR"] = str(work / "cache")
    from vdiag.console import set_quiet
    from vdiag.data.formats import load_index
    from vdiag.data.synthetic import SynthConfig, generate_dataset
    from vdiag.diagnostics.features import Extractor, Sampling, extract_features
    from vdiag.diagnostics.model import load_model
    from vdiag.models.backbones import build_backbone

    set_quiet(True)
    generate_dataset(SynthConfig(num_train=args.videos, num_val=0, num_test=0), work / "data")
    index = load_index(work / "data", split="train")
    torch.manual_seed(0)
    torch.save(build_backbone(args.backbone).body.state_dict(), work / "model.pt")
    model = load_model(work / "model.pt", backbone=args.backbone)
    sampling = Sampling(frames=8, stride=2, size=64, clips=10)
    clips = len(index) * sampling.clips

    batch = torch.randn(64, 3, sampling.frames, sampling.size, sampling.size)
    with torch.inference_mode():
        model.embed(batch)
        started = time.perf_counter()
        for _ in range(clips // 64):
            model.embed(batch)
        bare = (clips // 64) * 64 / (time.perf_counter() - started)

    started = time.perf_counter()
    extract_features(Extractor(model, sampling, batch_size=64, workers=args.workers, cache=False), index, ("real",))
    extraction = clips / (time.perf_counter() - started)

    warm = Extractor(model, sampling, batch_size=64, workers=args.workers, cache=True)
    extract_features(warm, index, ("real",))  # fills the cache
    started = time.perf_counter()
    extract_features(warm, index, ("real",))
    cached = clips / (time.perf_counter() - started)

    row = {
        "backbone": args.backbone,
        "videos": len(index),
        "clips": clips,
        "workers": args.workers,
        "bare_clips_per_s": bare,
        "extraction_clips_per_s": extraction,
        "extraction_over_bare": extraction / bare,
        "cached_clips_per_s": cached,
        "cached_speedup": cached / extraction,
    }
    lines = [
        f"Feature extraction, {args.backbone} (random weights), {len(index)} synthetic videos × 10 clips of 8×64×64, "
        f"{args.workers} decoding workers, {os.cpu_count()} CPU cores",
        "",
        "| run | clips/s | ratio |",
        "|---|---:|---:|",
        f"| bare forward (ready tensors, batch 64) | {bare:.0f} | 1.00 |",
        f"| extraction (decode + views + forward) | {extraction:.0f} | {extraction / bare:.2f} of bare |",
        f"| cached repeat | {cached:.0f} | {cached / extraction:.0f}× extraction |",
    ]
    sys.path.insert(0, str(Path(__file__).parent))
    from training import save_results

    save_results("extraction", lines, row)


if __name__ == "__main__":
    main()
