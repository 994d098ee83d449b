"""`vdiag demo` end to end at a tiny size: every run trained, every card row filled, re-runs reuse."""

import json
from pathlib import Path

from test_pretrain import run_cli

from vdiag.demo import DEMO_RUNS
from vdiag.report.card import CARD

TINY = ["--num-train", "16", "--epochs", "1", "--clips", "1"]


def test_demo_trains_every_run_and_fills_the_report(tmp_path):
    out = tmp_path / "demo"
    first = run_cli("demo", "--out", out, *TINY)
    summary = json.loads((out / "demo.json").read_text())
    assert [run["name"] for run in summary["details"]["runs"]] == [run.name for run in DEMO_RUNS]
    assert {run["method"] for run in summary["details"]["runs"]} >= {
        "simclr",
        "vididi-simclr",
        "dclr",
        "concepts",
        "bolddi-simclr",
        "supervised",
    }
    # the benchmark's data for the self-supervised runs, its unconfounded twin for the references
    manifest = json.loads((Path(summary["data"]) / "manifest.json").read_text())
    twin = json.loads((Path(summary["details"]["twin"]) / "manifest.json").read_text())
    assert manifest["parameters"]["benchmark"] == twin["parameters"]["benchmark"] == "static-shortcut"
    assert manifest["parameters"]["correlation"] == 0.95 and twin["parameters"]["correlation"] == 0.0
    assert {run["name"] for run in summary["details"]["runs"] if run["unconfounded"]} == {"static-reference", "dynamic-reference"}
    metrics = summary["metrics"]
    for index in range(len(DEMO_RUNS)):  # every metric of the card, for every checkpoint
        for diagnostic, name, *_ in CARD:
            assert f"{index}.{diagnostic}.{name}" in metrics, (index, diagnostic, name)
    # the static reference is a per-frame network: blind to frame order by construction
    static = [run["name"] for run in summary["details"]["runs"]].index("static-reference")
    assert abs(metrics[f"{static}.static-bias.sim_shuffled"] - 1.0) < 1e-4
    html = (out / "report" / "report.html").read_text()
    assert html.count("<img ") == len(DEMO_RUNS) + 1  # one eigenvalue plot per run and the t-SNE
    assert "report.html" in first.stdout

    stamps = {run.name: (out / "runs" / run.name / "final.pt").stat().st_mtime_ns for run in DEMO_RUNS}
    again = run_cli("demo", "--out", out, *TINY)
    assert again.stderr.count("reusing") == len(DEMO_RUNS)
    assert stamps == {run.name: (out / "runs" / run.name / "final.pt").stat().st_mtime_ns for run in DEMO_RUNS}
    assert json.loads((out / "demo.json").read_text())["metrics"] == metrics  # same checkpoints, cached features
