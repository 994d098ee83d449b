"""`vdiag viz modes`: Koopman modes over time and, for one video, in space (BOD-VCL Fig. 4b).

Per-frame features u_t of the test clips (temporal strides removed, as for `viz eig`) give one
shared operator K̂ = Φ Λ Φ^{-1} (ridge least squares over every clip's transitions,
`vdiag.koopman.fit_operator`). The mode amplitudes b(t) = Φ^{-1} u_t (BOLD-DI Eq. 8–9) of an
exactly linear system follow b_j(t) = λ_j^t b_j(0): a mode with λ ≈ 1 stays flat, a complex pair
oscillates at Arg λ radians per frame, |λ| < 1 decays.

Chosen modes: the one closest to λ = 1 (static), then the `modes − 1` others that carry the most
amplitude (mean |b_j(t)| over clips and frames), one per conjugate pair. Top panel per mode:
Re(b_j(t) / b_j(0)) — median over the clips whose |b_j(0)| is at least the median (a small b_j(0)
makes the ratio meaningless) with the interquartile band, against λ_j^t (dashed), the curve an
exactly linear system would follow.

With a VIDEO: every position's feature vector of its feature map is projected the same way,
|b_j(t, h, w)|, upsampled over the frames: where each mode lives in space.

Metrics: `linear_fit_r2` (1 − mean squared one-step prediction error / variance of u_{t+1}: how
linear the feature dynamics are), and per chosen mode `mode<i>_modulus`, `mode<i>_argument`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vdiag import distributed as dist
from vdiag import koopman
from vdiag.data.views import eval_view
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, sample_sizes
from vdiag.errors import VdiagError
from vdiag.io import save_npz
from vdiag.results import Result
from vdiag.viz.activation import read_clip, upsample
from vdiag.viz.style import clip_is_padded, clip_note, plt, reading_note, save_figure, style

COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]


def choose_modes(eigenvalues: torch.Tensor, amplitudes: torch.Tensor, count: int) -> list[int]:
    """Which Koopman modes to show: the one nearest λ = 1, then the strongest others, one of each conjugate pair.

    Args:
        eigenvalues: `(M,)` complex.
        amplitudes: `(…, M)` complex mode amplitudes b (strength = mean |b| over the leading axes).
        count: how many modes.

    Returns:
        Mode indices, the static one (nearest 1) first.
    """
    static = int((eigenvalues - 1).abs().argmin())
    strength = amplitudes.abs().mean(dim=tuple(range(amplitudes.dim() - 1)))  # (M,)
    chosen = [static]
    for j in torch.argsort(strength, descending=True).tolist():
        if len(chosen) >= count:
            break
        if j in chosen or eigenvalues[j].imag < 0 or (eigenvalues[j] - 1).abs() <= 1e-9:
            continue
        chosen.append(j)
    return chosen


def linear_fit_r2(per_frame: torch.Tensor, operator: torch.Tensor) -> float:
    """How linear the feature dynamics are: 1 − one-step prediction error / variance of u_{t+1}.

    Args:
        per_frame: `(clips, T, C)` features; operator: `(C, C)` (u_{t+1} ≈ K u_t).

    Returns:
        R² (1 = exactly linear; ≤ 0 = no better than the mean).
    """
    _, fore = koopman.transitions(per_frame.double())
    residual = koopman.prediction_loss(per_frame.double(), operator.double())
    variance = (fore - fore.mean(dim=(0, 1))).pow(2).mean()
    return float(1 - residual / variance.clamp_min(1e-30))


def viz_modes(
    extractor: Extractor,
    data: DataRef,
    out: Path,
    *,
    video: str | Path | None = None,
    modes: int = 4,
    split: str = "test",
    ridge: float = 1e-3,
    start: int | None = None,
    figure_format: str = "png",
) -> Result:
    """Koopman mode amplitudes over time and, for one video, in space (BOD-VCL Fig. 4b).

    One shared operator is fitted to the per-frame features of `split` (the model should keep one
    feature per frame, `keep_temporal`); its eigenvectors give the amplitudes b(t) = Φ^{-1} u_t
    (BOLD-DI Eq. 8–9), which follow λ^t b(0) for an exactly linear system.

    Args:
        extractor: the model and its extraction settings.
        data: the dataset.
        out: folder for `modes.<figure_format>` and `modes.npz` (eigenvalues, chosen modes, the
            median and quartile curves, the spatial maps).
        video: a video whose feature map is projected on the chosen modes (where each lives).
        modes: how many modes (`choose_modes`).
        split: the clips the operator is fitted on.
        ridge: the operator's ridge, relative to the mean feature energy (shrinks |λ| slightly).
        start: first frame of `video`'s clip [the middle clip].
        figure_format: "png", "pdf" or "svg".

    Returns:
        `Result` "viz modes"; metrics `linear_fit_r2` (`linear_fit_r2`), and per chosen mode
        `mode<i>_modulus` (|λ|, per-frame growth) and `mode<i>_argument` (Arg λ, radians per frame).

    Raises:
        VdiagError: fewer than 3 frames per clip.
    """
    index = data.split(split)
    features = extractor(index, ["real"], output="temporal")["real"]  # (N, K, C, T)
    videos, clips, channels, steps = features.features.shape
    if steps < 3:
        raise VdiagError(f"modes need at least 3 frames per clip, got {steps}; raise --frames")
    per_frame = torch.from_numpy(features.features.transpose(0, 1, 3, 2).reshape(videos * clips, steps, channels)).double()
    operator = koopman.fit_operator(per_frame, "shared", ridge)
    eigenvalues, eigenvectors = koopman.eigen(operator)
    amplitudes = koopman.mode_amplitudes(per_frame, eigenvectors)  # (clips, T, M)
    chosen = choose_modes(eigenvalues, amplitudes, modes)
    metrics = {"linear_fit_r2": linear_fit_r2(per_frame, operator)}
    curves = {}
    for rank, j in enumerate(chosen):
        value = eigenvalues[j]
        metrics[f"mode{rank}_modulus"], metrics[f"mode{rank}_argument"] = float(value.abs()), float(value.angle())
        start_amplitude = amplitudes[:, 0, j]
        keep = start_amplitude.abs() >= start_amplitude.abs().median()
        ratio = (amplitudes[keep, :, j] / start_amplitude[keep, None]).real.numpy()  # (kept clips, T)
        curves[j] = np.percentile(ratio, [25, 50, 75], axis=0)

    spatial, shown, indices = None, None, None
    if video is not None:
        raw, indices = read_clip(Path(video), extractor.sampling, decoder=extractor.decoder, start=start)
        shown = eval_view(raw, extractor.sampling.size)
        with torch.inference_mode():
            feature_map = (
                extractor.model.feature_map(extractor.sampling.normalize(shown)[None].to(extractor.model.device))[0].double().cpu()
            )  # (C, T', H', W')
        positions = feature_map.permute(1, 2, 3, 0)  # (T', H', W', C)
        projected = koopman.mode_amplitudes(positions.reshape(1, -1, channels), eigenvectors)[0].reshape(*positions.shape[:3], channels)
        spatial = {j: upsample(projected[..., j].abs().float(), shown.shape[1], extractor.sampling.size) for j in chosen}

    sizes = sample_sizes(**{split: features})
    model = extractor.model
    name = "/".join(Path(str(model.path)).parts[-2:])
    title = (
        f"Koopman modes — {name} ({model.name}); {split}, {videos} videos × {clips} clips; "
        f"one-step linear fit R² = {metrics['linear_fit_r2']:.2f}{reading_note(sizes, split)}"
        f"{clip_note(indices) if indices is not None else ''}"
    )
    figure, saved = Path(out) / f"modes.{figure_format}", Path(out) / "modes.npz"
    if dist.is_main():
        save_figure(_plot(eigenvalues, chosen, curves, steps, spatial, shown, indices, title), figure)
        arrays = {"eigenvalues": eigenvalues.numpy(), "chosen": np.asarray(chosen), **{f"curve_{j}": c for j, c in curves.items()}}
        if spatial is not None:
            arrays.update({f"spatial_{j}": m for j, m in spatial.items()})
        save_npz(saved, **arrays)
    return Result(
        command="viz modes",
        metrics=metrics,
        data=data.path,
        figures=[str(figure)],
        files=[str(saved)],
        config={
            **extractor.describe(),
            "split": split,
            "modes": modes,
            "ridge": ridge,
            "video": str(video) if video else None,
            **sizes,
            "padded_clip": clip_is_padded(indices) if indices is not None else None,
        },
        details={"chosen_eigenvalues": [[float(eigenvalues[j].real), float(eigenvalues[j].imag)] for j in chosen]},
    )


def _label(value: torch.Tensor) -> str:
    return f"$\\lambda = {float(value.abs()):.3f}\\,e^{{{float(value.angle()):.2f}\\,i}}$"


def _plot(eigenvalues, chosen, curves, steps, spatial, frames, indices, title):
    times = np.arange(steps)
    rows = 1 + (len(chosen) if spatial is not None else 0)
    columns = 4
    with style():
        fig = plt.figure(figsize=(7.2, 2.8 + 1.6 * (rows - 1)))
        grid = fig.add_gridspec(rows, columns, height_ratios=[1.8] + [1] * (rows - 1), hspace=0.75)
        curve_ax = fig.add_subplot(grid[0, :])
        for colour, j in zip(COLOURS, chosen):
            low, median, high = curves[j]
            value = eigenvalues[j]
            curve_ax.plot(times, median, color=colour, lw=1.5, label=_label(value) + (" (nearest 1)" if j == chosen[0] else ""))
            curve_ax.fill_between(times, low, high, color=colour, alpha=0.15, lw=0)
            curve_ax.plot(times, (value.numpy() ** times).real, color=colour, ls="--", lw=0.9)
        curve_ax.axhline(0, color="0.8", lw=0.5, zorder=0)
        curve_ax.set_xlabel("frame t within the clip")
        curve_ax.set_ylabel("Re b_j(t) / b_j(0)")
        curve_ax.set_title("mode amplitudes over time (median and IQR over clips; dashed: λ^t)")
        curve_ax.legend(fontsize=7, ncol=2)
        if spatial is not None:
            shown_times = np.unique(np.linspace(0, frames.shape[1] - 1, columns).round().astype(int))
            pictures = frames.permute(1, 2, 3, 0).numpy()
            for row, (colour, j) in enumerate(zip(COLOURS, chosen), start=1):
                peak = max(float(spatial[j].max()), 1e-12)
                for column, t in enumerate(shown_times):
                    ax = fig.add_subplot(grid[row, column])
                    ax.imshow(pictures[t])
                    ax.imshow(spatial[j][t] / peak, cmap="inferno", alpha=0.6, vmin=0, vmax=1)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if row == 1:
                        ax.set_title(f"frame {indices[t]}", fontsize=7)
                    if column == 0:
                        ax.set_ylabel(_label(eigenvalues[j]), fontsize=6, color=colour)
        fig.suptitle(title, fontsize=8)
    return fig
