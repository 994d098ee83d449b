"""The shared matplotlib style (vdiag/assets/vdiag.mplstyle) and figure saving."""

from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # figures are files: never open a window, work without a display
import matplotlib.pyplot as plt

from vdiag.io import atomic_path

STYLE = Path(__file__).resolve().parent.parent / "assets" / "vdiag.mplstyle"
FIGURE_FORMATS = ("png", "pdf", "svg")


@contextlib.contextmanager
def style():
    """Draw inside this block to get vdiag's look."""
    with plt.style.context(str(STYLE)):
        yield


def save_figure(fig, path: str | Path) -> Path:
    """Save atomically in the format the suffix names (png, pdf, svg), then close the figure; returns `path`."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"figure format must be one of {FIGURE_FORMATS}, got {path.suffix!r}")
    with atomic_path(path) as tmp, style():  # the style's savefig settings (dpi, tight box) apply here
        fig.savefig(tmp, format=fmt)
    plt.close(fig)
    return path


def overlay_grid(rows: list[tuple], times, column_titles: list[str], *, title: str, colour_label: str, alpha: float = 0.6):
    """A frames × rows grid of heat maps over frames, with one shared colour bar for the heat.

    Args:
        rows: (label, backgrounds `(T, H, W[, 3])`, heat maps `(T, H, W)` in [0, 1] or None) per row.
        times: the frame indices (into T) of the columns.
        column_titles: one per column.
        title: the figure's title; colour_label: the colour bar's label.
        alpha: opacity of the heat over the frames.

    Returns:
        The matplotlib figure.
    """
    with style():
        fig, axes = plt.subplots(len(rows), len(times), figsize=(1.7 * len(times) + 0.6, 1.75 * len(rows)), squeeze=False)
        shown = None
        for row, (label, backgrounds, heat) in enumerate(rows):
            for column, t in enumerate(times):
                ax = axes[row, column]
                ax.imshow(backgrounds[t], cmap="gray" if backgrounds.ndim == 3 else None)
                if heat is not None:
                    shown = ax.imshow(heat[t], cmap="inferno", alpha=alpha, vmin=0, vmax=1)
                if row == 0:
                    ax.set_title(column_titles[column])
                if column == 0:
                    ax.set_ylabel(label, fontsize=7)
                ax.set_xticks([])
                ax.set_yticks([])
        if shown is not None:
            heated = [ax for (_, _, heat), line in zip(rows, axes) if heat is not None for ax in line]
            fig.colorbar(shown, ax=heated, fraction=0.03, pad=0.02, label=colour_label)
        fig.suptitle(title, fontsize=8)
    return fig


def reading_note(sizes: dict[str, int], split: str) -> str:
    """What a figure's title must say about how its clips were read: "" when every clip is real.

    Args:
        sizes: `vdiag.diagnostics.features.sample_sizes` of the figure's features.
        split: the split whose counts to read (`<split>_clips`, `<split>_padded_clips`, …).

    Returns:
        e.g. "; 3 of 40 clips padded (videos shorter than a clip), 1 video unreadable and left out".
    """
    parts = []
    padded, clips = sizes.get(f"{split}_padded_clips", 0), sizes.get(f"{split}_clips", 0)
    if padded:
        parts.append(f"{padded} of {clips} clips padded (videos shorter than a clip)")
    failed = sizes.get(f"{split}_failed_videos", 0)
    if failed:
        parts.append(f"{failed} video{'s' if failed != 1 else ''} unreadable and left out")
    return "; " + ", ".join(parts) if parts else ""


def clip_is_padded(indices) -> bool:
    """Whether a clip's frame indices `(T,)` repeat or wrap, i.e. the short-video policy filled it (never a real clip)."""
    return bool(np.any(np.diff(np.asarray(indices)) <= 0))


def clip_note(indices) -> str:
    """What a one-clip figure's title says when its clip is padded ("" for a real clip)."""
    return "; PADDED: the video ends before the clip, frames repeat" if clip_is_padded(indices) else ""
