"""Clip sampling as the papers do it.

A clip is L frames taken every δ frames (BOLD-DI §3.1: "randomly samples video clips with length
L and a stride of δ"). Training draws ρ clips per video at independent random start times
(BOLD-DI §5.1, ρ = 2 or 4); evaluation spreads N clips uniformly over the video (N = 10 in the
retrieval and recognition protocols, ViDiDi App. B.4, DCLR §4.1).

`extra_frames` appends frames after the clip at the same stride, so that temporal derivatives of
order k (ViDiDi Eq. 3–4) and frame differences (DCLR Eq. 4, which takes T + 1 frames) can be taken
without wrapping the last frame onto the first.

Short videos. When a video has fewer frames than the clip spans, the `short_video` policy decides:
- "pad" (default, as SlowFast's sampler does): indices past the end repeat the last frame;
- "loop": indices wrap around to the start of the video.
Neither raises: a short video never crashes a run, and neither is silent: `ClipSpec.padded` tells
which clips were filled, the dataset marks them (`sample["padded"]`) and `FailureTracker` counts
them (`padded_clips`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vdiag.errors import VdiagError

SHORT_VIDEO_POLICIES = ("pad", "loop")


@dataclass(frozen=True)
class ClipSpec:
    """L frames at stride δ, plus `extra_frames` after them (for derivatives).

    `extra_optional`: the extra frames serve an optional view only (the frame-difference view of
    the diagnostics), not the clip itself. Clips are then placed by the clip's own span, so the
    clip's frames are the same whether the extra frames are read or not, and a clip counts as
    padded by its own frames (`padded`); extra frames that run past the video's end are padded and
    told apart (`padded_with_extra`). Otherwise (training a method that takes derivatives) the
    extra frames are part of the clip: placement and padding count them.
    """

    num_frames: int = 8
    stride: int = 1
    extra_frames: int = 0
    short_video: str = "pad"
    extra_optional: bool = False

    def __post_init__(self):
        if self.num_frames < 1:
            raise VdiagError(f"clip length must be at least 1 frame, got {self.num_frames}")
        if self.stride < 1:
            raise VdiagError(f"clip stride must be at least 1, got {self.stride}")
        if self.extra_frames < 0:
            raise VdiagError(f"extra_frames must be >= 0, got {self.extra_frames}")
        if self.short_video not in SHORT_VIDEO_POLICIES:
            raise VdiagError(f"unknown short-video policy {self.short_video!r}; choose one of: {', '.join(SHORT_VIDEO_POLICIES)}")

    @property
    def total_frames(self) -> int:
        """Frames decoded per clip (the clip plus its extra frames)."""
        return self.num_frames + self.extra_frames

    @property
    def span(self) -> int:
        """Frames of the source video that one clip covers, first to last inclusive."""
        return (self.total_frames - 1) * self.stride + 1

    @property
    def placement_span(self) -> int:
        """The span clips are placed by: `span`, or the clip's own frames' when `extra_optional`."""
        frames = self.num_frames if self.extra_optional else self.total_frames
        return (frames - 1) * self.stride + 1

    def indices(self, start: int, video_frames: int) -> np.ndarray:
        """Source-frame indices of the clip that starts at `start`, after the short-video policy."""
        if video_frames < 1:
            raise VdiagError("cannot sample a clip from a video with no frames")
        raw = start + self.stride * np.arange(self.total_frames)
        if self.short_video == "loop":
            return raw % video_frames
        return np.minimum(raw, video_frames - 1)

    def padded(self, start: int, video_frames: int) -> bool:
        """Whether the clip at `start` runs past the video's last frame (the short-video policy fills
        it). With `extra_optional`, only the clip's own frames count (see `padded_with_extra`)."""
        return start + self.placement_span - 1 >= video_frames

    def padded_with_extra(self, start: int, video_frames: int) -> bool:
        """Whether the clip at `start`, its extra frames included, runs past the video's last frame."""
        return start + self.span - 1 >= video_frames


def random_starts(video_frames: int, spec: ClipSpec, num_clips: int, generator: torch.Generator) -> list[int]:
    """ρ independent uniformly random start frames (training)."""
    last_start = max(video_frames - spec.placement_span, 0)
    starts = torch.randint(0, last_start + 1, (num_clips,), generator=generator)
    return [int(s) for s in starts]


def uniform_starts(video_frames: int, spec: ClipSpec, num_clips: int) -> list[int]:
    """N start frames spread evenly from the first possible start to the last (evaluation)."""
    last_start = max(video_frames - spec.placement_span, 0)
    if num_clips == 1:
        return [last_start // 2]
    return [int(round(s)) for s in np.linspace(0, last_start, num_clips)]
