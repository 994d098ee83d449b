import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's ~/.cache/vdiag from a test."""
    monkeypatch.setenv("VDIAG_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "vdiag-cache"))


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A small synthetic dataset written through the real generator (shared by the session)."""
    from vdiag.data.synthetic import SynthConfig, generate_dataset

    config = SynthConfig(size=32, frames=8, num_train=24, num_val=8, num_test=8, seed=3)
    out = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(config, out, workers=2)
    return out, config


@pytest.fixture
def rng():
    return np.random.default_rng(0)
