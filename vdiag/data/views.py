"""Views of a clip, as pure functions of a clip tensor (and a `torch.Generator` where random).

Clips are `(C, T, H, W)`; batched clips `(B, C, T, H, W)` work wherever a function says so. Nothing
here reads files. Random views draw their parameters from the generator they are given, so the same
clip and generator state give the same view in any process.

- `SpatialAugment`: temporally consistent spatial augmentation (one set of parameters for every
  frame of a clip) with torchvision.transforms.v2; defaults from ViDiDi App. B.1.
- `static_clip`: one frame repeated (BOLD-DI §3.2 uses the first; DCLR Eq. 3 a random one).
- `shuffled_clip`: frames in a random order that is never the identity.
- `reversed_clip`: frames in reverse order.
- `temporal_derivative`: finite forward differences of order k (ViDiDi Eq. 3–4); order 1 is DCLR's
  frame difference (Eq. 4). A clip of T frames gives T − k frames: sample k extra frames
  (`ClipSpec.extra_frames`) to keep the length, instead of wrapping around.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from vdiag.errors import VdiagError

# Kinetics / ImageNet statistics, the normalisation torchvision's video models were trained with.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STATIC_FRAME_CHOICES = ("first", "middle", "random")


def _time_axis(clip: torch.Tensor) -> int:
    if clip.dim() not in (4, 5):
        raise ValueError(f"expected a clip (C, T, H, W) or batch (B, C, T, H, W), got shape {tuple(clip.shape)}")
    return clip.dim() - 3


def _seed_from(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator))


@dataclass(frozen=True)
class SpatialAugment:
    """Temporally consistent spatial augmentation of one clip (ViDiDi App. B.1 defaults).

    torchvision.transforms.v2 samples one set of parameters per call and applies it to every
    leading index of a `Video` tensor `(T, C, H, W)`, which is exactly "the same crop, flip and
    colour change for every frame of a clip". The v2 transforms draw from torch's global RNG, so
    the call runs inside `torch.random.fork_rng` seeded from the given generator: the view stays
    a pure function of (clip, generator) and the global RNG is left untouched.

    Input: uint8 or float clip `(C, T, H, W)`; output: float32 in [0, 1], `(C, T, size, size)`.

    Example:
        >>> augment = SpatialAugment(size=112)
        >>> view = augment(clip_uint8, torch.Generator().manual_seed(0))
    """

    size: int = 112
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    jitter: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.05)  # brightness, contrast, saturation, hue
    grayscale_p: float = 0.5
    blur_p: float = 0.5
    blur_kernel: int = 3
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def transform(self) -> v2.Compose:
        brightness, contrast, saturation, hue = self.jitter
        return v2.Compose(
            [
                v2.RandomResizedCrop(self.size, scale=self.crop_scale, ratio=self.crop_ratio, antialias=True),
                v2.RandomHorizontalFlip(self.flip_p),
                v2.RandomApply([v2.ColorJitter(brightness, contrast, saturation, hue)], p=self.jitter_p),
                v2.RandomGrayscale(self.grayscale_p),
                v2.RandomApply([v2.GaussianBlur(self.blur_kernel, self.blur_sigma)], p=self.blur_p),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )

    def __call__(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if clip.dim() != 4:
            raise ValueError(f"SpatialAugment takes one clip (C, T, H, W), got shape {tuple(clip.shape)}")
        frames = tv_tensors.Video(clip.permute(1, 0, 2, 3))  # (T, C, H, W)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_from(generator))
            out = self.transform()(frames)
        return out.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()


def resize_short_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is `size`, keeping the aspect ratio. `(C, T, H, W)`."""
    frames = clip.permute(1, 0, 2, 3)
    out = v2.functional.resize(frames, [size], antialias=True)
    return out.permute(1, 0, 2, 3).contiguous()


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """The central `size × size` square of every frame. `(C, T, H, W)` or `(B, C, T, H, W)`.

    Raises:
        VdiagError: the frames are smaller than the crop.
    """
    height, width = clip.shape[-2:]
    if height < size or width < size:
        raise VdiagError(f"frames of {height}×{width} are smaller than the crop {size}×{size}; lower the crop size")
    top, left = (height - size) // 2, (width - size) // 2
    return clip[..., top : top + size, left : left + size]


def eval_view(clip: torch.Tensor, size: int) -> torch.Tensor:
    """The deterministic evaluation view: short side to `size`, centre crop, float in [0, 1]."""
    clip = center_crop(resize_short_side(clip, size), size)
    return to_float(clip)


