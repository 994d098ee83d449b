"""`vdiag viz eig`: the Koopman eigenvalues of a model's per-frame features (BOD-VCL Fig. 4a).

Any checkpoint: the backbone runs with its temporal strides removed (`keep_temporal`, weights
unchanged) so that every input frame keeps a feature u_t (the spatial mean of the last stage, or of
`--layer`). For each test clip, exact DMD (`vdiag.koopman.dmd`, Tu et al. 2014) gives the non-zero
eigenvalues of its least-squares operator K̂ = U_fore U_back^† (BOLD-DI Eq. 5): at most L − 1 per
clip, so many clips are plotted together. `estimator="shared"` instead fits one ridge operator to
every clip's transitions and shows its M eigenvalues.

The figure follows DMD tooling conventions: the complex plane with equal aspect, the unit circle
dashed, conjugate pairs mirrored about the real axis; the static region of each split rule shaded
(BOLD-DI: |λ| ≥ ξ and |Arg λ| ≤ ω; BOD-VCL: |λ − 1| ≤ r); a hexbin density instead of points
when there are many; side panels with the histograms of |λ| and Arg λ. The eigenvalues, their clip
and its label are saved next to the figure (`eig.npz`).

Metrics (`vdiag.koopman.eigenvalue_summary`): `static_fraction_bolddi`, `static_fraction_bodvcl`
(share of eigenvalues in each static region), `static_energy_bolddi`, `static_energy_bodvcl`
(share of the trajectory's energy in static modes, `vdiag.koopman.static_energy`),
`spectral_radius_mean` / `_max` (of the per-clip operators), `modulus_mean`, `argument_abs_mean`.

The four static measures carry a 95 % bootstrap interval over videos (`<name>_ci_low` /
`_ci_high`; the fractions with the per-clip estimator only, a shared operator is one fit) and a
chance level `<name>_chance` (with its interval): the same measure on the same clips with their
frames in a random order (one permutation per clip, never the identity, drawn from the seed). A
trajectory without temporal order keeps its frames' content (the constant part stays constant) and
loses its persistence and its coherent motion, so a value above chance means the features persist
over time more than their content alone explains, and a value below it means they move coherently
(rotation, drift) rather than jitter. A time-blind model sits at chance with both near 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.patches import Circle, Wedge

from vdiag import distributed as dist
from vdiag import koopman
from vdiag.data.formats import check_target
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import Extractor, sample_sizes, targets
from vdiag.diagnostics.probe import bootstrap, with_intervals
from vdiag.errors import VdiagError
from vdiag.io import save_npz
from vdiag.results import Result
from vdiag.viz.style import plt, reading_note, save_figure, style

DENSITY_ABOVE = 3000  # points; beyond this a scatter hides its own density
STATIC_COLOURS = {"bolddi": "#009E73", "bodvcl": "#E69F00"}


def clip_eigenvalues(per_frame: np.ndarray, *, estimator: str = "clip", ridge: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Koopman eigenvalues of per-frame features (BOLD-DI Eq. 5; BOD-VCL Fig. 4a).

    Args:
        per_frame: `(clips, T, C)` features, one vector per frame.
        estimator: "clip" (exact DMD per clip, at most T − 1 eigenvalues each, the zeros of rank
            truncation dropped) or "shared" (one ridge operator fitted to every clip's transitions).
        ridge: the shared operator's ridge, relative to the mean feature energy.

    Returns:
        eigenvalues `(E,)` complex (|λ| the per-frame growth, Arg λ radians per frame) and the clip
        of each `(E,)` int (−1 for the shared operator).

    Raises:
        VdiagError: fewer than 3 frames per clip; an unknown estimator.
    """
    features = torch.from_numpy(per_frame).double()
    if features.shape[1] < 3:
        raise VdiagError(f"a Koopman operator needs at least 3 frames per clip, got {features.shape[1]}; raise --frames")
    if estimator == "shared":
        eigenvalues, _ = koopman.eigen(koopman.fit_operator(features, "shared", ridge))
        return eigenvalues.numpy(), np.full(len(eigenvalues), -1)
    if estimator != "clip":
        raise VdiagError(f"unknown estimator {estimator!r}; choose clip or shared")
    eigenvalues, _ = koopman.dmd(features, rtol=koopman.NOISE_FLOOR)  # directions below the noise floor give 0: dropped
    values = eigenvalues.numpy()
    clip = np.broadcast_to(np.arange(len(values))[:, None], values.shape)
    keep = np.abs(values) > 0
    return values[keep], clip[keep]


