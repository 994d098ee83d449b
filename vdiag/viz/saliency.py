"""`vdiag viz saliency`: saliency tubes — which pixels of which frames drive the model (ViDiDi Fig. 5).

Three attributions of a scalar target for one clip, each reduced to a (T, H, W) tube:
- gradient saliency (captum `Saliency`: |∂y/∂x|, summed over colour channels);
- integrated gradients (captum `IntegratedGradients`, 32 steps, baseline: the all-zero normalised
  clip, i.e. the dataset-mean colour everywhere; |attribution| summed over channels);
- Grad-CAM on the last stage (or `--layer`) with **time-resolved** weights: α_c(t) is the mean of
  ∂y/∂A[c, t, ·, ·] over space at each time step, cam(t) = ReLU(Σ_c α_c(t) A[c, t]), upsampled
  trilinearly to T × H × W. (captum's `LayerGradCam` averages the gradients over time as well,
  which gives every frame the same channel weights; a video needs them per frame.)

The target y: for a checkpoint with a classifier (`supervised`, or a fine-tuned checkpoint from
`vdiag eval finetune`) the logit of the predicted class (or `--class-index`); for any other model
the cosine similarity between the clip's embedding and the (fixed) embedding of another augmented
view of the same clip — the quantity instance-discrimination training makes large, so the tube
shows what the model matches across views.

On a synthetic video, `fg_mass_<method>` is each tube's share of attribution on the true foreground
mask; `fg_area` is the foreground's share of the pixels (the score of an even spread).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, Saliency

from vdiag.data.views import SpatialAugment, eval_view, normalize
from vdiag.diagnostics.features import Extractor
from vdiag.diagnostics.model import DiagnosticModel
from vdiag.io import atomic_path, save_npz
from vdiag.results import Result
from vdiag.viz.activation import foreground_mass, read_clip, synthetic_mask, upsample
from vdiag.viz.style import clip_is_padded, clip_note, overlay_grid, save_figure

METHODS = ("gradient", "integrated_gradients", "grad_cam")
TITLES = {"gradient": "gradient saliency", "integrated_gradients": "integrated gradients", "grad_cam": "Grad-CAM (per-frame weights)"}


def target_function(model: DiagnosticModel, clip: torch.Tensor, *, class_index: int | None = None, seed: int = 0):
    """The scalar a saliency tube explains.

    Args:
        model: the frozen model.
        clip: the normalised clip `(1, C, T, H, W)`.
        class_index: for a model with a classifier, the class whose logit is explained [the predicted one].
        seed: draws the other augmented view (models without a classifier).

    Returns:
        (f, description): f maps clips `(B, C, T, H, W)` to the target per clip `(B,)` — a
        classifier's logit, else the cosine similarity to another augmented view of the clip.
    """
    classifier = getattr(model.method, "classifier", None)
    if classifier is not None:
        with torch.no_grad():
            predicted = int(classifier(model.embed(clip)).argmax(1)[0]) if class_index is None else class_index

        def logit(clips: torch.Tensor) -> torch.Tensor:
            return classifier(model.embed(clips))[:, predicted]

        return logit, f"class logit {predicted}"
    raw = clip[0]
    augment = SpatialAugment(size=raw.shape[-1], crop_scale=(0.5, 1.0), grayscale_p=0.0, blur_p=0.0)
    with torch.no_grad():  # another view of the same clip: undo the normalisation, augment, normalise
        mean = torch.tensor((0.43216, 0.394666, 0.37645)).view(3, 1, 1, 1)
        std = torch.tensor((0.22803, 0.22145, 0.216989)).view(3, 1, 1, 1)
        pixels = (raw.cpu() * std + mean).clamp(0, 1)
        other = normalize(augment(pixels, torch.Generator().manual_seed(seed)))[None].to(clip.device)
        reference = model.embed(other)

    def similarity(clips: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(model.embed(clips), reference.expand(len(clips), -1), dim=1)

    return similarity, "cosine similarity to another augmented view of the clip"


def grad_cam(model: DiagnosticModel, target, clip: torch.Tensor) -> torch.Tensor:
    """Time-resolved Grad-CAM: weights α_c(t) per channel and time step (ViDiDi Fig. 5).

    Args:
        model: the frozen model; target: from `target_function`; clip: `(1, C, T, H, W)`.

    Returns:
        `(T', H', W')` ≥ 0 at the feature map's resolution.
    """
    captured = {}
    original = model.feature_map

    def capture(clips: torch.Tensor) -> torch.Tensor:  # the feature map the target is computed from
        feature = original(clips)
        feature.retain_grad()
        captured["map"] = feature
        return feature

    model.feature_map = capture
    try:
        target(clip.detach().requires_grad_(True)).sum().backward()
    finally:
        del model.feature_map  # back to the class's method
    feature = captured["map"]  # (1, C, T', H', W')
    weights = feature.grad.mean(dim=(3, 4), keepdim=True)  # α_c(t): per channel and time step
    return torch.relu((weights * feature).sum(dim=1))[0].detach()


def attributions(model: DiagnosticModel, clip: torch.Tensor, target, *, steps: int = 32) -> dict[str, np.ndarray]:
    """Saliency tubes of one clip: gradient, integrated gradients and per-frame Grad-CAM (ViDiDi Fig. 5).

    Args:
        model: the frozen model.
        clip: one normalised clip `(1, C, T, H, W)`.
        target: from `target_function`.
        steps: integration steps of integrated gradients (baseline: the all-zero normalised clip).

    Returns:
        method (`METHODS`) → `(T, H, W)` non-negative attribution, float32.
    """
    length, size = clip.shape[2], clip.shape[-1]
    tubes = {}
    clip = clip.detach().clone().requires_grad_(True)
    gradient = Saliency(target).attribute(clip, abs=True)
    tubes["gradient"] = gradient[0].sum(0)
    integrated = IntegratedGradients(target).attribute(clip, baselines=torch.zeros_like(clip), n_steps=steps, internal_batch_size=8)
    tubes["integrated_gradients"] = integrated[0].abs().sum(0)
    cam = grad_cam(model, target, clip)
    tubes["grad_cam"] = torch.from_numpy(upsample(cam.cpu(), length, size))
    return {name: tube.detach().float().cpu().numpy() for name, tube in tubes.items()}


def viz_saliency(
    extractor: Extractor,
    video: str | Path,
    out: Path,
    *,
    start: int | None = None,
    class_index: int | None = None,
    frames_shown: int = 4,
    figure_format: str = "png",
) -> Result:
    """Saliency tubes of one clip with captum: gradient, integrated gradients, per-frame Grad-CAM (ViDiDi Fig. 5).

    Args:
        extractor: the model and its `sampling`, `decoder` and `seed` (the other augmented view).
        video: the video file.
        out: folder for `saliency-<video>.<figure_format>`, an animated `.gif` and `.npz` (frames, tubes, mask).
        start: first frame of the clip [the middle clip].
        class_index: for a classifier checkpoint, the class to explain [the predicted one].
        frames_shown: columns of the figure.
        figure_format: "png", "pdf" or "svg" (the animation is a GIF).

    Returns:
        `Result` "viz saliency"; on a video of a vdiag synthetic dataset, metrics
        `fg_mass_<method>` (each tube's share of attribution on the true foreground, in [0, 1]) and
        `fg_area` (the foreground's share of the pixels); else no metrics. config["target"] says
        what was explained.
    """
    model, sampling = extractor.model, extractor.sampling
    video = Path(video)
    raw, indices = read_clip(video, sampling, decoder=extractor.decoder, start=start)
    shown = eval_view(raw, sampling.size)  # (C, T, S, S) in [0, 1]
    clip = sampling.normalize(shown)[None].to(model.device)
    target, description = target_function(model, clip, class_index=class_index, seed=extractor.seed)
    tubes = attributions(model, clip, target)
    metrics: dict[str, float] = {}
    mask = synthetic_mask(video, indices, sampling.size)
    if mask is not None:
        metrics = {f"fg_mass_{name}": foreground_mass(tube, mask) for name, tube in tubes.items()}
        metrics["fg_area"] = float(mask.mean())  # chance level of a uniform attribution (gradient saliency)
        # IG of a model that weighs every pixel equally: the share of |x − baseline| on the foreground
        metrics["fg_input_share"] = foreground_mass(clip[0].detach().abs().sum(0).cpu().numpy(), mask)
    stem = f"saliency-{video.stem}"
    figure, animation, saved = Path(out) / f"{stem}.{figure_format}", Path(out) / f"{stem}.gif", Path(out) / f"{stem}.npz"
    pictures = shown.permute(1, 2, 3, 0).numpy()
    name = "/".join(Path(str(model.path)).parts[-2:])
    save_figure(
        _grid(
            pictures,
            tubes,
            indices,
            frames_shown,
            f"Saliency tubes — {name} ({model.name}), {video.name}; target: {description}{clip_note(indices)}",
        ),
        figure,
    )
    _animate(pictures, tubes, animation)
    save_npz(saved, frames=pictures, frame_indices=indices, **tubes, **({"mask": mask} if mask is not None else {}))
    return Result(
        command="viz saliency",
        metrics=metrics,
        data=str(video),
        figures=[str(figure), str(animation)],
        files=[str(saved)],
        config={
            "backbone": model.name,
            "layer": model.layer,
            "target": description,
            "frames": sampling.frames,
            "stride": sampling.stride,
            "size": sampling.size,
            "start": int(indices[0]),
            "padded_clip": clip_is_padded(indices),
        },
    )


def _normalised(tube: np.ndarray) -> np.ndarray:
    return tube / max(float(tube.max()), 1e-12)


def _grid(pictures: np.ndarray, tubes: dict[str, np.ndarray], indices: np.ndarray, columns: int, title: str):
    times = np.unique(np.linspace(0, len(pictures) - 1, columns).round().astype(int))
    rows = [("frames", pictures, None)] + [(TITLES[name], pictures, _normalised(tube)) for name, tube in tubes.items()]
    return overlay_grid(rows, times, [f"frame {indices[t]}" for t in times], title=title, colour_label="attribution (÷ max over the tube)")


def _animate(pictures: np.ndarray, tubes: dict[str, np.ndarray], path: Path, scale: int = 3) -> None:
    """An animated GIF: per frame, the frame and each method's overlay side by side."""
    from matplotlib import colormaps
    from PIL import Image

    colour = colormaps["inferno"]
    frames = []
    for t in range(len(pictures)):
        panels = [pictures[t]]
        for tube in tubes.values():
            heat = colour(_normalised(tube)[t])[..., :3]
            panels.append(0.45 * pictures[t] + 0.55 * heat)
        strip = (np.concatenate(panels, axis=1).clip(0, 1) * 255).astype(np.uint8)
        image = Image.fromarray(strip)
        frames.append(image.resize((image.width * scale, image.height * scale), Image.NEAREST))
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=250, loop=0)
