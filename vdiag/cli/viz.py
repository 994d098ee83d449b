"""`vdiag viz …`: figures for any checkpoint, with the numbers behind each figure saved beside it."""

from __future__ import annotations

import click

from vdiag.cli.diagnose import COMMON_EPILOG, diagnostic_options, run_diagnostic
from vdiag.viz.style import FIGURE_FORMATS


@click.group(
    "viz",
    epilog="""\b
Examples:
  vdiag viz eig runs/bolddi-simclr-tiny/final.pt
  vdiag viz eig runs/simclr-tiny/final.pt --colour-by fg_trajectory --format pdf""",
)
def viz():
    """Figures: Koopman eigenvalues and modes, t-SNE, activation maps, saliency tubes, concepts."""


@viz.command(
    "eig",
    epilog="""\b
Examples:
  vdiag viz eig runs/bolddi-simclr-tiny/final.pt            # every test clip's eigenvalues
  vdiag viz eig runs/simclr-tiny/final.pt --colour-by label --clips 2
  vdiag viz eig runs/simclr-tiny/final.pt --estimator shared --format pdf
  vdiag viz eig r3d18.pth --backbone r3d_18 --data data/ucf101 --layer layer3
"""
    + COMMON_EPILOG
    + " The backbone runs with its temporal strides removed (weights unchanged), so every frame has a feature.",
)
@diagnostic_options(data_format_flag="--data-format")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True, help="Which videos.")
@click.option(
    "--estimator",
    type=click.Choice(["clip", "shared"]),
    default="clip",
    show_default=True,
    help="Exact DMD per clip, or one ridge operator for all clips.",
)
@click.option("--colour-by", help="Colour the points by 'label' or a synthetic factor (per-clip estimator, scatter view).")
@click.option("--format", "figure_format", type=click.Choice(FIGURE_FORMATS), default="png", show_default=True, help="Figure file format.")
@click.option("--xi", type=float, default=0.9, show_default=True, help="BOLD-DI static rule: |λ| ≥ ξ (BOLD-DI Table 11).")
@click.option("--omega", type=float, default=0.1, show_default=True, help="BOLD-DI static rule: |Arg λ| ≤ ω (Table 12).")
@click.option("--radius", type=float, default=0.1, show_default=True, help="BOD-VCL static rule: |λ − 1| ≤ radius.")
@run_diagnostic("eig", keep_temporal=True)
def eig_command(extractor, data, out, device, split, estimator, colour_by, figure_format, xi, omega, radius):
    """Koopman eigenvalues of the model's per-frame features in the complex plane (BOD-VCL Fig. 4a).

    static_fraction_bolddi / _bodvcl: share of eigenvalues in each paper's static region;
    static_energy_*: share of each clip's feature trajectory its static modes carry; each with a 95 %
    interval over videos and a chance level (<name>_chance: the same clips with frames shuffled in
    time); spectral_radius_mean / _max of the per-clip operators. Saves eig.png (or pdf/svg) and
    eig.npz.
    """
    from vdiag.viz.eig import viz_eig

    return viz_eig(
        extractor,
        data,
        out,
        split=split,
        estimator=estimator,
        colour_by=colour_by,
        figure_format=figure_format,
        xi=xi,
        omega=omega,
        radius=radius,
    )


