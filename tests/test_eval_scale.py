"""Evaluation at scale (issue 21): blocked neighbour search, blocked silhouettes, the torch probe,
extraction under autocast and the online kNN monitor, each against the implementation it replaces
or a known answer on constructed data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_samples, silhouette_score

from vdiag.diagnostics.cluster import best_retrieved_classes, class_distance_sums, silhouette_values, silhouettes
from vdiag.diagnostics.retrieval import normalise, retrieval_hits
from vdiag.neighbours import knn_classify, nearest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _hits_full_matrix(queries, query_labels, gallery, gallery_labels, ranks=(1, 5, 10, 20, 50)):
    """The implementation before blocks: one (Q, G) matrix, a stable argsort."""
    order = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")
    same = gallery_labels[order] == query_labels[:, None]
    first = np.where(same.any(axis=1), same.argmax(axis=1), len(gallery))
    return {k: first < k for k in ranks if k <= len(gallery)}


def test_nearest_equals_a_stable_sort_with_ties(rng):
    # integer rows: dot products are exact, so many exact ties, which must go to the lower gallery index
    gallery = rng.integers(-1, 2, size=(97, 6)).astype(np.float32)
    queries = rng.integers(-1, 2, size=(41, 6)).astype(np.float32)
    similarity, index = nearest(queries, gallery, 12, rows=7)
    order = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :12]
    np.testing.assert_array_equal(index.numpy(), order)
    np.testing.assert_array_equal(similarity.numpy(), np.take_along_axis(queries @ gallery.T, order, axis=1))
    many, _ = nearest(queries, gallery, 500, rows=5)  # k above the gallery: all of it
    assert many.shape == (41, 97)


def test_nearest_leave_one_out_equals_argmax_without_diagonal(rng):
    x = rng.integers(-1, 2, size=(60, 5)).astype(np.float64)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)
    _, index = nearest(x, x, 1, exclude_self=True, rows=8)
    np.testing.assert_array_equal(index[:, 0].numpy(), similarity.argmax(axis=1))


@pytest.mark.parametrize("rows", [3, 64, None])
def test_blocked_retrieval_equals_the_full_matrix(rng, rows):
    labels = rng.integers(0, 7, size=150)
    gallery = normalise(rng.normal(size=(150, 16)).astype(np.float32), 0)
    queries = normalise(rng.normal(size=(90, 16)).astype(np.float32), 0)
    query_labels = rng.integers(0, 7, size=90)
    got = retrieval_hits(queries, query_labels, gallery=gallery, gallery_labels=labels, rows=rows)
    want = _hits_full_matrix(queries, query_labels, gallery, labels)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    # ties: duplicated gallery rows of different classes, the first copy decides
    tied = np.concatenate([gallery[:20], gallery[:20]])
    tied_labels = np.concatenate([labels[:20], (labels[:20] + 1) % 7])
    got = retrieval_hits(gallery[:20], labels[:20], gallery=tied, gallery_labels=tied_labels, rows=3)
    want = _hits_full_matrix(gallery[:20], labels[:20], tied, tied_labels)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert got[1].all()


def test_blocked_silhouettes_equal_scikit_learn(rng):
    labels = np.repeat(np.arange(6), [3, 15, 8, 20, 1, 9])  # a class of one video: its value is 0
    embeddings = normalise(rng.normal(size=(len(labels), 12)) + 0.8 * np.eye(12)[labels], 0)
    sums = class_distance_sums(embeddings, labels, rows=5)
    np.testing.assert_allclose(silhouette_values(sums, labels), silhouette_samples(embeddings, labels), rtol=1e-9, atol=1e-12)
    ranked = best_retrieved_classes(embeddings, labels, rows=4)
    scores = silhouettes(embeddings, labels, top_k=(3, 5), rows=7)
    for k in (3, 5):
        keep = np.isin(labels, ranked[:k])
        assert scores[f"silhouette@{k}"] == pytest.approx(silhouette_score(embeddings[keep], labels[keep]), rel=1e-9)
    assert scores["silhouette@all"] == pytest.approx(silhouette_score(embeddings, labels), rel=1e-9)
    # float32 features (what extraction stores): scikit-learn rounds its distances to float32
    single = embeddings.astype(np.float32)
    got = silhouette_values(class_distance_sums(single, labels, rows=11), labels)
    np.testing.assert_allclose(got, silhouette_samples(single, labels), atol=2e-6)


def test_best_retrieved_classes_equals_the_full_matrix(rng):
    labels = rng.integers(0, 5, size=80)
    embeddings = normalise(rng.normal(size=(80, 8)) + np.eye(8)[labels], 0)
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    correct = labels[similarity.argmax(axis=1)] == labels
    classes = np.unique(labels)
    accuracy = [correct[labels == c].mean() for c in classes]
    want = [int(classes[i]) for i in sorted(range(len(classes)), key=lambda i: (-accuracy[i], classes[i]))]
    assert best_retrieved_classes(embeddings, labels, rows=6) == want


def test_knn_vote_known_answers(rng):
    labels = np.repeat(np.arange(4), 25)
    separable = torch.nn.functional.normalize(torch.as_tensor(np.eye(16)[labels] + 0.01 * rng.normal(size=(100, 16))), dim=1)
    similarity, index = nearest(separable, separable, 5, exclude_self=True, rows=9)
    assert (knn_classify(similarity, index, labels, 4).numpy() == labels).all()
    noise = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(2000, 32))), dim=1)
    random_labels = rng.integers(0, 4, size=2000)
    similarity, index = nearest(noise[1000:], noise[:1000], 20, rows=100)
    accuracy = (knn_classify(similarity, index, random_labels[:1000], 4).numpy() == random_labels[1000:]).mean()
    assert abs(accuracy - 0.25) < 0.05


def _gaussian_classes(rng, classes: int, count: int, dims: int = 24, spread: float = 0.35):
    """Classes as Gaussians around random centres, with a constant and a large-offset dimension."""
    centres = rng.normal(size=(classes, dims)) * spread
    labels = rng.integers(0, classes, size=count)
    x = centres[labels] + rng.normal(size=(count, dims))
    x[:, 0] = 7.0  # constant: scaled by 1, as StandardScaler
    x[:, 1] = x[:, 1] * 50 + 1000  # large offset and scale: only standardisation makes it comparable
    return x.astype(np.float32), labels


@pytest.mark.parametrize("classes", [2, 5])
def test_torch_probe_matches_scikit_learn(rng, classes):
    from vdiag.diagnostics.probe import TorchProbe, fit_probe, predict_proba

    x, y = _gaussian_classes(rng, classes, 4000)
    train, test = slice(0, 2000), slice(2000, None)
    reference = fit_probe(x[train], y[train], backend="sklearn")
    probe = fit_probe(x[train], y[train], backend="torch", device="cpu")
    assert isinstance(probe, TorchProbe)
    np.testing.assert_array_equal(probe.classes_, reference.classes_)
    accuracy = {name: (p.predict(x[test]) == y[test]).mean() for name, p in (("sklearn", reference), ("torch", probe))}
    assert 0.6 < accuracy["sklearn"] < 0.99  # neither trivial nor hopeless: a difference could show
    assert abs(accuracy["torch"] - accuracy["sklearn"]) <= 0.005
    np.testing.assert_allclose(probe.predict_proba(x[test]), reference.predict_proba(x[test]), atol=0.01)
    # the optimum itself: scikit-learn's coefficients (one vector for two classes, as in its binary model)
    np.testing.assert_allclose(probe.coef_.numpy(), reference[-1].coef_, atol=0.02 * np.abs(reference[-1].coef_).max())
    # per-clip input, a class the probe never saw: same shapes and columns from both
    clips = x[test][:300].reshape(100, 3, -1)
    wide = [predict_proba(p, clips, classes + 1) for p in (reference, probe)]
    assert wide[0].shape == wide[1].shape == (100, classes + 1)
    assert (wide[1][:, classes] == 0).all()
    np.testing.assert_allclose(wide[1], wide[0], atol=0.01)


def test_probe_backend_choice_and_record(rng):
    from vdiag.diagnostics import probe as probes
    from vdiag.errors import VdiagError

    x, y = _gaussian_classes(rng, 3, 300)
    assert probes.choose_backend("auto", 300, 24) == "sklearn"
    assert probes.choose_backend("auto", probes.AUTO_TORCH_ELEMENTS, 2) == "torch"
    with probes.probe_backend("torch", device="cpu") as used:
        assert isinstance(probes.fit_probe(x, y), probes.TorchProbe)
        probes.fit_probe(x, y, backend="sklearn")  # a call's own choice wins
    assert used == ["torch", "sklearn"]
    assert not isinstance(probes.fit_probe(x, y), probes.TorchProbe)  # outside: auto, small data → sklearn
    with pytest.raises(VdiagError, match="unknown probe backend"), probes.probe_backend("gpu"):
        pass


def test_extraction_under_cpu_bf16_autocast_is_close_and_float32(tiny_synth, tmp_path):
    from vdiag.data.formats import load_index
    from vdiag.diagnostics.features import Extractor, Sampling, autocast_dtype, cache_key, extract_features
    from vdiag.diagnostics.model import load_model
    from vdiag.errors import VdiagError
    from vdiag.models.backbones import build_backbone

    root, _ = tiny_synth
    torch.manual_seed(0)
    path = tmp_path / "random-tiny.pt"
    torch.save(build_backbone("tiny").body.state_dict(), path)
    model = load_model(path, backbone="tiny")
    index = load_index(root, "auto", "test")
    sampling = Sampling(frames=8, stride=1, size=32, clips=2)
    exact = Extractor(model, sampling, workers=0, cache=False, precision="auto")  # auto on CPU: float32
    half = Extractor(model, sampling, workers=0, cache=False, precision="bf16")
    assert exact.amp_dtype is None and half.amp_dtype is torch.bfloat16
    assert autocast_dtype("cuda:0") is torch.bfloat16 and autocast_dtype("cuda", "fp32") is None
    with pytest.raises(VdiagError, match="unknown precision"):
        autocast_dtype("cpu", "fp16")
    reference = extract_features(exact, index)["real"].features
    lowered = extract_features(half, index)["real"].features
    assert reference.dtype == lowered.dtype == np.float32
    assert not np.array_equal(reference, lowered)  # autocast did run: bf16 rounding shows
    relative = np.linalg.norm(lowered - reference) / np.linalg.norm(reference)
    assert relative < 0.03  # bf16 keeps 8 bits of mantissa: a few parts in a thousand per layer
    cosine = (lowered * reference).sum(-1) / np.linalg.norm(lowered, axis=-1) / np.linalg.norm(reference, axis=-1)
    assert cosine.min() > 0.999
    assert cache_key(exact, index, "real") != cache_key(half, index, "real")  # never read for one another
    assert exact.describe()["precision"] == "fp32" and half.describe()["precision"] == "bf16"


def test_cli_probe_backends_give_the_same_result_shape(tiny_synth, tmp_path):
    import json

    from test_pretrain import run_cli

    from vdiag.models.backbones import build_backbone

    root, _ = tiny_synth
    torch.manual_seed(0)
    weights = tmp_path / "random-tiny.pt"
    torch.save(build_backbone("tiny").body.state_dict(), weights)
    common = [str(weights), "--backbone", "tiny", "--data", str(root), "--target", "bg_color", "--clips", "2", "--workers", "0"]
    results = {
        backend: json.loads(
            run_cli("eval", "linear", *common, "--out", str(tmp_path / backend), "--probe-backend", backend, "--json").stdout
        )
        for backend in ("sklearn", "torch")
    }
    reference, torch_probe = results["sklearn"], results["torch"]
    assert reference["config"]["probe_backend"] == "sklearn" and torch_probe["config"]["probe_backend"] == "torch"
    assert reference["metrics"].keys() == torch_probe["metrics"].keys()
    assert reference["details"].keys() == torch_probe["details"].keys()
    assert torch_probe["config"]["precision"] == "fp32"  # auto on CPU
    videos = reference["config"]["test_videos"]
    assert abs(reference["metrics"]["top1"] - torch_probe["metrics"]["top1"]) <= 1 / videos + 1e-9  # at most one of few videos
    print({b: r["metrics"]["top1"] for b, r in results.items()})
    refused = run_cli("eval", "linear", *common, "--probe-backend", "gpu", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr


def test_knn_monitor_does_not_disturb_training_and_logs_each_epoch(tiny_synth, tmp_path):
    import json

    from test_pretrain import SMALL, step_losses

    from vdiag.checkpoint import load_checkpoint
    from vdiag.train.config import resolve_config
    from vdiag.train.trainer import pretrain

    root, _ = tiny_synth

    def config(every):
        return resolve_config(
            "simclr", "cpu", options={"data": {"path": str(root)}, "train": {"epochs": 2}}, assignments=[*SMALL, f"train.knn_every={every}"]
        )

    pretrain(config(0), tmp_path / "off")
    result = pretrain(config(1), tmp_path / "on")
    assert step_losses(tmp_path / "on") == step_losses(tmp_path / "off")  # no RNG drawn, no BatchNorm statistic moved
    a, b = load_checkpoint(tmp_path / "off" / "final.pt")["model"], load_checkpoint(tmp_path / "on" / "final.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(line) for line in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(epochs) == 2 and all(0 <= r["knn_top1"] <= 1 and 0 < r["knn_chance"] <= 1 for r in epochs)
    assert all(r["knn_failed_videos"] == 0 for r in epochs)
    assert result.metrics["final_knn_top1"] == epochs[-1]["knn_top1"]
    off = [json.loads(line) for line in (tmp_path / "off" / "metrics.jsonl").read_text().splitlines()]
    assert not any("knn_top1" in r for r in off)


def test_knn_monitor_known_answers(tiny_synth, monkeypatch, rng):
    from vdiag.train import monitor
    from vdiag.train.config import resolve_config

    root, _ = tiny_synth
    config = resolve_config("simclr", "cpu", options={"data": {"path": str(root)}}, assignments=["train.knn_every=2"])
    labels = {"train": rng.integers(0, 4, size=400), "val": rng.integers(0, 4, size=400)}
    centres = torch.nn.functional.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    separable = True

    def fake_embed(backbone, index, config, device, *, decoder="auto"):
        y = labels[index.split]
        noise = torch.as_tensor(rng.normal(size=(len(y), 16)), dtype=torch.float32)
        x = centres[y] + 0.05 * noise if separable else noise
        return torch.nn.functional.normalize(x, dim=1), y, 0

    class Log:
        def __init__(self):
            self.tensorboard, self.scalars = self, []

        def add_scalar(self, name, value, step):
            self.scalars.append((name, value, step))

    method = torch.nn.Sequential(torch.nn.BatchNorm1d(3))
    method.backbone = method[0]
    monkeypatch.setattr(monitor, "embed_split", fake_embed)
    log = Log()
    assert monitor.knn_monitor(method, config, "cpu", epoch=1, step=10, log=log) == {}  # not due at epoch 1 of every 2
    found = monitor.knn_monitor(method, config, "cpu", epoch=2, step=20, log=log)
    assert found["knn_top1"] == 1.0 and log.scalars == [("val/knn_top1", 1.0, 20)]
    assert method.training and method[0].training  # modes restored
    separable = False
    found = monitor.knn_monitor(method, config, "cpu", epoch=4, step=40, log=log)
    assert abs(found["knn_top1"] - 0.25) < 0.08 and found["knn_chance"] < 0.35
