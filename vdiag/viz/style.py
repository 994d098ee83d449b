"""The shared matplotlib style (vdiag/assets/vdiag.mplstyle) and figure saving."""

from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files: never open a window, work without a display
import matplotlib.pyplot as plt  # noqa: E402

from vdiag.io import atomic_path  # noqa: E402

STYLE = Path(__file__).resolve().parent.parent / "assets" / "vdiag.mplstyle"
FIGURE_FORMATS = ("png", "pdf", "svg")


@contextlib.contextmanager
def style():
    """Draw inside this block to get vdiag's look."""
    with plt.style.context(str(STYLE)):
        yield


def save_figure(fig, path: str | Path) -> Path:
    """Save atomically in the format the suffix names, then close the figure."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"figure format must be one of {FIGURE_FORMATS}, got {path.suffix!r}")
    with atomic_path(path) as tmp, style():  # the style's savefig settings (dpi, tight box) apply here
        fig.savefig(tmp, format=fmt)
    plt.close(fig)
    return path
