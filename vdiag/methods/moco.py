"""v-MoCo (He et al. 2020 as MoCo v2; Feichtenhofer et al. 2021; BOLD-DI §3.1).

Queries come from the online backbone + projector (3-layer MLP 2048 → 128, BOLD-DI §5.1), keys
from a momentum copy updated as θ_m ← γ θ_m + (1 − γ) θ after each step, never by backprop. Each
query's positives are the keys of its video's other ρ − 1 clips; its negatives are a FIFO queue of
keys from earlier batches (all ranks' keys under DDP). Temperature α = 0.1.

BOLD-DI §5.1 uses SyncBN for every method but MoCo, so MoCo keeps per-device BN. MoCo's shuffle-BN
trick is not used (see docs/methods/moco.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdiag.distributed import gather_no_grad
from vdiag.losses.infonce import moco_info_nce
from vdiag.methods.base import Method, apply_transform, ema_update, momentum_copy
from vdiag.models.backbones import VideoBackbone
from vdiag.models.heads import mlp


class MoCo(Method):
    """Args: temperature α, momentum γ, queue size K, projector widths and depth."""

    name = "moco"
    sync_batchnorm = False

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        temperature: float = 0.1,
        momentum: float = 0.999,
        queue_size: int = 65536,
        projector_hidden: int = 2048,
        projector_dim: int = 128,
        projector_layers: int = 3,
    ):
        super().__init__(backbone)
        self.temperature = temperature
        self.momentum = momentum
        self.projector = mlp(backbone.embed_dim, projector_hidden, projector_dim, num_layers=projector_layers)
        self.momentum_backbone = momentum_copy(self.backbone)
        self.momentum_projector = momentum_copy(self.projector)
        # random unit vectors until real keys arrive, as in MoCo's reference code
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, projector_dim), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        loss = self.objective(self.representations(batch))
        return {"loss": loss, "info_nce": loss.detach()}

    def representations(self, batch: dict) -> dict[str, torch.Tensor]:
        """Queries (with gradient), momentum keys, and the queue as it was before this batch's keys
        were enqueued (when training)."""
        clips = batch["clips"]
        queries = self.encode(clips, self.projector)
        with torch.no_grad():
            keys = F.normalize(self.encode(clips, self.momentum_projector, self.momentum_backbone), dim=-1)
        queue = self.queue.clone()
        if self.training:
            self._enqueue(keys.flatten(0, 1))
        return {"queries": queries, "keys": keys, "queue": queue}

    def objective(self, representations: dict, transform: torch.Tensor | None = None, temperature: float | None = None) -> torch.Tensor:
        """Eq. 1 against the queue; with a (D, D) `transform` P, on the parts q Pᵀ, k Pᵀ and queue Pᵀ."""
        queue = representations["queue"]
        if transform is not None:
            queue = F.normalize(apply_transform(queue, transform), dim=-1)
        return moco_info_nce(
            apply_transform(representations["queries"], transform),
            apply_transform(representations["keys"], transform),
            queue,
            temperature=temperature or self.temperature,
        )

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = gather_no_grad(keys)[: self.queue.shape[0]]
        start = int(self.queue_pointer)
        positions = (start + torch.arange(keys.shape[0], device=keys.device)) % self.queue.shape[0]
        self.queue[positions] = keys.to(self.queue.dtype)
        self.queue_pointer.fill_((start + keys.shape[0]) % self.queue.shape[0])

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        ema_update(self.momentum_backbone, self.backbone, self.momentum)
        ema_update(self.momentum_projector, self.projector, self.momentum)
