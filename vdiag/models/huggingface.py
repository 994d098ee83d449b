"""Hugging Face video transformers from a local folder: VideoMAE, TimeSformer, ViViT, V-JEPA 2.

A folder with `config.json` and the weights (`model.safetensors` or `pytorch_model.bin`), as
`save_pretrained` writes it or as a model page's files are downloaded by hand, is read with the
`transformers` library (the optional extra: `pip install "vdiag[transformers]"`) with
`local_files_only=True`: nothing is downloaded. A `…ForPreTraining` / `…ForVideoClassification`
folder loads too (its encoder is taken; heads and decoders are ignored).

Tokens → the backbone contract (docs/backbones.md):
- feature map (B, C, T', H', W'): the last layer's patch / tubelet tokens (class token dropped) laid
  back on their grid, T' = T / tubelet (2 for VideoMAE, ViViT, V-JEPA 2; 1 for TimeSformer),
  H' = H / patch, W' = W / patch;
- pooled embedding: their mean (as VideoMAE's classifier pools; TimeSformer's and ViViT's classifiers
  read the class token, V-JEPA 2's an attentive probe, neither a function of the grid);
- per-time-step features: the spatial mean, one vector per tubelet.
With `keep_temporal` every input frame is repeated `tubelet` times, so each tubelet sees one frame and
T' = T (give T = num_frames / tubelet frames to models with fixed time position tables: VideoMAE, ViViT).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vdiag.errors import VdiagError

# model_type in config.json → (token with class token first?, config key of the frame count, of the crop side)
SUPPORTED = {
    "videomae": (False, "num_frames", "image_size"),
    "timesformer": (True, "num_frames", "image_size"),
    "vivit": (True, "num_frames", "image_size"),
    "vjepa2": (False, "frames_per_clip", "crop_size"),
}
# the publishers' clip strides (frames of a 30 fps video): VideoMAE Kinetics 16×4, TimeSformer 8×32,
# ViViT 32×2, V-JEPA 2 64×4
STRIDES = {"videomae": 4, "timesformer": 32, "vivit": 2, "vjepa2": 4}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def is_huggingface_folder(path: str | Path) -> bool:
    """Whether `path` is a folder holding a Hugging Face `config.json`."""
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def read_config(folder: str | Path) -> dict:
    """The folder's `config.json`, checked to be one of the supported video models.

    Args:
        folder: the model folder.

    Returns:
        The parsed config.

    Raises:
        VdiagError: no readable `config.json`, or a `model_type` vdiag does not adapt.
    """
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise VdiagError(
            f"{folder} is not a Hugging Face model folder ({path} unreadable: {err}); pass the folder save_pretrained wrote"
        ) from None
    kind = config.get("model_type")
    if kind not in SUPPORTED:
        raise VdiagError(f"{folder} holds a {kind!r} model; vdiag reads these Hugging Face video models: {', '.join(SUPPORTED)}")
    return config


def huggingface_sampling(folder: str | Path, config: dict | None = None) -> dict:
    """The clips a folder's model takes: frames and crop side from `config.json`, mean / std from
    `preprocessor_config.json` (ImageNet statistics when absent), the publisher's stride.

    Args:
        folder: the model folder.
        config: its parsed `config.json` (read when None).

    Returns:
        {'frames', 'stride', 'size', 'mean', 'std', 'tubelet'} as `BackboneSpec.default_sampling`.
    """
    config = config or read_config(folder)
    kind = config["model_type"]
    _, frames_key, size_key = SUPPORTED[kind]
    size = config.get(size_key, 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    processor = Path(folder) / "preprocessor_config.json"
    if processor.is_file():
        try:
            settings = json.loads(processor.read_text())
            mean, std = tuple(settings.get("image_mean", mean)), tuple(settings.get("image_std", std))
        except ValueError:
            pass
    return {
        "frames": config.get(frames_key, 16),
        "stride": STRIDES[kind],
        "size": int(size),
        "mean": mean,
        "std": std,
        "tubelet": _tubelet(config),
    }


def _tubelet(config: dict) -> int:
    if config["model_type"] == "timesformer":
        return 1
    tubelet = config.get("tubelet_size", 2)
    return int(tubelet[0] if isinstance(tubelet, (list, tuple)) else tubelet)


def _patch(config: dict) -> int:
    if config["model_type"] == "vivit":
        return int(config.get("tubelet_size", [2, 16, 16])[1])
    patch = config.get("patch_size", 16)
    return int(patch[0] if isinstance(patch, (list, tuple)) else patch)


class HuggingFaceVideoBody(nn.Module):
    """A `transformers` video encoder under `model`: (B, 3, T, H, W) → tokens on their grid (B, C, T', H', W').

    Args:
        model: the `transformers` model (`VideoMAEModel`, `TimesformerModel`, `VivitModel`, `VJEPA2Model`).
        config: its `config.json` as a dict.
    """

    def __init__(self, model: nn.Module, config: dict):
        super().__init__()
        self.model = model
        self.kind = config["model_type"]
        self.has_class_token = SUPPORTED[self.kind][0]
        self.tubelet, self.patch = _tubelet(config), _patch(config)
        self.keep_temporal = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, frames, height, width = x.shape
        if self.keep_temporal and self.tubelet > 1:
            x = x.repeat_interleave(self.tubelet, dim=2)
        pixels = x.transpose(1, 2)  # (B, T, C, H, W), the library's layout
        try:
            if self.kind == "vjepa2":
                tokens = self.model(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state
            elif self.kind == "vivit":
                tokens = self.model(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
            else:
                tokens = self.model(pixel_values=pixels).last_hidden_state
        except (ValueError, RuntimeError) as err:
            raise VdiagError(
                f"the {self.kind} model does not take {frames}×{height}×{width} clips ({str(err).splitlines()[0][:160]}); "
                "use the frames and size of its config.json (docs/backbones.md)"
            ) from None
        if self.has_class_token:
            tokens = tokens[:, 1:]
        steps = x.shape[2] // self.tubelet
        grid_h, grid_w = height // self.patch, width // self.patch
        if self.kind == "timesformer":  # TimeSformer orders its tokens (h, w, t)
            grid = tokens.reshape(batch, grid_h, grid_w, steps, -1).permute(0, 4, 3, 1, 2)
        else:  # tubelet convolution flattened over (t, h, w)
            grid = tokens.reshape(batch, steps, grid_h, grid_w, -1).permute(0, 4, 1, 2, 3)
        return grid.contiguous()


def load_huggingface_body(folder: str | Path) -> tuple[HuggingFaceVideoBody, int, dict]:
    """Read a local Hugging Face video model folder; nothing is downloaded.

    Args:
        folder: a folder with `config.json` and `model.safetensors` (or `pytorch_model.bin`).

    Returns:
        (body, embed_dim = hidden_size, default sampling (`huggingface_sampling`)).

    Raises:
        VdiagError: `transformers` is not installed; the folder is not a supported model or its
            weights are missing or do not fit its config.
    """
    config = read_config(folder)
    try:
        import transformers
    except ImportError:
        raise VdiagError(
            f"{folder} is a Hugging Face {config['model_type']} model; install the extra: pip install 'vdiag[transformers]'"
        ) from None
    classes = {"videomae": "VideoMAEModel", "timesformer": "TimesformerModel", "vivit": "VivitModel", "vjepa2": "VJEPA2Model"}
    model_class = getattr(transformers, classes[config["model_type"]])
    options = {"add_pooling_layer": False} if config["model_type"] == "vivit" else {}
    try:
        model, info = model_class.from_pretrained(str(folder), local_files_only=True, output_loading_info=True, **options)
    except (OSError, ValueError, RuntimeError) as err:
        raise VdiagError(
            f"{folder}: transformers could not load its {config['model_type']} weights ({str(err).splitlines()[0][:200]})"
        ) from None
    # the encoder must be complete (V-JEPA 2's predictor is not used here and may be absent)
    missing = [key for key in info.get("missing_keys", []) if not key.startswith("predictor.")]
    if missing:
        raise VdiagError(
            f"{folder} lacks {len(missing)} of its {config['model_type']} encoder's weights (e.g. {', '.join(sorted(missing)[:2])}); "
            "transformers would fill them at random, so vdiag stops: pass a folder with the full model.safetensors"
        )
    return HuggingFaceVideoBody(model, config), int(config["hidden_size"]), huggingface_sampling(folder, config)
