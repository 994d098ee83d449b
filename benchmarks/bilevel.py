"""Bi-level methods (BOLD-DI, BOD-VCL) against their base method: step time and peak memory.

Every configuration runs in its own process on the same batch (8 videos × ρ = 2 clips of 8×64×64)
and the same backbone (`tiny` with keep_temporal, which the Koopman methods need; the base method
gets it too, so the ratio is the bi-level overhead only). Step time: median of 3 optimiser steps
after one warm-up. Peak memory: the process's peak resident set size minus its size after building
the model and batch (CPU; on a GPU one would read torch.cuda.max_memory_allocated).

BOLD-DI Table 8 reports AID-FD at 1.18× the time and 1.15× the memory of v-SimCLR (V100, batch 3);
Table 9: 1 / 5 / 10 inner steps at 2.6 / 4.7 / 7.3 s per iteration.

Run: `.venv/bin/python benchmarks/bilevel.py` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = [
    ("simclr", {}),
    ("bolddi-simclr", {"inner_steps": 1}),
    ("bolddi-simclr", {"inner_steps": 1, "hvp": "forward"}),
    ("bolddi-simclr", {"inner_steps": 1, "hypergradient": "first-order"}),
    ("bolddi-simclr", {"inner_steps": 1, "hypergradient": "itd"}),
    ("bolddi-simclr", {"inner_steps": 5}),
    ("bolddi-simclr", {"inner_steps": 5, "hvp": "forward"}),
    ("bolddi-simclr", {"inner_steps": 10}),
    ("bolddi-simclr", {"single_level": True}),
    ("bodvcl-simclr", {"inner_steps": 1}),
    ("bodvcl-simclr", {"inner_steps": 5}),
    ("bodvcl-simclr", {"inner_steps": 10}),
    ("moco", {}),
    ("bolddi-moco", {"inner_steps": 1}),
    ("bodvcl-moco", {"inner_steps": 1}),
    ("byol", {}),
    ("bolddi-byol", {"inner_steps": 1}),
    ("bodvcl-byol", {"inner_steps": 1}),
    ("swav", {}),
    ("bolddi-swav", {"inner_steps": 1}),
]
BASE = {"simclr": "simclr", "moco": "moco", "byol": "byol", "swav": "swav"}


def _resident_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def measure(name: str, options: dict) -> dict:
    """One configuration, in this process."""
    import torch
    from training import method_step  # benchmarks/training.py, next to this script

    from vdiag.console import set_quiet
    from vdiag.methods import build_model
    from vdiag.train.config import resolve_config
    from vdiag.train.optim import build_optimizer

    set_quiet(True)
    torch.set_num_threads(2)
    config = resolve_config(name, "cpu", options={"backbone": {"keep_temporal": True}})
    config["method_args"].update(options)
    torch.manual_seed(0)
    method = build_model(config)
    method.start_epoch(0)
    batch = {"clips": torch.randn(8, 2, 3, 8, 64, 64)}
    optimizer = build_optimizer(method, "adamw", 1e-4, weight_decay=1e-6)
    before = _resident_kib()

    step = method_step(method, optimizer, batch)
    step()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": name, "options": options, "step_s": statistics.median(times), "peak_mib": (peak - before) / 1024}


def main() -> None:
    rows = []
    for name, options in CONFIGS:
        out = subprocess.run([sys.executable, __file__, name, json.dumps(options)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    from training import save_results  # benchmarks/training.py, next to this script

    base = {r["method"]: r for r in rows if r["method"] in BASE}
    lines = [
        "Bi-level step vs its base method, same batch (8 videos × 2 clips, 8×64×64), tiny backbone with keep_temporal, AdamW, 2 CPU cores",
        "",
        "| method | options | s/step | × base time | peak MiB above model | × base memory |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        reference = base[r["method"].split("-")[-1]]
        options = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "–"
        lines.append(
            f"| {r['method']} | {options} | {r['step_s']:.2f} | {r['step_s'] / reference['step_s']:.2f} "
            f"| {r['peak_mib']:.0f} | {r['peak_mib'] / reference['peak_mib']:.2f} |"
        )
    lines += [
        "",
        "BOLD-DI Table 8: AID-FD 1.18× time, 1.15× memory of v-SimCLR; Table 9: 1 / 5 / 10 inner steps at",
        "2.6 / 4.7 / 7.3 s per iteration (1.8× for 5 steps). Here each inner step adds three forward-backward",
        "passes (inner gradient and two finite differences), so k steps cost about 1 + 3k passes; hvp=forward",
        "reuses the inner gradient (one-sided difference): 1 + 2k passes.",
    ]
    save_results("bilevel", lines, rows)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(measure(sys.argv[1], json.loads(sys.argv[2]))))
    else:
        main()
