"""Static & Dynamic Concepts (Qian et al. 2022): concept codes and local concept contrast.

Each video gives two clips; each clip gives three inputs to one shared backbone f: the clip v, its
static frame s and its frame difference d (as in DCLR; one extra frame is sampled, no wrap-around).
With C the backbone's width and GAP its global average pooling (Eq. 2):

- prototypes P_s (K_s × C), P_d (K_d × C), P_v ((K_s + K_d) × C) (Eq. 1);
- concept codes q = cos(P, σ(GAP f(x))), σ the identity (Eq. 3); q_v splits into q_v^s (first
  K_s) and q_v^d (last K_d);
- L_aln (Eq. 4): Sinkhorn-Knopp soft codes, cross-entropy at temperature τ, static concepts
  aligned between v and s, dynamic between v and d;
- L_div = ‖q_s‖₁ + ‖q_d‖₁ + ‖q_v‖₁ (Eq. 5);
- L_fid = Σ ‖g(q) − sg(GAP f(x))‖² / C with 2-layer MLPs g (Eq. 6; the mean over channels, see docs);
- local features F = QKV(P, f(x), f(x)) with residue (Eq. 7): prototypes (linearly projected) as
  queries over the T'×H'×W' positions of the feature map; F_v splits into F_v^s, F_v^d;
- L_loc (Eq. 10): the margin contrast of Eq. 9 over valid concepts, the intersection of the top-K
  of both codes (Eq. 8), switched on after `warmup_epochs` (5, §3.3);
- L = L_aln + α L_loc + β L_fid + γ L_div (Eq. 11; α = β = 1, γ = 0.01).

v of one clip is paired with s and d of the other clip (`same_view=True` pairs them within a clip);
see docs/methods/concepts.md for this and the other choices the paper leaves open.

For diagnostics, `concept_outputs(clips)` returns the codes, each concept's attention map over
T'×H'×W' and the Table 3 features (v, q_v, q_v^s, q_v^d, F_v, F_v^s, F_v^d).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vdiag.data.views import decoupled_views
from vdiag.distributed import rank, world_size
from vdiag.errors import VdiagError
from vdiag.losses.concepts import concept_alignment, local_concept_contrast, valid_concepts
from vdiag.losses.precision import float32_island
from vdiag.methods.base import Method, StepSeed, loss_terms
from vdiag.models.backbones import VideoBackbone
from vdiag.models.heads import mlp

LOSS_TERMS = ("aln", "loc", "fid", "div")


@float32_island
def concept_codes(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """q^(k) = cos(P^(k), σ(x)) with σ the identity (Eq. 3): (B, C), (K, C) → (B, K), in float32 whatever the autocast state."""
    return F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).T


class ConceptAttention(nn.Module):
    """QKV cross-attention with residue (Eq. 7): the K prototypes, linearly projected, are the
    queries; the feature map's T'·H'·W' positions, linearly projected, the keys and values.
    One set of projections serves s, d and v."""

    def __init__(self, dim: int):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, prototypes: torch.Tensor, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, C), (B, C, T, H, W) → local features (B, K, C), attention (B, K, T, H, W)."""
        tokens = feature_map.flatten(2).transpose(1, 2)  # (B, N, C)
        queries = self.query(prototypes)  # (K, C)
        attention = torch.softmax(torch.einsum("kc,bnc->bkn", queries, self.key(tokens)) * self.scale, dim=-1)
        local = torch.einsum("bkn,bnc->bkc", attention, self.value(tokens)) + queries  # residue
        return local, attention.view(*attention.shape[:2], *feature_map.shape[2:])


def top_fraction_mean(local: torch.Tensor, codes: torch.Tensor, fraction: float = 0.1) -> torch.Tensor:
    """The mean local feature of each clip's most active concepts (the top `fraction` of its
    codes, Table 3's F_v: "filter out Top-10% concepts from q_v, then average"). (B, K, C) → (B, C)."""
    count = max(1, math.ceil(fraction * codes.shape[1]))
    index = codes.topk(count, dim=1).indices  # (B, count)
    return local.gather(1, index[:, :, None].expand(-1, -1, local.shape[2])).mean(1)


