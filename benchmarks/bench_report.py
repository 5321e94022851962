"""Render time and size of the hierarchy pictures and the HTML report for MNIST-sized data.

Synthetic MNIST-like data: N (default 70,000) uint8 28×28 images of 10 "classes" (smooth random
strokes, shifted and noisy, ~20% ink like MNIST, so PNGs compress like digits). Two paths:

* ``hierarchy``: a complete tree of depth T (4: 10 leaves kept, 5: 20, 6: 64) with the points
  attached directly (each class sent to "its" leaf, 20% to random leaves) — rendering only;
* ``model``: a CoHiClust with random (untrained) weights, depth 4 — prediction of all N images
  included, as ``hiclust report`` does it.

Prints one JSON line per result.

    python benchmarks/bench_report.py [--n 70000] [--depths 4 5 6] [--no-model] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from machine import cpu_name  # this folder is on sys.path when run as a script

from hiclust.data import ImageDataset
from hiclust.hierarchy import Hierarchy
from hiclust.report import hierarchy_evaluation, plot_tree, write_report

KEPT = {4: 10, 5: 20, 6: 64}


def synthetic_mnist(n: int, seed: int = 0) -> ImageDataset:
    """(n, 1, 28, 28) uint8 images in 10 classes: a smooth random prototype per class, randomly
    shifted by up to 3 px, with pixel noise; thresholded so that ~20% of the pixels are ink."""
    g = torch.Generator().manual_seed(seed)
    proto = F.interpolate(torch.rand(10, 1, 7, 7, generator=g), size=(28, 28), mode="bicubic", align_corners=False)
    proto[..., :3, :] = proto[..., -3:, :] = proto[..., :, :3] = proto[..., :, -3:] = 0  # empty border like MNIST
    y = torch.randint(0, 10, (n,), generator=g)
    out = torch.empty(n, 1, 28, 28, dtype=torch.uint8)
    for s in range(0, n, 10_000):  # chunks bound memory
        yy = y[s:s + 10_000]
        x = proto[yy] + 0.15 * torch.randn(yy.shape[0], 1, 28, 28, generator=g)
        dx, dy = torch.randint(-3, 4, (2,), generator=g).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        thr = torch.quantile(x.flatten(1)[:, ::7], 0.8, dim=1).view(-1, 1, 1, 1)
        out[s:s + 10_000] = ((x - thr).clamp(0, 0.3) / 0.3 * 255).round().to(torch.uint8)
    return ImageDataset(out, y, [str(i) for i in range(10)], "synthetic_mnist")


def tree_with_points(depth: int, y: np.ndarray, seed: int = 0) -> Hierarchy:
    rng = np.random.default_rng(seed)
    n_leaf = 2**depth
    pruned = rng.choice(n_leaf, n_leaf - KEPT[depth], replace=False) if KEPT[depth] < n_leaf else []
    h = Hierarchy.from_complete_tree(depth, pruned)
    k = h.n_leaves
    leaf = (y * k) // 10 + rng.integers(0, max(k // 10, 1), y.shape[0])  # each class → its leaves
    noise = rng.random(y.shape[0]) < 0.2
    leaf[noise] = rng.integers(0, k, noise.sum())
    return h.fit_points(np.minimum(leaf, k - 1))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=70_000, help="number of images (default 70000)")
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 5, 6], choices=sorted(KEPT))
    parser.add_argument("--no-model", action="store_true", help="skip the random-weight CoHiClust path")
    parser.add_argument("--out-dir", default=None, help="keep the reports here (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; 1 avoids spinning on a busy machine)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = {"nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "cpu": cpu_name()}
    data, t_data = timed(lambda: synthetic_mnist(args.n))
    y = data.labels.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.out_dir or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for depth in args.depths:
            h = tree_with_points(depth, y)
            _, t_mean = timed(lambda: plot_tree(h, data, show="mean", out=out_dir / f"tree{depth}.png"))
            _, t_samples = timed(lambda: plot_tree(h, data, show="samples", out=out_dir / f"tree{depth}_s.png"))
            _, t_eval = timed(lambda: hierarchy_evaluation(h, h.leaf_of, y, data.class_names))
            path, t_report = timed(lambda: write_report(h, data, out_dir / f"report{depth}.html"))
            print(json.dumps({
                "bench": "report", "path": "hierarchy", "n": args.n, "depth": depth, "n_leaves": h.n_leaves,
                "n_nodes": h.n_nodes, "report_s": round(t_report, 2), "report_mb": round(path.stat().st_size / 1e6, 2),
                "plot_tree_mean_s": round(t_mean, 2), "plot_tree_samples_s": round(t_samples, 2),
                "tree_png_mb": round((out_dir / f"tree{depth}.png").stat().st_size / 1e6, 2),
                "evaluation_s": round(t_eval, 3), **machine,
            }), flush=True)
        if not args.no_model:
            from hiclust import CoHiClust

            # (nearly) random weights: 6 epochs of 6 steps on 96 images, just enough to prune 6 leaves
            model = CoHiClust(n_clusters=10, depth=4, backbone="smallcnn", epochs=6, pretrain_epochs=0,
                              prune_start=0, batch_size=16, device="cpu", verbose=False)
            model.fit(data.subset(np.arange(96)))
            proba, t_pred = timed(lambda: model.predict_proba(data))
            pred = proba.argmax(1)
            path, t_render = timed(lambda: write_report(model, data, out_dir / "report_model.html",
                                                        predictions=pred, confidence=proba.max(1)))
            _, t_full = timed(lambda: write_report(model, data, out_dir / "report_model.html"))
            print(json.dumps({
                "bench": "report", "path": "model", "n": args.n, "depth": 4, "n_leaves": model.hierarchy_.n_leaves,
                "n_nodes": model.hierarchy_.n_nodes, "predict_s": round(t_pred, 2), "render_s": round(t_render, 2),
                "report_s": round(t_full, 2), "report_mb": round(path.stat().st_size / 1e6, 2),
                "leaf_sizes": np.bincount(pred, minlength=10).tolist(), **machine,
            }), flush=True)


if __name__ == "__main__":
    main()
