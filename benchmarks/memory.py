"""Where a training step's memory goes, per stage, for SimCLR and DCLR at the same batch (issue 21).

Device-independent and exact: bytes of the tensors autograd saves for backward, per stage
(`vdiag.train.memory.SavedTensors`), and the peak of live tensor bytes over a whole optimiser step by
category (`vdiag.train.memory.step_peak_memory`, torch's MemTracker), on CPU in float32 (bf16
autocast halves every activation alike; `--amp` measures it). The bytes grow linearly with the batch,
so two batch sizes give the per-video slope, and the ratio of slopes is the ratio at any large batch
(the step-invariant part, parameters and optimiser state, is the intercept).

Each configuration runs one unmeasured step first (optimiser state allocated, DCLR's queue filled,
search and refinement on: `method_args.warmup_epochs=0`), then the measured step.

Run:
    nice -n 10 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/memory.py                       # tiny, 8×32², batches 2 and 4
    nice -n 10 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/memory.py --backbone r2plus1d_18 --frames 16 --size 112 --batches 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time

# configuration name → (method, train options, method_args)
CONFIGS = {
    "simclr": ("simclr", {}, {}),
    "simclr+ac": ("simclr", {"activation_checkpointing": True}, {}),
    "dclr": ("dclr", {}, {}),
    "dclr+ac": ("dclr", {"activation_checkpointing": True}, {}),
    "dclr-separate": ("dclr", {}, {"passes": "separate"}),
    "dclr-separate+recompute": ("dclr", {}, {"passes": "separate", "recompute_extra_views": "true"}),
}
STAGES = {
    "simclr": ["backbone", "projector", "other"],
    "dclr": ["backbone", "slow encoder", "projector", "search", "other"],
}


def _config(method: str, backbone: str, frames: int, size: int, videos: int, train: dict, method_args: dict, amp: bool):
    from vdiag.train.config import resolve_config

    assignments = [
        f"data.frames={frames}",
        f"data.size={size}",
        f"train.batch_size={videos}",
        f"train.amp={'true' if amp else 'false'}",
        *(f"train.{key}={str(value).lower()}" for key, value in train.items()),
    ]
    if method == "dclr":
        assignments.append("method_args.warmup_epochs=0")
    assignments += [f"method_args.{key}={value}" for key, value in method_args.items()]
    return resolve_config(method, "cpu", options={"backbone": {"name": backbone, "keep_temporal": False}}, assignments=assignments)


def measure(name: str, backbone: str, frames: int, size: int, videos: int, amp: bool = False) -> dict:
    """One configuration at one batch: saved bytes per stage, their live peak, the step's peak by category."""
    import torch

    from vdiag.console import set_quiet
    from vdiag.methods import build_model
    from vdiag.train.memory import SavedTensors, step_peak_memory
    from vdiag.train.optim import build_optimizer
    from vdiag.train.trainer import _apply_backbone_options, _mixed_precision

    set_quiet(True)
    method_name, train, method_args = CONFIGS[name]
    config = _config(method_name, backbone, frames, size, videos, train, method_args, amp)
    torch.manual_seed(0)
    method = build_model(config)
    _apply_backbone_options(method, config["train"])
    method.train()
    method.start_epoch(0)
    positives = config["data"]["positives"]
    clips = torch.randn(videos, positives, 3, frames + method.extra_frames, size, size)
    batch = {"clips": clips, "label": torch.zeros(videos, dtype=torch.long), "size": videos}
    optimizer = build_optimizer(method, "adamw", 1e-4, weight_decay=1e-6)
    autocast, _ = _mixed_precision("cpu", config["train"]["amp"])
    meter = SavedTensors(ignore=[*method.parameters(), *method.buffers()])
    metering = [False]

    def step():  # the trainer's step (vdiag.train.trainer._train_step) on CPU, the forward metered when asked
        optimizer.zero_grad(set_to_none=True)
        with meter if metering[0] else contextlib.nullcontext(), autocast():
            loss = method(batch)["loss"]
        loss.backward()
        optimizer.step()
        method.after_step(0.5)

    step()  # optimiser state, queue
    _label_backbone_passes(meter, method, method_name)
    meter.label_modules({"projector": method.projector})
    if method_name == "dclr":
        meter.label_method(method, "_slow_keys", "slow encoder")
        meter.label_method(method, "_searched", "search")
    metering[0] = True
    started = time.perf_counter()
    peak = step_peak_memory(step, method, optimizer, clips)
    seconds = time.perf_counter() - started
    row = {
        "config": name,
        "backbone": backbone,
        "frames": frames,
        "size": size,
        "videos": videos,
        "clips": videos * positives,
        "amp": amp,
        "saved": meter.bytes_by_stage(),
        "saved_total": meter.total,
        "saved_peak_live": meter.peak_live,
        "peak": peak,
        "seconds": seconds,
    }
    return row


