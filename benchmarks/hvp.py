"""AID-FD's finite difference, central vs forward (`method_args.hvp`): step time over SimCLR, in one process.

SimCLR, bolddi-simclr with hvp=central and hvp=forward, for k = 1 and 3 inner steps, each built once and
stepped in turn (alternating, so that load on a shared machine hits every configuration alike); median
of the rounds. Same batch as benchmarks/bilevel.py (8 videos × 2 clips of 8×64×64, tiny + keep_temporal,
AdamW), one intra-op thread. Pass counts: central 1 + 3k, forward 1 + 2k forward-backward passes.

Run: `nice -n 10 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hvp.py [rounds]` (about 10 minutes).
"""

import json
import statistics
import sys
import time

import torch
from training import method_step, save_results  # benchmarks/training.py, next to this script

from vdiag.console import set_quiet
from vdiag.methods import build_model
from vdiag.train.config import resolve_config
from vdiag.train.optim import build_optimizer

set_quiet(True)
torch.set_num_threads(1)
batch = {"clips": torch.randn(8, 2, 3, 8, 64, 64)}
configs = [
    ("simclr", {}),
    ("bolddi-simclr", {"inner_steps": 1}),
    ("bolddi-simclr", {"inner_steps": 1, "hvp": "forward"}),
    ("bolddi-simclr", {"inner_steps": 3}),
    ("bolddi-simclr", {"inner_steps": 3, "hvp": "forward"}),
]
steps = []
for name, options in configs:
    config = resolve_config(name, "cpu", options={"backbone": {"keep_temporal": True}})
    config["method_args"].update(options)
    torch.manual_seed(0)
    method = build_model(config)
    method.start_epoch(0)
    step = method_step(method, build_optimizer(method, "adamw", 1e-4, weight_decay=1e-6), batch)
    step()
    steps.append(step)
times = [[] for _ in configs]
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
    for i, step in enumerate(steps):
        t = time.perf_counter()
        step()
        times[i].append(time.perf_counter() - t)
rows = [{"method": n, "options": o, "step_s": statistics.median(t), "times": t} for (n, o), t in zip(configs, times)]
base = rows[0]["step_s"]
for r in rows:
    r["x_simclr"] = r["step_s"] / base
print(json.dumps(rows))
lines = [
    "AID-FD with central vs forward differences, step time over SimCLR (8 videos × 2 clips, 8×64×64, tiny + keep_temporal, "
    "AdamW, 1 thread; alternating steps, median)",
    "",
    "| method | options | s/step | × simclr | forward / central |",
    "|---|---|---:|---:|---:|",
]
for index, r in enumerate(rows):
    options = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "–"
    ratio = f"{r['step_s'] / rows[index - 1]['step_s']:.2f}" if r["options"].get("hvp") == "forward" else "–"
    lines.append(f"| {r['method']} | {options} | {r['step_s']:.2f} | {r['x_simclr']:.2f} | {ratio} |")
lines += ["", "Passes per step: central 1 + 3k, forward 1 + 2k (k = 1: 0.75; k = 3: 0.70 of central)."]
save_results("hvp", lines, rows)
