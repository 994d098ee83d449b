"""The CLI contract, through the real entry point in a subprocess."""

import json
import os
import subprocess
import sys

from vdiag import __version__


def vdiag(*args, cache=None):
    env = dict(os.environ)
    env.pop("VDIAG_DEBUG", None)
    if cache:
        env["VDIAG_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, "-m", "vdiag", *args], capture_output=True, text=True, env=env, timeout=300)


def test_version_and_help_list_the_commands():
    assert vdiag("--version").stdout.strip().endswith(__version__)
    help_text = vdiag("--help").stdout
    for command in ("synth-dataset", "doctor", "demo"):
        assert command in help_text
    assert "Examples:" in vdiag("synth-dataset", "--help").stdout


def test_user_error_is_one_line_without_traceback(tmp_path):
    result = vdiag("synth-dataset", "--out", str(tmp_path / "x"), "--size", "33")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: --size must be an even number")
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()


def test_synth_dataset_json_is_exactly_one_object_on_stdout(tmp_path):
    out = tmp_path / "data"
    result = vdiag(
        "--seed",
        "4",
        "synth-dataset",
        "--out",
        str(out),
        "--num-train",
        "6",
        "--num-val",
        "2",
        "--num-test",
        "2",
        "--size",
        "32",
        "--frames",
        "6",
        "--preview",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)  # fails if anything else is on stdout
    assert payload["command"] == "synth-dataset" and payload["data"] == str(out)
    assert payload["metrics"]["num_train"] == 6 and payload["config"]["seed"] == 4
    assert payload["figures"] == [str(out / "preview.png")] and (out / "preview.png").is_file()
    again = vdiag(
        "synth-dataset",
        "--out",
        str(out),
        "--num-train",
        "6",
        "--num-val",
        "2",
        "--num-test",
        "2",
        "--size",
        "32",
        "--frames",
        "6",
        "--seed",
        "4",
    )
    assert again.returncode == 0 and "reused" in again.stdout


def test_doctor_json(tmp_path):
    result = vdiag("doctor", "--json")
    payload = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    assert payload["metrics"]["decoders_working"] >= 1 and payload["metrics"]["problems"] == 0
    names = {check["name"] for check in payload["details"]["checks"]}
    assert {"pyav decoder", "decord decoder", "pytorchvideo.transforms", "CUDA"} <= names
