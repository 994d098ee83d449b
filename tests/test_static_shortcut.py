"""The static-shortcut benchmark: its dataset setting, its training preset, and the study recipe at --smoke size."""

import json
import runpy
import sys
from pathlib import Path

from vdiag.cli.main import main
from vdiag.data.synthetic import BENCHMARKS, SynthConfig
from vdiag.train.config import resolve_config

COMMANDS = Path(__file__).resolve().parent.parent / "commands"


def vdiag(capsys, *args):
    """`vdiag ARGS` in this process: (exit status, stdout + stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_benchmark_parameters_land_in_the_manifest_and_options_still_apply(tmp_path, capsys):
    out = tmp_path / "shortcut"
    options = ["--benchmark", "static-shortcut", "--num-train", "6", "--num-val", "2", "--num-test", "2", "--workers", "1"]
    code, text = vdiag(capsys, "--seed", "5", "synth-dataset", *options, "--out", str(out), "--json")
    assert code == 0, text
    parameters = json.loads((out / "manifest.json").read_text())["parameters"]
    setting = BENCHMARKS["static-shortcut"]["data"]
    for key, value in setting.items():
        if not key.startswith("num_"):
            assert parameters[key] == value, key
    assert parameters["benchmark"] == "static-shortcut" and parameters["seed"] == 5
    assert (parameters["num_train"], parameters["num_val"], parameters["num_test"]) == (6, 2, 2)  # the options given win
    # every parameter the benchmark does not name keeps the generator's default
    defaults = vars(SynthConfig())
    assert all(
        parameters[key] == defaults[key]
        for key in defaults
        if key not in setting and key not in ("seed", "num_train", "num_val", "num_test")
    )


def test_bad_knob_values_are_one_line_errors(tmp_path, capsys):
    for option, value, words in (("--radius", "0.1", "MIN,MAX"), ("--texture", "1.5", "--texture"), ("--speed", "0", "--speed")):
        code, text = vdiag(capsys, "synth-dataset", option, value, "--out", str(tmp_path / "x"))
        assert code != 0 and words in text and "Traceback" not in text, text
    assert not (tmp_path / "x").exists()


def test_the_preset_is_cpu_with_mild_augmentation_at_the_benchmarks_clip_shape():
    mild, cpu = resolve_config("simclr", "static-shortcut"), resolve_config("simclr", "cpu")
    assert mild["augment"] == {**cpu["augment"], "crop_scale": [0.7, 1.0], "grayscale_p": 0.0}
    assert mild["data"] == {**cpu["data"], "size": BENCHMARKS["static-shortcut"]["data"]["size"], "stride": 1}
    assert mild["train"] == {**cpu["train"], "epochs": BENCHMARKS["static-shortcut"]["epochs"]}
    assert mild["method_args"] == cpu["method_args"] and mild["backbone"] == cpu["backbone"]
    assert resolve_config("dclr", "static-shortcut")["method_args"] == resolve_config("dclr", "cpu")["method_args"]


def test_recipe_smoke_writes_the_tables_and_the_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("VDIAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", [str(COMMANDS / "static_shortcut.py"), "--smoke", "--out", str(tmp_path / "out")])
    with _no_exit():
        runpy.run_path(str(COMMANDS / "static_shortcut.py"), run_name="__main__")
    record = json.loads((tmp_path / "out" / "static_shortcut_augmentation.json").read_text())
    assert record["size"] == "smoke" and len(record["rows"]) == 2 * 3  # two presets × (v-SimCLR, two references)
    assert all(len(row["values"]) == len(record["columns"]) for row in record["rows"])
    scores = [float(row["values"][0]) for row in record["rows"]]
    assert all(-1.5 <= s <= 1.0 for s in scores)
    # the references are trained once per dataset: the second preset's rows repeat them exactly
    references = [row["values"] for row in record["rows"] if "reference" in row["run"]]
    assert references[:2] == references[2:]
    assert sum(" pretrain " in c for c in record["commands"]) == 4 and any("--preset cpu " in c for c in record["commands"])
    curves = json.loads((tmp_path / "out" / "static_shortcut_curves.json").read_text())
    assert [p["value"] for p in curves["axes"]["augmentation"]["curves"]["v-SimCLR"]] == ["mild", "strong (cpu)"]
    assert (tmp_path / "out" / "static_shortcut.png").stat().st_size > 5000


class _no_exit:
    """The recipe ends without sys.exit on success; a SystemExit is a failure with its status."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is SystemExit:
            raise AssertionError(f"the recipe exited with status {value.code}")
        return False


def test_a_dataset_made_before_the_knobs_existed_is_still_reused(tmp_path):
    from vdiag.data.synthetic import KNOB_DEFAULTS, default_dataset_dir, generate_dataset

    config = SynthConfig(size=32, frames=4, num_train=2, num_val=1, num_test=1)
    generate_dataset(config, tmp_path / "old", workers=1)
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    for key in KNOB_DEFAULTS:  # what generator version 2 wrote before the knobs were added
        del manifest["parameters"][key]
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))
    assert generate_dataset(config, tmp_path / "old", workers=1)["reused"] is True
    # and its cache folder name did not change: the knobs at their defaults are not part of it
    assert default_dataset_dir(SynthConfig(seed=1)).name == "synth-ec933a9c44"  # as before the knobs
