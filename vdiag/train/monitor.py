"""The online kNN monitor of pretraining: a cheap accuracy of the backbone's features every N epochs.

    every `train.knn_every` epochs (0: never), at the epoch's end, on rank 0:
    training split (gallery) and validation split (queries), one centre clip per video, evaluation
    view → backbone embeddings (eval mode, no gradient; bf16 autocast on CUDA with `train.amp`)
    → L2-normalised → 20 nearest gallery videos by cosine (`vdiag.neighbours.nearest`, the search
    `eval retrieval` uses) → weighted vote exp(s / 0.07) (Wu et al. 2018, §3.4; solo-learn's
    online kNN) → `knn_top1`: share of validation videos whose vote is their label

The queries are the `val` split, or `test` where the data has no `val` (and neither is the split
trained on). The numbers go into the epoch's record of metrics.jsonl (`knn_top1`, `knn_chance`: the
majority class share of the queries, `knn_failed_videos`) and TensorBoard (`val/knn_top1`). The
monitor leaves the run as it found it: the modules' train / eval modes are restored, no random
number is drawn from the global generators (its loader has its own), and BatchNorm statistics do
not move (eval mode), so resumed runs stay exact. A dataset without a usable validation split turns
the monitor off with one warning instead of stopping the run.

Under torchrun only rank 0 computes it (the other ranks wait at the epoch's checkpoint), so keep it
cheap on big data: its cost is one forward pass per training and validation video.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from vdiag import distributed as dist
from vdiag.console import warn
from vdiag.data.datasets import VideoClipDataset, collate_clips
from vdiag.data.formats import DatasetIndex, load_index
from vdiag.data.sampling import ClipSpec
from vdiag.data.synthetic import default_synthetic_dataset
from vdiag.data.views import eval_view, normalize
from vdiag.errors import VdiagError
from vdiag.neighbours import knn_classify, nearest

KNN_NEIGHBOURS = 20  # solo-learn's online kNN (k = 20, τ = 0.07); Wu et al. 2018 use k = 200
KNN_TEMPERATURE = 0.07
BATCH_CLIPS = 64


class _EvalClip:
    """Worker-side: the deterministic evaluation view, normalised (uint8 (C,T,H,W) → float)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return normalize(eval_view(clip, self.size))


def embed_split(backbone: torch.nn.Module, index: DatasetIndex, config: dict, device: str, *, decoder: str = "auto"):
    """One centre clip per video through `backbone` in eval mode: (L2-normalised `(N, C)` float32 on CPU, `(N,)` labels, failed videos).

    Args:
        backbone: maps `(B, 3, T, H, W)` to pooled `(B, C)`.
        index: the split.
        config: a resolved config (`data.frames`, `stride`, `size`, `pad`, `workers`, `seed`, `train.amp`).
        device: where the backbone is.
        decoder: "auto", "decord" or "pyav".

    Returns:
        embeddings, labels (of the videos that decoded, in index order) and the count of videos that did not.
    """
    data = config["data"]
    policy = {"clamp": "pad", "loop": "loop"}[data["pad"]]
    clip = ClipSpec(num_frames=data["frames"], stride=data["stride"], short_video=policy)
    dataset = VideoClipDataset(index, clip, "eval", 1, _EvalClip(data["size"]), decoder, seed=config["seed"])
    loader = DataLoader(
        dataset,
        batch_size=BATCH_CLIPS,
        num_workers=data["workers"],
        collate_fn=collate_clips,
        generator=torch.Generator(),  # the loader's base seed is not drawn from the global generator
    )
    amp = str(device).startswith("cuda") and config["train"]["amp"]
    embeddings, labels, failed = [], [], 0
    with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
        for batch in loader:
            failed += len(batch["failures"])
            if not batch["size"]:
                continue
            clips = batch["clips"][:, 0].to(device, non_blocking=True)  # (B, C, T, H, W)
            embeddings.append(torch.nn.functional.normalize(backbone(clips).float(), dim=1).cpu())
            labels += [index.records[i].label for i in batch["index"].tolist()]
    width = embeddings[0].shape[1] if embeddings else 0
    return (torch.cat(embeddings) if embeddings else torch.zeros(0, width)), np.asarray(labels, dtype=np.int64), failed


