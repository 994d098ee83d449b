"""commands/static_shortcut_ablations.py at --smoke size: its tables come from the runs' own JSON, and a
reused run folder is checked against the row's settings."""

import json
import runpy
import statistics
import sys
from pathlib import Path

import pytest

from vdiag.errors import VdiagError

SCRIPT = Path(__file__).resolve().parent.parent / "commands" / "static_shortcut_ablations.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The recipe once at --smoke size: its output folder."""
    out = tmp_path_factory.mktemp("ablations")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VDIAG_CACHE_DIR", str(out / "cache"))
        patch.setattr(sys, "argv", [str(SCRIPT), "--smoke", "--device", "cpu", "--out", str(out)])
        try:
            runpy.run_path(str(SCRIPT), run_name="__main__")
        except SystemExit as exit:
            assert exit.code in (0, None)
    return out


def test_the_table_cells_are_the_probes_values(smoke):
    record = json.loads((smoke / "static_shortcut_ablations.json").read_text())
    assert record["size"] == "smoke" and [row["run"] for row in record["rows"]][0] == "v-SimCLR"
    columns = record["columns"]
    for row in record["rows"]:
        values = dict(zip(columns, row["values"], strict=True))
        seeds = [int(s) for s in values["seeds"].split(",")]
        stem = {"v-SimCLR": "simclr", "concepts (cpu preset)": "concepts"}.get(row["run"], "bolddi-simclr-inner0")
        probes = [json.loads((smoke / "diag" / f"{stem}-s{seed}" / "factors.json").read_text())["metrics"] for seed in seeds]
        trajectories = [p["acc_fg_trajectory"] for p in probes]
        assert values["trajectory per seed"] == ", ".join(f"{t:.3f}" for t in trajectories)
        # one seed: the value itself; several: the mean, then ± the t-interval
        assert values["fg trajectory"].split(" ± ")[0] == f"{statistics.fmean(trajectories):.3f}"
        assert values["dynamic score"].split(" ± ")[0] == f"{statistics.fmean(p['dynamic_score'] for p in probes):.3f}"
        assert (" ± " in values["fg trajectory"]) == (len(seeds) > 1)
        # the table's wall-time column is the mean of what the runs recorded (a copy, not a timing check)
        recorded = [json.loads((smoke / "runs" / f"{stem}-s{seed}" / "pretrain.json").read_text())["metrics"]["seconds"] for seed in seeds]
        assert values["pretrain s"] == round(statistics.fmean(recorded))
    options = {row["run"]: row["values"][0] for row in record["rows"]}
    assert options["BOLD-DI-SimCLR, no inner step"] == "inner_steps=0" and options["v-SimCLR"] == "(preset)"


def test_the_run_folder_holds_the_rows_settings(smoke):
    config = (smoke / "runs" / "bolddi-simclr-inner0-s0" / "config.yaml").read_text()
    assert "inner_steps: 0" in config and "method: bolddi-simclr" in config


def test_loss_terms_and_concept_features_tables(smoke):
    terms = json.loads((smoke / "static_shortcut_ablations_terms.json").read_text())
    names = [row["run"] for row in terms["rows"]]
    # the default runs only (no option rows), each with its own logged terms
    assert "concepts (cpu preset): aln" in names and "v-SimCLR: info_nce" in names
    assert not any(name.startswith("BOLD-DI") for name in names)
    metrics = [json.loads(line) for line in (smoke / "runs" / "concepts-s0" / "metrics.jsonl").read_text().splitlines()]
    epoch = [m for m in metrics if m["type"] == "epoch"][0]
    first = dict(zip(names, (row["values"][0] for row in terms["rows"])))
    assert first["concepts (cpu preset): aln"] == pytest.approx(epoch["aln"], rel=5e-3)
    concepts = json.loads((smoke / "static_shortcut_ablations_concepts.json").read_text())
    for row in concepts["rows"]:
        stem, feature = row["run"].split(": ")
        result = json.loads((smoke / "diag" / f"{stem}-s0" / f"linear-trajectory-{feature}" / "linear.json").read_text())
        assert result["config"]["feature"] == feature and row["values"] == [round(result["metrics"]["top1"], 3)]
        assert result["config"]["target"] == "fg_trajectory"


def test_a_reused_run_with_other_settings_is_refused(smoke):
    module = runpy.run_path(str(SCRIPT))
    folder = smoke / "runs" / "bolddi-simclr-inner0-s0"
    module["check_settings"](folder, "bolddi-simclr", ("inner_steps=0",), 1, 0)  # its own settings pass
    for method, options, epochs, seed in (
        ("bolddi-simclr", ("inner_steps=1",), 1, 0),
        ("simclr", ("inner_steps=0",), 1, 0),
        ("bolddi-simclr", ("inner_steps=0",), 4, 0),
        ("bolddi-simclr", ("inner_steps=0",), 1, 2),
    ):
        with pytest.raises(VdiagError, match="other settings"):
            module["check_settings"](folder, method, options, epochs, seed)
