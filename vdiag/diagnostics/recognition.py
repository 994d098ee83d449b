"""`vdiag eval linear` and `vdiag eval finetune`: action recognition from a pretrained backbone.

Linear evaluation (DCLR §4.1 "linear probe"): the backbone stays frozen; the probe of
`vdiag.diagnostics.probe` trains on every clip of the train split and predicts a test video from
the mean probabilities of its 10 uniformly spread clips.

Fine-tuning (ViDiDi App. B.5, DCLR §4.1 "finetune"): a new linear head with dropout 0.5 on the
pooled embedding, the whole network trained with SGD (momentum 0.9, weight decay 1e-4) and a step
schedule (×0.1 at 60 % and 80 % of the run), then the same 10-clip test. The paper runs 100 epochs
at batch 128 and learning rate 0.2; the default here is scaled down (10 epochs, batch 32, learning
rate 0.05 = 0.2 · 32/128). It runs through the training engine (`vdiag.train.trainer`), so it
shows progress, checkpoints, resumes and runs under torchrun like `vdiag pretrain`.

    top1, top5   accuracy of the video-level prediction (top5 is 1 when there are ≤ 5 classes)
    chance       share of the most frequent test class
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vdiag import distributed as dist
from vdiag.data.formats import check_target
from vdiag.diagnostics.data import DataRef
from vdiag.diagnostics.features import (
    Extractor,
    load_extractor,
    require_concepts,
    require_reading,
    sample_sizes,
    targets,
    train_test,
)
from vdiag.diagnostics.probe import bootstrap, ceiling_flags, fit_probe, majority_share, predict_proba, topk_correct, with_intervals
from vdiag.errors import VdiagError
from vdiag.results import Result


def accuracy_metrics(probs: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Recognition accuracy of video-level predictions.

    Args:
        probs: `(N, classes)` video-level probabilities; labels: `(N,)` int.
        seed: seeds the bootstrap.

    Returns:
        `top1`, `top5` (shares in [0, 1]; top5 is 1 with ≤ 5 classes) with 95 % bootstrap intervals
        over videos, and `chance` (share of the most frequent class).
    """
    hits = {k: topk_correct(probs, labels, k) for k in (1, 5)}

    def statistics(rows: np.ndarray) -> dict[str, float]:
        return {f"top{k}": float(hit[rows].mean()) for k, hit in hits.items()}

    metrics = {**statistics(np.arange(len(labels))), "chance": majority_share(labels)}
    return with_intervals(metrics, bootstrap(statistics, len(labels), seed=seed))


def linear_eval(extractor: Extractor, data: DataRef, *, target: str = "label", feature: str = "embedding") -> Result:
    """Linear evaluation: a probe on frozen features of the train split, the 10-clip test on the test split (DCLR §4.1).

    Args:
        extractor: the model and its extraction settings (`extractor.seed` seeds probe and bootstrap).
        data: the dataset.
        target: "label" or a synthetic factor.
        feature: "embedding" (the pooled backbone output) or, for a `concepts` checkpoint, one of
            concepts Table 3's features (`CONCEPT_FEATURES`: v, q_v, …, F_v_dynamic).

    Returns:
        `Result` "eval linear"; metrics `top1`, `top5`, `chance` (see `accuracy_metrics`).

    Raises:
        VdiagError: a concepts feature of a model that is not a `concepts` checkpoint (or with
            `--layer`); `target` not a factor of the data; train and test sharing videos; collapsed
            features; a single training class.
    """
    output = "pooled" if feature == "embedding" else f"concepts.{feature}"
    if feature != "embedding":
        require_concepts(extractor)
    split = train_test(extractor, data, target=target, output=output)
    train, labels = split.train, split.labels
    probe = fit_probe(train.features, split.train_labels, seed=extractor.seed)
    probs = predict_proba(probe, split.test["real"].features, len(split.class_names))
    metrics = accuracy_metrics(probs, labels, seed=extractor.seed)
    return Result(
        command="eval linear",
        metrics=metrics,
        data=data.path,
        config={
            **extractor.describe(),
            "target": target,
            "feature": feature,
            **sample_sizes(train=train, test=split.test["real"]),
            "data": data.describe(),
        },
        details={"feature_health": split.health, "flags": ceiling_flags(metrics, len(labels))},
    )


