"""Evaluation at scale: the linear probe (scikit-learn vs torch), blocked retrieval, blocked silhouettes.

Every case runs in its own process (spawned), on constructed features: Gaussian classes in D
dimensions (unit variance, centres about 3 from the origin; float32, as extraction stores them).
Peak memory is the case's own: the process's peak resident set (`ru_maxrss`) minus its resident set
once the inputs exist (on CUDA: `torch.cuda.max_memory_allocated`), so it counts numpy,
scikit-learn and torch alike.

    probe       N training clips × D dims, `classes` classes, both backends on the same split; test
                accuracy on as many held-out clips, seconds, peak memory
    retrieval   N queries against N gallery videos, R@1..50 (`retrieval_hits`, blocks of queries)
                vs the previous one-matrix version where it fits
    silhouette  N videos: best-retrieved classes + every silhouette@k (`silhouettes`, blocks)

Run: `nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluation.py [--device cuda] [--quick]`.
A GPU run writes its own results file (the GPU named); this machine has none.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def _features(n: int, dims: int, classes: int, seed: int = 0, distance: float = 3.0):
    """N clips of `classes` unit-variance Gaussians whose centres lie about `distance` from the origin."""
    rng = np.random.default_rng(seed)
    centres = (rng.normal(size=(classes, dims)) * distance / np.sqrt(dims)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    x = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, 4096):  # float32 from the start: no float64 peak before the case is measured
        x[start : start + 4096] = centres[labels[start : start + 4096]] + rng.standard_normal(
            (len(x[start : start + 4096]), dims), np.float32
        )
    return x, labels


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _case(kind: str, params: dict, device: str, queue) -> None:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    from vdiag.diagnostics.cluster import silhouettes
    from vdiag.diagnostics.probe import fit_probe
    from vdiag.diagnostics.retrieval import normalise, retrieval_hits

    n, dims, classes = params["n"], params["dims"], params["classes"]
    x, y = _features(n if kind == "silhouette" else 2 * n, dims, classes)  # probe / retrieval: first half train, second test
    extra = {}
    if kind == "retrieval":
        centre = x[:n].mean(0)
        gallery, queries, query_labels, y = normalise(x[:n], centre), normalise(x[n:], centre), y[n:], y[:n]
    if kind == "silhouette":
        embeddings = normalise(x, x.mean(0))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = _rss()
    start = time.perf_counter()
    if kind == "probe":
        probe = fit_probe(x[:n], y[:n], backend=params["backend"], device=device)
        extra["accuracy"] = float((probe.predict(x[n:]) == y[n:]).mean())
        extra["iterations"] = int(np.max((probe[-1] if params["backend"] == "sklearn" else probe).n_iter_))
    elif kind == "retrieval":
        if params.get("full_matrix"):
            order = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")
            same = y[order] == query_labels[:, None]
            first = np.where(same.any(axis=1), same.argmax(axis=1), len(gallery))
            hits = {k: first < k for k in (1, 5, 10, 20, 50)}
        else:
            hits = retrieval_hits(queries, query_labels, gallery=gallery, gallery_labels=y, device=device)
        extra["R@1"] = float(hits[1].mean())
    else:
        scores = silhouettes(embeddings, y)
        extra["silhouette@all"] = scores["silhouette@all"]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    if device == "cuda":
        extra["gpu_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    queue.put({"kind": kind, **params, "device": device, "seconds": seconds, "peak_mib": max(peak, 0) / 2**20, **extra})


def run(kind: str, device: str, **params) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_case, args=(kind, params, device, queue))
    process.start()
    result = queue.get()
    process.join()
    print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes (a minute)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0

    def size(n: int) -> int:
        return max(200, int(n * scale))

    rows = []
    for backend in ("sklearn", "torch"):
        rows.append(run("probe", args.device, n=size(20_000), dims=256, classes=50, backend=backend))
    rows.append(run("probe", args.device, n=size(100_000), dims=512, classes=50, backend="torch"))
    rows.append(run("retrieval", args.device, n=size(10_000), dims=512, classes=50, full_matrix=True))
    rows.append(run("retrieval", args.device, n=size(10_000), dims=512, classes=50))
    rows.append(run("retrieval", args.device, n=size(50_000), dims=512, classes=400))
    rows.append(run("silhouette", args.device, n=size(20_000), dims=512, classes=100))

    machine = f"{platform.processor() or platform.machine()}, {multiprocessing.cpu_count()} cores"
    if args.device == "cuda":
        import torch

        machine = torch.cuda.get_device_name()
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"evaluation{suffix}.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    lines = [
        f"# Evaluation at scale ({machine}, device {args.device})",
        "",
        "| case | N × D (classes) | backend / version | seconds | peak MiB | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        what = r.get("backend") or ("one N×N matrix (previous)" if r.get("full_matrix") else "blocked")
        result = ", ".join(f"{k} {r[k]:.4f}" for k in ("accuracy", "R@1", "silhouette@all") if k in r)
        lines.append(
            f"| {r['kind']} | {r['n']:,} × {r['dims']} ({r['classes']}) | {what} | {r['seconds']:.1f} | {r['peak_mib']:.0f} | {result} |"
        )
    (RESULTS / f"evaluation{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