def to_float(clip: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] → float32 in [0, 1]; float input is returned as float32 unchanged."""
    if clip.dtype == torch.uint8:
        return clip.float().div_(255.0)
    return clip.float()


def normalize(clip: torch.Tensor, mean=KINETICS_MEAN, std=KINETICS_STD) -> torch.Tensor:
    """Per-channel normalisation of a float clip `(C, T, H, W)` or batch `(B, C, T, H, W)`."""
    channel_axis = _time_axis(clip) - 1
    shape = [1] * clip.dim()
    shape[channel_axis] = -1
    mean_t = torch.tensor(mean, dtype=clip.dtype, device=clip.device).view(shape)
    std_t = torch.tensor(std, dtype=clip.dtype, device=clip.device).view(shape)
    return (clip - mean_t) / std_t


def static_clip(clip: torch.Tensor, frame: str = "first", generator: torch.Generator | None = None) -> torch.Tensor:
    """Every frame replaced by one frame of the clip: 'first' (BOLD-DI §3.2), 'middle' or 'random' (DCLR Eq. 3).

    For a batch, 'random' draws one frame per clip.

    Raises:
        VdiagError: an unknown `frame` choice.
    """
    axis = _time_axis(clip)
    length = clip.shape[axis]
    if frame == "first":
        index = torch.zeros(1, dtype=torch.long)
    elif frame == "middle":
        index = torch.full((1,), length // 2, dtype=torch.long)
    elif frame == "random":
        count = clip.shape[0] if clip.dim() == 5 else 1
        index = torch.randint(0, length, (count,), generator=generator)
    else:
        raise VdiagError(f"unknown static frame {frame!r}; choose one of: {', '.join(STATIC_FRAME_CHOICES)}")
    if clip.dim() == 5 and index.numel() > 1:
        picked = clip[torch.arange(clip.shape[0]), :, index.to(clip.device)]  # (B, C, H, W)
        return picked.unsqueeze(axis).expand_as(clip).contiguous()
    picked = clip.index_select(axis, index.to(clip.device))
    return picked.expand_as(clip).contiguous()


def random_permutation(length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random permutation of `range(length)` other than the identity (length ≥ 2).

    Raises:
        VdiagError: `length` < 2 (one frame cannot be shuffled).
    """
    if length < 2:
        raise VdiagError("a clip of one frame cannot be shuffled; use clips of at least 2 frames")
    identity = torch.arange(length)
    while True:  # rejection: the identity has probability 1/length!, at most 1/2
        order = torch.randperm(length, generator=generator)
        if not torch.equal(order, identity):
            return order


def shuffled_clip(clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Frames in a random non-identity order (one order per call, shared by a batch)."""
    axis = _time_axis(clip)
    order = random_permutation(clip.shape[axis], generator)
    return clip.index_select(axis, order.to(clip.device))


def reversed_clip(clip: torch.Tensor) -> torch.Tensor:
    """Frames in reverse order (the arrow-of-time view)."""
    return clip.flip(_time_axis(clip))


def temporal_derivative(clip: torch.Tensor, order: int = 1, length: int | None = None) -> torch.Tensor:
    """Finite forward differences along time (ViDiDi Eq. 3–4; DCLR Eq. 4 for order 1).

        order 1: V(n+1) − V(n)
        order 2: V(n+2) − 2·V(n+1) + V(n)

    A clip of T frames gives T − order frames; `length` keeps the first `length` of them and
    requires T ≥ length + order (sample `extra_frames = order` to keep the clip length). Order 0
    returns the clip (trimmed to `length`). Integer clips are converted to float first.

    Raises:
        VdiagError: the clip has fewer than `length + order` frames.
        ValueError: a negative order.
    """
    if order < 0:
        raise ValueError(f"derivative order must be >= 0, got {order}")
    axis = _time_axis(clip)
    frames = clip.shape[axis]
    if length is not None and frames < length + order:
        raise VdiagError(
            f"a derivative of order {order} over {length} frames needs {length + order} input frames, "
            f"got {frames}; sample the clip with extra_frames={order}"
        )
    if frames <= order:
        raise VdiagError(f"a clip of {frames} frames has no derivative of order {order}")
    if not clip.is_floating_point():
        clip = clip.float()
    out = torch.diff(clip, n=order, dim=axis) if order > 0 else clip
    if length is not None:
        out = out.narrow(axis, 0, length)
    return out


def frame_difference(clip: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """DCLR's frame difference d_t = v_{t+1} − v_t (Eq. 4): the first-order temporal derivative."""
    return temporal_derivative(clip, 1, length)


def decoupled_views(
    clips: torch.Tensor, generator: torch.Generator | None = None, offset: int = 0, total: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of clips sampled with one extra frame, `(B, C, T + 1, H, W)`, split into the inputs of
    DCLR and the concepts method: the clip v (first T frames), its static frame s (one random frame
    of v per clip, repeated; DCLR Eq. 3) and its frame difference d (T frames, Eq. 4).

    The frame indices are drawn for a global batch of `total` clips of which these are rows
    `offset … offset + B`, so that a batch split over processes gets the frames it would get whole.
    """
    length = clips.shape[2] - 1
    video = trim(clips, length)
    count = clips.shape[0]
    index = torch.randint(0, length, (total or count,), generator=generator)[offset : offset + count].to(clips.device)
    static = video[torch.arange(count, device=clips.device), :, index].unsqueeze(2).expand_as(video).contiguous()
    return video, static, frame_difference(clips, length)


def trim(clip: torch.Tensor, length: int) -> torch.Tensor:
    """The first `length` frames (the RGB view of a clip sampled with extra frames)."""
    return clip.narrow(_time_axis(clip), 0, length)
