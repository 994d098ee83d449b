"""The synthetic dataset's factor grid, like BOD-VCL Fig. 5.

One row per factor, one panel per value. Each panel is a video in which that factor takes that
value and every other factor keeps its first value; four frames (first to last) show the change,
and for the trajectory row the foreground's path is drawn over the frames.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vdiag.data.synthetic import FACTOR_KINDS, SynthConfig, draw_video_params, render_video
from vdiag.viz.style import plt, save_figure, style


def _example(config: SynthConfig, factor: str, value: str) -> dict:
    """A val-split video (factors independent) with `factor = value` and the others at their first value."""
    single = {name: [values[0]] for name, values in config.factors().items()}
    single[factor] = [value]
    fixed = dataclasses.replace(config, correlation=0.0, **single)
    return draw_video_params(fixed, "val", 0), fixed


def plot_factor_grid(config: SynthConfig, path: str | Path, *, frames_shown: int = 4) -> Path:
    """Draw the synthetic dataset's factor grid (like BOD-VCL Fig. 5) and save it.

    Args:
        config: the dataset's settings (its factors and their values, size, frames).
        path: the figure file (png, pdf or svg).
        frames_shown: frames per panel, first to last.

    Returns:
        `path`.
    """
    factors = config.factors()
    columns = max(len(v) for v in factors.values())
    times = np.linspace(0, config.frames - 1, frames_shown).round().astype(int)
    with style():
        fig, axes = plt.subplots(
            len(factors), columns, figsize=(2.1 * columns * frames_shown / 3, 1.05 * len(factors) + 0.4), squeeze=False
        )
        for row, (factor, values) in enumerate(factors.items()):
            for col in range(columns):
                ax = axes[row, col]
                ax.set_xticks([])
                ax.set_yticks([])
                if col >= len(values):
                    ax.axis("off")
                    continue
                params, fixed = _example(config, factor, values[col])
                video, _ = render_video(fixed, params)
                gap = np.full((config.size, 2, 3), 255, np.uint8)
                strip = np.concatenate([np.concatenate([video[t], gap], 1) for t in times], 1)[:, :-2]
                ax.imshow(strip)
                if factor == "fg_trajectory":
                    for k, t in enumerate(times):
                        offset = k * (config.size + 2)
                        ax.plot(
                            np.array(params["x"][: t + 1]) - 0.5 + offset, np.array(params["y"][: t + 1]) - 0.5, color="#E69F00", lw=0.8
                        )
                ax.set_title(values[col], fontsize=8)
                for spine in ax.spines.values():
                    spine.set_visible(False)
            axes[row, 0].set_ylabel(f"{factor}\n{FACTOR_KINDS[factor]}", fontsize=7, rotation=0, ha="right", va="center")
        fig.suptitle(f"vdiag synthetic dataset: one factor varied per row (frames t = {', '.join(map(str, times))})", fontsize=9)
        fig.tight_layout()
        return save_figure(fig, path)
