"""The objectives, one small module each; methods compose them.

Embeddings from ρ clips per video travel as `(n, ρ, D)`: n videos on this rank, ρ positives each
(BOLD-DI Eq. 1–2). Every loss returns the mean over this rank's anchors; under DDP the pieces
that need the whole batch (negatives, batch statistics, Sinkhorn sums) gather across ranks. Every
loss runs in float32 whatever the autocast state (`vdiag.losses.precision`): similarities,
log-sum-exp and Sinkhorn do not survive bf16.
"""

from vdiag.losses.byol import byol_loss
from vdiag.losses.infonce import info_nce, moco_info_nce
from vdiag.losses.swav import sinkhorn, swav_loss
from vdiag.losses.vicreg import vicreg_loss

__all__ = ["byol_loss", "info_nce", "moco_info_nce", "sinkhorn", "swav_loss", "vicreg_loss"]
