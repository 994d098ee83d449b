"""The paper recipes in commands/: each runs end to end at --smoke size and writes its table."""

import json
import runpy
import sys
from pathlib import Path

import pytest

COMMANDS = Path(__file__).resolve().parent.parent / "commands"
RECIPES = {  # script → (tables it writes, rows per table)
    "bolddi_fig2": {"bolddi_fig2": 4},
    "bodvcl_factors": {"bodvcl_factors": 4},
    "bolddi_ablation": {"bolddi_ablation": 5},
    "vididi_tables": {"vididi_table3": 6, "vididi_table6": 9, "vididi_table7": 6},
    "dclr_table4": {"dclr_table4": 10},
    "concepts_table3": {"concepts_table3": 1},
}


def run_recipe(name, *args):
    """`python commands/NAME.py ARGS` in this process; returns the exit status."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [str(COMMANDS / f"{name}.py"), *map(str, args)])
        try:
            runpy.run_path(str(COMMANDS / f"{name}.py"), run_name="__main__")
        except SystemExit as exit:
            return exit.code
    return 0


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Every recipe once at --smoke size: name → its output folder. (Module scope runs before the
    per-test private cache, so it sets its own.)"""
    folders = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VDIAG_CACHE_DIR", str(tmp_path_factory.mktemp("recipe-cache")))
        for name in RECIPES:
            folders[name] = tmp_path_factory.mktemp(name)
            assert run_recipe(name, "--smoke", "--out", folders[name]) == 0, name
    return folders


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_smoke(name, smoke_runs):
    folder = smoke_runs[name]
    for table, rows in RECIPES[name].items():
        record = json.loads((folder / f"{table}.json").read_text())
        assert record["size"] == "smoke" and len(record["rows"]) == rows
        values = [v for row in record["rows"] for v in row["values"]]
        assert all(len(row["values"]) == len(record["columns"]) for row in record["rows"])
        assert all(len(row["values"]) == len(record["paper_columns"]) for row in record["paper"])
        measured = [v for v in values if v is not None]
        assert measured, "every cell is empty"
        assert all(-1 <= v <= 100 for v in measured)
        # the table names the commands that made it, each a real vdiag invocation
        assert any(c.startswith("vdiag ") and " pretrain " in c for c in record["commands"])
        markdown = (folder / f"{table}.md").read_text()
        assert "| run |" in markdown and "```bash" in markdown


def test_recipe_numbers_come_from_the_diagnostics(smoke_runs):
    """The table's cells are the diagnostics' JSON values, in % (not re-derived), one per feature."""
    record = json.loads((smoke_runs["concepts_table3"] / "concepts_table3.json").read_text())
    folder = smoke_runs["concepts_table3"] / "diagnostics" / "synthetic" / "concepts"
    for feature, value in zip(["v", "q_v", "q_v_static", "q_v_dynamic", "F_v", "F_v_static", "F_v_dynamic"], record["rows"][0]["values"]):
        result = json.loads((folder / f"linear-{feature}" / "linear.json").read_text())
        assert result["config"]["feature"] == feature
        assert value == round(100 * result["metrics"]["top1"], 1)


def test_full_size_dry_run_prints_the_paper_commands(tmp_path, capsys):
    code = run_recipe("bolddi_fig2", "--dry-run", "--data", "k400/train.csv", "--out", tmp_path / "fig2")
    assert code == 0
    printed = capsys.readouterr().err
    pretrains = [line for line in printed.splitlines() if " pretrain " in line]
    assert len(pretrains) == 4 and all(
        "--preset paper" in line and "--epochs 200" in line and "--data k400/train.csv" in line for line in pretrains
    )
    assert not (tmp_path / "fig2").exists()


def test_full_size_needs_the_dataset(tmp_path, capsys):
    assert run_recipe("dclr_table4", "--out", tmp_path) == 2
    assert "--data PATH" in capsys.readouterr().err
