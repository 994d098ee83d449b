"""`vdiag viz activation`: where a model responds, for a clip, its static frame and its frame difference (DCLR Fig. 3).

The class-agnostic activation map of DCLR Eq. 11, A[t, h, w] = Σ_c |F[c, t, h, w]|, of the last
stage (or `--layer`), min-max normalised per map (§3.3), for three inputs built from one clip of the
video: the clip v, its static clip s (the middle frame repeated) and its frame difference d
(T − 1 frames, no wrap-around). Works for any model: it needs only the feature map. The maps are
upsampled (trilinear) to the input's T × H × W and drawn over the frames.

On a video of a vdiag synthetic dataset the foreground masks are known, and `fg_mass_<input>` is
the share of the *raw* map's total (Eq. 11, before min-max) on the foreground (for d, the union of
the object in the two frames it differences); `fg_area_<input>` beside it is the foreground's share
of that input's pixels, the score of a map spread evenly (chance level; `fg_area` is the video's).
A model that attends to the moving object has fg_mass_video well above fg_area_video. The mass is
a share of |F| summed over channels, so it also counts a uniform response to every pixel: it says
where the response is larger, not what the model uses (docs/diagnostics/foreground-mass.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vdiag.data.decode import read_frames
from vdiag.data.sampling import ClipSpec, uniform_starts
from vdiag.data.views import center_crop, eval_view
from vdiag.diagnostics.features import Extractor, Sampling
from vdiag.errors import VdiagError
from vdiag.io import save_npz
from vdiag.methods.dclr import decoupled_activation_maps, minmax
from vdiag.results import Result
from vdiag.viz.style import clip_is_padded, clip_note, overlay_grid, save_figure

INPUTS = ("video", "static", "difference")
TITLES = {"video": "A_v: the clip", "static": "A_s: its middle frame, repeated", "difference": "A_d: its frame difference"}


def read_clip(video: str | Path, sampling: Sampling, *, decoder: str = "auto", start: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """One clip of a video file, as the figures of one video use it.

    Args:
        video: the video file.
        sampling: `frames` frames every `stride` frames.
        decoder: "auto", "decord" or "pyav".
        start: its first frame [the middle one of the uniform starts].

    Returns:
        uint8 frames `(C, T, H, W)` and their frame indices `(T,)` in the video.

    Raises:
        VdiagError: `start` is outside the video (and, from the decoder, an unreadable file).
    """
    spec = ClipSpec(sampling.frames, sampling.stride)
    chosen = {}

    def select(frame_count: int) -> np.ndarray:
        first = uniform_starts(frame_count, spec, 1)[0] if start is None else start
        if first < 0 or first >= frame_count:
            raise VdiagError(f"--start {first} is outside the video's {frame_count} frames")
        chosen["indices"] = spec.indices(first, frame_count)
        return chosen["indices"]

    frames = read_frames(video, select, decoder)  # (T, H, W, C)
    return torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous(), chosen["indices"]


def synthetic_mask(video: Path, indices: np.ndarray, size: int) -> np.ndarray | None:
    """The foreground masks of a video inside a vdiag synthetic dataset, cropped as the frames are.

    Args:
        video: a video file; its dataset root is two folders up (`<root>/videos/<split>/`).
        indices: `(T,)` frame indices of the clip.
        size: the crop side in pixels (short side resized to it, then centre-cropped).

    Returns:
        `(T, size, size)` bool, or None when the video is not in a synthetic dataset with masks.
    """
    root = video.resolve().parents[2] if len(video.resolve().parents) > 2 else None
    if root is None or not (root / "manifest.json").is_file() or not (root / "masks").is_dir():
        return None
    from vdiag.data.synthetic import load_mask

    try:
        masks = load_mask(root, video.stem)[indices]  # (T, H, W) bool
    except VdiagError:
        return None
    resized = F.interpolate(
        torch.from_numpy(masks).float()[None], scale_factor=None, size=_short_side(masks.shape[1:], size), mode="nearest"
    )[0]
    return center_crop(resized, size).numpy() > 0.5


def _short_side(shape: tuple[int, int], size: int) -> tuple[int, int]:
    height, width = shape
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale))


def upsample(maps: torch.Tensor, frames: int, size: int) -> np.ndarray:
    """Upsample maps trilinearly: `(T', H', W')` → `(frames, size, size)` float32."""
    return F.interpolate(maps[None, None].float(), size=(frames, size, size), mode="trilinear", align_corners=False)[0, 0].numpy()


def foreground_mass(maps: np.ndarray, mask: np.ndarray) -> float:
    """Share of a non-negative map's total on the foreground: Σ map·mask / Σ map, in [0, 1].

    Args:
        maps: raw non-negative attribution or activation, any shape.
        mask: bool foreground mask of the same shape.

    Returns:
        The share; the foreground's area share `mask.mean()` for a uniform map (the chance level),
        1 for a map that is zero off the foreground, 0 for an all-zero map.

    Raises:
        VdiagError: a negative map (normalise or take |·| first: a signed map has no mass).
    """
    maps = np.asarray(maps, dtype=np.float64)
    if (maps < 0).any():
        raise VdiagError("a foreground mass needs a non-negative map; take |attribution| or ReLU first")
    return float((maps * mask).sum() / max(maps.sum(), 1e-300))


def viz_activation(
    extractor: Extractor,
    video: str | Path,
    out: Path,
    *,
    start: int | None = None,
    frames_shown: int = 4,
    figure_format: str = "png",
) -> Result:
    """Class-agnostic activation maps of a clip, its static frame and its frame difference (DCLR Eq. 11, Fig. 3).

    A[t, h, w] = Σ_c |F[c, t, h, w]| of the last stage (or `--layer`), upsampled to the input's frames;
    the figure draws each map min-max normalised, the foreground masses use the raw maps (a uniform
    map scores the foreground's area share). Any model: only the feature map is needed.

    Args:
        extractor: the model and its `sampling` (frames, stride, crop size) and `decoder`.
        video: the video file.
        out: folder for `activation-<video>.<figure_format>` and `.npz` (frames, maps, mask).
        start: first frame of the clip [the middle clip].
        frames_shown: columns of the figure.
        figure_format: "png", "pdf" or "svg".

    Returns:
        `Result` "viz activation"; on a video of a vdiag synthetic dataset, metrics
        `fg_mass_video` / `_static` / `_difference` (share of each raw map on the true foreground,
        in [0, 1]) beside `fg_area_video` / `_static` / `_difference` (the foreground's share of the
        pixels, what an even map scores; `fg_area` = the video's); else no metrics.
    """
    model, sampling = extractor.model, extractor.sampling
    video = Path(video)
    raw, indices = read_clip(video, sampling, decoder=extractor.decoder, start=start)
    shown = eval_view(raw, sampling.size)  # (C, T, S, S) in [0, 1]
    with torch.inference_mode():
        maps = decoupled_activation_maps(model, sampling.normalize(shown)[None].to(model.device))  # raw Eq. 11: masses; figure: min-max
    length, size = shown.shape[1], sampling.size
    raw_maps = {name: upsample(maps[name][0].cpu(), length - (name == "difference"), size) for name in INPUTS}
    upsampled = {name: upsample(minmax(maps[name])[0].cpu(), length - (name == "difference"), size) for name in INPUTS}
    metrics: dict[str, float] = {}
    mask = synthetic_mask(video, indices, size)
    if mask is not None:
        middle = length // 2
        masks = {"video": mask, "static": np.repeat(mask[middle : middle + 1], length, 0), "difference": mask[1:] | mask[:-1]}
        for name in INPUTS:  # each mass beside its chance level: the foreground's share of that input's pixels
            metrics[f"fg_mass_{name}"] = foreground_mass(raw_maps[name], masks[name])
            metrics[f"fg_area_{name}"] = float(masks[name].mean())
        metrics["fg_area"] = metrics["fg_area_video"]
    figure = Path(out) / f"activation-{video.stem}.{figure_format}"
    saved = Path(out) / f"activation-{video.stem}.npz"
    save_figure(
        _plot(
            shown,
            upsampled,
            indices,
            frames_shown,
            f"Activation maps (DCLR Eq. 11) — {'/'.join(Path(str(model.path)).parts[-2:])} ({model.name}), "
            f"{video.name}, frames {indices[0]}–{indices[-1]}{clip_note(indices)}",
        ),
        figure,
    )
    save_npz(
        saved,
        frames=shown.permute(1, 2, 3, 0).numpy(),
        frame_indices=indices,
        **{f"map_{k}": v for k, v in upsampled.items()},
        **{f"raw_{k}": v for k, v in raw_maps.items()},
        **({"mask": mask} if mask is not None else {}),
    )
    return Result(
        command="viz activation",
        metrics=metrics,
        data=str(video),
        figures=[str(figure)],
        files=[str(saved)],
        config={
            "backbone": model.name,
            "layer": model.layer,
            "frames": sampling.frames,
            "stride": sampling.stride,
            "size": size,
            "start": int(indices[0]),
            "padded_clip": clip_is_padded(indices),
        },
    )


def _plot(frames: torch.Tensor, maps: dict[str, np.ndarray], indices: np.ndarray, columns: int, title: str):
    length = frames.shape[1]
    times = np.unique(np.linspace(0, length - 2, columns).round().astype(int))  # valid for the T − 1 differences too
    pictures = frames.permute(1, 2, 3, 0).numpy()  # (T, S, S, C)
    difference = np.abs(pictures[1:] - pictures[:-1]).mean(-1)
    rows = [
        ("frames", pictures, None),
        (TITLES["video"], pictures, maps["video"]),
        (TITLES["static"], np.repeat(pictures[length // 2 : length // 2 + 1], length, 0), maps["static"]),
        (TITLES["difference"], difference / max(float(difference.max()), 1e-6), maps["difference"]),
    ]
    return overlay_grid(
        rows, times, [f"frame {indices[t]}" for t in times], title=title, colour_label="activation (min-max per map)", alpha=0.55
    )