def _label_backbone_passes(meter, method, method_name: str) -> None:
    """Stage names for the trained backbone's passes: DCLR's joint pass, or its s, d, v passes in call order."""
    if method_name != "dclr":
        meter.label_method(method.backbone, "feature_map", "backbone")
        return
    if method.passes == "joint":
        meter.label_method(method.backbone, "feature_map", "backbone [v; s; d]")
        return
    original, names = method.backbone.feature_map, iter(["backbone s", "backbone d", "backbone v"])  # the order of DCLR.forward

    def labelled(*args, **kwargs):
        with meter.stage(next(names)):
            return original(*args, **kwargs)

    method.backbone.feature_map = labelled


def batchnorm_difference(checkpoint: str, batches: int = 3) -> dict:
    """`passes=separate` against the joint pass at the same weights on real training batches.

    For the checkpoint's trained weights (at its last epoch: search and refinement on, its queue)
    and for its untrained initialisation (epoch 0: the warm-up, no search): each loss part, the
    cosine between the two parameter gradients and their norm ratio. No optimiser step is taken;
    from the second batch on, the queue holds each variant's own embeddings.
    """
    import torch
    from torch.utils.data import DataLoader

    from vdiag.checkpoint import load_checkpoint
    from vdiag.console import set_quiet
    from vdiag.data.datasets import collate_clips
    from vdiag.methods import build_model
    from vdiag.train.config import migrate_config
    from vdiag.train.trainer import build_training_dataset, resolve_data

    set_quiet(True)
    state = load_checkpoint(checkpoint)
    config = migrate_config(state["config"])
    config["data"]["workers"] = 0
    last_epoch = state["position"]["epoch"] - 1
    dataset = build_training_dataset(config, resolve_data(config), "auto")
    loader = DataLoader(
        dataset,
        batch_size=config["train"]["batch_size"],
        shuffle=True,
        collate_fn=collate_clips,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    data = [batch for _, batch in zip(range(batches), loader)]
    out = {}
    for weights in ("trained", "initial"):
        results = {}
        for passes in ("joint", "separate"):
            config["method_args"]["passes"] = passes
            torch.manual_seed(config["seed"])
            method = build_model(config)
            if weights == "trained":
                method.load_state_dict(state["model"])
            method.train()
            method.start_epoch(last_epoch if weights == "trained" else 0)
            rows = []
            for batch in data:
                method.zero_grad(set_to_none=True)
                values = method(batch)
                values["loss"].backward()
                gradient = torch.cat([p.grad.flatten() for p in method.parameters() if p.grad is not None])
                rows.append(({k: float(v) for k, v in values.items()}, gradient))
                method.after_step(0.5)
            results[passes] = rows
        per_batch, previous = [], None
        for (joint, g_joint), (separate, g_separate) in zip(results["joint"], results["separate"]):
            per_batch.append(
                {
                    "loss_parts_joint": joint,
                    "loss_parts_separate": separate,
                    "gradient_cosine": float(torch.nn.functional.cosine_similarity(g_joint, g_separate, dim=0)),
                    "gradient_norm_ratio": float(g_separate.norm() / g_joint.norm()),
                    # the scale of batch-to-batch noise: the joint gradient's cosine to the previous batch's
                    "joint_cosine_to_previous_batch": None
                    if previous is None
                    else float(torch.nn.functional.cosine_similarity(g_joint, previous, dim=0)),
                }
            )
            previous = g_joint
        out[weights] = per_batch
    return {"checkpoint": checkpoint, "epoch": last_epoch, "batch_size": config["train"]["batch_size"], "batches": out}


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f}"


