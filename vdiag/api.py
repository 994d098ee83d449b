"""The Python API: the diagnostics of a model held in memory (or of any checkpoint), without a command line.

For users who will not write a checkpoint: hand an `nn.Module` to `diagnose` and get back the same
`Result` objects (and, with `out`, the same JSON files) that `vdiag probe …`, `vdiag eval …` and
`vdiag viz eig` give for it; `report` makes the report card of several models, in memory or on disk,
of any architectures.

    import vdiag.api as vd

    results = vd.diagnose(my_net, "data/ucf101", diagnostics=("static-bias", "shuffle"), frames=16, stride=2, size=112)
    print(results["static-bias"].metrics["static_ratio"])

The module's forward takes normalised clips `(B, 3, T, H, W)` and returns one tensor, read as
(docs/backbones.md, "the output adapter"):

- `(B, C, T', H', W')`: the feature map (every diagnostic works fully);
- `(B, C, T')`: per-time-step features (H' = W' = 1);
- `(B, C)`: the pooled embedding (T' = H' = W' = 1: Koopman figures need more than one step).

A module returning anything else (a dict, a tuple, tokens) takes an `adapter(module, clips)` that
returns one such tensor, e.g. `lambda m, x: m.forward_features(x)`. The same numbers come from
saving the module's state dict and running the CLI with `--backbone package.module:builder` (a test
checks this). Koopman eigenvalues run on a copy of the module with its temporal strides removed
(`keep_temporal`), as `vdiag viz eig` does.
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from vdiag.console import note
from vdiag.diagnostics.data import DataRef, resolve_data
from vdiag.diagnostics.features import Extractor, Sampling, default_sampling, load_extractor
from vdiag.diagnostics.model import DiagnosticModel, check_finite, load_model
from vdiag.errors import VdiagError
from vdiag.models.backbones import VideoBackbone, remove_temporal_strides
from vdiag.models.bodies import ModuleBody
from vdiag.results import Result

# diagnostic name (its CLI command's result file, `<name>.json`) → the command
DIAGNOSTICS = {
    "static-bias": "vdiag probe static-bias",
    "shuffle": "vdiag probe shuffle",
    "factors": "vdiag probe factors",
    "linear": "vdiag eval linear",
    "retrieval": "vdiag eval retrieval",
    "cluster": "vdiag eval cluster",
    "eig": "vdiag viz eig",
}
DEFAULT_DIAGNOSTICS = ("static-bias", "shuffle", "retrieval", "cluster", "eig")

ModelLike = nn.Module | str | Path | DiagnosticModel


class _Adapted(nn.Module):
    """A module whose output an adapter turns into one tensor: forward(x) = adapter(module, x)."""

    def __init__(self, module: nn.Module, adapter: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.module = module
        self.adapter = adapter

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.module, clips)


def wrap(
    module: nn.Module,
    *,
    name: str | None = None,
    adapter: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    embed_dim: int | None = None,
    keep_temporal: bool = False,
    device: str = "cpu",
    fingerprint: str | None = None,
) -> DiagnosticModel:
    """An in-memory module as the frozen model every diagnostic takes (eval mode, on `device`).

    Args:
        module: forward `(B, 3, T, H, W)` → `(B, C, T', H', W')`, `(B, C, T')` or `(B, C)` (the module
            docstring); a `VideoBackbone` is used as it is.
        name: how results and the report name it [the module's class name].
        adapter: `adapter(module, clips)` → one tensor of those shapes, for a module whose forward
            returns something else.
        embed_dim: C [the module's integer `embed_dim` attribute, else read from one forward pass].
        keep_temporal: apply to a copy with every temporal stride set to 1 (`remove_temporal_strides`),
            so every input frame keeps a feature; the module passed in is not changed.
        device: where the model runs.
        fingerprint: keys the feature cache [a hash of the weights, the module's printed structure,
            the adapter's code and `keep_temporal`]; change it when the code changes in a way these miss.

    Returns:
        The `DiagnosticModel` (its `path` is `name`; it has no file).

    Raises:
        VdiagError: a weight or buffer holds NaN or infinity; the output is not one tensor of a
            supported shape (at the first forward pass).
    """
    if isinstance(module, VideoBackbone):
        backbone = copy.deepcopy(module) if keep_temporal else module
        if keep_temporal:
            remove_temporal_strides(backbone.body)
            backbone.keep_temporal = True
            if hasattr(backbone.body, "keep_temporal"):
                backbone.body.keep_temporal = True
        name = name or backbone.name
    else:
        name = name or type(module).__name__
        inner = copy.deepcopy(module) if keep_temporal else module
        body = ModuleBody(_Adapted(inner, adapter) if adapter else inner, name)
        if keep_temporal:
            remove_temporal_strides(body)
        if embed_dim is None:
            embed_dim = getattr(module, "embed_dim", None)
        backbone = VideoBackbone(name, body, int(embed_dim) if isinstance(embed_dim, int) else 0, keep_temporal=keep_temporal)
    check_finite(backbone, name)
    backbone.to(device).eval()
    if not backbone.embed_dim:  # read C from one forward pass on zeros, as `--backbone package.module:builder` does
        with torch.no_grad():
            backbone.embed_dim = int(backbone.feature_map(torch.zeros(1, 3, 8, 64, 64, device=device)).shape[1])
    model = DiagnosticModel(backbone, Path(name), device=device)
    model.fingerprint = fingerprint or _fingerprint(backbone, adapter)
    return model


def _fingerprint(backbone: VideoBackbone, adapter) -> str:
    digest = hashlib.sha256(f"api|{backbone.name}|{backbone.keep_temporal}|{backbone!r}".encode())
    for key, tensor in backbone.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"|{key}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    code = getattr(adapter, "__code__", None)
    if code is not None:
        digest.update(code.co_code + repr(code.co_consts).encode())
    return digest.hexdigest()[:24]


def _model(model: ModelLike, *, backbone, adapter, name, keep_temporal: bool, device: str) -> DiagnosticModel:
    """Any model: a `DiagnosticModel` as is, a path loaded like the CLI loads it, a module wrapped."""
    if isinstance(model, DiagnosticModel):
        return model
    if isinstance(model, (str, Path)):
        return load_model(model, backbone=backbone, keep_temporal=keep_temporal or None, device=device)
    if not isinstance(model, nn.Module):
        raise VdiagError(f"cannot diagnose a {type(model).__name__}: give an nn.Module, a checkpoint path or a Hugging Face folder")
    return wrap(model, name=name, adapter=adapter, keep_temporal=keep_temporal, device=device)


def _temporal(model: ModelLike, loaded: DiagnosticModel, *, backbone, adapter, name, device: str) -> DiagnosticModel:
    """The same model with its temporal strides removed (the Koopman eigenvalues); a Hugging Face model
    with a fixed time table (VideoMAE, ViViT) keeps its tubelet steps, as in the report."""
    from vdiag.report.card import fixed_time_table

    if fixed_time_table(loaded):
        return loaded
    if isinstance(model, nn.Module):
        return wrap(model, name=name, adapter=adapter, keep_temporal=True, device=device)
    if isinstance(model, DiagnosticModel) and not Path(model.path).exists():  # wrapped in memory: a copy without strides
        return wrap(model.backbone, name=model.name, keep_temporal=True, device=device)
    return load_model(
        loaded.path,
        backbone=None if loaded.config else (backbone or loaded.name),
        layer=loaded.layer,
        keep_temporal=True,
        device=device,
    )


def _sampling(model: DiagnosticModel, sampling: Sampling | None, *, clips: int, frames, stride, size, mean, std) -> Sampling:
    if sampling is not None:
        return sampling
    chosen = default_sampling(model, clips=clips, frames=frames, stride=stride, size=size)
    if mean is not None or std is not None:
        chosen = Sampling(chosen.frames, chosen.stride, chosen.size, chosen.clips, tuple(mean or chosen.mean), tuple(std or chosen.std))
    return chosen


def diagnose(
    model: ModelLike,
    data: str | Path | DataRef | None = None,
    *,
    diagnostics: Sequence[str] = DEFAULT_DIAGNOSTICS,
    sampling: Sampling | None = None,
    frames: int | None = None,
    stride: int | None = None,
    size: int | None = None,
    clips: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    backbone: str | None = None,
    adapter: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    name: str | None = None,
    device: str = "cpu",
    out: str | Path | None = None,
    target: str = "label",
    options: dict[str, dict] | None = None,
    data_format: str | None = None,
    split_id: int | None = None,
    batch_size: int = 64,
    workers: int = 2,
    seed: int = 0,
    cache: bool = True,
) -> dict[str, Result]:
    """Run diagnostics on one model and return their results, as `vdiag probe / eval / viz eig` would.

    Args:
        model: an `nn.Module` in memory (the output adapter: module docstring), a checkpoint path
            (with `backbone` for a third-party state dict) or a Hugging Face folder, or a `DiagnosticModel`.
        data: a dataset folder or CSV, or a `DataRef` [a vdiag checkpoint's own data, else the
            synthetic dataset].
        diagnostics: any of `DIAGNOSTICS`: "static-bias", "shuffle", "factors" (synthetic data),
            "linear", "retrieval", "cluster", "eig" (Koopman eigenvalues).
        sampling: the clips; None takes the model's published clips (`default_sampling`: 16 × 2 at
            112 px and Kinetics normalisation for a module of yours) with `clips`, `frames`, `stride`,
            `size`, `mean`, `std` overriding it (the CLI's `--clips`, `--frames`, `--stride`, `--size`).
        backbone: the architecture of a third-party state dict given as `model` (the CLI's `--backbone`).
        adapter: `adapter(module, clips)` → one tensor, for a module whose forward returns something else.
        name: the model's name in results [the module's class name].
        device: where the model runs ("cpu", "cuda", "cuda:1").
        out: write each result as `<out>/<diagnostic>.json` and the figures there, as the CLI's
            `--out` [a new temporary folder for the figures and embeddings; no JSON written].
        target: what the probes classify: the label or a synthetic factor (`--target`).
        options: per diagnostic, more keyword arguments of its function, e.g.
            `{"shuffle": {"perturbation": "reverse"}, "eig": {"estimator": "shared"}}`.
        data_format, split_id: the dataset layout and UCF-101 / HMDB-51 split (`--format`, `--split-id`).
        batch_size, workers, seed, cache: clips per forward pass, decoding processes, the seed of the
            shuffled orders and probes, and the feature cache (`--batch-size`, `--workers`, `--seed`, `--no-cache`).

    Returns:
        diagnostic name → `Result` (`.metrics`, `.config`, `.details`, `.write(path)`), in the given order.

    Raises:
        VdiagError: an unknown diagnostic; a model that is not a module, a checkpoint or a folder;
            everything the diagnostics refuse (collapsed features, undecodable data, …).
    """
    unknown = [d for d in diagnostics if d not in DIAGNOSTICS]
    if unknown:
        raise VdiagError(f"unknown diagnostic {unknown[0]!r}; choose from {', '.join(DIAGNOSTICS)}")
    options = options or {}
    loaded = _model(model, backbone=backbone, adapter=adapter, name=name, keep_temporal=False, device=device)
    chosen = _sampling(loaded, sampling, clips=clips, frames=frames, stride=stride, size=size, mean=mean, std=std)
    settings = {"batch_size": batch_size, "workers": workers, "seed": seed, "cache": cache}
    extractor = Extractor(loaded, chosen, **settings)
    data = (
        data
        if isinstance(data, DataRef)
        else resolve_data(loaded, None if data is None else str(data), format=data_format, split_id=split_id)
    )
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="vdiag-"))
    if out is None and any(d in ("cluster", "eig") for d in diagnostics):
        note(f"figures and embeddings in {folder} (pass out= to choose)")
    results = {}
    for diagnostic in diagnostics:
        if diagnostic == "eig":
            temporal = Extractor(_temporal(model, loaded, backbone=backbone, adapter=adapter, name=name, device=device), chosen, **settings)
            result = _run(diagnostic, temporal, data, folder, target, options.get(diagnostic, {}))
        else:
            result = _run(diagnostic, extractor, data, folder, target, options.get(diagnostic, {}))
        result.checkpoint = str(loaded.path)
        if out is not None:
            result.write(folder / f"{diagnostic}.json")
        results[diagnostic] = result
    return results


def _run(diagnostic: str, extractor: Extractor, data: DataRef, folder: Path, target: str, extra: dict) -> Result:
    from vdiag.diagnostics.cluster import cluster
    from vdiag.diagnostics.factors import factor_probe
    from vdiag.diagnostics.recognition import linear_eval
    from vdiag.diagnostics.retrieval import retrieval
    from vdiag.diagnostics.shuffle import shuffle_probe
    from vdiag.diagnostics.static_bias import static_bias
    from vdiag.viz.eig import viz_eig

    if diagnostic == "static-bias":
        return static_bias(extractor, data, target=target, **extra)
    if diagnostic == "shuffle":
        return shuffle_probe(extractor, data, **extra)
    if diagnostic == "factors":
        return factor_probe(extractor, data, **extra)
    if diagnostic == "linear":
        return linear_eval(extractor, data, target=target, **extra)
    if diagnostic == "retrieval":
        return retrieval(extractor, data, target=target, **extra)
    if diagnostic == "cluster":
        return cluster(extractor, data, folder, target=target, **extra)
    return viz_eig(extractor, data, folder, **extra)


def report(
    models: Sequence[ModelLike],
    data: str | Path | DataRef | None,
    out: str | Path,
    *,
    samplings: Sequence[Sampling | None] | Sampling | None = None,
    backbones: Sequence[str | None] | str | None = None,
    names: Sequence[str | None] | None = None,
    clips: int = 10,
    device: str = "cpu",
    batch_size: int = 64,
    workers: int = 2,
    seed: int = 0,
    cache: bool = True,
) -> Result:
    """The report card of several models side by side, as `vdiag report` makes it (report.html, report.md).

    Args:
        models: `nn.Module`s in memory, checkpoint paths and Hugging Face folders, mixed freely; the
            first is the reference of the paired differences.
        data: the dataset [the first vdiag checkpoint's, else the synthetic dataset].
        out: the report's folder.
        samplings: one `Sampling` for all, or one per model (None: that model's published clips).
        backbones: the architecture of each third-party state dict (one for all, or one per model; None
            for modules, vdiag checkpoints and Hugging Face folders).
        names: the column heads of in-memory modules [their class names].
        clips: clips per video where a model takes its published clips.
        device, batch_size, workers, seed, cache: as for `diagnose`.

    Returns:
        The report's `Result` ("report"; `vdiag.report.card.build_report`).

    Raises:
        VdiagError: a list whose length is not that of `models`; what `diagnose` refuses.
    """
    from vdiag.report.card import build_report

    count = len(models)

    def each(values, what: str) -> list:
        if values is None or isinstance(values, (str, Sampling)):
            return [values] * count
        if len(values) != count:
            raise VdiagError(f"{what} has {len(values)} entries for {count} models; give one for all or one per model")
        return list(values)

    samplings, backbones, names = each(samplings, "samplings"), each(backbones, "backbones"), each(names, "names")
    settings = {"batch_size": batch_size, "workers": workers, "seed": seed, "cache": cache}
    extractors, temporal = [], []
    for model, sampling, backbone, name in zip(models, samplings, backbones, names):
        if isinstance(model, (str, Path)):
            extractors.append(load_extractor(model, backbone=backbone, device=device, sampling=sampling, clips=clips, **settings))
            temporal.append(None)  # reloaded without temporal strides, as the CLI does
            continue
        loaded = _model(model, backbone=backbone, adapter=None, name=name, keep_temporal=False, device=device)
        chosen = _sampling(loaded, sampling, clips=clips, frames=None, stride=None, size=None, mean=None, std=None)
        extractors.append(Extractor(loaded, chosen, **settings))
        kept = _temporal(model, loaded, backbone=backbone, adapter=None, name=name, device=device)
        temporal.append(Extractor(kept, chosen, **settings))
    first = extractors[0].model
    data = data if isinstance(data, DataRef) else resolve_data(first, None if data is None else str(data))
    return build_report(extractors, data, Path(out), temporal=temporal)
