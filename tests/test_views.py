import pytest
import torch

from vdiag.data.views import (
    SpatialAugment,
    eval_view,
    frame_difference,
    normalize,
    random_permutation,
    reversed_clip,
    shuffled_clip,
    static_clip,
    temporal_derivative,
    trim,
)
from vdiag.errors import VdiagError


def clip_uint8(frames=8, size=24, seed=0):
    return torch.randint(0, 256, (3, frames, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_static_clip_has_zero_frame_differences():
    clip = torch.rand(3, 8, 16, 16)
    for frame in ("first", "middle", "random"):
        static = static_clip(clip, frame, torch.Generator().manual_seed(1))
        assert torch.count_nonzero(frame_difference(static)) == 0
    assert torch.equal(static_clip(clip, "first")[:, 5], clip[:, 0])
    assert torch.equal(static_clip(clip, "middle")[:, 0], clip[:, 4])


def test_static_clip_random_picks_one_frame_per_clip_in_a_batch():
    batch = torch.arange(4 * 8, dtype=torch.float32).view(4, 1, 8, 1, 1).expand(4, 3, 8, 2, 2).contiguous()
    static = static_clip(batch, "random", torch.Generator().manual_seed(0))
    assert static.shape == batch.shape
    for b in range(4):
        value = static[b, 0, 0, 0, 0]
        assert torch.all(static[b] == value)
        assert 8 * b <= value < 8 * (b + 1)  # a frame of its own clip


@pytest.mark.parametrize("length", [2, 3, 8])
def test_shuffled_clip_is_a_permutation_and_never_the_identity(length):
    clip = torch.arange(length, dtype=torch.float32).view(1, length, 1, 1).expand(3, length, 4, 4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        order = shuffled_clip(clip, generator)[0, :, 0, 0]
        assert sorted(order.tolist()) == list(range(length))
        assert order.tolist() != list(range(length))


def test_random_permutation_needs_two_frames():
    with pytest.raises(VdiagError):
        random_permutation(1)


def test_reversed_clip():
    clip = torch.rand(2, 3, 5, 4, 4)
    assert torch.equal(reversed_clip(clip)[:, :, 0], clip[:, :, 4])
    assert torch.equal(reversed_clip(reversed_clip(clip)), clip)


def test_derivatives_of_a_linear_in_time_clip():
    t = torch.arange(10, dtype=torch.float32).view(1, 10, 1, 1)
    slope = torch.rand(3, 1, 6, 6)
    clip = 2.0 + slope * t  # V(n) = a + b·n
    first = temporal_derivative(clip, 1)
    second = temporal_derivative(clip, 2)
    assert first.shape[1] == 9 and second.shape[1] == 8
    assert torch.allclose(first, slope.expand_as(first), atol=1e-5)  # Eq. 3: constant b
    assert torch.allclose(second, torch.zeros_like(second), atol=1e-5)  # Eq. 4: zero


def test_derivative_of_a_quadratic_clip_is_its_second_difference():
    t = torch.arange(6, dtype=torch.float32).view(1, 6, 1, 1)
    clip = (t**2).expand(3, 6, 2, 2)
    assert torch.allclose(temporal_derivative(clip, 2), torch.full((3, 4, 2, 2), 2.0))


def test_derivative_with_length_uses_the_extra_frames_without_wrap_around():
    clip = torch.arange(10, dtype=torch.float32).view(1, 10, 1, 1).expand(3, 10, 2, 2)  # 8 frames + 2 extra
    first = temporal_derivative(clip, 1, length=8)
    assert first.shape[1] == 8 and torch.all(first == 1)  # no (last − first) wrap term anywhere
    assert trim(clip, 8).shape[1] == 8
    with pytest.raises(VdiagError, match="extra_frames"):
        temporal_derivative(clip, 2, length=9)


def test_frame_difference_matches_dclr_eq4_on_a_batch():
    clip = torch.rand(2, 3, 9, 5, 5)
    assert torch.allclose(frame_difference(clip), clip[:, :, 1:] - clip[:, :, :-1])


def test_augment_is_temporally_consistent():
    """The same crop, flip and colour change on every frame: a static clip stays static."""
    static = static_clip(clip_uint8(), "first")
    for seed in range(10):
        view = SpatialAugment(size=16)(static, torch.Generator().manual_seed(seed))
        assert view.shape == (3, 8, 16, 16) and view.dtype == torch.float32
        assert torch.count_nonzero(frame_difference(view)) == 0


def test_augment_is_a_pure_function_of_clip_and_generator():
    clip = clip_uint8()
    augment = SpatialAugment(size=16)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = augment(clip, torch.Generator().manual_seed(5))
    b = augment(clip, torch.Generator().manual_seed(5))
    c = augment(clip, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.rand(1), before)  # the global RNG was not consumed


def test_augment_varies_across_clips_of_a_batch():
    clip = clip_uint8()
    generator = torch.Generator().manual_seed(0)
    views = [SpatialAugment(size=16)(clip, generator) for _ in range(4)]
    assert len({round(float(v.sum()), 3) for v in views}) == 4


def test_eval_view_and_normalize():
    clip = clip_uint8(size=32)
    view = eval_view(clip, 24)
    assert view.shape == (3, 8, 24, 24) and 0 <= view.min() and view.max() <= 1
    normal = normalize(torch.full((2, 3, 4, 2, 2), 0.5), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert torch.count_nonzero(normal) == 0