def shuffled_in_time(per_frame: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each clip's frames in a random order (one permutation per clip, never the identity).

    Args:
        per_frame: `(clips, T, C)` features, T ≥ 2.
        seed: draws the permutations.

    Returns:
        `(clips, T, C)`, the same frames reordered.
    """
    rng = np.random.default_rng(seed)
    steps = per_frame.shape[1]
    out = np.empty_like(per_frame)
    for clip in range(len(per_frame)):
        order = rng.permutation(steps)
        while steps > 1 and (order == np.arange(steps)).all():
            order = rng.permutation(steps)
        out[clip] = per_frame[clip, order]
    return out


def static_measures(
    per_frame: np.ndarray,
    clips_per_video: int,
    *,
    estimator: str = "clip",
    xi: float = 0.9,
    omega: float = 0.1,
    radius: float = 0.1,
    seed: int = 0,
) -> dict[str, float]:
    """The Koopman static measures of a model's clips, each with a bootstrap interval over videos and a chance level.

    For each rule (BOLD-DI: |λ| ≥ ξ and |Arg λ| ≤ ω, §4.2; BOD-VCL: |λ − 1| ≤ radius):
    `static_fraction_<rule>` (the papers' count: share of the clips' DMD eigenvalues in the static
    region) and `static_energy_<rule>` (`vdiag.koopman.static_energy`: share of the trajectory's
    energy in static modes, averaged over clips). Chance: the same measure with every clip's frames
    in a random order (`shuffled_in_time`), the reading of the same content without temporal order.

    Args:
        per_frame: `(videos · clips_per_video, T, C)` per-frame features, a video's clips consecutive.
        clips_per_video: clips of each video (the bootstrap resamples videos with all their clips).
        estimator: "clip" (per-clip DMD; the fractions get intervals) or "shared" (one operator for
            all clips: its fractions have no interval).
        xi, omega, radius: the rules' thresholds.
        seed: the permutations and the bootstrap.

    Returns:
        `static_fraction_<rule>`, `static_energy_<rule>`, each followed by `_ci_low` / `_ci_high`
        (95 %), and `<name>_chance` with its interval; NaN where no clip has a value.
    """
    videos = len(per_frame) // clips_per_video
    per_video: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name → (numerator, denominator) per video
    whole: dict[str, float] = {}  # values that cannot be resampled (a shared operator)
    for suffix, frames in (("", per_frame), ("_chance", shuffled_in_time(per_frame, seed))):
        eigenvalues, clip = clip_eigenvalues(frames, estimator=estimator)
        for rule in koopman.RULES:
            inside = koopman.static_modes(torch.from_numpy(eigenvalues), rule, xi, omega, radius).numpy().astype(float)
            name = f"static_fraction_{rule}{suffix}"
            if estimator == "clip":
                video = clip // clips_per_video
                per_video[name] = (np.bincount(video, inside, videos), np.bincount(video, minlength=videos).astype(float))
            else:
                whole[name] = float(inside.mean()) if len(inside) else float("nan")
        for rule in koopman.RULES:
            shares, _ = koopman.static_energy(torch.from_numpy(frames), rule, xi, omega, radius)
            shares = shares.numpy().reshape(videos, clips_per_video)
            valid = np.isfinite(shares)
            per_video[f"static_energy_{rule}{suffix}"] = (np.where(valid, shares, 0).sum(axis=1), valid.sum(axis=1).astype(float))

    def statistics(rows: np.ndarray) -> dict[str, float]:
        out = {}
        for name, (numerator, denominator) in per_video.items():
            total = denominator[rows].sum()
            out[name] = float(numerator[rows].sum() / total) if total > 0 else float("nan")
        return out

    values = {**statistics(np.arange(videos)), **whole}
    order = [f"static_{kind}_{rule}{suffix}" for kind in ("fraction", "energy") for rule in koopman.RULES for suffix in ("", "_chance")]
    return with_intervals({name: values[name] for name in order}, bootstrap(statistics, videos, seed=seed))


def plot_eigenvalues(
    eigenvalues: np.ndarray,
    groups: np.ndarray | None = None,
    group_names: list[str] | None = None,
    *,
    xi: float = 0.9,
    omega: float = 0.1,
    radius: float = 0.1,
    title: str = "",
    density: bool | None = None,
):
    """The complex-plane figure of Koopman eigenvalues with |λ| and Arg λ histograms (BOD-VCL Fig. 4a).

    Args:
        eigenvalues: `(E,)` complex.
        groups: `(E,)` int, the group (class) of each eigenvalue, coloured by `group_names`.
        group_names: a name per group.
        xi, omega: the BOLD-DI static region |λ| ≥ ξ, |Arg λ| ≤ ω (radians), shaded (BOLD-DI §4.2).
        radius: the BOD-VCL static disc |λ − 1| ≤ radius, outlined.
        title: the figure's title.
        density: a hexbin density instead of points [when there are more than `DENSITY_ABOVE`].

    Returns:
        The matplotlib figure.
    """
    real, imag = eigenvalues.real, eigenvalues.imag
    extent = max(1.15, float(np.abs(eigenvalues).max(initial=0)) * 1.05)
    density = len(eigenvalues) > DENSITY_ABOVE if density is None else density
    with style():
        fig = plt.figure(figsize=(7.2, 4.4))
        grid = fig.add_gridspec(2, 2, width_ratios=(1.45, 1), hspace=0.45, wspace=0.55 if density else 0.25)
        plane = fig.add_subplot(grid[:, 0])
        plane.add_patch(
            Wedge(
                (0, 0),
                extent,
                -np.degrees(omega),
                np.degrees(omega),
                width=extent - xi,
                color=STATIC_COLOURS["bolddi"],
                alpha=0.18,
                lw=0,
                label=f"static, BOLD-DI (|λ| ≥ {xi:g}, |Arg λ| ≤ {omega:g})",
            )
        )
        plane.add_patch(
            Circle(
                (1, 0), radius, fill=False, ec=STATIC_COLOURS["bodvcl"], lw=1.2, label=f"static, BOD-VCL (|λ − 1| ≤ {radius:g})", zorder=3
            )
        )
        plane.add_patch(Circle((0, 0), 1, fill=False, ls="--", ec="0.35", lw=0.8, label="unit circle", zorder=3))
        if density:
            shown = plane.hexbin(real, imag, gridsize=60, extent=(-extent, extent, -extent, extent), bins="log", mincnt=1, cmap="viridis")
            fig.colorbar(shown, ax=plane, fraction=0.04, pad=0.03, label="eigenvalues per cell")
        elif groups is not None and group_names:
            for index, name in enumerate(group_names):
                chosen = groups == index
                if chosen.any():
                    plane.scatter(real[chosen], imag[chosen], s=7, alpha=0.6, lw=0, label=name)
        else:
            plane.scatter(real, imag, s=7, alpha=0.5, lw=0, color="#0072B2", label="eigenvalue")
        plane.axhline(0, color="0.8", lw=0.5, zorder=0)
        plane.axvline(0, color="0.8", lw=0.5, zorder=0)
        plane.set_xlim(-extent, extent)
        plane.set_ylim(-extent, extent)
        plane.set_aspect("equal")
        plane.set_xlabel("Re λ")
        plane.set_ylabel("Im λ")
        plane.set_title("complex plane")
        plane.legend(loc="upper left", bbox_to_anchor=(-0.02, -0.12), ncol=2, fontsize=7, markerscale=2)
        fig.suptitle(title, fontsize=9)

        modulus = fig.add_subplot(grid[0, 1])
        modulus.hist(np.abs(eigenvalues), bins=40, range=(0, extent), color="#0072B2")  # a fixed range: |λ| may all be equal
        modulus.axvline(xi, color=STATIC_COLOURS["bolddi"], lw=1, label=f"ξ = {xi:g}")
        modulus.axvline(1, color="0.35", ls="--", lw=0.8, label="|λ| = 1")
        modulus.set_xlabel("|λ| (per-step growth)")
        modulus.set_ylabel("eigenvalues")
        modulus.legend(fontsize=7, loc="upper left")

        argument = fig.add_subplot(grid[1, 1])
        argument.hist(np.angle(eigenvalues), bins=40, range=(-np.pi, np.pi), color="#0072B2")
        for sign in (-1, 1):
            argument.axvline(sign * omega, color=STATIC_COLOURS["bolddi"], lw=1, label=f"|Arg λ| = ω = {omega:g}" if sign > 0 else None)
        argument.set_xlabel("Arg λ (radians per frame)")
        argument.set_ylabel("eigenvalues")
        argument.set_xlim(-np.pi, np.pi)
        argument.legend(fontsize=7, loc="upper left")
    return fig


def viz_eig(
    extractor: Extractor,
    data: DataRef,
    out: Path,
    *,
    split: str = "test",
    estimator: str = "clip",
    colour_by: str | None = None,
    figure_format: str = "png",
    xi: float = 0.9,
    omega: float = 0.1,
    radius: float = 0.1,
) -> Result:
    """Koopman eigenvalues of a model's per-frame features in the complex plane (BOD-VCL Fig. 4a).

    The extractor's model should keep one feature per frame (`keep_temporal`; `vdiag viz eig`
    loads it so). Each clip of `split` gives its DMD eigenvalues (or one shared operator does).

    Args:
        extractor: the model and its extraction settings.
        data: the dataset.
        out: folder for `eig.<figure_format>` and `eig.npz` (eigenvalues, clip, video, labels).
        split: which videos.
        estimator: "clip" or "shared" (see `clip_eigenvalues`).
        colour_by: colour the points by "label" or a synthetic factor (per-clip estimator).
        figure_format: "png", "pdf" or "svg".
        xi, omega: the BOLD-DI static rule |λ| ≥ ξ and |Arg λ| ≤ ω (BOLD-DI §4.2, Tables 11–12).
        radius: the BOD-VCL static rule |λ − 1| ≤ radius.

    Returns:
        `Result` "viz eig"; metrics (`vdiag.koopman.eigenvalue_summary`): `static_fraction_bolddi`,
        `static_fraction_bodvcl` (share of eigenvalues in each static region, in [0, 1]),
        `static_energy_bolddi`, `static_energy_bodvcl` (share of the trajectory's energy in static
        modes), each with a 95 % interval over videos and a chance level `<name>_chance` (frames in
        a random order; `static_measures`),
        `spectral_radius_mean` / `_max` (of the per-clip operators; > 1 grows),
        `modulus_mean`, `argument_abs_mean` (radians per frame), `eigenvalues` (how many).

    Raises:
        VdiagError: `colour_by` is not a factor of the data; fewer than 3 frames per clip; every
            clip's features constant or zero (no eigenvalues).
    """
    index = data.split(split)
    if colour_by:
        check_target(index, colour_by)
    features = extractor(index, ["real"], output="temporal")["real"]  # (N, K, C, T)
    videos, clips, channels, steps = features.features.shape
    per_frame = features.features.transpose(0, 1, 3, 2).reshape(videos * clips, steps, channels)
    eigenvalues, clip = clip_eigenvalues(per_frame, estimator=estimator)
    if len(eigenvalues) == 0:
        raise VdiagError("every clip's features are constant or zero: there are no eigenvalues to plot (try another --layer)")
    groups, names = None, None
    if colour_by and estimator == "clip":
        labels, names = targets(features, colour_by)
        groups = labels[clip // clips]
    dropped = videos * clips * min(steps - 1, channels) - len(eigenvalues) if estimator == "clip" else None
    summary = koopman.eigenvalue_summary(torch.from_numpy(eigenvalues), xi, omega, radius, below_noise_floor=dropped)
    static = static_measures(per_frame, clips, estimator=estimator, xi=xi, omega=omega, radius=radius, seed=extractor.seed)
    summary = {**static, **{k: v for k, v in summary.items() if not k.startswith("static_fraction")}}
    if estimator == "clip":  # the spectral radius of each clip's operator, not of the pooled set
        radii = np.zeros(videos * clips)
        np.maximum.at(radii, clip, np.abs(eigenvalues))
        summary["spectral_radius_mean"], summary["spectral_radius_max"] = float(radii.mean()), float(radii.max())
    sizes = sample_sizes(**{split: features})
    model = extractor.model
    layer = f", layer {model.layer}" if model.layer else ""
    name = "/".join(Path(str(model.path)).parts[-2:])
    title = (
        f"Koopman eigenvalues of per-frame features — {name} ({model.name}{layer}); "
        f"{split}, {videos} videos × {clips} clips, {estimator} estimator{reading_note(sizes, split)}"
    )
    figure = Path(out) / f"eig.{figure_format}"
    saved = Path(out) / "eig.npz"
    if dist.is_main():
        save_figure(plot_eigenvalues(eigenvalues, groups, names, xi=xi, omega=omega, radius=radius, title=title), figure)
        save_npz(
            saved,
            eigenvalues=eigenvalues,
            clip=clip,
            video=np.where(clip >= 0, clip // clips, -1),
            labels=features.labels,
            class_names=np.asarray(features.class_names),
        )
    return Result(
        command="viz eig",
        metrics={**summary, "eigenvalues": len(eigenvalues)},
        data=data.path,
        figures=[str(figure)],
        files=[str(saved)],
        config={
            **extractor.describe(),
            "split": split,
            "estimator": estimator,
            "xi": xi,
            "omega": omega,
            "radius": radius,
            "colour_by": colour_by,
            **sizes,
        },
    )