@viz.command(
    "tsne",
    epilog="""\b
Examples:
  vdiag viz tsne runs/simclr-tiny/final.pt runs/vididi-simclr-tiny/final.pt   # side by side
  vdiag viz tsne runs/simclr-tiny/final.pt --target bg_color --top-k 2
  vdiag viz tsne final.pt --data data/ucf101 --top-k 10 --format pdf
"""
    + COMMON_EPILOG
    + " With several checkpoints, the data is the first one's unless --data is given.",
)
@diagnostic_options(data_format_flag="--data-format", many=True)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True, help="Which videos.")
@click.option("--target", default="label", show_default=True, help="Colour by the dataset label or a synthetic factor.")
@click.option("--top-k", type=click.IntRange(2), default=5, show_default=True, help="Show the k best-retrieved classes (ViDiDi Fig. 4: 5).")
@click.option(
    "--perplexity", type=click.FloatRange(1), default=30.0, show_default=True, help="t-SNE perplexity (capped below the number of videos)."
)
@click.option("--format", "figure_format", type=click.Choice(FIGURE_FORMATS), default="png", show_default=True, help="Figure file format.")
@run_diagnostic("tsne", many=True)
def tsne_command(extractors, data, out, device, split, target, top_k, perplexity, figure_format):
    """t-SNE of video embeddings coloured by class, one panel per checkpoint (ViDiDi Fig. 4).

    Each panel's title gives the silhouette score of the shown classes in embedding space.
    Saves tsne.png (or pdf/svg) and tsne.npz (2-D points, labels, scores).
    """
    from vdiag.viz.tsne import viz_tsne

    return viz_tsne(extractors, data, out, split=split, target=target, top_k=top_k, perplexity=perplexity, figure_format=figure_format)


@viz.command(
    "activation",
    epilog="""\b
Examples:
  vdiag viz activation runs/dclr-tiny/final.pt ~/.cache/vdiag/datasets/synth-default/videos/test/test_00000.mp4
  vdiag viz activation r3d18.pth clip.mp4 --backbone r3d_18 --frames 16 --size 112 --start 40
"""
    + COMMON_EPILOG,
)
@diagnostic_options(data_format_flag="--data-format")
@click.argument("video", type=click.Path(dir_okay=False))
@click.option("--start", type=click.IntRange(0), help="First frame of the clip [the middle clip].")
@click.option("--frames-shown", type=click.IntRange(1, 16), default=4, show_default=True, help="Columns of the figure.")
@click.option("--format", "figure_format", type=click.Choice(FIGURE_FORMATS), default="png", show_default=True, help="Figure file format.")
@run_diagnostic("activation", needs_data=False)
def activation_command(extractor, data, out, device, video, start, frames_shown, figure_format):
    """Class-agnostic activation maps of a clip, its static frame and its frame difference (DCLR Fig. 3).

    Works for any model. On a synthetic video, fg_mass_video / _static / _difference give the
    share of each map on the true foreground (fg_area: the foreground's share of the pixels).
    """
    from vdiag.viz.activation import viz_activation

    return viz_activation(extractor, video, out, start=start, frames_shown=frames_shown, figure_format=figure_format)


@viz.command(
    "saliency",
    epilog="""\b
Examples:
  vdiag viz saliency runs/supervised-tiny/final.pt ~/.cache/vdiag/datasets/synth-default/videos/test/test_00003.mp4
  vdiag viz saliency runs/simclr-tiny/final.pt clip.mp4 --start 16     # target: similarity to another view
  vdiag viz saliency r3d18.pth clip.mp4 --backbone r3d_18 --frames 16 --size 112
"""
    + COMMON_EPILOG,
)
@diagnostic_options(data_format_flag="--data-format")
@click.argument("video", type=click.Path(dir_okay=False))
@click.option("--start", type=click.IntRange(0), help="First frame of the clip [the middle clip].")
@click.option("--class-index", type=click.IntRange(0), help="Classifier checkpoints: explain this class [the predicted one].")
@click.option("--frames-shown", type=click.IntRange(1, 16), default=4, show_default=True, help="Columns of the figure.")
@click.option(
    "--format",
    "figure_format",
    type=click.Choice(FIGURE_FORMATS),
    default="png",
    show_default=True,
    help="Figure file format (the animation is a GIF).",
)
@run_diagnostic("saliency", needs_data=False)
def saliency_command(extractor, data, out, device, video, start, class_index, frames_shown, figure_format):
    """Saliency tubes with captum: gradient, integrated gradients, per-frame Grad-CAM (ViDiDi Fig. 5).

    Target: a classifier's logit when the checkpoint has one, else the similarity to another
    augmented view of the clip. Writes a frame grid and an animated GIF; on a synthetic video,
    fg_mass_<method> is the share of attribution on the true foreground.
    """
    from vdiag.viz.saliency import viz_saliency

    return viz_saliency(extractor, video, out, start=start, class_index=class_index, frames_shown=frames_shown, figure_format=figure_format)


