"""Frozen feature extraction, with views and an on-disk cache.

    dataset split → N uniformly spread clips per video (10 by default, the retrieval / recognition
    protocol of ViDiDi App. B.4 and DCLR §4.1) → evaluation view (short side to `size`, centre crop,
    Kinetics normalisation) → view (real, static, shuffled, reversed, frame difference) → backbone
    under `torch.inference_mode` → per-clip features `(videos, clips, C)` (or `(videos, clips, C, T')`
    with `output="temporal"`, for Koopman analysis; or, for a concepts model, any feature of concepts
    Table 3 with `output="concepts.<name>"`, name in `CONCEPT_FEATURES`, e.g. the codes
    `(videos, clips, K)` with "concepts.q_v")

All views of a batch come from one decode, and a clip that repeats (uniform starts of a video
barely longer than the clip coincide) goes through the network once per deterministic view. Views
are deterministic: the static clip repeats the
first frame (BOLD-DI §3.2), the shuffled clip's order is drawn from (seed, video, clip) and is
never the identity, the frame difference uses one extra decoded frame instead of wrapping around.

The cache (`<cache dir>/features/<key>.npz`) is keyed by the model's fingerprint (the tensors
actually loaded, backbone, layer), the dataset split's content (paths, sizes, modification times,
content digests of the videos (`vdiag.io.content_digest`), labels), the view, the sampling and the
seed, so a second diagnostic on the same checkpoint reads instead of recomputing, and any change to
what the features depend on misses the cache, a video replaced by one of the same size and mtime
included. Each entry records its sources (`sources` in its metadata: the checkpoint and every
video with its size, mtime and digest), which `vdiag cache verify` checks.

Precision (`Extractor.precision`, `--precision`): "auto" runs the backbone under bf16 autocast on
CUDA (tensor cores; its speed-up is not measured on this project's CPU machine) and in float32
elsewhere; "bf16" asks for autocast on any device (CPU autocast too), "fp32" never. Features are stored as
float32 whatever the precision; a bf16 extraction is a different cache entry from a float32 one, and
results record the precision used (`config.precision`).

Under `torchrun` each rank extracts every world_size-th video and all ranks receive the whole set
(`all_gather_object`); rank 0 writes the cache.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import KW_ONLY, asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from vdiag import distributed as dist
from vdiag.catalog import CONCEPT_FEATURES
from vdiag.console import note, progress_bar, warn
from vdiag.data.datasets import FailureTracker, VideoClipDataset, collate_clips
from vdiag.data.formats import DatasetIndex, check_target
from vdiag.data.frameindex import cached_index
from vdiag.data.sampling import ClipSpec
from vdiag.data.views import KINETICS_MEAN, KINETICS_STD, eval_view, frame_difference, normalize, random_permutation, static_clip, trim
from vdiag.diagnostics.model import DiagnosticModel, load_model
from vdiag.errors import VdiagError
from vdiag.io import cache_dir, content_digest, save_npz

VIEWS = ("real", "static", "shuffled", "reversed", "difference")
OUTPUTS = ("pooled", "temporal", *(f"concepts.{name}" for name in CONCEPT_FEATURES))
CACHE_VERSION = 4  # 2: Sampling has mean/std; features record how their videos were read; 3: videos keyed by content, sources recorded;
# 4: clips placed by their own span whether or not the difference view's extra frame is read, padding counted per view
PRECISIONS = ("auto", "fp32", "bf16")


def autocast_dtype(device: str | torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of extraction: bf16 for "bf16", and for "auto" on CUDA; None (float32) otherwise.

    Raises:
        VdiagError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise VdiagError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "bf16" or (precision == "auto" and torch.device(device).type == "cuda"):
        return torch.bfloat16
    return None


@dataclass(frozen=True)
class Sampling:
    """How clips are taken: L frames at stride δ, `size`² pixels, `clips` uniform clips per video,
    normalised with the per-channel `mean` / `std` the model was trained with (Kinetics' by default)."""

    frames: int = 8
    stride: int = 2
    size: int = 64
    clips: int = 10
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD

    def normalize(self, clip: torch.Tensor) -> torch.Tensor:
        """A float clip `(C, T, H, W)` or batch `(B, C, T, H, W)` in [0, 1], normalised for the model."""
        return normalize(clip, self.mean, self.std)


def default_sampling(
    model: DiagnosticModel, *, clips: int = 10, frames: int | None = None, stride: int | None = None, size: int | None = None
) -> Sampling:
    """The sampling a checkpoint was trained with, with any given value overriding it.

    Args:
        model: the loaded checkpoint; a vdiag checkpoint records `data.frames`, `data.stride` and
            `data.size` in its config; other weights get their architecture's published clips and
            normalisation (`BackboneSpec.default_sampling`, e.g. 16 frames at stride 2, 112 px for
            R3D / R(2+1)D as ViDiDi App. B.4 and DCLR §4.1 evaluate them; a Hugging Face folder's
            own `config.json` / `preprocessor_config.json`).
        clips: uniformly spread clips per video (the 10-clip test).
        frames, stride, size: clip length (frames), frame stride (frames), crop side (pixels);
            None keeps the recorded or default value.

    Returns:
        The `Sampling`.
    """
    if model.config:  # a vdiag checkpoint: what it was trained on (Kinetics normalisation)
        recorded = model.config.get("data", {})
        base, norm = (recorded.get("frames", 8), recorded.get("stride", 2), recorded.get("size", 64)), {}
    else:  # other weights: the clips and normalisation their architecture's published weights take
        published = getattr(model.backbone, "default_sampling", None) or {}
        base = (published.get("frames", 16), published.get("stride", 2), published.get("size", 112))
        norm = {key: tuple(published[key]) for key in ("mean", "std") if published.get(key)}
    return Sampling(frames or base[0], stride or base[1], size or base[2], clips, **norm)


@dataclass
class Features:
    """Per-clip features of one view of one dataset split.

    features: (N, K, C) pooled, (N, K, C, T') temporal, (N, K, concepts) concept codes; labels: (N,);
    factors: name → (N,); reading: how the videos were read (`FailureTracker.summary`: failed
    videos, padded clips and videos, decoder switches, frame-count mismatches; this rank's counts).
    """

    view: str
    features: np.ndarray
    labels: np.ndarray
    video_ids: list[str]
    class_names: list[str]
    factors: dict[str, np.ndarray] = field(default_factory=dict)
    factor_values: dict[str, list[str]] = field(default_factory=dict)
    reading: dict[str, int] = field(default_factory=dict)

    @property
    def videos(self) -> np.ndarray:
        """(N, C): the mean over a video's clips (multi-clip averaging)."""
        return self.features.mean(axis=1)

    def __len__(self) -> int:
        return len(self.labels)


class _EvalTransform:
    """Worker-side: deterministic evaluation view, then normalisation (uint8 (C,T,H,W) → float)."""

    def __init__(self, sampling: Sampling):
        self.sampling = sampling

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.sampling.normalize(eval_view(clip, self.sampling.size))


def make_view(view: str, clips: torch.Tensor, length: int, *, seeds: list[int] | None = None) -> torch.Tensor:
    """A view of normalised clips: `(B, C, T(+1), H, W)` → `(B, C, length, H, W)`.

    Args:
        view: "real" (the first `length` frames), "static" (the first frame repeated, BOLD-DI §3.2),
            "reversed", "difference" (x[t + 1] − x[t] from the one extra decoded frame, no
            wrap-around; DCLR Eq. 4) or "shuffled" (a random order per clip, never the identity).
        clips: normalised clips with `length` frames, or `length + 1` for "difference".
        length: frames of the view.
        seeds: one per clip, drawing the shuffled orders (needed for "shuffled" only).

    Returns:
        The view, same dtype and device as `clips`.

    Raises:
        VdiagError: an unknown view.
    """
    if view == "real":
        return trim(clips, length)
    if view == "static":
        return static_clip(trim(clips, length), "first")
    if view == "reversed":
        return trim(clips, length).flip(2)
    if view == "difference":
        return frame_difference(clips, length)
    if view == "shuffled":
        video = trim(clips, length)
        orders = [random_permutation(length, torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack([clip[:, order.to(clip.device)] for clip, order in zip(video, orders)])
    raise VdiagError(f"unknown view {view!r}; choose one of: {', '.join(VIEWS)}")


def _clip_seed(seed: int, video: int, clip: int) -> int:
    return int(np.random.SeedSequence([seed, video, clip]).generate_state(1, np.uint64)[0] >> 1)


def video_sources(index: DatasetIndex) -> list[tuple[str, int, int, str]]:
    """Each video of a split as (path, size, mtime_ns, content digest); (path, −1, −1, "") when unreadable.

    The digest (`vdiag.io.content_digest`: the whole file up to 192 KiB, else its size and first,
    middle and last 64 KiB) tells a video replaced by another of the same size and mtime. It is
    taken from the video's frame index when that is valid for the file as it is (same size, mtime,
    inode and ctime: no read), else from the file.
    """
    out = []
    for record in index.records:
        try:
            stat = Path(record.path).stat()
            indexed = cached_index(record.path, stat)  # its frame index holds the digest while the file is unchanged
            digest = indexed.digest if indexed is not None and indexed.digest else content_digest(record.path, stat)
            out.append((str(record.path), stat.st_size, stat.st_mtime_ns, digest))
        except OSError:
            out.append((str(record.path), -1, -1, ""))
    return out


def index_fingerprint(index: DatasetIndex, sources: list[tuple[str, int, int, str]] | None = None) -> str:
    """A hash of what the features of a split depend on: files (size, mtime, content digest) and labels.

    Args:
        index: the dataset split.
        sources: its `video_sources`, if already taken.

    Returns:
        24 hexadecimal characters.
    """
    sources = video_sources(index) if sources is None else sources
    digest = hashlib.sha256(f"{index.format}|{index.split}".encode())
    for record, (_, size, mtime, content) in zip(index.records, sources):
        digest.update(f"|{record.path}|{size}|{mtime}|{content}|{record.label}|{sorted(record.factors.items())}".encode())
    return digest.hexdigest()[:24]


def cache_key(extractor: Extractor, index: DatasetIndex, view: str, *, output: str = "pooled", data: str | None = None) -> str:
    """The feature cache's key: a hash of everything the features depend on.

    Args:
        extractor: its model's fingerprint (the loaded tensors, backbone, layer), sampling and seed
            (the seed only for the shuffled view, the one view it changes).
        index: the dataset split (`index_fingerprint`: files, sizes, modification times, content
            digests, labels).
        view: one of `VIEWS`.
        output: one of `OUTPUTS`.
        data: `index_fingerprint(index)`, if already computed.

    Returns:
        32 hexadecimal characters, the file name of `<cache dir>/features/<key>.npz`.
    """
    parts = {
        "version": CACHE_VERSION,
        "model": extractor.model.fingerprint,
        "data": data or index_fingerprint(index),
        "view": view,
        "sampling": asdict(extractor.sampling),
        "seed": extractor.seed if view == "shuffled" else None,
        "output": output,
    }
    if extractor.amp_dtype is not None:  # bf16 features are another entry; float32 keys stay as they were
        parts["precision"] = "bf16"
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def extract_features(
    extractor: Extractor,
    index: DatasetIndex,
    views: tuple[str, ...] | list[str] = ("real",),
    *,
    output: str = "pooled",
    max_failures: float = 0.05,
) -> dict[str, Features]:
    """Features of `views` for every video of `index` (see the module docstring), from the cache when there.

    Args:
        extractor: the model and its settings: `sampling` (frames, stride, crop size, clips per
            video), `batch_size` (clips per forward pass; videos per batch = batch_size // clips, at
            least 1), `workers` (decoding processes), `decoder`, `seed` (the shuffled orders) and
            `cache` (read and write the feature cache; `--no-cache` turns it off).
        index: the dataset split.
        views: any of `VIEWS`: "real", "static" (first frame repeated, BOLD-DI §3.2), "shuffled",
            "reversed", "difference" (x[t + 1] − x[t], DCLR Eq. 4).
        output: "pooled" (the embedding, `(N, K, C)`), "temporal" (one feature per time step,
            `(N, K, C, T')`) or "concepts.<name>" (a concepts Table 3 feature of a `concepts`
            checkpoint, `CONCEPT_FEATURES`; "concepts.q_v" are the concept codes `(N, K, concepts)`).
        max_failures: share of videos that may fail to decode before extraction stops; the
            skipped ones are counted and reported.

    Returns:
        view → `Features`, N = the videos that decoded, K = `sampling.clips`, float32.

    Raises:
        VdiagError: an unknown view or output; shuffled / difference views of clips shorter than 2
            frames; more undecodable videos than `max_failures` allows, or none decodable.
    """
    for view in views:
        if view not in VIEWS:
            raise VdiagError(f"unknown view {view!r}; choose one of: {', '.join(VIEWS)}")
    if extractor.sampling.frames < 2 and ("shuffled" in views or "difference" in views):
        raise VdiagError("shuffled and frame-difference views need clips of at least 2 frames; raise --frames")
    folder = cache_dir() / "features"
    if output not in OUTPUTS:
        raise VdiagError(f"unknown feature output {output!r}; choose one of: {', '.join(OUTPUTS)}")
    videos = video_sources(index)
    data_key = index_fingerprint(index, videos)
    keys = {view: cache_key(extractor, index, view, output=output, data=data_key) for view in views}
    result: dict[str, Features] = {}
    if extractor.cache:
        for view in views:
            loaded = _read_cache(folder / f"{keys[view]}.npz", view)
            if loaded is not None:
                result[view] = loaded
    missing = [view for view in views if view not in result]
    if dist.world_size() > 1:  # nodes may see different caches: extract together (a collective) or not at all
        if dist.all_reduce_sum(torch.tensor([float(bool(missing))], device=extractor.model.device)).item() > 0:
            missing = list(views)
    if missing:
        computed = _extract(extractor, index, missing, output=output, max_failures=max_failures)
        changed = [] if not (extractor.cache and dist.is_main()) else [a[0] for a, b in zip(videos, video_sources(index)) if a != b]
        if changed:  # the features may hold the new content under the old key: keep them out of the cache
            warn(f"{len(changed)} videos changed while their features were extracted (e.g. {changed[0]}); not caching these features")
        for view, features in computed.items():
            result[view] = features
            if extractor.cache and dist.is_main() and not changed:
                _write_cache(folder / f"{keys[view]}.npz", features, _sources(extractor, view, output, videos))
    elif dist.is_main():
        note(f"features of {', '.join(views)} for {index.split} ({len(index)} videos) read from the cache")
    return {view: result[view] for view in views}


def _extract(extractor: Extractor, index: DatasetIndex, views: list[str], *, output: str, max_failures: float) -> dict[str, Features]:
    model, sampling, seed = extractor.model, extractor.sampling, extractor.seed
    extra = 1 if "difference" in views else 0
    # the extra frame serves the difference view only: every other view sees the same clips, and
    # counts its padding by its own frames, whether the difference view is extracted with it or not
    clip = ClipSpec(sampling.frames, sampling.stride, extra_frames=extra, extra_optional=True)
    dataset = VideoClipDataset(index, clip, "eval", sampling.clips, _EvalTransform(sampling), extractor.decoder, seed=seed)
    order = list(range(dist.rank(), len(dataset), dist.world_size()))
    videos_per_batch = max(1, extractor.batch_size // sampling.clips)
    loader = DataLoader(
        Subset(dataset, order),
        batch_size=videos_per_batch,
        num_workers=extractor.workers,
        collate_fn=collate_clips,
        persistent_workers=False,
    )
    tracker = FailureTracker(len(order), max_failures, warn, missing=len(index.missing))
    chunks: dict[str, list[np.ndarray]] = {view: [] for view in views}
    done: list[int] = []
    amp = extractor.amp_dtype
    autocast = torch.autocast(torch.device(model.device).type, dtype=amp, enabled=amp is not None)
    with progress_bar("videos") as progress, torch.inference_mode(), autocast:
        task = progress.add_task(f"features {index.split}, {len(views)} view{'s' if len(views) > 1 else ''}", total=len(order))
        for batch in loader:
            tracker.update(batch)
            if batch["size"]:
                clips = batch["clips"].to(model.device, non_blocking=True)  # (B, K, C, T+extra, H, W)
                count, per_video = clips.shape[:2]
                flat = clips.flatten(0, 1)
                ids = batch["index"].tolist()
                seeds = [_clip_seed(seed, i, k) for i in ids for k in range(per_video)]
                first, inverse = _distinct_clips(batch["starts"])
                for view in views:
                    if view == "shuffled":  # every clip has its own order, even where the frames repeat
                        out = _forward(model, make_view(view, flat, sampling.frames, seeds=seeds), output)
                    else:
                        out = _forward(model, make_view(view, flat[first], sampling.frames), output)[inverse]
                    chunks[view].append(out.float().cpu().numpy().reshape(count, per_video, *out.shape[1:]))
                done.extend(ids)
            progress.advance(task, batch["size"] + len(batch["failures"]))
    arrays = {view: np.concatenate(chunks[view]) if chunks[view] else np.zeros((0,)) for view in views}
    done_array = np.asarray(done, dtype=np.int64)
    if dist.world_size() > 1:
        done_array, arrays = _gather(done_array, arrays)
    if len(done_array) == 0:
        raise VdiagError(f"no video of {index.describe()} could be decoded; check the files or try --decoder pyav")
    sort = np.argsort(done_array)
    done_array = done_array[sort]
    records = [index.records[i] for i in done_array]
    labels = np.asarray([r.label for r in records], dtype=np.int64)
    factors = {name: np.asarray([r.factors[name] for r in records], dtype=np.int64) for name in index.factor_values}
    return {
        view: Features(
            view,
            arrays[view][sort].astype(np.float32),
            labels,
            [r.video_id for r in records],
            list(index.class_names),
            factors,
            dict(index.factor_values),
            tracker.summary(with_extra=view == "difference"),
        )
        for view in views
    }


def _forward(model: DiagnosticModel, clips: torch.Tensor, output: str) -> torch.Tensor:
    if output == "temporal":
        return model.time_features(clips)
    if output.startswith("concepts."):
        return model.method.concept_outputs(clips)[output.removeprefix("concepts.")]
    return model.embed(clips)


def _distinct_clips(starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform starts repeat when a video is barely longer than a clip (10 clips of 15 frames from
    a 16-frame video are 2 distinct clips): the deterministic views of the same (video, start) are
    computed once. `starts` (B, K) → (first: flat index of each distinct clip, inverse: for every
    flat clip, its distinct clip)."""
    videos, per_video = starts.shape
    keys = torch.arange(videos)[:, None] * (int(starts.max()) + 1) + starts
    unique, inverse = torch.unique(keys.flatten(), return_inverse=True)
    first = torch.full((len(unique),), videos * per_video, dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(videos * per_video), reduce="amin")
    return first, inverse


def _gather(done: np.ndarray, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    import torch.distributed as torch_dist

    parts: list = [None] * dist.world_size()
    torch_dist.all_gather_object(parts, (done, arrays))
    done = np.concatenate([p[0] for p in parts])
    merged = {view: np.concatenate([p[1][view] for p in parts if len(p[0])]) for view in arrays}
    return done, merged


def _read_cache(path: Path, view: str) -> Features | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            factors = {name: data[f"factor_{name}"] for name in meta["factor_values"]}
            return Features(
                view,
                data["features"],
                data["labels"],
                meta["video_ids"],
                meta["class_names"],
                factors,
                meta["factor_values"],
                meta.get("reading", {}),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # a truncated or foreign file
        warn(f"ignoring an unreadable feature cache file {path} ({err}); recomputing")
        return None


def _sources(extractor: Extractor, view: str, output: str, videos: list[tuple[str, int, int, str]]) -> dict:
    """What a cache entry was computed from, for `vdiag cache verify`: the checkpoint (path, how it
    was loaded, the fingerprint of the tensors loaded) and every video (path, size, mtime, digest),
    as they were before extraction."""
    model = extractor.model
    return {
        "version": CACHE_VERSION,
        "view": view,
        "output": output,
        "model": {
            "path": str(model.path),
            "fingerprint": model.fingerprint,
            "backbone": None if model.config else model.name,
            "layer": model.layer,
            "keep_temporal": model.backbone.keep_temporal,
        },
        "videos": [list(video) for video in videos],
    }


def _write_cache(path: Path, features: Features, sources: dict | None = None) -> None:
    meta = {
        "video_ids": features.video_ids,
        "class_names": features.class_names,
        "factor_values": features.factor_values,
        "reading": features.reading,
        "sources": sources,
    }
    arrays = {f"factor_{name}": values for name, values in features.factors.items()}
    try:
        save_npz(path, features=features.features, labels=features.labels, meta=np.asarray(json.dumps(meta)), **arrays)
    except (OSError, VdiagError) as err:
        warn(f"could not write the feature cache {path} ({err}); results are unaffected")


@dataclass
class Extractor:
    """A model with its extraction settings: `extractor(index, views)` → view → `Features`.

    Attributes:
        model: the frozen model (`load_model`).
        sampling: clip length, stride, crop size and clips per video.
        batch_size: clips per forward pass.
        workers: decoding processes (DataLoader workers).
        decoder: "auto", "decord" or "pyav".
        seed: draws the shuffled orders and seeds every probe and bootstrap of a diagnostic.
        cache: read and write the on-disk feature cache.
        precision: "auto" (bf16 autocast on CUDA, float32 elsewhere), "fp32" or "bf16" (autocast on
            any device); features are stored as float32 either way.
    """

    model: DiagnosticModel
    sampling: Sampling
    _: KW_ONLY
    batch_size: int = 64
    workers: int = 2
    decoder: str = "auto"
    seed: int = 0
    cache: bool = True
    precision: str = "auto"

    def __call__(self, index: DatasetIndex, views=("real",), *, output: str = "pooled") -> dict[str, Features]:
        """`extract_features(self, index, views, output=output)`."""
        return extract_features(self, index, tuple(views), output=output)

    @property
    def settings(self) -> dict:
        """The settings besides model and sampling, as keywords for `Extractor` or `load_extractor`."""
        return {
            "batch_size": self.batch_size,
            "workers": self.workers,
            "decoder": self.decoder,
            "seed": self.seed,
            "cache": self.cache,
            "precision": self.precision,
        }

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype extraction runs under on the model's device (`autocast_dtype`), None for float32."""
        return autocast_dtype(self.model.device, self.precision)

    def describe(self) -> dict:
        """The settings a result records in its `config`."""
        return {
            "backbone": self.model.name,
            "layer": self.model.layer,
            "keep_temporal": self.model.backbone.keep_temporal,
            "trained_with": self.model.method_name,
            **asdict(self.sampling),
            "seed": self.seed,
            "precision": "fp32" if self.amp_dtype is None else "bf16",
        }


def load_extractor(
    path: str | Path,
    *,
    backbone: str | None = None,
    layer: str | None = None,
    keep_temporal: bool | None = None,
    device: str = "cpu",
    sampling: Sampling | None = None,
    clips: int = 10,
    frames: int | None = None,
    stride: int | None = None,
    size: int | None = None,
    batch_size: int = 64,
    workers: int = 2,
    decoder: str = "auto",
    seed: int = 0,
    cache: bool = True,
    precision: str = "auto",
) -> Extractor:
    """Load a checkpoint (`load_model`) and attach the extraction settings: what every diagnostic starts from.

    Args:
        path: a vdiag checkpoint, or a state dict of a torchvision / pytorchvideo model.
        backbone, layer, keep_temporal, device: as for `load_model`.
        sampling: the sampling to use; None takes the checkpoint's (`default_sampling`) with
            `clips`, `frames`, `stride` and `size` overriding it.
        batch_size, workers, decoder, seed, cache, precision: as the `Extractor`'s attributes.

    Returns:
        The `Extractor`.

    Raises:
        VdiagError: (from `load_model`) the file is not a checkpoint, does not fit its backbone, or
            `layer` does not exist; an unknown precision.
    """
    model = load_model(path, backbone=backbone, layer=layer, keep_temporal=keep_temporal, device=device)
    if sampling is None:
        sampling = default_sampling(model, clips=clips, frames=frames, stride=stride, size=size)
    autocast_dtype(device, precision)  # an unknown precision is refused before any data is read
    return Extractor(model, sampling, batch_size=batch_size, workers=workers, decoder=decoder, seed=seed, cache=cache, precision=precision)


def targets(features: Features, target: str = "label") -> tuple[np.ndarray, list[str]]:
    """The labels to probe: the dataset's class, or a synthetic factor by name.

    Returns:
        labels `(N,)` int64 (indices into the names) and the names of their values.
    """
    if target == "label":
        return features.labels, features.class_names
    return features.factors[target], features.factor_values[target]


# A model's features must vary before any number about them means something. Both thresholds are
# relative to the features' own scale (the root-mean-square feature value), so they hold for any
# width, normalisation or activation range.
COLLAPSE_SPREAD = 1e-3  # RMS distance to the mean clip / RMS value: below it every clip has one embedding
DEAD_SPREAD = 1e-3  # the same per dimension: below it a dimension counts as constant ("dead")
HEALTH_ROWS = 4096  # clips the effective rank is computed on (evenly spaced), enough for a stable value


class DegenerateFeatures(VdiagError):
    """A model whose features cannot give a reading: not finite, all zero, or one embedding for every clip."""


def feature_health(features: np.ndarray) -> dict[str, float]:
    """How much the features of a set of clips vary, relative to their scale.

    Args:
        features: `(N, K, C)` per-clip, `(N, C)`, or `(N, K, C, T')` per-step features (each step a sample).

    Returns:
        `samples`, `dims` (C), `finite` (1 / 0), `scale` (RMS feature value), `spread` (RMS distance
        to the mean sample / scale: 0 for one embedding), `dead_dims` (dimensions whose standard
        deviation is below `DEAD_SPREAD` · scale) and `effective_rank` (exp of the entropy of the
        normalised singular values of the centred features, in [1, C]; Roy & Vetterli 2007; 0
        when nothing varies).
    """
    x = np.moveaxis(features, 2, -1) if features.ndim == 4 else features
    x = x.reshape(-1, x.shape[-1]).astype(np.float64)
    out = {"samples": len(x), "dims": x.shape[1], "finite": float(np.isfinite(x).all())}
    if not out["finite"] or len(x) == 0:
        return {**out, "scale": float("nan"), "spread": float("nan"), "dead_dims": x.shape[1], "effective_rank": float("nan")}
    scale = float(np.sqrt((x**2).mean()))
    centred = x - x.mean(axis=0)
    variance = centred.var(axis=0)
    spread = float(np.sqrt(variance.mean()) / scale) if scale > 0 else 0.0
    dead = int((np.sqrt(variance) <= DEAD_SPREAD * scale).sum())
    rows = centred[np.linspace(0, len(x) - 1, min(len(x), HEALTH_ROWS)).astype(int)]
    singular = np.linalg.svd(rows, compute_uv=False)
    total = singular.sum()
    if spread < COLLAPSE_SPREAD or total <= 0:
        rank = 0.0
    else:
        p = singular[singular > 0] / total
        rank = float(np.exp(-(p * np.log(p)).sum()))
    return {**out, "scale": scale, "spread": spread, "dead_dims": dead, "effective_rank": rank}


def require_reading(features: Features, *, model: DiagnosticModel, split: str) -> dict[str, float]:
    """Refuse, in one line, features that cannot give a reading; else their `feature_health`.

    Every diagnostic calls it on the real clips it reads, so a collapsed encoder (one embedding for
    every clip) is never read as "appearance" or "time-sensitive".

    Args:
        features: the real clips' features of one split.
        model: the model, named in the message.
        split: the split, named in the message.

    Returns:
        `feature_health(features.features)`.

    Raises:
        DegenerateFeatures: (a `VdiagError`) non-finite features; all features zero; a spread
            below `COLLAPSE_SPREAD` of the feature scale (every clip has the same embedding).
    """
    health = feature_health(features.features)
    where = f"{model.path}: the features of the {split} videos"
    if not health["finite"]:
        raise DegenerateFeatures(f"{where} hold NaN or infinity; no diagnostic reading is possible (check the checkpoint and the inputs)")
    if health["scale"] == 0:
        raise DegenerateFeatures(f"{where} are all zero; the model is collapsed, no diagnostic reading is possible")
    if health["spread"] < COLLAPSE_SPREAD:
        raise DegenerateFeatures(
            f"{where} are collapsed: they vary by {health['spread']:.1e} of their scale ({health['dead_dims']} of {health['dims']} "
            f"dimensions constant), every clip has one embedding, so no diagnostic reading is possible; check the training run"
        )
    return health


@dataclass
class TrainTest:
    """Real clips of the train split and `views` of the test split, with the labels of `target`, and
    `health`: `feature_health` of the train and test real clips (checked by `require_reading`)."""

    train: Features
    test: dict[str, Features]
    train_labels: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    health: dict[str, dict] = field(default_factory=dict)


def sample_sizes(**splits: Features) -> dict[str, int]:
    """The sample sizes a result reports: videos and clips per split, and frames per clip.

    Args:
        splits: split name → its `Features` (e.g. train=…, test=…).

    Returns:
        `<split>_videos`, `<split>_clips` for each split (`clips` counts every clip, N · K), and how
        its videos were read: `<split>_missing_videos` (listed by the annotation files but not on
        disk, left out), `<split>_padded_clips` (clips of videos shorter than one clip, padded
        by repeating their last frame: never presented as real), `<split>_failed_videos`,
        `<split>_decoder_switches`, `<split>_frame_count_mismatches` (docs/data-formats.md).
    """
    out = {}
    for name, features in splits.items():
        out[f"{name}_videos"] = len(features)
        out[f"{name}_clips"] = int(np.prod(features.features.shape[:2]))
        for key in ("missing_videos", "padded_clips", "failed_videos", "decoder_switches", "frame_count_mismatches"):
            out[f"{name}_{key}"] = int(features.reading.get(key, 0))
    return out


def train_test(extractor: Extractor, data, *, target: str = "label", test_views=("real",), output: str = "pooled") -> TrainTest:
    """The features every train-on-train, test-on-test diagnostic starts from, checked for a reading.

    Args:
        extractor: the model and its settings.
        data: a `DataRef` (the dataset folder or CSV and its layout; its train and test videos are
            disjoint, `DataRef.split`).
        target: "label" or a synthetic factor to classify.
        test_views: views of the test split (`VIEWS`); the train split is always "real".
        output: the feature (`OUTPUTS`).

    Returns:
        A `TrainTest`: train features, test features per view, the `target` labels of both, and the
        features' health.

    Raises:
        VdiagError: `target` is not a factor of the data (before any extraction); train and test
            share videos. `DegenerateFeatures`: the model's features are collapsed or not finite.
    """
    train = extractor(check_target(data.split("train"), target), ["real"], output=output)["real"]
    health = {"train": require_reading(train, model=extractor.model, split="train")}
    test = extractor(data.split("test"), test_views, output=output)
    if "real" in test:
        health["test"] = require_reading(test["real"], model=extractor.model, split="test")
    train_labels, class_names = targets(train, target)
    labels, _ = targets(test[test_views[0]], target)
    return TrainTest(train, test, train_labels, labels, class_names, health)


def require_concepts(extractor: Extractor) -> None:
    """Refuse, in one line, a model without concept outputs (a `concepts.<name>` output needs one).

    Raises:
        VdiagError: the checkpoint was not trained with `--method concepts`, or `--layer` is set.
    """
    model = extractor.model
    if not hasattr(model.method, "concept_outputs"):
        trained = f"trained with {model.method_name}" if model.method_name else "not a vdiag checkpoint"
        raise VdiagError(
            f"{model.path} is {trained}: concept maps and features need a checkpoint of "
            "`vdiag pretrain --method concepts` (static and dynamic concepts)"
        )
    if model.layer is not None:
        raise VdiagError("concepts are defined on the last stage; drop --layer")
