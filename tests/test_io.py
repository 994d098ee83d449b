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
