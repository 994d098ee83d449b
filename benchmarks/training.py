"""Training throughput: each method's step against a bare forward+backward of the same backbone.

For every method, on the same batch (16 videos × ρ = 2 clips of 8×64×64 for `tiny`; 4 × 2 for
`r3d_18`), time one optimiser step (forward, loss, backward, AdamW step, momentum updates) and a
"bare" step (backbone forward, `embedding.mean()` as loss, backward, the same optimiser) side by
side, alternating, median of several repeats. The ratio method / bare is the method's own overhead
(projector, predictor, momentum encoder, loss). A second table compares the data loader's clips/s
(augmentation included, 0 and 2 workers, no training) with the clips/s the training step consumes.

Run: `.venv/bin/python benchmarks/training.py` (about 4 minutes on 2 cores).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vdiag.console import set_quiet
from vdiag.data.datasets import collate_clips
from vdiag.data.synthetic import SynthConfig, generate_dataset
from vdiag.methods import METHODS, build_model
from vdiag.train.config import resolve_config
from vdiag.train.optim import build_optimizer
from vdiag.train.trainer import build_training_dataset, load_index

REPEATS = {"tiny": 5, "r3d_18": 2}
VIDEOS = {"tiny": 16, "r3d_18": 4}
# backbone clip forwards per clip with gradient, and without (DCLR's slow encoder f̃ on d)
FORWARDS = {"dclr": (3, 1), "concepts": (3, 0)}


def time_step(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def method_step(method, optimizer, batch):
    def step():
        out = method(batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        method.before_optimizer_step()
        optimizer.step()
        method.after_step(0.5)

    return step


def bare_step(backbone, optimizer, clips, forwards=(1, 0)):
    trained, frozen = forwards
    inputs = clips.flatten(0, 1)[:, :, :8].repeat(trained, 1, 1, 1, 1)
    extra = clips.flatten(0, 1)[:, :, :8].repeat(frozen, 1, 1, 1, 1)

    def step():
        loss = backbone(inputs).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if frozen:
            with torch.no_grad():
                backbone(extra)

    return step


def measure_methods(backbone_name: str, methods: list[str]) -> list[dict]:
    rows = []
    for name in methods:
        config = resolve_config(name, "cpu", options={"backbone": {"name": backbone_name}})
        if name == "supervised":
            config["method_args"]["num_classes"] = 2
        if "warmup_epochs" in config["method_args"]:
            config["method_args"]["warmup_epochs"] = 0
        torch.manual_seed(0)
        method = build_model(config)
        method.start_epoch(0)
        clips = torch.randn(VIDEOS[backbone_name], 2 if name != "supervised" else 1, 3, 8 + method.extra_frames, 64, 64)
        batch = {"clips": clips, "label": torch.zeros(len(clips), dtype=torch.long)}
        optimizer = build_optimizer(method, "adamw", 1e-4, weight_decay=1e-6)
        bare_optimizer = build_optimizer(method.backbone, "adamw", 1e-4, weight_decay=1e-6)
        steps = {
            "method": method_step(method, optimizer, batch),
            "bare": bare_step(method.backbone, bare_optimizer, clips, FORWARDS.get(name, (1, 0))),
        }
        for step in steps.values():
            step()  # warm-up
        times = {"method": [], "bare": []}
        for _ in range(REPEATS[backbone_name]):
            for key, step in steps.items():
                times[key].append(time_step(step))
        method_s, bare_s = statistics.median(times["method"]), statistics.median(times["bare"])
        clip_count = clips.shape[0] * clips.shape[1]
        rows.append(
            {
                "backbone": backbone_name,
                "method": name,
                "clips": clip_count,
                "bare_s": bare_s,
                "method_s": method_s,
                "ratio": method_s / bare_s,
                "clips_per_s": clip_count / method_s,
            }
        )
    return rows


def measure_loader(root: Path, consumed: float) -> list[dict]:
    config = resolve_config("simclr", "cpu", options={"data": {"path": str(root)}})
    dataset = build_training_dataset(config, load_index(root), "auto")
    rows = []
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=16, shuffle=True, num_workers=workers, collate_fn=collate_clips)
        iterator = iter(loader)
        next(iterator)  # start-up
        started, clips = time.perf_counter(), 0
        for _ in range(12):
            clips += next(iterator)["clips"].shape[0] * 2
        rate = clips / (time.perf_counter() - started)
        rows.append({"workers": workers, "clips_per_s": rate, "ratio_to_training": rate / consumed})
    return rows


def main() -> None:
    set_quiet(True)
    torch.set_num_threads(2)
    rows = measure_methods("tiny", list(METHODS)) + measure_methods("r3d_18", ["simclr"])
    lines = ["Method step vs bare backbone forward+backward, same batch, AdamW (median; 2 CPU cores)", ""]
    simclr_tiny = next(r for r in rows if r["method"] == "simclr" and r["backbone"] == "tiny")
    for r in rows:
        r["vs_simclr"] = r["method_s"] / simclr_tiny["method_s"] if r["backbone"] == "tiny" else None
    lines += [
        "| backbone | method | clips/step | backbone forwards | bare s/step | method s/step | ratio | vs simclr | clips/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        trained, frozen = FORWARDS.get(r["method"], (1, 0))
        forwards = f"{trained * r['clips']}" + (f" + {frozen * r['clips']} no-grad" if frozen else "")
        vs = f"{r['vs_simclr']:.2f}" if r["vs_simclr"] is not None else "–"
        lines.append(
            f"| {r['backbone']} | {r['method']} | {r['clips']} | {forwards} | {r['bare_s']:.3f} | {r['method_s']:.3f} "
            f"| {r['ratio']:.2f} | {vs} | {r['clips_per_s']:.1f} |"
        )
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(SynthConfig(num_train=400, num_val=0, num_test=0), Path(tmp) / "data")
        loader_rows = measure_loader(Path(tmp) / "data", simclr_tiny["clips_per_s"])
    lines += [
        "",
        "Data loader (augmentation included, batches of 16 videos × 2 clips) "
        f"vs the {simclr_tiny['clips_per_s']:.1f} clips/s a tiny SimCLR step consumes",
        "",
    ]
    lines += ["| workers | loader clips/s | ratio to training consumption |", "|---:|---:|---:|"]
    for r in loader_rows:
        lines.append(f"| {r['workers']} | {r['clips_per_s']:.1f} | {r['ratio_to_training']:.2f} |")
    save_results("training", lines, {"methods": rows, "loader": loader_rows})


def save_results(name: str, lines: list[str], data) -> None:
    """Print the Markdown table and write results/<name>.md and results/<name>.json."""
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
