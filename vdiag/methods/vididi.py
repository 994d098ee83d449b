"""ViDiDi (Chen et al. 2024): a clip and its temporal derivatives as views.

Each video gives two augmented clips V and V' (App. B.1: augmentation before differentiation).
Their 0th, 1st or 2nd temporal derivatives (finite forward differences, Eq. 3–4) go to the two
streams of an instance-discrimination objective, chosen per batch by the balanced alternating
schedule of Algorithm 1:

    epoch mod 4 = 0: (∂V, ∂V')     1: (∂V, V')     2: (V, ∂V')     3: (V, V')      (lines 1–4)
    then, with probability 0.5, both once more: (∂X, ∂X')                        (lines 5–6)

so 2nd-order pairs arise from the extra step. Every clip of a batch gets the same order (§3.2).
Clips are sampled with two extra frames, so a derivative of order k over T frames never wraps
around; each stream keeps the first T frames of its view.

ViDiDi composes with a base objective through inheritance: `ViDiDiSimCLR(ViDiDi, SimCLR)` changes
the inputs and leaves SimCLR's encoder, heads and loss as they are (App. A: shared encoder f,
projector h, BYOL's predictor g and target network). Its state dict is the base method's, plus
the two buffers of the schedule's random draws (`schedule_random.seed`, `.steps`).

The ablations of Table 6 are options (see docs/methods/vididi.md for the mapping):
`schedule` ∈ balanced | reverse | alternate | alternate-mix | random, `second_order_prob`, and
`random_max_order` for the random schedule.

Example:
    >>> method = build_method("vididi-vicreg", build_backbone("tiny"))
    >>> method.start_epoch(1)   # epoch mod 4 = 1: (∂V, V'), or (∂²V, ∂V') half the time
"""

from __future__ import annotations

import torch

from vdiag.data.views import temporal_derivative
from vdiag.errors import VdiagError
from vdiag.methods.base import Method, StepSeed
from vdiag.methods.byol import BYOL
from vdiag.methods.simclr import SimCLR
from vdiag.methods.vicreg import VICReg
from vdiag.models.backbones import VideoBackbone

# (order of stream 1, order of stream 2) per epoch, cycling; None draws the orders at random.
SCHEDULES: dict[str, tuple[tuple[int, int], ...] | None] = {
    "balanced": ((1, 1), (1, 0), (0, 1), (0, 0)),  # Algorithm 1, lines 1–4
    "reverse": ((0, 0), (0, 1), (1, 0), (1, 1)),  # Table 6 "Reverse ViDiDi"
    "alternate": ((1, 1), (0, 0)),  # Table 6 "+Schedule 1st"
    "alternate-mix": ((1, 1), (1, 0), (0, 0)),  # Table 6 "+Schedule 1st & Mix"
    "random": None,  # Table 6 "+Random 1st (& 2nd)": derivatives as a random augmentation
}


def derivative_orders(
    schedule: str, epoch: int, generator: torch.Generator, *, second_order_prob: float = 0.5, random_max_order: int = 1
) -> tuple[int, int]:
    """The derivative orders (X, X') of one batch (Algorithm 1).

    The scheduled pair depends on the epoch only; the random parts (the coin of lines 5–6, and
    both orders under the random schedule, uniform over 0..random_max_order per stream) come
    from `generator`, so a batch's orders are a function of (epoch, generator state).

    Args:
        schedule: a key of `SCHEDULES` ('balanced' is Algorithm 1).
        epoch: the 0-based epoch (the scheduled pair cycles with it, lines 1–4).
        generator: the step's random source (`StepSeed.generator()`).
        second_order_prob: probability of differentiating both once more (lines 5–6).
        random_max_order: the highest order the 'random' schedule draws.

    Returns:
        (order of X, order of X'), each in 0..2.
    """
    cycle = SCHEDULES[schedule]
    if cycle is None:
        first, second = (int(v) for v in torch.randint(0, random_max_order + 1, (2,), generator=generator))
    else:
        first, second = cycle[epoch % len(cycle)]
    if float(torch.rand((), generator=generator)) < second_order_prob:  # line 6: differentiate both once more
        first, second = first + 1, second + 1
    return first, second


class ViDiDi(Method):
    """Derivative views and the Algorithm 1 schedule on top of a two-stream base objective.

    Args:
        schedule: 'balanced' (Algorithm 1), or a Table 6 ablation: 'reverse', 'alternate',
            'alternate-mix', 'random'.
        second_order_prob: probability of the extra differentiation of both inputs (0.5, line 5).
        random_max_order: highest order the 'random' schedule draws (1 or 2).
        **base_arguments: the base objective's own options (temperature, projector widths, …).
    """

    extra_frames = 2
    max_positives = 2

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        schedule: str = "balanced",
        second_order_prob: float = 0.5,
        random_max_order: int = 1,
        **base_arguments,
    ):
        super().__init__(backbone, **base_arguments)
        if schedule not in SCHEDULES:
            raise VdiagError(f"unknown ViDiDi schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 <= second_order_prob <= 1.0:
            raise VdiagError(f"method_args.second_order_prob must be in [0, 1], got {second_order_prob}")
        if random_max_order not in (1, 2):
            raise VdiagError(f"method_args.random_max_order must be 1 or 2, got {random_max_order}")
        if schedule == "random" and random_max_order == 2 and second_order_prob > 0:
            raise VdiagError(
                "random_max_order 2 with second_order_prob > 0 would need 3rd derivatives; set method_args.second_order_prob=0"
            )
        self.schedule = schedule
        self.second_order_prob = second_order_prob
        self.random_max_order = random_max_order
        self.schedule_random = StepSeed()  # the coin of line 5: the same on every rank and on resume

    def orders(self) -> tuple[int, int]:
        """The derivative orders of the next batch."""
        return derivative_orders(
            self.schedule,
            self.epoch,
            self.schedule_random.generator(),
            second_order_prob=self.second_order_prob,
            random_max_order=self.random_max_order,
        )

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        clips = batch["clips"]  # (n, 2, C, T + 2, H, W)
        length = clips.shape[3] - self.extra_frames
        first, second = self.orders()
        views = torch.stack([temporal_derivative(clips[:, 0], first, length), temporal_derivative(clips[:, 1], second, length)], dim=1)
        outputs = super().forward({**batch, "clips": views})
        order = torch.tensor([first, second], dtype=torch.float32, device=clips.device)
        return {**outputs, "order_x": order[0], "order_x_prime": order[1]}

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        super().after_step(progress)
        self.schedule_random.advance()


class ViDiDiSimCLR(ViDiDi, SimCLR):
    """ViDiDi-SimCLR (App. A.2): InfoNCE (Eq. 6) between the two derivative views."""

    name = "vididi-simclr"


class ViDiDiBYOL(ViDiDi, BYOL):
    """ViDiDi-BYOL (App. A.3): online prediction of the target projection (Eq. 7)."""

    name = "vididi-byol"


class ViDiDiVICReg(ViDiDi, VICReg):
    """ViDiDi-VIC (App. A.4): variance-invariance-covariance (Eq. 8–11)."""

    name = "vididi-vicreg"
