"""Issue 13: CoHiClust's input-space mode with and without whitening by neighbour differences,
and how many rounds of it (docs/methods.md, "Feature matrices"). For each dataset, seed and
variant, one fit with defaults except ``tree_draws=1`` (one JSON line: ACC, NMI, the share of
the views' neighbours that share the row's class, and the two draw criteria — within-cluster sum
of squares in the tree's coordinates and the largest leaf's share of the rows). ``--summarize``
then treats every window of 5 consecutive seeds as the 5 tree draws of one fit and reports,
per criterion, the worst and mean ACC / NMI of the draws it picks.

    python benchmarks/explore_whitening.py --variants off,1,2,3 --datasets wine,iris,breast_cancer --seeds 20 > out.jsonl
    python benchmarks/explore_whitening.py --summarize out.jsonl

With --kmeans: k-means (n_init 10, random_state 0) on the same coordinates instead (the rows
standardized, then whitened R rounds as the library does), one line per variant and dataset.

Variant "off": no whitening (the mode before: standardized rows, noise of one column sd); "R":
R rounds of whitening (the library's default is INPUT_SPACE_WHITENING_ROUNDS).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(args: argparse.Namespace) -> None:
    import torch

    import hiclust.methods.cohiclust as cohiclust_module
    from bench_features import load_matrix
    from hiclust import CoHiClust
    from hiclust.metrics import evaluate

    torch.set_num_threads(args.threads)
    seen: dict[str, np.ndarray] = {}

    class RecordingViews(cohiclust_module.NeighbourViews):  # keeps the views' neighbours for the purity
        def __init__(self, x, neighbours, *rest, **kw):
            super().__init__(x, neighbours, *rest, **kw)
            seen["neighbours"] = neighbours.cpu().numpy()

    cohiclust_module.NeighbourViews = RecordingViews
    defaults = (cohiclust_module.INPUT_SPACE_MAX_WHITEN_DIM, cohiclust_module.INPUT_SPACE_WHITENING_ROUNDS)
    for variant in args.variants.split(","):
        if variant == "off":
            cohiclust_module.INPUT_SPACE_MAX_WHITEN_DIM = 0
        else:
            cohiclust_module.INPUT_SPACE_MAX_WHITEN_DIM, _ = defaults
            cohiclust_module.INPUT_SPACE_WHITENING_ROUNDS = int(variant)
        for name in args.datasets.split(","):
            x, y, k = load_matrix(name, None)
            for seed in range(args.seeds):
                started = time.perf_counter()
                model = CoHiClust(n_clusters=k, seed=seed, tree_draws=1, verbose=False).fit(x)
                seconds = time.perf_counter() - started
                m = evaluate(y, model.labels_)
                neighbours = seen["neighbours"]
                rows = (torch.as_tensor(x, dtype=torch.float32) - model.feature_mean_.cpu()) / model.feature_std_.cpu()
                with torch.no_grad():
                    h = model.model_.backbone(rows).double().numpy()  # the coordinates the tree splits
                labels = model.labels_
                within = sum(float(((h[labels == c] - h[labels == c].mean(0)) ** 2).sum()) for c in np.unique(labels))
                line = {"variant": variant, "dataset": name, "seed": seed, "acc": round(m["acc"], 4),
                        "nmi": round(m["nmi"], 4), "neighbour_purity": round(float((y[neighbours] == y[:, None]).mean()), 4),
                        "within_ss": round(within / len(h), 5),
                        "largest": round(float(np.bincount(model.labels_).max() / len(y)), 5),
                        "seconds": round(seconds, 2)}
                print(json.dumps(line), flush=True)


def kmeans_lines(args: argparse.Namespace) -> None:
    import torch
    from sklearn.cluster import KMeans

    import hiclust.methods.cohiclust as cohiclust_module
    from bench_features import load_matrix
    from hiclust.data.features import neighbour_whitening
    from hiclust.losses.dec import knn_graph
    from hiclust.metrics import evaluate

    for variant in args.variants.split(","):
        for name in args.datasets.split(","):
            x, y, k = load_matrix(name, None)
            rows = torch.as_tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
            neighbours, _ = knn_graph(torch.as_tensor(x, dtype=torch.float32), cohiclust_module.INPUT_SPACE_NEIGHBOURS)
            z = rows
            for _ in range(0 if variant == "off" else int(variant)):
                w, _ = neighbour_whitening(rows, neighbours, cohiclust_module.INPUT_SPACE_WHITENING_SHRINKAGE)
                z = rows @ w
                neighbours, _ = knn_graph(z, cohiclust_module.INPUT_SPACE_NEIGHBOURS)
            labels = KMeans(k, n_init=10, random_state=0).fit_predict(z.numpy())
            m = evaluate(y, labels)
            print(json.dumps({"variant": variant, "dataset": name, "method": "kmeans_on_these_coordinates",
                              "acc": round(m["acc"], 4), "nmi": round(m["nmi"], 4)}), flush=True)


def summarize(path: str, draws: int) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.startswith("{")]
    rows = [r for r in rows if "method" not in r]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        for name in dict.fromkeys(r["dataset"] for r in rows if r["variant"] == variant):
            rs = sorted((r for r in rows if r["variant"] == variant and r["dataset"] == name), key=lambda r: r["seed"])
            acc = [r["acc"] for r in rs]
            out = {"variant": variant, "dataset": name, "seeds": len(rs), "neighbour_purity": rs[0]["neighbour_purity"],
                   "single_worst_acc": min(acc), "single_mean_acc": round(float(np.mean(acc)), 4)}
            for crit in ("within_ss", "largest"):
                picked = [min(rs[s:s + draws], key=lambda r: r[crit]) for s in range(len(rs) - draws + 1)]
                out[f"by_{crit}"] = {"worst_acc": min(p["acc"] for p in picked), "worst_nmi": min(p["nmi"] for p in picked),
                                     "mean_acc": round(float(np.mean([p["acc"] for p in picked])), 4)}
            print(json.dumps(out))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="off,1,2,3")
    ap.add_argument("--datasets", default="wine,iris,breast_cancer")
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0 .. S-1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summarize", metavar="FILE")
    ap.add_argument("--kmeans", action="store_true", help="k-means on the coordinates of each variant instead")
    ap.add_argument("--draws", type=int, default=5, help="window size for --summarize")
    a = ap.parse_args()
    summarize(a.summarize, a.draws) if a.summarize else kmeans_lines(a) if a.kmeans else run(a)
