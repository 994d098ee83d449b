"""`vdiag demo`: the main job, end to end on this machine.

What runs today: the confounded synthetic dataset is generated (or reused from the cache) and its
factor grid is drawn. Pretraining, diagnostics and the report join this as they land.
"""

from __future__ import annotations

from pathlib import Path

from vdiag.console import note
from vdiag.data.synthetic import SynthConfig, generate_dataset, write_preview
from vdiag.results import Result


def run_demo(out: str | Path = "vdiag-demo", data: str | Path | None = None, seed: int = 0, num_train: int = 1000, num_val: int = 500, num_test: int = 500) -> Result:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = SynthConfig(seed=seed, num_train=num_train, num_val=num_val, num_test=num_test)
    note("step 1: the confounded synthetic dataset (train: trajectory follows background colour with p = 0.8)")
    summary = generate_dataset(config, data)
    note("step 2: the factor grid")
    preview = write_preview(config, out / "synthetic-factors.png")
    steps = [
        f"dataset: {'reused' if summary['reused'] else 'generated'} at {summary['out']}",
        f"factor grid: {preview}",
    ]
    result = Result(
        command="demo",
        data=summary["out"],
        metrics={f"num_{k}": v for k, v in summary["counts"].items()},
        figures=[str(preview)],
        config={"out": str(out), "seed": seed},
        details={"steps": steps, "correlation": summary["correlation"]},
    )
    result.write(out / "demo.json")
    return result