def _table(rows: list[dict], batches: list[int]) -> list[str]:
    """Per-stage saved bytes at the largest batch; per-video slopes and ratios to SimCLR."""
    big, small = max(batches), min(batches)
    at = {(r["config"], r["videos"]): r for r in rows}
    configs = list(dict.fromkeys(r["config"] for r in rows))
    lines = [
        f"Saved for backward (exact, MiB) at {big} videos × 2 clips, per stage "
        "(DCLR's joint pass is one pass over [v; s; d], each a third of its rows; `separate` makes three):",
        "",
        "| config | backbone [v; s; d] (one pass) or v | s | d | slow encoder | projector | search | views, pooling, maps, losses "
        "| total saved | peak live saved |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in configs:
        r = at.get((name, big))
        if r is None:
            continue
        saved = r["saved"]
        first = sum(saved.get(stage, 0) for stage in ("backbone", "backbone [v; s; d]", "backbone v"))
        cells = [_mib(first)] + [
            _mib(saved.get(stage, 0)) for stage in ("backbone s", "backbone d", "slow encoder", "projector", "search", "other")
        ]
        lines.append(f"| {name} | {' | '.join(cells)} | {_mib(r['saved_total'])} | {_mib(r['saved_peak_live'])} |")
    lines += [
        "",
        f"Per video (slope between {small} and {big} videos; the ratio at any large batch) and whole-step peak of live tensor bytes "
        "(MemTracker; activations + temporaries at the peak):",
        "",
        "| config | saved MiB/video | × simclr | peak MiB/video | × simclr | peak MiB at "
        f"{big} | of which activations + temporaries | peak during | saved at {small} × {big // small} = at {big}? |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    reference = None
    for name in configs:
        a, b = at.get((name, small)), at.get((name, big))
        if a is None or b is None or big == small:
            continue
        per = big - small
        saved_slope = (b["saved_total"] - a["saved_total"]) / per
        peak_slope = (b["peak"]["total"] - a["peak"]["total"]) / per
        if name == "simclr":
            reference = (saved_slope, peak_slope)
        ratio = (f"{saved_slope / reference[0]:.2f}", f"{peak_slope / reference[1]:.2f}") if reference and reference[0] > 0 else ("–", "–")
        linear = abs(b["saved_total"] - a["saved_total"] * big / small) / max(1, b["saved_total"])
        transient = b["peak"]["activation"] + b["peak"]["temporary"]
        lines.append(
            f"| {name} | {_mib(saved_slope)} | {ratio[0]} | {_mib(peak_slope)} | {ratio[1]} | {_mib(b['peak']['total'])} "
            f"| {_mib(transient)} | {'backward' if b['peak']['gradient'] else 'forward'} "
            f"| {'yes' if linear < 0.01 else f'off by {100 * linear:.1f} %'} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 4], help="videos per step (2 clips each)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CPU)")
    parser.add_argument("--suffix", default="", help="appended to the results file's name")
    parser.add_argument(
        "--bn-difference", metavar="CHECKPOINT", help="only compare passes=separate with the joint pass on a DCLR run's data"
    )
    parser.add_argument("--render", metavar="JSON", help="only rewrite the Markdown of an earlier results file")
    args = parser.parse_args()
    if args.render:
        from pathlib import Path

        stored = json.loads(Path(args.render).read_text())
        text = Path(args.render).with_suffix(".md").read_text().split("\n\n")[0]
        batches = stored["arguments"]["batches"]
        Path(args.render).with_suffix(".md").write_text("\n".join([text, "", *_table(stored["rows"], batches)]) + "\n")
        return
    if args.bn_difference:
        from training import save_results

        result = batchnorm_difference(args.bn_difference)
        lines = [
            f"DCLR `passes=separate` vs the joint pass, same weights and batches ({result['batch_size']} videos, "
            f"{args.bn_difference}, epoch {result['epoch']}):",
            "",
            "| weights | batch | loss joint | loss separate | vs | vd | sd | ac (joint → separate) | gradient cosine | ‖g_sep‖/‖g_joint‖ "
            "| joint: cosine to the previous batch's gradient |",
            "|---|---:|---:|---:|---|---|---|---|---:|---:|---:|",
        ]
        for weights, rows in result["batches"].items():
            for i, r in enumerate(rows):
                j, s_ = r["loss_parts_joint"], r["loss_parts_separate"]
                parts = [f"{j.get(k, float('nan')):.3f} → {s_.get(k, float('nan')):.3f}" for k in ("vs", "vd", "sd", "ac")]
                lines.append(
                    f"| {weights} | {i} | {j['loss']:.4f} | {s_['loss']:.4f} | {' | '.join(parts)} "
                    f"| {r['gradient_cosine']:.3f} | {r['gradient_norm_ratio']:.3f} "
                    f"| {'–' if r['joint_cosine_to_previous_batch'] is None else format(r['joint_cosine_to_previous_batch'], '.3f')} |"
                )
        save_results("memory-dclr-passes-batchnorm", lines, result)
        return

    rows = []
    for name in args.configs:
        for videos in args.batches:
            row = measure(name, args.backbone, args.frames, args.size, videos, args.amp)
            rows.append(row)
            gc.collect()  # the model and its graph go before the next configuration
            print(json.dumps(row), file=sys.stderr, flush=True)
    head = (
        f"{args.backbone}, {args.frames}×{args.size}², {'bf16 autocast' if args.amp else 'float32'}, CPU, batches {args.batches} "
        "videos × 2 clips, AdamW; one step after one warm-up step. Exact byte counts (not timings), independent of the machine's load."
    )
    from training import save_results  # benchmarks/training.py, next to this script

    tag = f"memory-{args.backbone}-{args.frames}x{args.size}-b{'-'.join(map(str, args.batches))}{'-bf16' if args.amp else ''}{args.suffix}"
    save_results(tag, [head, "", *_table(rows, args.batches)], {"arguments": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