class Concepts(Method):
    """Static and dynamic concept learning with local concept contrast (Eq. 11).

    Args:
        static_concepts, dynamic_concepts: K_s, K_d (50 each, §4.2).
        temperature: τ of Eq. 4 (not stated; 0.1, SwAV's); epsilon, sinkhorn_iterations: Sinkhorn-Knopp
            (not stated; SwAV's 0.05 and 3).
        local_weight, fidelity_weight, diversity_weight: α, β, γ of Eq. 11 (1, 1, 0.01).
        top_k: K of Eq. 8 (5, §4.2); margin: λ of Eq. 9 (not stated; 1.0 on unit vectors).
        warmup_epochs: epochs before L_loc joins (5, §3.3).
        losses: the terms of Eq. 11 to use (Table 4 ablation), comma-separated: aln, loc, fid, div.
        same_view: align v with s and d of the same clip instead of the other clip.
    """

    name = "concepts"
    extra_frames = 1  # d needs T + 1 frames
    max_positives = 2

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        static_concepts: int = 50,
        dynamic_concepts: int = 50,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        local_weight: float = 1.0,
        fidelity_weight: float = 1.0,
        diversity_weight: float = 0.01,
        top_k: int = 5,
        margin: float = 1.0,
        warmup_epochs: int = 5,
        losses: str = "aln,loc,fid,div",
        same_view: bool = False,
    ):
        super().__init__(backbone)
        terms = loss_terms(losses, LOSS_TERMS)
        if min(static_concepts, dynamic_concepts, top_k) < 1:
            raise VdiagError("method_args.static_concepts, dynamic_concepts and top_k must be ≥ 1")
        dim = backbone.embed_dim
        self.static_concepts, self.dynamic_concepts = static_concepts, dynamic_concepts
        self.temperature, self.epsilon, self.sinkhorn_iterations = temperature, epsilon, sinkhorn_iterations
        self.local_weight, self.fidelity_weight, self.diversity_weight = local_weight, fidelity_weight, diversity_weight
        self.top_k, self.margin, self.warmup_epochs = top_k, margin, warmup_epochs
        self.terms, self.same_view = terms, same_view
        self.static_prototypes = nn.Parameter(torch.randn(static_concepts, dim))  # P_s
        self.dynamic_prototypes = nn.Parameter(torch.randn(dynamic_concepts, dim))  # P_d
        self.video_prototypes = nn.Parameter(torch.randn(static_concepts + dynamic_concepts, dim))  # P_v
        self.attention = ConceptAttention(dim)
        # g_s, g_d, g_v: two-layer MLPs from codes back to features (Eq. 6; hidden width C, not stated)
        self.reconstruct_static = mlp(static_concepts, dim, dim, num_layers=2)
        self.reconstruct_dynamic = mlp(dynamic_concepts, dim, dim, num_layers=2)
        self.reconstruct_video = mlp(static_concepts + dynamic_concepts, dim, dim, num_layers=2)
        self.random = StepSeed()  # the static frame's index

    def _branch(self, feature_map: torch.Tensor, prototypes: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = feature_map.mean(dim=(2, 3, 4))  # Eq. 2
        local, attention = self.attention(prototypes, feature_map)  # Eq. 7
        return {"pooled": pooled, "codes": concept_codes(pooled, prototypes), "local": local, "attention": attention}

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        clips = batch["clips"]  # (n, 2, C, T + 1, H, W)
        n = clips.shape[0]
        video, static, difference = decoupled_views(
            clips.flatten(0, 1), self.random.generator(), rank() * 2 * n, world_size() * 2 * n
        )  # Eq. 3–4
        map_v, map_s, map_d = self.backbone.feature_map(torch.cat([video, static, difference])).split(2 * n)
        v, s, d = (
            self._branch(map_v, self.video_prototypes),
            self._branch(map_s, self.static_prototypes),
            self._branch(map_d, self.dynamic_prototypes),
        )
        ks = self.static_concepts
        # pair view a's video with view b's static / difference inputs, b = the other clip by default
        partner = torch.arange(2 * n, device=clips.device).view(n, 2)
        partner = partner if self.same_view else partner.flip(1)
        partner = partner.flatten()

        q_vs, q_vd = v["codes"][:, :ks], v["codes"][:, ks:]
        q_s, q_d = s["codes"][partner], d["codes"][partner]
        parts: dict[str, torch.Tensor] = {}
        if "aln" in self.terms:  # Eq. 4
            sinkhorn = dict(temperature=self.temperature, epsilon=self.epsilon, iterations=self.sinkhorn_iterations)
            parts["aln"] = concept_alignment(q_vs, q_s, **sinkhorn) + concept_alignment(q_vd, q_d, **sinkhorn)
        if "div" in self.terms:  # Eq. 5
            parts["div"] = sum(x["codes"].abs().sum(1).mean() for x in (s, d, v))
        if "fid" in self.terms:  # Eq. 6: stop-gradient on the reconstructed features; squared error per channel
            parts["fid"] = sum(
                F.mse_loss(g(x["codes"]), x["pooled"].detach())
                for g, x in ((self.reconstruct_static, s), (self.reconstruct_dynamic, d), (self.reconstruct_video, v))
            )
        if "loc" in self.terms and self.epoch >= self.warmup_epochs:  # Eq. 8–10
            valid_s, valid_d = valid_concepts(q_s, q_vs, self.top_k), valid_concepts(q_d, q_vd, self.top_k)
            pairs = (
                (s["local"][partner], v["local"][:, :ks], valid_s),
                (d["local"][partner], v["local"][:, ks:], valid_d),
            )
            loss_local = 0.0
            for view in (0, 1):  # one row per video, so the negatives are other videos only
                rows = torch.arange(n, device=clips.device) * 2 + view
                for local_x, local_v, valid in pairs:
                    loss_local = loss_local + local_concept_contrast(local_x[rows], local_v[rows], valid[rows], margin=self.margin)
                    loss_local = loss_local + local_concept_contrast(local_v[rows], local_x[rows], valid[rows], margin=self.margin)
            parts["loc"] = loss_local / 2  # Eq. 10, averaged over the two views
        weights = {"aln": 1.0, "loc": self.local_weight, "fid": self.fidelity_weight, "div": self.diversity_weight}
        loss = sum(weights[name] * value for name, value in parts.items())
        return {"loss": loss, **{name: value.detach() for name, value in parts.items()}}

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        self.random.advance()

    @torch.no_grad()
    def concept_outputs(self, clips: torch.Tensor, fraction: float = 0.1) -> dict[str, torch.Tensor]:
        """Codes, attention maps and the Table 3 features of the clips `(B, C, T, H, W)` (as v).

        Returns:
            codes `(B, K_s + K_d)` (q_v: static concepts first), attention `(B, K_s + K_d, T', H', W')`,
            and the features v `(B, C)`, q_v, q_v^s, q_v^d, F_v, F_v^s, F_v^d (the mean local feature of
            the top `fraction` of concepts, of all / the static / the dynamic ones; Table 3).
        """
        v = self._branch(self.backbone.feature_map(clips), self.video_prototypes)
        ks = self.static_concepts
        codes, local = v["codes"], v["local"]
        return {
            "codes": codes,
            "attention": v["attention"],
            "v": v["pooled"],
            "q_v": codes,
            "q_v_static": codes[:, :ks],
            "q_v_dynamic": codes[:, ks:],
            "F_v": top_fraction_mean(local, codes, fraction),
            "F_v_static": top_fraction_mean(local[:, :ks], codes[:, :ks], fraction),
            "F_v_dynamic": top_fraction_mean(local[:, ks:], codes[:, ks:], fraction),
        }