@dataclass(frozen=True)
class FinetuneSettings:
    """ViDiDi App. B.5 scaled down (see the module docstring); `epochs=100, batch_size=128, lr=0.2` is the paper."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    dropout: float = 0.5
    milestones: tuple[float, ...] = (0.6, 0.8)


def finetune(
    extractor: Extractor,
    data: DataRef,
    out: Path,
    *,
    settings: FinetuneSettings = FinetuneSettings(),
    target: str = "label",
    device: str = "cpu",
    resume: bool = False,
) -> Result:
    """End-to-end fine-tuning with a new linear head, then the 10-clip test (ViDiDi App. B.5, DCLR §4.1).

    Runs the training engine (`vdiag.train.trainer.pretrain`, method "supervised" with the
    checkpoint as the backbone's weights): progress, checkpoints, resume and torchrun as for
    `vdiag pretrain`.

    Args:
        extractor: the pretrained model and its extraction settings (sampling, workers, seed).
        data: the dataset; trains on the train split, tests on the test split.
        out: the run folder (`final.pt` is the fine-tuned checkpoint).
        settings: epochs, batch, learning rate, momentum, weight decay, dropout, step milestones.
        target: "label" or a synthetic factor.
        device: where training runs.
        resume: continue an interrupted run in `out`.

    Returns:
        `Result` "eval finetune"; metrics `top1`, `top5`, `chance` (see `accuracy_metrics`);
        details: the fine-tuned checkpoint and the training history.

    Raises:
        VdiagError: the model probes a `--layer`; the dataset has no train/test split of its own (the
            training engine would train on the test videos); `target` is not a factor of the data;
            the run stopped before its last epoch (continue with `resume`).
    """
    from vdiag.train.config import resolve_config
    from vdiag.train.trainer import pretrain

    model = extractor.model
    if model.layer is not None:
        raise VdiagError("fine-tuning trains the whole backbone; drop --layer")
    if data.generated_split:
        raise VdiagError(
            f"{data.path} has no train/test split of its own, and fine-tuning trains on every video of it; "
            "put the videos under train/ and test/ folders (or add a split column to the CSV)"
        )
    check_target(data.split("train"), target)
    sampling = extractor.sampling
    options = {
        "backbone": {"name": model.name, "keep_temporal": model.backbone.keep_temporal, "weights": str(model.path)},
        "data": {
            "path": data.path,
            "format": data.format,
            "split": "train",
            "split_id": data.split_id,
            "frames": sampling.frames,
            "stride": sampling.stride,
            "size": sampling.size,
            "positives": 1,
            "workers": extractor.workers,
        },
        "train": {
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "optimizer": "sgd",
            "lr": settings.lr,
            "momentum": settings.momentum,
            "weight_decay": settings.weight_decay,
            "warmup_epochs": 0,
            "schedule": "step",
            "milestones": list(settings.milestones),
            "gamma": 0.1,
        },
        "method_args": {"target": target, "dropout": settings.dropout},
    }
    config = resolve_config("supervised", "cpu", options=options, seed=extractor.seed)
    run = pretrain(config, out, device=device, decoder=extractor.decoder, resume=resume)
    if not run.details.get("finished"):
        raise VdiagError(f"fine-tuning stopped before the end; continue with the same command and --resume (run folder {out})")
    dist.barrier()  # rank 0 wrote final.pt
    tuned = load_extractor(run.checkpoint, device=model.device, sampling=sampling, **extractor.settings)
    test = tuned(data.split("test"), ["real"])["real"]
    health = require_reading(test, model=tuned.model, split="test")
    labels, _ = targets(test, target)
    classifier = tuned.model.method.classifier
    with torch.inference_mode():
        clips = torch.from_numpy(test.features).to(model.device)  # (N, K, C)
        probs = classifier(clips).softmax(-1).mean(1).cpu().numpy()
    metrics = accuracy_metrics(probs, labels, seed=extractor.seed)
    return Result(
        command="eval finetune",
        metrics=metrics,
        data=data.path,
        files=[str(run.checkpoint)],
        config={
            **extractor.describe(),
            "target": target,
            **settings.__dict__,
            "milestones": list(settings.milestones),
            **sample_sizes(test=test),
            "data": data.describe(),
        },
        details={
            "finetuned_checkpoint": str(run.checkpoint),
            "train_history": run.details.get("history", []),
            "feature_health": {"test": health},
            "flags": ceiling_flags(metrics, len(labels)),
        },
    )
