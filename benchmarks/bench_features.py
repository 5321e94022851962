"""CoHiClust on feature matrices against k-means, Ward, average linkage and bisecting k-means
(issue 13). One JSON line per result on stdout:
{"dataset", "method", "seed", "acc", "nmi", "ari", "dp", "seconds", "n", "d", "k"}.

Inputs, the same matrix for every method:
  wine, breast_cancer, iris, digits   scikit-learn data, standardized (StandardScaler; digits as
                                       its 64 pixel columns)
  mnist_pca50                          PCA-50 of the 70,000 MNIST images (pixels / 255, not
                                       standardized); needs --mnist-root (bash
                                       /work/shared/data/get_mnist.sh DIR)
  mnist10k_pca64                       PCA-64 of the first 10,000 MNIST images (the issue's
                                       "10,000 × 64" size); needs --mnist-root
  embedding                            an encoder's representation of MNIST: the .npz (X, y) that
                                       make_mnist_embedding.py writes; needs --embedding PATH

DP is dendrogram purity over each method's tree of the K clusters (points attached). Ward and
average linkage need the O(N²) distance matrix: on more than --max-agglomerative rows they are
skipped, except Ward with ``fastcluster`` installed (``linkage_vector``, O(N·D) memory).

    python benchmarks/bench_features.py --datasets wine,breast_cancer,iris,digits --seeds 0,1,2
    python benchmarks/bench_features.py --datasets mnist_pca50 --mnist-root /tmp/mnistroot
    python benchmarks/bench_features.py --datasets embedding --embedding E.npz --methods cohiclust --set epochs=16
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

SKLEARN_SETS = ("wine", "breast_cancer", "iris", "digits")


def load_matrix(name: str, mnist_root: str | None, embedding: str | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(X (N, D) float32, y (N,), K) of a benchmark dataset."""
    if name == "embedding":
        if embedding is None:
            raise SystemExit("embedding needs --embedding PATH (python benchmarks/make_mnist_embedding.py ...)")
        with np.load(embedding) as f:
            return f["X"].astype(np.float32), f["y"], int(np.unique(f["y"]).size)
    if name in SKLEARN_SETS:
        import sklearn.datasets as skd
        from sklearn.preprocessing import StandardScaler

        bunch = getattr(skd, f"load_{name}")()
        return StandardScaler().fit_transform(bunch.data).astype(np.float32), bunch.target, int(np.unique(bunch.target).size)
    if name in ("mnist_pca50", "mnist10k_pca64"):
        from sklearn.decomposition import PCA

        from hiclust.data import load_dataset

        if mnist_root is None:
            raise SystemExit("mnist_pca50 needs --mnist-root (bash /work/shared/data/get_mnist.sh DIR)")
        ds = load_dataset("mnist", root=mnist_root, split="all")
        rows = 70_000 if name == "mnist_pca50" else 10_000
        x = ds.images[:rows].reshape(rows, -1).float().numpy() / 255.0
        dims = 50 if name == "mnist_pca50" else 64
        return PCA(dims, random_state=0).fit_transform(x).astype(np.float32), ds.labels[:rows].numpy(), 10
    raise SystemExit(f"unknown dataset {name!r}; choose from {', '.join(SKLEARN_SETS)}, mnist_pca50, mnist10k_pca64")


def _ward_large(x: np.ndarray, k: int):
    """Ward on many rows with fastcluster's memory-saving linkage_vector, or None."""
    try:
        import fastcluster
    except ImportError:
        return None
    from hiclust.baselines import BaselineResult, _tree_over_clusters, truncate_linkage

    started = time.perf_counter()
    z = fastcluster.linkage_vector(x.astype(np.float64), method="ward")
    labels, top = truncate_linkage(z, k)
    return BaselineResult(labels, _tree_over_clusters(labels, top), z, "agglomerative_ward", time.perf_counter() - started)


def _parse_set(item: str) -> tuple[str, object]:
    """'epochs=16' → ('epochs', 16): the value read as JSON where it parses (numbers, true,
    null), else kept as a string."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"--set {item!r}: expected PARAM=VALUE, e.g. --set epochs=16")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="wine,breast_cancer,iris,digits")
    p.add_argument("--methods", default="kmeans,ward,average,bisecting_kmeans,cohiclust")
    p.add_argument("--seeds", default="0,1,2", help="CoHiClust seeds (the baselines run once, random_state 0)")
    p.add_argument("--mnist-root", default=None)
    p.add_argument("--embedding", default=None, help="the .npz of make_mnist_embedding.py (dataset 'embedding')")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--max-agglomerative", type=int, default=20000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                   help="a CoHiClust parameter other than its default, e.g. --set epochs=16 (repeatable; "
                   "recorded in each line's 'params'); the issue's rule is defaults only")
    args = p.parse_args()

    import torch

    from hiclust import CoHiClust
    from hiclust.baselines import agglomerative, bisecting_kmeans, kmeans
    from hiclust.bench import _metrics

    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    overrides = dict(_parse_set(item) for item in args.set)
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        x, y, k = load_matrix(name, args.mnist_root, args.embedding)
        n, d = x.shape

        def emit(method: str, seed: int | None, labels: np.ndarray, hierarchy, seconds: float, **extra) -> None:
            m = _metrics(y, np.asarray(labels), hierarchy)
            print(json.dumps({"dataset": name, "method": method, "seed": seed, "acc": m["acc"], "nmi": m["nmi"],
                              "ari": m["ari"], "dp": m["dp"], "seconds": round(seconds, 3), "n": n, "d": d, "k": k,
                              **extra}), flush=True)

        for method in methods:
            if method == "cohiclust":
                for seed in [int(s) for s in args.seeds.split(",")]:
                    started, cpu = time.perf_counter(), time.process_time()
                    # Defaults: only n_clusters (the rule), and the seed.
                    model = CoHiClust(n_clusters=k, seed=seed, device=args.device, verbose=False, **overrides).fit(x)
                    emit("cohiclust", seed, model.labels_, model.hierarchy_, time.perf_counter() - started,
                         cpu_seconds=round(time.process_time() - cpu, 3), backbone=model.backbone_,
                         **({"params": overrides} if overrides else {}))
                continue
            if method == "kmeans":
                r = kmeans(x, k, n_init=10, random_state=0)
            elif method == "bisecting_kmeans":
                r = bisecting_kmeans(x, k, random_state=0)
            elif method in ("ward", "average"):
                if n > args.max_agglomerative:
                    r = _ward_large(x, k) if method == "ward" else None
                    if r is None:
                        print(json.dumps({"dataset": name, "method": method, "skipped": f"O(N^2) memory for N={n}"}),
                              file=sys.stderr, flush=True)
                        continue
                else:
                    r = agglomerative(x, k, linkage=method)
            else:
                raise SystemExit(f"unknown method {method!r}")
            emit(method, None, r.labels, r.hierarchy, r.seconds)


if __name__ == "__main__":
    main()
