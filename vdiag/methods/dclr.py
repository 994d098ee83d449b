"""DCLR (Ding, Qian and Xiong 2022): dual contrastive learning of static and dynamic cues.

Two temporally different clips v_i, v_j of a video each give three inputs to one shared encoder:
the RGB clip v, its static frame s (one random frame repeated T times, Eq. 3) and its frame
difference d = v_{2:T+1} − v_{1:T} (Eq. 4; clips are sampled with one extra frame, so nothing wraps
around). The objective (Eq. 16, λ = 0.5):

    L = L_VS + L_VD − L_SD + λ L_ac
    L_VS = I(v_i; s_j) + I(v_j; s_i)                       (Eq. 6, across the two views)
    L_VD = I(v_i; d_j) + I(v_j; d_i)                       (Eq. 7, printed with d_i twice: a typo)
    L_SD = I(s_i; d_i) + I(s_j; d_j)                       (Eq. 8, same view, maximised)
    L_ac = ‖ norm(A_v) − norm(A_s + A_d) ‖₁                (Eq. 12, gradient into the v stream only)

with I the InfoNCE of Eq. 2 (`vdiag.losses.cross_infonce`) on projected embeddings, A = Σ_c |F|
the class-agnostic activation map of the last feature map (Eq. 11) and norm a min-max over
T'×H'×W'. After `warmup_epochs`:

- feature refinement (Eq. 13–15): in L_VS the RGB feature is F(v) pooled with weights A_s,
  f_s(v), and in L_VD pooled with A_d, f_d(v);
- cross-video motion search (Eq. 9–10): a slow copy f̃ of the backbone, refreshed every
  `refresh_every` epochs, embeds the frame differences; view j's go into a queue, view i's query
  it, and the top-K neighbours (with similarity-prior weights p_k = S_k / Σ S) replace the
  own-video pair in L_VD: Σ_k p_k [I(v_i; d̃_k) + I(ṽ_k; d_i)].

Every ablation of Tables 4–7 is an option: `losses` (any of vv, vs, vd, sd; sd is subtracted),
`same_view`, `search` (none | dynamic | static | both), `neighbours`, `neighbour_weights`
(prior | uniform), `activation_alignment`, `refine_static`, `refine_dynamic`. For memory (issue 21):
`passes` (joint | separate: one backbone pass over [v; s; d], or one per input with its own
batch-norm statistics) and `recompute_extra_views` (with separate passes, s and d recompute their
activations in backward); f̃ runs before the trained passes, so its transient tensors never add to
what they keep for backward (docs/methods/dclr.md, Memory).

`DCLR.activation_maps(clips)` returns A_v, A_s, A_d for any input (Fig. 3); the function
`decoupled_activation_maps` does the same for any backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vdiag.data.views import decoupled_views, frame_difference, static_clip
from vdiag.distributed import gather_no_grad, rank, world_size
from vdiag.errors import VdiagError
from vdiag.losses.cross_infonce import pair_info_nce
from vdiag.losses.precision import float32_island
from vdiag.methods.base import Method, StepSeed, loss_terms, momentum_copy
from vdiag.models.backbones import VideoBackbone, body_blocks
from vdiag.models.heads import mlp

LOSS_TERMS = ("vv", "vs", "vd", "sd")
SEARCH_MODES = ("none", "dynamic", "static", "both")


def activation_map(feature_map: torch.Tensor) -> torch.Tensor:
    """Class-agnostic activation A[t, h, w] = Σ_c |F[c, t, h, w]| (Eq. 11): (B, C, T, H, W) → (B, T, H, W)."""
    return feature_map.abs().sum(dim=1)


@float32_island
def minmax(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Min-max normalisation of each map over all its spatio-temporal positions (§3.3): (B, …) → [0, 1], float32."""
    flat = maps.flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low + eps)).view_as(maps)


