"""ViDiDi, DCLR and concepts: each loss's defining property, the schedule, stop-gradients, shapes."""

import math

import pytest
import torch
import torch.nn.functional as F

from vdiag.data.views import decoupled_views, temporal_derivative
from vdiag.errors import VdiagError
from vdiag.losses.concepts import concept_alignment, local_concept_contrast, valid_concepts
from vdiag.losses.cross_infonce import pair_info_nce
from vdiag.losses.swav import sinkhorn
from vdiag.methods import build_method
from vdiag.methods.concepts import ConceptAttention, top_fraction_mean
from vdiag.methods.dclr import SearchQueue, activation_map, decoupled_activation_maps, minmax, weighted_pool
from vdiag.methods.simclr import SimCLR
from vdiag.methods.vididi import derivative_orders
from vdiag.models import BACKBONES, build_backbone

SIDE = {"slow_r50": 64, "x3d_s": 64, "r2plus1d_r50": 64, "s3d": 64}


def clips(n=4, frames=5, side=32, seed=1):
    torch.manual_seed(seed)
    return torch.randn(n, 2, 3, frames, side, side)


# ---------------------------------------------------------------- ViDiDi


def test_balanced_schedule_is_algorithm_1():
    never, always = torch.Generator(), torch.Generator()
    assert [derivative_orders("balanced", e, never, second_order_prob=0.0) for e in range(8)] == [(1, 1), (1, 0), (0, 1), (0, 0)] * 2
    assert [derivative_orders("balanced", e, always, second_order_prob=1.0) for e in range(4)] == [(2, 2), (2, 1), (1, 2), (1, 1)]


