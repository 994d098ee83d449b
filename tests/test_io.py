"""Crash-safe output helpers of vdiag.io."""

import numpy as np
import pytest

from vdiag.io import save_npz


def test_save_npz_round_trips_under_the_name_given(tmp_path):
    path = tmp_path / "sub" / "arrays.data"  # no .npz suffix: numpy must not add one
    x, names = np.arange(12, dtype=np.float32).reshape(3, 4), np.asarray(["a", "bb"])
    assert save_npz(path, embeddings=x, names=names) == path
    with np.load(path, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["embeddings", "names"]
        assert np.array_equal(saved["embeddings"], x) and saved["embeddings"].dtype == np.float32
        assert saved["names"].tolist() == ["a", "bb"]
    assert [p.name for p in path.parent.iterdir()] == ["arrays.data"]  # no temporary left behind


def test_save_npz_failing_midway_keeps_the_old_file(tmp_path):
    class Unwritable:
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("cannot convert")

    path = tmp_path / "arrays.npz"
    save_npz(path, a=np.ones(2))
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        save_npz(path, a=np.zeros(3), b=Unwritable())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["arrays.npz"]


def test_folder_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys

    from vdiag.errors import VdiagError
    from vdiag.io import LOCK_NAME, folder_lock

    lock = tmp_path / "run" / LOCK_NAME
    lock.parent.mkdir()
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))  # a live process
    with pytest.raises(VdiagError, match=rf"in use by another vdiag \(pid {os.getppid()} "):
        with folder_lock(lock.parent):
            pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with folder_lock(lock.parent) as held:
        assert json.loads(held.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": 1, "host": "another-machine"}))  # cannot be checked from here: refused
    with pytest.raises(VdiagError, match="another-machine"):
        with folder_lock(lock.parent):
            pass


def test_remove_stale_temporaries_removes_only_atomic_leftovers(tmp_path):
    from vdiag.io import remove_stale_temporaries

    (tmp_path / ".last.pt.x1.tmp").write_bytes(b"half")
    (tmp_path / ".report.abc.tmp").mkdir()
    (tmp_path / "last.pt").write_bytes(b"whole")
    (tmp_path / "notes.tmp").write_text("the user's")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]
