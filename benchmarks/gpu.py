"""Compute-only step vs end-to-end training, per method and backbone, with the throughput options on and off.

For each (backbone, method, option set) this measures, each configuration in its own process:

- **compute-only step**: random clips already on the device, the method's full optimiser step
  (autocast as `train.amp`, AdamW), median seconds per step after warm-up; clips/s; peak memory
  (`torch.cuda.max_memory_allocated` on a GPU; on CPU the process's peak resident set above its size
  after building the model and batch);
- **end to end**: `vdiag.train.trainer.pretrain` on a synthetic dataset (decode, augment, loader,
  host-device copies, logging, checkpoints) for a few epochs; clips/s over the whole run and the
  ratio to the compute-only clips/s (the issue's target on a GPU: ≥ 0.9);
- **loader alone**: the training DataLoader's clips/s with the same workers, no model.

Option sets: `train.channels_last_3d` and `train.compile` on and off, `train.activation_checkpointing`
(memory). On CPU the same script measures the relative overheads (loader, logging, option costs);
it never stands in for GPU numbers. The results file names the device it ran on.

Run:
    .venv/bin/python benchmarks/gpu.py --device cuda --size paper      # R(2+1)D-18 16×112², batch 64 × ρ 2
    nice -n 10 .venv/bin/python benchmarks/gpu.py --device cpu --size tiny   # tiny backbone, minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    # backbone, frames, pixels, videos per step, steps timed, end-to-end epochs
    "tiny": {"backbones": ["tiny"], "frames": 8, "size": 32, "videos": 8, "steps": 6, "epochs": 2, "train_videos": 32},
    "paper": {
        "backbones": ["r2plus1d_18", "r3d_18"],
        "frames": 16,
        "size": 112,
        "videos": 64,
        "steps": 10,
        "epochs": 2,
        "train_videos": 1024,
    },
}
METHODS = ["simclr", "dclr", "bolddi-simclr"]
OPTION_SETS = {
    "plain": {},
    "channels_last_3d": {"channels_last_3d": True},
    "compile": {"compile": True},
    "channels_last_3d+compile": {"channels_last_3d": True, "compile": True},
    "activation_checkpointing": {"activation_checkpointing": True},
}


def device_name(device: str) -> str:
    """The device in words, for the results file: the GPU's name, or the CPU model and core count."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores (CPU)"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def _config(method: str, backbone: str, size: dict, options: dict, data_path: str | None, device: str):
    from vdiag.train.config import resolve_config

    assignments = [
        f"data.frames={size['frames']}",
        f"data.size={size['size']}",
        f"train.batch_size={size['videos']}",
        "train.warmup_epochs=0",
        f"train.amp={'auto' if device.startswith('cuda') else 'false'}",
        *(f"train.{key}={str(value).lower()}" for key, value in options.items()),
    ]
    if method in ("dclr", "concepts"):
        assignments.append("method_args.warmup_epochs=0")
    per_frame = method.startswith(("bolddi", "bodvcl"))
    backbone_options = {"name": backbone, "keep_temporal": per_frame}
    return resolve_config(method, "cpu", options={"backbone": backbone_options, "data": {"path": data_path}}, assignments=assignments)


def _resident_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def compute_only(method_name: str, backbone: str, size_name: str, options: dict, device: str) -> dict:
    """One configuration's compute-only step (random clips on the device), in this process."""
    import torch

    from vdiag.console import set_quiet
    from vdiag.methods import build_model
    from vdiag.train.optim import build_optimizer
    from vdiag.train.trainer import _apply_backbone_options, _mixed_precision, _train_step

    set_quiet(True)
    size = SIZES[size_name]
    config = _config(method_name, backbone, size, options, None, device)
    if method_name == "supervised":
        config["method_args"]["num_classes"] = 10
    torch.manual_seed(0)
    method = build_model(config).to(device)
    _apply_backbone_options(method, config["train"])
    method.start_epoch(0)
    positives = config["data"]["positives"]
    clips = torch.randn(size["videos"], positives, 3, size["frames"] + method.extra_frames, size["size"], size["size"], device=device)
    batch = {"clips": clips, "label": torch.zeros(size["videos"], dtype=torch.long, device=device), "size": size["videos"]}
    optimizer = build_optimizer(method, "adamw", 1e-4, weight_decay=1e-6)
    autocast, scaler = _mixed_precision(device, config["train"]["amp"])

    def synchronize():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def step():
        _train_step(method, method, optimizer, scaler, autocast, batch, device, None, 1, False)
        method.after_step(0.5)

    before = _resident_kib()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    step()  # warm-up (and compilation)
    synchronize()
    first = time.perf_counter() - started
    times = []
    for _ in range(size["steps"]):
        started = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - started)
    if device.startswith("cuda"):
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    seconds = statistics.median(times)
    clips_per_step = size["videos"] * positives
    return {"first_step_s": first, "step_s": seconds, "clips_per_s": clips_per_step / seconds, "peak_mib": peak_mib}