def test_table_6_schedules():
    g = torch.Generator()
    assert [derivative_orders("reverse", e, g, second_order_prob=0.0) for e in range(4)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [derivative_orders("alternate", e, g, second_order_prob=0.0) for e in range(4)] == [(1, 1), (0, 0)] * 2
    assert [derivative_orders("alternate-mix", e, g, second_order_prob=0.0) for e in range(6)] == [(1, 1), (1, 0), (0, 0)] * 2
    drawn = {derivative_orders("random", 0, g, second_order_prob=0.0, random_max_order=2) for _ in range(200)}
    assert drawn == {(a, b) for a in range(3) for b in range(3)}  # every pair, epoch-independent


def test_second_order_coin_is_fair_and_lifts_both_streams():
    g = torch.Generator().manual_seed(0)
    pairs = [derivative_orders("balanced", 1, g, second_order_prob=0.5) for _ in range(2000)]
    assert set(pairs) == {(1, 0), (2, 1)}
    assert abs(pairs.count((2, 1)) / len(pairs) - 0.5) < 0.05


def test_vididi_feeds_the_base_objective_derivatives_of_the_right_order(monkeypatch):
    seen = {}

    def capture(self, batch):
        seen["clips"] = batch["clips"]
        return {"loss": batch["clips"].sum() * 0}

    monkeypatch.setattr(SimCLR, "forward", capture)
    method = build_method("vididi-simclr", build_backbone("tiny"), projector_hidden=16, second_order_prob=0.0)
    x = clips(frames=6)  # T = 4 plus 2 extra frames
    for epoch, expected in enumerate([(1, 1), (1, 0), (0, 1), (0, 0)]):
        method.start_epoch(epoch)
        out = method({"clips": x})
        assert (out["order_x"], out["order_x_prime"]) == expected
        for stream, order in enumerate(expected):
            assert torch.equal(seen["clips"][:, stream], temporal_derivative(x[:, stream], order, 4))


def test_vididi_draws_repeat_after_loading_its_state():
    a = build_method("vididi-byol", build_backbone("tiny"), projector_hidden=16, predictor_hidden=16)
    b = build_method("vididi-byol", build_backbone("tiny"), projector_hidden=16, predictor_hidden=16)
    for _ in range(5):
        a.after_step(0.1)
    b.load_state_dict(a.state_dict())
    for epoch in range(8):
        a.start_epoch(epoch), b.start_epoch(epoch)
        assert a.orders() == b.orders()
        a.after_step(0.1), b.after_step(0.1)


def test_vididi_state_is_the_base_state_plus_its_schedule():
    torch.manual_seed(0)
    plain = build_method("vicreg", build_backbone("tiny"), projector_hidden=16, projector_dim=16)
    wrapped = build_method("vididi-vicreg", build_backbone("tiny"), projector_hidden=16, projector_dim=16)
    assert set(wrapped.state_dict()) - set(plain.state_dict()) == {"schedule_random.seed", "schedule_random.steps"}
    assert set(plain.state_dict()) <= set(wrapped.state_dict())


def test_vididi_needs_two_views_and_valid_options():
    with pytest.raises(VdiagError, match="unknown ViDiDi schedule"):
        build_method("vididi-simclr", build_backbone("tiny"), schedule="weekly")
    with pytest.raises(VdiagError, match="3rd derivatives"):
        build_method("vididi-simclr", build_backbone("tiny"), schedule="random", random_max_order=2)


# ---------------------------------------------------------------- DCLR


def reference_eq2(a, b, tau):
    """Eq. 2 by loops: anchor a_m, positive b_m, negatives {a_k, b_k : k ≠ m}."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    total = 0.0
    for m in range(len(a)):
        candidates = [b[m]] + [x[k] for k in range(len(a)) if k != m for x in (a, b)]
        logits = torch.stack([a[m] @ c for c in candidates]) / tau
        total += -(logits[0] - torch.logsumexp(logits, 0))
    return total / len(a)


def test_pair_info_nce_is_eq_2():
    torch.manual_seed(0)
    a, b = torch.randn(6, 16), torch.randn(6, 16)
    assert torch.allclose(pair_info_nce(a, b, a, b, temperature=0.1), reference_eq2(a, b, 0.1), atol=1e-5)


def test_l_vd_is_lower_when_video_and_difference_features_agree():
    torch.manual_seed(0)
    video = torch.randn(16, 32)
    agreeing, unrelated = video + 0.1 * torch.randn(16, 32), torch.randn(16, 32)
    assert pair_info_nce(video, agreeing, video, agreeing) < 0.1 < pair_info_nce(video, unrelated, video, unrelated)


def test_retrieved_positives_weighted_by_their_prior():
    """Eq. 10: Σ_k p_k I(a; d̃_k), each d̃_k scored against the batch's negatives."""
    torch.manual_seed(0)
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    retrieved = torch.randn(5, 3, 8)
    one_hot = torch.tensor([[0.0, 1.0, 0.0]]).expand(5, 3)
    assert torch.allclose(
        pair_info_nce(a, retrieved, a, b, temperature=0.1, weights=one_hot),
        pair_info_nce(a, retrieved[:, 1], a, b, temperature=0.1),
        atol=1e-6,
    )
    weights = torch.softmax(torch.randn(5, 3), 1)
    expected = sum((weights[:, k] * _rowwise(a, retrieved[:, k], a, b)).mean() for k in range(3))
    assert torch.allclose(pair_info_nce(a, retrieved, a, b, temperature=0.1, weights=weights), expected, atol=1e-5)


def _rowwise(anchors, positives, pool_a, pool_b, tau=0.1):
    a, p = F.normalize(anchors, dim=1), F.normalize(positives, dim=1)
    pool = torch.cat([F.normalize(pool_a, dim=1), F.normalize(pool_b, dim=1)])
    rows = []
    for m in range(len(a)):
        negatives = [pool[k] for k in range(len(pool)) if k % len(a) != m]
        logits = torch.stack([a[m] @ p[m]] + [a[m] @ x for x in negatives]) / tau
        rows.append(-(logits[0] - torch.logsumexp(logits, 0)))
    return torch.stack(rows)


def test_activation_map_minmax_and_weighted_pooling():
    features = torch.randn(2, 4, 3, 5, 5)
    assert torch.allclose(activation_map(features), features.abs().sum(1))
    normalised = minmax(activation_map(features))
    assert torch.allclose(normalised.flatten(1).min(1).values, torch.zeros(2)) and torch.allclose(
        normalised.flatten(1).max(1).values, torch.ones(2), atol=1e-4
    )
    assert torch.allclose(weighted_pool(features, torch.ones(2, 3, 5, 5)), features.mean((2, 3, 4)), atol=1e-6)
    spike = torch.zeros(2, 3, 5, 5)
    spike[:, 1, 2, 3] = 7.0
    assert torch.allclose(weighted_pool(features, spike), features[:, :, 1, 2, 3], atol=1e-6)


def test_decoupled_views_have_no_wrap_around():
    x = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(2, 3, 5, 2, 2).contiguous()  # frame t has value t
    video, static, difference = decoupled_views(x, torch.Generator().manual_seed(0))
    assert torch.equal(video, x[:, :, :4]) and torch.all(difference == 1.0)  # v_{t+1} − v_t, never v_1 − v_T
    for clip in static:
        assert clip.unique().numel() == 1 and 0 <= clip.unique().item() <= 3


def small_dclr(**options):
    torch.manual_seed(0)
    defaults = dict(projector_hidden=32, queue_size=16, warmup_epochs=0, refresh_every=2)
    return build_method("dclr", build_backbone("tiny"), **{**defaults, **options})


def test_activation_alignment_sends_gradient_into_the_video_stream_only(monkeypatch):
    """d(λ L_ac)/d(F) is zero on the static-frame and frame-difference feature maps (Eq. 12)."""
    gradients = {}
    for weight in (0.0, 1.0):
        method = small_dclr(activation_weight=weight, search="none")
        method.start_epoch(0)
        original = method.backbone.feature_map
        captured = {}

        def feature_map(x, original=original, captured=captured):
            out = original(x)
            out.retain_grad()
            captured["maps"] = out
            return out

        monkeypatch.setattr(method.backbone, "feature_map", feature_map)
        method({"clips": clips()})["loss"].backward()
        gradients[weight] = captured["maps"].grad
    difference = gradients[1.0] - gradients[0.0]  # the gradient of L_ac alone
    n = 8  # 4 videos × 2 views: rows [0, 8) are v, [8, 16) s, [16, 24) d
    assert difference[:n].abs().sum() > 0
    assert torch.allclose(difference[n:], torch.zeros_like(difference[n:]), atol=1e-7)


def test_search_queue_finds_its_neighbours_with_prior_weights():
    queue = SearchQueue(size=6, key_dim=4, embed_dim=2)
    keys = torch.eye(4)
    queue.push(keys, torch.arange(8.0).view(4, 2), -torch.arange(8.0).view(4, 2))
    query = torch.tensor([[0.0, 0.0, 1.0, 0.2]])
    index, weights = queue.search(query, neighbours=2, prior=True)
    assert index.tolist() == [[2, 3]]
    cos = F.normalize(query, dim=1)[0]
    assert torch.allclose(weights, torch.tensor([[cos[2], cos[3]]]) / (cos[2] + cos[3]))
    assert torch.equal(queue.positives[index[0, 0]], torch.tensor([-4.0, -5.0]))
    _, uniform = queue.search(query, neighbours=3, prior=False)
    assert torch.allclose(uniform, torch.full((1, 3), 1 / 3))
    queue.push(torch.eye(4)[:3] * 2, torch.zeros(3, 2), torch.zeros(3, 2))  # FIFO: wraps over slots 4, 5, 0
    assert int(queue.filled) == 6 and int(queue.pointer) == 1 and torch.equal(queue.keys[0], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    queue.reset()
    assert int(queue.filled) == 0


def test_slow_encoder_refresh_schedule_survives_resume():
    method = small_dclr(warmup_epochs=1, refresh_every=2)
    slow = lambda: next(method.slow_backbone.parameters()).clone()  # noqa: E731
    online = lambda: next(method.backbone.parameters())  # noqa: E731
    method.start_epoch(0)  # warm-up: no search, no refresh
    assert not method.decoupling and int(method.slow_epoch) == -1
    with torch.no_grad():
        online().add_(1.0)
    method.start_epoch(1)  # first decoupled epoch: refresh
    assert torch.equal(slow(), online()) and int(method.slow_epoch) == 1
    with torch.no_grad():
        online().add_(1.0)
    method.start_epoch(1)  # the same epoch resumed mid-way: keeps f̃ of the epoch's start
    assert not torch.equal(slow(), online())
    method.start_epoch(2)  # not a refresh epoch
    assert not torch.equal(slow(), online())
    method.start_epoch(3)
    assert torch.equal(slow(), online()) and int(method.slow_epoch) == 3


def test_dclr_options_select_the_table_4_to_7_terms():
    x = {"clips": clips()}
    method = small_dclr(losses="vv,vs,vd", same_view=True, activation_alignment=False, search="none")
    method.start_epoch(0)
    assert set(method(x)) == {"loss", "vv", "vs", "vd"}
    method = small_dclr(search="both")
    method.start_epoch(0)
    out = method(x)
    assert set(out) == {"loss", "vs", "vd", "sd", "ac"}
    assert int(method.dynamic_queue.filled) == 4 and int(method.static_queue.filled) == 4  # view j queued
    assert torch.isclose(out["loss"], out["vs"] + out["vd"] - out["sd"] + 0.5 * out["ac"])
    with pytest.raises(VdiagError, match="losses must be"):
        small_dclr(losses="vs,xx")
    with pytest.raises(VdiagError, match="search must be"):
        small_dclr(search="optical-flow")


def test_warm_up_uses_plain_pooling_then_refined_features():
    x = {"clips": clips()}
    refined, plain = (
        small_dclr(warmup_epochs=1, search="none"),
        small_dclr(warmup_epochs=1, search="none", refine_static=False, refine_dynamic=False),
    )
    refined.start_epoch(0)
    during_warm_up = refined(x)
    refined.start_epoch(1), plain.start_epoch(1)
    after, unrefined = refined(x), plain(x)
    assert all(torch.isclose(during_warm_up[k], unrefined[k]) for k in unrefined)  # f(v) until the warm-up ends
    assert not torch.isclose(after["vd"], unrefined["vd"])  # then f_s(v), f_d(v) (Eq. 13–15)
    assert torch.isclose(after["ac"], unrefined["ac"])  # the maps do not depend on the refinement


# ---------------------------------------------------------------- concepts


def test_sinkhorn_codes_have_the_prescribed_marginals():
    torch.manual_seed(0)
    codes = sinkhorn(torch.rand(64, 8) * 2 - 1, epsilon=0.05, iterations=50)
    assert torch.allclose(codes.sum(1), torch.ones(64), atol=1e-5)  # each sample a distribution
    assert torch.allclose(codes.sum(0), torch.full((8,), 64 / 8), atol=1e-2)  # uniform prior over concepts


def test_concept_alignment_is_lower_for_matching_codes_and_targets_carry_no_gradient():
    torch.manual_seed(0)
    a = torch.rand(32, 10) * 2 - 1
    matching, unrelated = a.clone(), torch.rand(32, 10) * 2 - 1
    assert concept_alignment(a, matching) < concept_alignment(a, unrelated)
    a.requires_grad_(True)
    b = unrelated.clone().requires_grad_(True)
    concept_alignment(a, b).backward()
    # the gradient w.r.t. a comes from the softmax of a only: it sums to zero over concepts
    assert torch.allclose(a.grad.sum(1), torch.zeros(32), atol=1e-6)


def test_valid_concepts_are_the_intersection_of_both_top_k():
    qa = torch.tensor([[0.9, 0.8, 0.1, 0.7, 0.0]])
    qb = torch.tensor([[0.9, 0.0, 0.8, 0.7, 0.1]])
    assert valid_concepts(qa, qb, 3).tolist() == [[True, False, False, True, False]]


def test_margin_loss_is_zero_beyond_the_margin_and_positive_inside():
    # video m's concept k is e_m: same video identical (positive term 0), other videos orthogonal (distance √2)
    a = torch.eye(4).unsqueeze(1).expand(4, 3, 4).contiguous()
    valid = torch.ones(4, 3, dtype=torch.bool)
    assert local_concept_contrast(a, a.clone(), valid, margin=1.0) == 0  # √2 > 1: beyond the margin
    inside = local_concept_contrast(a, a.clone(), valid, margin=2.0)
    assert torch.isclose(inside, torch.tensor((2 - math.sqrt(2)) ** 2), atol=1e-5)
    assert local_concept_contrast(a, a.clone(), torch.zeros_like(valid), margin=2.0) == 0  # nothing valid


def test_concept_attention_and_top_fraction():
    attention = ConceptAttention(8)
    local, maps = attention(torch.randn(5, 8), torch.randn(2, 8, 3, 4, 4))
    assert local.shape == (2, 5, 8) and maps.shape == (2, 5, 3, 4, 4)
    assert torch.allclose(maps.flatten(2).sum(-1), torch.ones(2, 5), atol=1e-5)
    codes = torch.tensor([[0.1, 0.9, 0.5, 0.2]])
    features = torch.arange(8.0).view(1, 4, 2)
    assert torch.equal(top_fraction_mean(features, codes, 0.5), (features[0, 1] + features[0, 2]).view(1, 2) / 2)


def test_local_contrast_starts_after_its_warm_up():
    torch.manual_seed(0)
    method = build_method("concepts", build_backbone("tiny"), static_concepts=6, dynamic_concepts=6, top_k=2, warmup_epochs=1)
    method.start_epoch(0)
    assert set(method({"clips": clips()})) == {"loss", "aln", "div", "fid"}
    method.start_epoch(1)
    assert "loc" in method({"clips": clips()})


# ---------------------------------------------------------------- every backbone


@pytest.mark.parametrize("name", list(BACKBONES))
def test_maps_and_concepts_for_every_backbone(name):
    side = SIDE.get(name, 32)
    torch.manual_seed(0)
    backbone = build_backbone(name).eval()
    x = torch.randn(2, 3, 8, side, side)
    maps = decoupled_activation_maps(backbone, x, normalised=True)
    raw = decoupled_activation_maps(backbone, x)
    assert all(float(raw[k].min()) >= 0 and torch.allclose(minmax(raw[k]), maps[k]) for k in maps)
    feature_map = backbone.feature_map(x)
    assert maps["video"].shape == (2, *feature_map.shape[2:]) and maps["static"].shape == maps["video"].shape
    assert maps["difference"].shape[-2:] == feature_map.shape[-2:]
    assert all(float(m.min()) >= 0 and float(m.max()) <= 1 for m in maps.values())
    method = build_method("concepts", backbone, static_concepts=4, dynamic_concepts=3).eval()
    outputs = method.concept_outputs(x)
    assert outputs["attention"].shape == (2, 7, *feature_map.shape[2:])
    assert outputs["q_v_static"].shape == (2, 4) and outputs["q_v_dynamic"].shape == (2, 3)
    for key in ("v", "F_v", "F_v_static", "F_v_dynamic"):
        assert outputs[key].shape == (2, backbone.embed_dim)
