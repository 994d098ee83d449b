"""Supervised training: cross-entropy on the dataset label or on a synthetic factor.

The reference point of BOLD-DI Fig. 2 (supervised Slow-R50 on Kinetics): a linear classifier on
the pooled embedding, trained end to end with the backbone. `target` is `label` (the dataset's
class) or the name of a synthetic factor (`bg_color`, `fg_trajectory`, …), so that one can train a
model that must learn appearance, or one that must learn motion, and diagnose both.
Every clip of a video is a training sample with the video's target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vdiag.methods.base import Method
from vdiag.models.backbones import VideoBackbone


class Supervised(Method):
    """Args: num_classes (filled in from the data), target ('label' or a factor name), dropout."""

    name = "supervised"
    min_positives = 1
    accumulates_exactly = True  # mean cross-entropy over independent clips

    def __init__(self, backbone: VideoBackbone, num_classes: int, *, target: str = "label", dropout: float = 0.0):
        super().__init__(backbone)
        self.target = target
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.embed_dim, num_classes))

    def targets(self, batch: dict) -> torch.Tensor:
        if self.target == "label":
            return batch["label"]
        return batch["factors"][self.target]

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        clips = batch["clips"]
        logits = self.encode(clips, self.classifier)  # (n, ρ, classes)
        target = self.targets(batch).to(logits.device).repeat_interleave(clips.shape[1])
        loss = F.cross_entropy(logits.flatten(0, 1), target)
        accuracy = (logits.flatten(0, 1).argmax(1) == target).float().mean()
        return {"loss": loss, "cross_entropy": loss.detach(), "accuracy": accuracy}