def weighted_pool(feature_map: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_{t,h,w} F[:, t, h, w] · A[t, h, w] / Σ A (Eq. 13): (B, C, T, H, W), (B, T, H, W) → (B, C)."""
    weights = weights.unsqueeze(1)
    return (feature_map * weights).sum(dim=(2, 3, 4)) / weights.sum(dim=(2, 3, 4)).clamp_min(1e-6)


@torch.no_grad()
def decoupled_activation_maps(
    backbone: nn.Module,
    clips: torch.Tensor,
    *,
    static_frame: str = "middle",
    generator: torch.Generator | None = None,
    normalised: bool = False,
) -> dict[str, torch.Tensor]:
    """A_v, A_s, A_d (DCLR Eq. 11, Fig. 3) of any backbone with a `feature_map`.

    The maps are Eq. 11's raw Σ_c |F| by default: what a foreground mass needs (a uniform map then
    scores the foreground's area share). `normalised=True` applies §3.3's per-map min-max, as Fig. 3
    draws them; min-max sends a uniform map to 0 and stretches a 1 % preference over the whole range,
    so never measure masses on normalised maps.

    Args:
        backbone: any model with `feature_map(clips) -> (B, C', T', H', W')`.
        clips: `(B, C, T, H, W)` normalised clips; v is the clip, s its `static_frame` repeated,
            d its frame difference (T − 1 frames, no wrap-around).
        static_frame: which frame the static clip repeats ("middle", "first" or "random").
        generator: the draw for `static_frame="random"`.
        normalised: min-max each map to [0, 1].

    Returns:
        {'video', 'static', 'difference'}: `(B, T', H', W')` float maps, ≥ 0 (in [0, 1] when
        normalised). The difference map has the temporal size of a (T − 1)-frame input.
    """
    maps = {
        "video": backbone.feature_map(clips),
        "static": backbone.feature_map(static_clip(clips, static_frame, generator)),
        "difference": backbone.feature_map(frame_difference(clips)),
    }
    maps = {name: activation_map(value.float()) for name, value in maps.items()}
    return {name: minmax(value) for name, value in maps.items()} if normalised else maps


class SearchQueue(nn.Module):
    """The memory of the cross-video search (Eq. 9–10): a FIFO of search keys f̃(·) (L2-normalised)
    with, for each entry, the current encoder's projected anchor and positive embeddings at the time
    it was queued (detached, as MoCo keys are), which serve as ṽ and d̃ (or s̃).

    Args:
        size: entries kept.
        key_dim: width of the search keys f̃(·).
        embed_dim: width of the projected embeddings.
    """

    def __init__(self, size: int, key_dim: int, embed_dim: int):
        super().__init__()
        self.register_buffer("keys", torch.zeros(size, key_dim))
        self.register_buffer("anchors", torch.zeros(size, embed_dim))
        self.register_buffer("positives", torch.zeros(size, embed_dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def reset(self) -> None:
        self.filled.zero_()
        self.pointer.zero_()

    @torch.no_grad()
    def push(self, keys: torch.Tensor, anchors: torch.Tensor, positives: torch.Tensor) -> None:
        size = self.keys.shape[0]
        keys, anchors, positives = (gather_no_grad(t.detach())[-size:] for t in (F.normalize(keys, dim=1), anchors, positives))
        start = int(self.pointer)
        slots = (start + torch.arange(keys.shape[0], device=keys.device)) % size
        self.keys[slots], self.anchors[slots], self.positives[slots] = keys.float(), anchors.float(), positives.float()
        self.pointer.fill_((start + keys.shape[0]) % size)
        self.filled.fill_(min(size, int(self.filled) + keys.shape[0]))

    @torch.no_grad()
    def search(self, queries: torch.Tensor, neighbours: int, prior: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-K entries by cosine similarity to each query: (indices (n, K), weights (n, K)).

        Prior weights p_k = S_k / Σ_k S_k (Eq. 10), with S clamped at a small positive value so
        that a negative similarity never gets a negative weight; uniform weights are 1/K.
        """
        filled = int(self.filled)
        similarity = F.normalize(queries.float(), dim=1) @ self.keys[:filled].T  # (n, filled)
        top = similarity.topk(min(neighbours, filled), dim=1)
        if prior:
            weights = top.values.clamp_min(1e-6)
            weights = weights / weights.sum(dim=1, keepdim=True)
        else:
            weights = torch.full_like(top.values, 1.0 / top.values.shape[1])
        return top.indices, weights


class DCLR(Method):
    """Dual contrastive learning (Eq. 16) with cross-video motion search and feature decoupling.

    Args:
        temperature: τ of Eq. 2 (not stated in the paper; 0.1 as the v-CL baselines).
        projector_*: the MLP head shared by v, s and d (not stated; MoCo v2's 2-layer head).
        losses: comma-separated terms of Eq. 16 (Table 4): vv, vs, vd, sd; sd is subtracted.
        same_view: pair v with s and d of the same clip instead of the other clip (Table 4).
        activation_weight: λ of Eq. 16 (0.5).
        sd_weight: the coefficient of −L_SD (1 in Eq. 16; see docs/methods/dclr.md on why one may
            want less).
        activation_alignment, refine_static, refine_dynamic: L_ac, f_s(v), f_d(v) (Table 7).
        search: which positives the cross-video search corrects: none, dynamic (default), static,
            both (Table 5).
        neighbours: K (5, Table 6); neighbour_weights: 'prior' (Eq. 10) or 'uniform'.
        queue_size: search memory (2048 on UCF-101, 16384 on Kinetics-400, §4.1).
        refresh_every: epochs between refreshes of the slow encoder f̃ (10 on UCF-101, 5 on K400).
        warmup_epochs: epochs before search and refinement start (§3.4: "after a few epochs").
        passes: 'joint' (default): one backbone pass over [v; s; d], batch-norm statistics of the
            mixture; 'separate': one pass per input, each normalised with its own batch statistics
            (the paper does not say which; docs/methods/dclr.md measures the difference).
        recompute_extra_views: with `passes=separate`, the s and d passes recompute their blocks'
            activations in backward instead of keeping them (the v pass keeps its own): same
            losses and gradients as without, less memory (docs/methods/dclr.md, memory).

    Raises:
        VdiagError: an unknown option value; `recompute_extra_views` without `passes=separate` or
            with a backbone whose blocks vdiag does not know.
    """

    name = "dclr"
    extra_frames = 1  # d needs T + 1 frames (Eq. 4)
    max_positives = 2

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        temperature: float = 0.1,
        projector_hidden: int = 2048,
        projector_dim: int = 128,
        projector_layers: int = 2,
        losses: str = "vs,vd,sd",
        same_view: bool = False,
        activation_weight: float = 0.5,
        sd_weight: float = 1.0,
        activation_alignment: bool = True,
        refine_static: bool = True,
        refine_dynamic: bool = True,
        search: str = "dynamic",
        neighbours: int = 5,
        neighbour_weights: str = "prior",
        queue_size: int = 2048,
        refresh_every: int = 10,
        warmup_epochs: int = 10,
        passes: str = "joint",
        recompute_extra_views: bool = False,
    ):
        super().__init__(backbone)
        terms = loss_terms(losses, LOSS_TERMS)
        if search not in SEARCH_MODES:
            raise VdiagError(f"method_args.search must be one of {', '.join(SEARCH_MODES)}; got {search!r}")
        if neighbour_weights not in ("prior", "uniform"):
            raise VdiagError(f"method_args.neighbour_weights must be prior or uniform; got {neighbour_weights!r}")
        if neighbours < 1 or queue_size < neighbours or refresh_every < 1:
            raise VdiagError("method_args.neighbours must be ≥ 1, queue_size ≥ neighbours and refresh_every ≥ 1")
        if passes not in ("joint", "separate"):
            raise VdiagError(f"method_args.passes must be joint or separate; got {passes!r}")
        if recompute_extra_views and passes != "separate":
            raise VdiagError(
                "method_args.recompute_extra_views needs method_args.passes=separate (one joint pass cannot recompute "
                "only s and d); for the joint pass use train.activation_checkpointing"
            )
        if recompute_extra_views and body_blocks(backbone.body) is None:
            raise VdiagError(f"method_args.recompute_extra_views: vdiag does not know the blocks of {backbone.name}; set it to false")
        self.passes, self.recompute_extra_views = passes, recompute_extra_views
        self.temperature = temperature
        self.terms = terms
        self.same_view = same_view
        self.activation_weight = activation_weight
        self.sd_weight = sd_weight
        self.activation_alignment = activation_alignment
        self.refine_static, self.refine_dynamic = refine_static, refine_dynamic
        self.search, self.neighbours, self.prior = search, neighbours, neighbour_weights == "prior"
        self.refresh_every, self.warmup_epochs = refresh_every, warmup_epochs
        self.projector = mlp(backbone.embed_dim, projector_hidden, projector_dim, num_layers=projector_layers)
        self.random = StepSeed()  # the static frame's index
        self.dynamic_queue = SearchQueue(queue_size, backbone.embed_dim, projector_dim) if search in ("dynamic", "both") else None
        self.static_queue = SearchQueue(queue_size, backbone.embed_dim, projector_dim) if search in ("static", "both") else None
        if search != "none":
            self.slow_backbone = momentum_copy(backbone)  # f̃: frozen, refreshed by copying, never trained
            self.register_buffer("slow_epoch", torch.full((), -1, dtype=torch.long))

    @property
    def decoupling(self) -> bool:
        """Search and refinement are on (after the warm-up epochs, §3.4)."""
        return self.epoch >= self.warmup_epochs

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        if self.search == "none" or not self.decoupling or (epoch - self.warmup_epochs) % self.refresh_every:
            return
        if int(self.slow_epoch) != epoch:  # not again when this epoch is resumed
            with torch.no_grad():
                for slow, online in zip(self.slow_backbone.state_dict().values(), self.backbone.state_dict().values()):
                    slow.copy_(online)
            for queue in (self.dynamic_queue, self.static_queue):
                if queue is not None:
                    queue.reset()  # keys of the old f̃ are not comparable with the new one's queries
            self.slow_epoch.fill_(epoch)

    def activation_maps(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """A_v, A_s, A_d of `clips` (B, C, T, H, W), min-max normalised (Fig. 3)."""
        return decoupled_activation_maps(self.backbone, clips, normalised=True)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        clips = batch["clips"]  # (n, 2, C, T + 1, H, W)
        n = clips.shape[0]
        video, static, difference = decoupled_views(
            clips.flatten(0, 1), self.random.generator(), rank() * 2 * n, world_size() * 2 * n
        )  # Eq. 3–4
        refine = self.decoupling
        searching = self.search != "none" and refine and self.training
        # f̃ (no gradient) before the trained passes, so its transient tensors never sit on top of their saved ones
        keys = self._slow_keys(static, difference, n) if searching else {}
        if self.passes == "joint":
            maps = self.backbone.feature_map(torch.cat([video, static, difference]))  # one pass: shared BN statistics
            map_v, map_s, map_d = maps.split(2 * n)
        else:  # each input with its own BN statistics; s and d first, so that backward frees v's activations
            recompute = True if self.recompute_extra_views else None  # before it recomputes s's and d's
            map_s, map_d = (self.backbone.feature_map(x, recompute=recompute) for x in (static, difference))
            map_v = self.backbone.feature_map(video)
        act_v, act_s, act_d = activation_map(map_v), activation_map(map_s).detach(), activation_map(map_d).detach()
        pooled_v, pooled_s, pooled_d = (m.mean(dim=(2, 3, 4)) for m in (map_v, map_s, map_d))
        v_for_s = weighted_pool(map_v, act_s) if refine and self.refine_static else pooled_v  # f_s(v), Eq. 13–14
        v_for_d = weighted_pool(map_v, act_d) if refine and self.refine_dynamic else pooled_v  # f_d(v), Eq. 13, 15
        z = self.projector(torch.cat([pooled_v, v_for_s, v_for_d, pooled_s, pooled_d])).view(5, n, 2, -1)
        z_v, z_vs, z_vd, z_s, z_d = z  # each (n, 2, D): [:, 0] is view i, [:, 1] view j
        other = (0, 1) if self.same_view else (1, 0)

        def dual(anchor, positive, pairs):  # Σ over (a, b) in pairs of I(anchor of view a; positive of view b)
            return sum(
                pair_info_nce(anchor[:, a], positive[:, b], anchor[:, a], positive[:, b], temperature=self.temperature) for a, b in pairs
            )

        cross, paired = ((0, 1), (1, 0)), tuple(zip((0, 1), other))
        parts: dict[str, torch.Tensor] = {}
        if "vv" in self.terms:  # Eq. 1, the v-CL baseline term
            parts["vv"] = dual(z_v, z_v, cross)
        if "vs" in self.terms:
            parts["vs"] = (
                self._searched(z_vs, z_s, keys.get("static"), self.static_queue) if "static" in keys else dual(z_vs, z_s, paired)
            )  # Eq. 6
        if "vd" in self.terms:
            parts["vd"] = (
                self._searched(z_vd, z_d, keys.get("dynamic"), self.dynamic_queue) if "dynamic" in keys else dual(z_vd, z_d, paired)
            )  # Eq. 7 / 10
        if "sd" in self.terms:  # Eq. 8: same view, maximised
            parts["sd"] = dual(z_s, z_d, ((0, 0), (1, 1)))
        loss = sum(value for name, value in parts.items() if name != "sd") - self.sd_weight * parts.get("sd", 0.0)
        if self.activation_alignment:  # Eq. 12: A_s, A_d detached, gradient into the v stream only
            parts["ac"] = (minmax(act_v) - minmax(act_s + act_d)).abs().mean()
            loss = loss + self.activation_weight * parts["ac"]
        return {"loss": loss, **{name: value.detach() for name, value in parts.items()}}

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        self.random.advance()

    @torch.no_grad()
    def _slow_keys(self, static: torch.Tensor, difference: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
        """f̃(d) and/or f̃(s) for both views, (n, 2, C')."""
        keys = {}
        if self.dynamic_queue is not None:
            keys["dynamic"] = self.slow_backbone(difference).view(n, 2, -1)
        if self.static_queue is not None:
            keys["static"] = self.slow_backbone(static).view(n, 2, -1)
        return keys

    def _searched(self, anchors: torch.Tensor, positives: torch.Tensor, keys: torch.Tensor, queue: SearchQueue) -> torch.Tensor:
        """Eq. 10: view j enters the queue, view i queries it, its top-K neighbours are the positives."""
        queue.push(keys[:, 1], anchors[:, 1], positives[:, 1])
        index, weights = queue.search(keys[:, 0], self.neighbours, self.prior)
        retrieved_positive, retrieved_anchor = queue.positives[index], queue.anchors[index]  # (n, K, D)
        forward = pair_info_nce(
            anchors[:, 0], retrieved_positive, anchors[:, 0], positives[:, 1], temperature=self.temperature, weights=weights
        )  # I(v; d̃_k)
        backward = pair_info_nce(
            retrieved_anchor, positives[:, 0], anchors[:, 1], positives[:, 0], temperature=self.temperature, weights=weights
        )  # I(ṽ_k; d)
        return forward + backward