def knn_accuracy(
    gallery: torch.Tensor, gallery_labels: np.ndarray, queries: torch.Tensor, query_labels: np.ndarray, *, k: int = KNN_NEIGHBOURS
) -> float:
    """Top-1 accuracy of a weighted kNN vote (Wu et al. 2018, §3.4) of normalised queries among a normalised gallery.

    Args:
        gallery: `(G, C)` L2-normalised; gallery_labels: `(G,)` int.
        queries: `(Q, C)` L2-normalised; query_labels: `(Q,)` int.
        k: neighbours that vote.

    Returns:
        The share of queries whose vote is their label, in [0, 1] (NaN without queries).
    """
    if len(queries) == 0 or len(gallery) == 0:
        return float("nan")
    classes = int(max(gallery_labels.max(), query_labels.max())) + 1
    similarity, index = nearest(queries, gallery, k, device=gallery.device)
    predicted = knn_classify(similarity, index, gallery_labels, classes, temperature=KNN_TEMPERATURE).numpy()
    return float((predicted == query_labels).mean())


def _query_split(config: dict) -> tuple[DatasetIndex, DatasetIndex] | None:
    data = config["data"]
    path = data["path"] or str(default_synthetic_dataset())
    if data["split"] == "all":
        warn("train.knn_every: the run trains on every video (data.split=all), so no split is left to monitor; kNN monitor off")
        return None
    gallery = load_index(path, data["format"], data["split"], data["split_id"])
    for name in [s for s in ("val", "test") if s != data["split"]]:
        try:
            queries = load_index(path, data["format"], name, data["split_id"])
        except VdiagError:
            continue
        train_paths = {str(r.path) for r in gallery.records}
        if len(queries) and not any(str(r.path) in train_paths for r in queries.records):
            return gallery, queries
    warn(f"train.knn_every: {path} has no validation or test split apart from the training videos; kNN monitor off")
    return None


def knn_monitor(method, config: dict, device: str, *, epoch: int, step: int, decoder: str = "auto", log=None) -> dict[str, float]:
    """The kNN monitor's numbers for the epoch that just ended, or {} when it is not due (see the module docstring).

    Args:
        method: the method being trained (its `backbone` is embedded; modes restored afterwards).
        config: the resolved config (`train.knn_every`: every this many epochs, 0 off).
        device: the training device.
        epoch: epochs done (1-based: the monitor runs when `epoch % knn_every == 0`).
        step: the global step, for TensorBoard.
        decoder: the training run's decoder.
        log: the run's metrics log; its `tensorboard` writer (when there) gets `val/knn_top1`.

    Returns:
        `knn_top1` in [0, 1], `knn_chance` (the majority share of the queries), `knn_failed_videos`;
        {} when not due, on ranks other than 0, or when the data has nothing to monitor on.
    """
    every = config["train"].get("knn_every") or 0
    if not every or epoch % every or not dist.is_main():
        return {}
    splits = _query_split(config)
    if splits is None:
        return {}
    modes = {module: module.training for module in method.modules()}
    method.eval()
    try:
        gallery, gallery_labels, failed_g = embed_split(method.backbone, splits[0], config, device, decoder=decoder)
        queries, query_labels, failed_q = embed_split(method.backbone, splits[1], config, device, decoder=decoder)
    finally:
        for module, training in modes.items():
            module.train(training)
    top1 = knn_accuracy(gallery.to(device), gallery_labels, queries, query_labels)
    chance = float(np.bincount(query_labels).max() / len(query_labels)) if len(query_labels) else float("nan")
    if log is not None and getattr(log, "tensorboard", None) is not None:
        log.tensorboard.add_scalar("val/knn_top1", top1, step)
    return {"knn_top1": top1, "knn_chance": chance, "knn_failed_videos": failed_g + failed_q}