def end_to_end(method_name: str, backbone: str, size_name: str, options: dict, device: str, data: str, workers: int) -> dict:
    """`pretrain` on the synthetic dataset for the size's epochs: clips/s over the whole run."""
    import torch

    from vdiag.console import set_quiet
    from vdiag.train.trainer import pretrain

    set_quiet(True)
    size = SIZES[size_name]
    config = _config(method_name, backbone, size, options, data, device)
    config["train"]["epochs"] = size["epochs"]
    config["data"]["workers"] = workers
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        result = pretrain(config, Path(out) / "run", device=device)
    return {
        "e2e_clips_per_s": result.metrics["clips_per_s"],
        "e2e_seconds": result.metrics["seconds"],
        "e2e_steps": result.metrics["steps_done"],
    }


def loader_alone(size_name: str, data: str, workers: int, batches: int = 12) -> dict:
    """The training loader's clips/s (decode + augmentation + collate), no model."""
    from torch.utils.data import DataLoader

    from vdiag.console import set_quiet
    from vdiag.data.datasets import collate_clips
    from vdiag.train.trainer import build_training_dataset, resolve_data

    set_quiet(True)
    size = SIZES[size_name]
    config = _config("simclr", SIZES[size_name]["backbones"][0], size, {}, data, "cpu")
    dataset = build_training_dataset(config, resolve_data(config), "auto")
    loader = DataLoader(dataset, batch_size=size["videos"], shuffle=True, num_workers=workers, collate_fn=collate_clips, drop_last=True)
    iterator = iter(loader)
    next(iterator)  # start-up
    started, clips, count = time.perf_counter(), 0, 0
    for batch in iterator:
        clips += batch["clips"].shape[0] * batch["clips"].shape[1]
        count += 1
        if count == batches:
            break
    return {"loader_clips_per_s": clips / (time.perf_counter() - started), "workers": workers}


def _child(kind: str, arguments: list) -> dict:
    """Run one measurement in a fresh process (separate peak memory, no warm caches between configurations)."""
    out = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(arguments)], capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--options", nargs="+", default=list(OPTION_SETS), choices=list(OPTION_SETS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-e2e", action="store_true", help="compute-only steps and the loader only")
    args = parser.parse_args()

    from vdiag.console import set_quiet
    from vdiag.data.synthetic import SynthConfig, generate_dataset

    set_quiet(True)
    size = SIZES[args.size]
    name = device_name(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data")
        frames = size["frames"] + 8
        generate_dataset(
            SynthConfig(size=max(64, size["size"]), frames=frames, num_train=size["train_videos"], num_val=0, num_test=0), data
        )
        loader = _child("loader", [args.size, data, args.workers])
        print(loader, flush=True)
        for backbone in size["backbones"]:
            for method in args.methods:
                for option_name in args.options:
                    options = OPTION_SETS[option_name]
                    row = {"backbone": backbone, "method": method, "options": option_name}
                    row |= _child("compute", [method, backbone, args.size, options, args.device])
                    if not args.no_e2e and "error" not in row and option_name == "plain":
                        row |= _child("e2e", [method, backbone, args.size, options, args.device, data, args.workers])
                    rows.append(row)
                    print(row, flush=True)
    _write(args, name, size, rows, loader)


def _write(args, name: str, size: dict, rows: list[dict], loader: dict) -> None:
    from training import save_results  # benchmarks/training.py, next to this script

    plain = {(r["backbone"], r["method"]): r for r in rows if r["options"] == "plain" and "error" not in r}
    simclr = {r["backbone"]: r for r in rows if r["options"] == "plain" and r["method"] == "simclr" and "error" not in r}
    lines = [
        f"Device: **{name}** (`--device {args.device} --size {args.size}`): {size['videos']} videos × ρ clips of "
        f"{size['frames']}×{size['size']}², AdamW, amp {'auto (bf16)' if args.device.startswith('cuda') else 'off'}; "
        f"end to end: {size['epochs']} epochs on {size['train_videos']} synthetic videos, {args.workers} loader workers.",
        "",
        "| backbone | method | options | s/step | clips/s | × plain | peak MiB | × simclr mem | first step s "
        "| e2e clips/s | e2e / compute |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backbone']} | {r['method']} | {r['options']} | failed: {r['error']} | | | | | | | |")
            continue
        base, reference = plain.get((r["backbone"], r["method"])), simclr.get(r["backbone"])
        speed = f"{base['step_s'] / r['step_s']:.2f}" if base else "–"
        memory = f"{r['peak_mib'] / reference['peak_mib']:.2f}" if reference and reference["peak_mib"] > 0 else "–"
        e2e = f"{r['e2e_clips_per_s']:.1f}" if "e2e_clips_per_s" in r else "–"
        ratio = f"{r['e2e_clips_per_s'] / r['clips_per_s']:.2f}" if "e2e_clips_per_s" in r else "–"
        lines.append(
            f"| {r['backbone']} | {r['method']} | {r['options']} | {r['step_s']:.3f} | {r['clips_per_s']:.1f} | {speed} "
            f"| {r['peak_mib']:.0f} | {memory} | {r['first_step_s']:.2f} | {e2e} | {ratio} |"
        )
    lines += ["", f"Loader alone ({loader.get('workers')} workers): {loader.get('loader_clips_per_s', float('nan')):.1f} clips/s."]
    save_results(f"gpu-{args.device.split(':')[0]}-{args.size}-{_slug(name)}", lines, {"device": name, "rows": rows, "loader": loader})


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        kind, arguments = sys.argv[2], json.loads(sys.argv[3])
        measure = {"compute": compute_only, "e2e": end_to_end, "loader": loader_alone}[kind]
        print(json.dumps(measure(*arguments)))
    else:
        main()
