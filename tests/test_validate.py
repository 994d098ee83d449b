"""`vdiag validate --smoke`: the validity table, diagnostic × known-answer model, from the CLI.

At the smoke size the two supervised models barely train, so only the cells whose answer follows
from the construction alone are asserted here; tests/test_diagnostics.py checks the trained ones at a
size where they learn."""

from __future__ import annotations

import json

from test_pretrain import run_cli

from vdiag.diagnostics.validity import MODELS, ROWS


def test_validate_smoke_table(tmp_path):
    proc = run_cli("validate", "--smoke", "--out", str(tmp_path), "--json", check=False)
    result = json.loads(proc.stdout)
    rows = result["details"]["rows"]
    assert proc.returncode == (1 if result["metrics"]["failed"] else 0)
    assert len(rows) == len(ROWS) * len(MODELS) and result["details"]["models"] == list(MODELS)
    cell = {(r["row"], r["model"]): r for r in rows}
    for row, *_ in ROWS:  # a collapsed model gets no reading from any diagnostic, and that passes
        assert cell[(row, "collapsed")]["measured"] == "refused" and cell[(row, "collapsed")]["pass"] is True
    # by construction: a first-frame-only model cannot tell a static clip from the real one,
    # a per-frame 2-D model cannot see frame order
    assert cell[("static-bias: static_ratio (label)", "first-frame-only")]["pass"] is True
    assert cell[("static-bias: sim_shuffled", "per-frame 2-D")]["measured"] > 0.999
    assert abs(cell[("shuffle: acc (chance 0.5)", "per-frame 2-D")]["measured"] - 0.5) <= 0.05
    assert all(r["expected"] is None for r in rows if r["pass"] is None)
    markdown = (tmp_path / "validity.md").read_text()
    assert markdown.count("\n| ") == len(ROWS) + 1 and "24 videos per split" in markdown
