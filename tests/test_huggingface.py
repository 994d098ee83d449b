"""Hugging Face video transformers from a local folder: tiny random configs saved with save_pretrained, read back offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from vdiag.errors import VdiagError  # noqa: E402
from vdiag.models.backbones import build_backbone  # noqa: E402
from vdiag.models.weights import detect_checkpoint_kind  # noqa: E402

SMALL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64)
CONFIGS = {
    "videomae": lambda layers: transformers.VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, num_hidden_layers=layers, **SMALL
    ),
    "timesformer": lambda layers: transformers.TimesformerConfig(
        image_size=32, patch_size=16, num_frames=4, num_hidden_layers=layers, **SMALL
    ),
    "vivit": lambda layers: transformers.VivitConfig(
        image_size=32, num_frames=4, tubelet_size=[2, 16, 16], num_hidden_layers=layers, **SMALL
    ),
    "vjepa2": lambda layers: transformers.VJEPA2Config(
        crop_size=32,
        frames_per_clip=4,
        patch_size=16,
        tubelet_size=2,
        hidden_size=32,
        num_attention_heads=2,
        num_hidden_layers=layers,
        pred_hidden_size=32,
        pred_num_attention_heads=2,
        pred_num_hidden_layers=1,
    ),
}
MODELS = {"videomae": "VideoMAEModel", "timesformer": "TimesformerModel", "vivit": "VivitModel", "vjepa2": "VJEPA2Model"}
TUBELET = {"videomae": 2, "timesformer": 1, "vivit": 2, "vjepa2": 2}


def _save(kind, folder, layers=2):
    torch.manual_seed(0)
    model = getattr(transformers, MODELS[kind])(CONFIGS[kind](layers)).eval()
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_folder_loads_offline_with_the_three_outputs(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / kind
    model = _save(kind, folder)
    assert (folder / "model.safetensors").is_file() and detect_checkpoint_kind(folder) == "huggingface"
    backbone = build_backbone(str(folder)).eval()
    assert backbone.default_sampling["frames"] == 4 and backbone.default_sampling["size"] == 32
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        feature_map = backbone.feature_map(clips)
        pooled, per_time = backbone(clips), backbone.time_features(clips)
    steps = 4 // TUBELET[kind]
    assert feature_map.shape == (2, 32, steps, 2, 2)
    torch.testing.assert_close(pooled, per_time.mean(-1))
    # the weights are the saved ones, and the tokens are the library's own (class token dropped)
    with torch.no_grad():
        pixels = clips.transpose(1, 2)
        if kind == "vjepa2":
            tokens = model(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state
        else:
            tokens = model(pixel_values=pixels).last_hidden_state
    tokens = tokens[:, 1:] if kind in ("timesformer", "vivit") else tokens
    torch.testing.assert_close(torch.sort(feature_map.flatten(2).transpose(1, 2).flatten())[0], torch.sort(tokens.flatten())[0])
    # keep_temporal: one step per input frame; fixed time tables (VideoMAE, ViViT) take num_frames / tubelet frames
    frames = 2 if kind in ("videomae", "vivit") else 4
    kept = build_backbone(str(folder), keep_temporal=True).eval()
    with torch.no_grad():
        assert kept.time_features(clips[:, :, :frames]).shape == (2, 32, frames)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_tokens_land_on_their_frame_and_patch(kind, tmp_path):
    """Without transformer layers a token depends on its own tubelet only: changing one frame's top-left
    patch changes exactly the token at that time step and grid cell (the layout is right)."""
    folder = tmp_path / kind
    _save(kind, folder, layers=0)
    backbone = build_backbone(str(folder)).eval()
    clips = torch.randn(1, 3, 4, 32, 32)
    changed = clips.clone()
    changed[:, :, 3, :16, :16] += 1.0
    with torch.no_grad():
        delta = (backbone.feature_map(changed) - backbone.feature_map(clips)).abs().sum(dim=1)[0]
    step = 3 // TUBELET[kind]
    assert delta[step, 0, 0] > 0
    delta[step, 0, 0] = 0
    assert float(delta.max()) < 1e-5


def test_videomae_keep_temporal_takes_half_the_frames(tmp_path):
    folder = tmp_path / "videomae"
    _save("videomae", folder)
    kept = build_backbone(str(folder), keep_temporal=True).eval()
    with torch.no_grad():
        assert kept.time_features(torch.randn(1, 3, 2, 32, 32)).shape == (1, 32, 2)  # each frame fills a tubelet
    with pytest.raises(VdiagError, match="does not take 4×32×32 clips"):
        kept(torch.randn(1, 3, 4, 32, 32))


def test_bad_folders_are_clear_errors(tmp_path):
    folder = tmp_path / "timesformer"
    _save("timesformer", folder)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    dropped = {k: v for k, v in weights.items() if "encoder.layer.1." not in k}
    save_file(dropped, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(VdiagError, match="lacks .* encoder's weights"):
        build_backbone(str(folder))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(VdiagError, match="reads these Hugging Face video models"):
        build_backbone(str(tmp_path / "bert"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VdiagError, match="folder without config.json"):
        detect_checkpoint_kind(tmp_path / "empty")


def test_diagnostics_run_on_a_huggingface_folder(tiny_synth, tmp_path):
    from vdiag.diagnostics.data import DataRef
    from vdiag.diagnostics.features import Extractor, Sampling
    from vdiag.diagnostics.model import load_model
    from vdiag.diagnostics.static_bias import static_bias
    from vdiag.viz.eig import viz_eig

    root, _ = tiny_synth
    folder = tmp_path / "vjepa2"
    _save("vjepa2", folder)
    model = load_model(folder)
    assert model.fingerprint == load_model(folder).fingerprint != load_model(folder, keep_temporal=True).fingerprint
    metrics = static_bias(Extractor(model, Sampling(4, 1, 32, 1), workers=0), DataRef(str(root)), target="bg_color").metrics
    assert np.isfinite(metrics["acc_real"]) and np.isfinite(metrics["sim_shuffled"])
    temporal = Extractor(load_model(folder, keep_temporal=True), Sampling(4, 1, 32, 1), workers=0)
    eig = viz_eig(temporal, DataRef(str(root)), tmp_path / "eig", figure_format="svg")
    assert eig.metrics
    from vdiag.viz.saliency import viz_saliency

    video = next((root / "videos" / "test").glob("*.mp4"))
    saliency = viz_saliency(Extractor(model, Sampling(4, 1, 32, 1)), video, tmp_path / "saliency", frames_shown=2)
    assert all(np.isfinite(v) for v in saliency.metrics.values())


def test_a_huggingface_folder_is_a_checkpoint_on_the_command_line(tiny_synth, tmp_path):
    """`vdiag probe … FOLDER` reads a Hugging Face folder without --backbone, at the folder's own
    clip length, and writes its result beside the folder."""
    from test_pretrain import run_cli

    root, _ = tiny_synth
    folder = tmp_path / "videomae"
    _save("videomae", folder)
    out = run_cli(
        "probe", "static-bias", str(folder), "--data", str(root), "--target", "bg_color", "--clips", "1", "--size", "32", "--json"
    )
    result = json.loads(out.stdout)
    assert result["command"] == "probe static-bias" and np.isfinite(result["metrics"]["acc_real"])
    assert result["config"]["frames"] == json.loads((folder / "config.json").read_text())["num_frames"]
    refused = run_cli("probe", "static-bias", str(folder), "--backbone", "not-a-backbone", check=False)
    assert refused.returncode != 0 and "is not a backbone" in refused.stderr
