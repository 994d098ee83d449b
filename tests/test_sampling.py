import numpy as np
import pytest
import torch

from vdiag.data.sampling import ClipSpec, random_starts, uniform_starts
from vdiag.errors import VdiagError


def test_span_counts_stride_and_extra_frames():
    spec = ClipSpec(num_frames=8, stride=4, extra_frames=2)
    assert spec.total_frames == 10
    assert spec.span == 37  # (10 - 1) * 4 + 1
    assert list(spec.indices(5, 100)) == [5 + 4 * k for k in range(10)]


def test_random_starts_stay_inside_and_vary():
    spec = ClipSpec(num_frames=8, stride=2)
    generator = torch.Generator().manual_seed(0)
    starts = [s for _ in range(200) for s in random_starts(50, spec, 4, generator)]
    assert min(starts) == 0 and max(starts) == 50 - spec.span
    assert len(set(starts)) > 20


def test_random_starts_are_reproducible():
    spec = ClipSpec(8, 2)
    a = random_starts(100, spec, 4, torch.Generator().manual_seed(7))
    b = random_starts(100, spec, 4, torch.Generator().manual_seed(7))
    assert a == b


def test_uniform_starts_cover_the_video_evenly():
    spec = ClipSpec(num_frames=8, stride=1)
    starts = uniform_starts(108, spec, 10)
    assert starts[0] == 0 and starts[-1] == 100
    assert np.allclose(np.diff(starts), 100 / 9, atol=1)
    assert uniform_starts(108, spec, 1) == [50]


def test_short_video_pad_repeats_the_last_frame():
    spec = ClipSpec(num_frames=8, stride=2, short_video="pad")
    assert random_starts(5, spec, 3, torch.Generator()) == [0, 0, 0]
    assert list(spec.indices(0, 5)) == [0, 2, 4, 4, 4, 4, 4, 4]


def test_short_video_loop_wraps_around():
    spec = ClipSpec(num_frames=8, stride=2, short_video="loop")
    assert list(spec.indices(0, 5)) == [0, 2, 4, 1, 3, 0, 2, 4]


@pytest.mark.parametrize("kwargs", [{"num_frames": 0}, {"stride": 0}, {"extra_frames": -1}, {"short_video": "crash"}])
def test_bad_specs_are_user_errors(kwargs):
    with pytest.raises(VdiagError):
        ClipSpec(**kwargs)
