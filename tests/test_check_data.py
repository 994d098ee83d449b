"""`vdiag check-data`: every kind of bad file is found and said, and the frame-index cache is built."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from video_kinds import coded_frames, ffmpeg_exe, make_kind, write_pyav

from vdiag.data import frameindex
from vdiag.data.check import check_data
from vdiag.data.decode import decord_available


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two classes: a clean H.264 file, a B-frame AVI, a frozen file, a corrupt file, and (with an
    ffmpeg binary) an edit-list trim and a rotated file."""
    root = tmp_path_factory.mktemp("check") / "data"
    make_kind("h264-mp4", root / "tmp" / "a")[0].rename(_target(root / "walk" / "clean.mp4"))
    make_kind("mpeg4-avi-bframes", root / "tmp" / "b")[0].rename(_target(root / "walk" / "xvid.avi"))
    frozen = np.repeat(coded_frames(6), 5, axis=0)  # every frame shown 5 times: 24 repeats of 30
    write_pyav(_target(root / "run" / "frozen.mp4"), frozen, "libx264", options={"qp": "0"})
    _target(root / "run" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 400)
    if ffmpeg_exe() is not None:
        make_kind("editlist-trim", root / "tmp" / "c")[0].rename(_target(root / "run" / "trim.mp4"))
        make_kind("rotation", root / "tmp" / "d")[0].rename(_target(root / "walk" / "phone.mp4"))
    _remove(root / "tmp")
    return root


def _target(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _remove(folder):
    import shutil

    shutil.rmtree(folder)


def _by_name(result):
    return {os.path.basename(row["path"]): row for row in result.details["files"]}


def test_each_kind_of_problem_is_found(dataset):
    result = check_data(dataset, max_problems=0)
    rows = _by_name(result)
    assert rows["clean.mp4"]["problems"] == [] and rows["clean.mp4"]["frames"] == 60
    assert rows["corrupt.mp4"]["kinds"] == ["unreadable"]
    assert rows["frozen.mp4"]["kinds"] == ["frozen"] and rows["frozen.mp4"]["duplicate_frames"] == 24
    assert rows["frozen.mp4"]["longest_duplicate_run"] == 5
    if decord_available():
        assert rows["clean.mp4"]["decoder"] == "decord"
        assert rows["xvid.avi"]["decoder"] == "pyav" and any("decord not used" in n for n in rows["xvid.avi"]["notes"])
    expected_problems = 2
    if ffmpeg_exe() is not None:
        trim = rows["trim.mp4"]
        assert trim["kinds"] == ["count_mismatch"] and trim["frames"] < trim["metadata_frames"]
        assert rows["phone.mp4"]["rotation"] == 90 and rows["phone.mp4"]["size"] == "32x64"
        assert rows["phone.mp4"]["problems"] == []
        expected_problems += 1
    assert result.metrics["files_with_problems"] == expected_problems
    assert result.metrics["exceeded"] == 1
    assert check_data(dataset, max_problems=expected_problems).metrics["exceeded"] == 0


def test_parallel_scan_gives_the_same_reports(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("VDIAG_CACHE_DIR", str(tmp_path / "cache"))
    frameindex.forget()
    parallel = check_data(dataset, workers=2)
    serial = check_data(dataset)  # from the cache the workers wrote
    assert parallel.details["files"] == serial.details["files"]
    assert frameindex.cached_index(dataset / "walk" / "clean.mp4") is not None


def test_the_scan_builds_the_frame_index_cache(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("VDIAG_CACHE_DIR", str(tmp_path / "cache"))
    frameindex.forget()
    check_data(dataset)
    clean = dataset / "walk" / "clean.mp4"
    assert frameindex.cached_index(clean).num_frames == 60
    frameindex.forget()
    assert frameindex.cached_index(clean) is not None  # from the cache file, not the memo


def test_cli_table_json_and_exit_code(dataset, tmp_path):
    env = {**os.environ, "VDIAG_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "vdiag", *args], capture_output=True, text=True, env=env, timeout=300)

    table = run("check-data", str(dataset))
    assert table.returncode == 1
    assert "corrupt.mp4" in table.stdout and "unreadable" in table.stdout and "> --max-problems 0" in table.stdout
    as_json = run("check-data", str(dataset), "--json", "--max-problems", "10")
    assert as_json.returncode == 0
    payload = json.loads(as_json.stdout)
    assert payload["command"] == "check-data" and payload["metrics"]["unreadable"] == 1
    assert run("check-data", str(tmp_path / "absent")).returncode == 2
    assert "vdiag check-data" in run("doctor").stdout