@viz.command(
    "modes",
    epilog="""\b
Examples:
  vdiag viz modes runs/bodvcl-simclr-tiny/final.pt                          # amplitudes over time
  vdiag viz modes runs/bodvcl-simclr-tiny/final.pt ~/.cache/vdiag/datasets/synth-default/videos/test/test_00003.mp4
  vdiag viz modes runs/simclr-tiny/final.pt --modes 6 --clips 2 --format pdf
"""
    + COMMON_EPILOG
    + " The backbone runs with its temporal strides removed (weights unchanged), so every frame has a feature.",
)
@diagnostic_options(data_format_flag="--data-format")
@click.argument("video", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--modes", type=click.IntRange(1, 6), default=4, show_default=True, help="How many modes: the one nearest λ = 1, then the strongest."
)
@click.option(
    "--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True, help="Clips the operator is fitted on."
)
@click.option("--start", type=click.IntRange(0), help="With VIDEO: first frame of its clip [the middle clip].")
@click.option(
    "--ridge",
    type=click.FloatRange(0),
    default=1e-3,
    show_default=True,
    help="Ridge of the shared operator, relative to the mean feature energy (shrinks |λ| slightly).",
)
@click.option("--format", "figure_format", type=click.Choice(FIGURE_FORMATS), default="png", show_default=True, help="Figure file format.")
@run_diagnostic("modes", keep_temporal=True)
def modes_command(extractor, data, out, device, video, modes, split, start, ridge, figure_format):
    """Koopman mode amplitudes over time, and where each mode lives in a video (BOD-VCL Fig. 4b).

    Near-1 modes stay flat, dynamic modes oscillate or decay; linear_fit_r2 says how well one
    linear operator predicts the next frame's features.
    """
    from vdiag.viz.modes import viz_modes

    return viz_modes(extractor, data, out, video=video, modes=modes, split=split, ridge=ridge, start=start, figure_format=figure_format)


@viz.command(
    "concepts",
    epilog="""\b
Examples:
  vdiag viz concepts runs/concepts-tiny/final.pt ~/.cache/vdiag/datasets/synth-default/videos/test/test_00003.mp4
  vdiag viz concepts runs/concepts-tiny/final.pt clip.mp4 --target bg_color --clips 2
"""
    + COMMON_EPILOG,
)
@diagnostic_options(data_format_flag="--data-format")
@click.argument("video", type=click.Path(dir_okay=False))
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    default="test",
    show_default=True,
    help="Videos for the class similarity matrices.",
)
@click.option("--target", default="label", show_default=True, help="Classes: the dataset label or a synthetic factor.")
@click.option("--start", type=click.IntRange(0), help="First frame of the video's clip [the middle clip].")
@click.option("--frames-shown", type=click.IntRange(1, 16), default=4, show_default=True, help="Columns of the attention rows.")
@click.option("--format", "figure_format", type=click.Choice(FIGURE_FORMATS), default="png", show_default=True, help="Figure file format.")
@run_diagnostic("concepts", precheck=lambda extractor: _require_concepts(extractor))
def concepts_command(extractor, data, out, device, video, split, target, start, frames_shown, figure_format):
    """Static and dynamic concepts of a `concepts` model: attention maps of the most active ones on a
    video (concepts, Qian et al., Fig. 5) and class × class similarity of the averaged codes (Fig. 4).

    Other models get a one-line message: only `vdiag pretrain --method concepts` has concepts.
    """
    from vdiag.viz.concepts import viz_concepts

    return viz_concepts(
        extractor,
        data,
        out,
        video=video,
        split=split,
        target=target,
        start=start,
        frames_shown=frames_shown,
        figure_format=figure_format,
    )


def _require_concepts(extractor) -> None:
    from vdiag.diagnostics.features import require_concepts

    require_concepts(extractor)
