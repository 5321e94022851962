"""Classical clustering baselines of the papers' tables, on raw pixels or on learned features.

Each function takes X — an ``ImageDataset``, images (uint8, or float in [0, 1]) or a feature
matrix (N, D), e.g. ``model.transform(data)`` of any fitted hiclust estimator — and returns a
:class:`BaselineResult` with flat ``labels`` and, for the hierarchical methods, a
:class:`~hiclust.hierarchy.Hierarchy` over the K clusters (points attached, leaf j = cluster j),
so that dendrogram purity is measured at the same granularity as a CoHiClust tree.

Flat: :func:`kmeans`, :func:`spectral`, :func:`nmf`.
Hierarchical: :func:`agglomerative` (ward / average / complete / single), :func:`bisecting_kmeans`.
Post-hoc trees over the K clusters of a fitted model: :func:`complete_linkage_between_clusters`
(the exact K×K complete-linkage distances, chunked) and :func:`complete_linkage_cluster_tree`
(the "IDEC (agglomerative complete*)" row: those clusters merged by complete linkage).
Deep features: :func:`autoencoder_features` (DEC's pre-trained autoencoder, no clustering
phase), :func:`simclr_features` (CoHiClust's backbone trained with NT-Xent only), used by the
"AE + k-means", "AE + agglomerative" and "SimCLR features + agglomerative" rows.

>>> from hiclust import load_dataset
>>> from hiclust.baselines import kmeans, agglomerative
>>> data = load_dataset("digits")
>>> km = kmeans(data, 10)                                # raw pixels        # doctest: +SKIP
>>> ag = agglomerative(data, 10, linkage="ward")         # + ag.hierarchy    # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hiclust.hierarchy import Hierarchy

__all__ = [
    "BaselineResult",
    "as_features",
    "kmeans",
    "spectral",
    "nmf",
    "agglomerative",
    "bisecting_kmeans",
    "truncate_linkage",
    "complete_linkage_between_clusters",
    "complete_linkage_cluster_tree",
    "autoencoder_features",
    "simclr_features",
    "BASELINES",
    "run_baseline",
]


@dataclass
class BaselineResult:
    """Output of a baseline.

    labels: (N,) int64 cluster ids 0..K−1.
    hierarchy: ``Hierarchy`` over the K clusters with the points attached (hierarchical
        methods), else None.
    linkage: for agglomerative clustering, the full SciPy linkage over the N points.
    method: name; seconds: wall time of the clustering (feature learning excluded).
    """

    labels: np.ndarray
    hierarchy: Hierarchy | None = None
    linkage: np.ndarray | None = None
    method: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):  # allows ``labels, hierarchy = kmeans(X, k)``
        return iter((self.labels, self.hierarchy))


def as_features(X: Any) -> np.ndarray:
    """(N, D) float64 features: images flattened and scaled to [0, 1]; feature matrices as given."""
    from hiclust.methods.base import prepare_data

    x = prepare_data(X).x
    if x.ndim == 4:
        return x.reshape(x.shape[0], -1).double().div_(255.0).numpy()
    return x.double().numpy()


def _check_k(x: np.ndarray, n_clusters: int) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not 1 <= n_clusters <= x.shape[0]:
        raise ValueError(f"n_clusters must be an integer in 1..{x.shape[0]} (the number of samples), got {n_clusters!r}")
    return int(n_clusters)


def _flat_result(labels: np.ndarray, method: str, started: float, **extra: Any) -> BaselineResult:
    return BaselineResult(np.asarray(labels, dtype=np.int64), None, None, method, time.perf_counter() - started, extra)


def kmeans(X: Any, n_clusters: int, *, n_init: int = 10, random_state: int = 0) -> BaselineResult:
    """k-means (scikit-learn, k-means++ initialisation, ``n_init`` restarts, best inertia)."""
    from sklearn.cluster import KMeans

    x = as_features(X)
    k = _check_k(x, n_clusters)
    started = time.perf_counter()
    km = KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(x)
    return _flat_result(km.labels_, "kmeans", started, inertia=float(km.inertia_))


def spectral(X: Any, n_clusters: int, *, n_neighbors: int = 10, random_state: int = 0) -> BaselineResult:
    """Spectral clustering on a symmetric k-nearest-neighbour graph (scikit-learn,
    ``affinity="nearest_neighbors"``, k-means label assignment). The kNN affinity is the
    usual choice for images: an RBF kernel on raw pixels needs a data-dependent width."""
    from sklearn.cluster import SpectralClustering

    x = as_features(X)
    k = _check_k(x, n_clusters)
    if not 1 <= n_neighbors < x.shape[0]:
        raise ValueError(f"n_neighbors must be in 1..{x.shape[0] - 1}, got {n_neighbors}")
    started = time.perf_counter()
    sc = SpectralClustering(
        n_clusters=k, affinity="nearest_neighbors", n_neighbors=n_neighbors, assign_labels="kmeans",
        random_state=random_state,
    ).fit(x)
    return _flat_result(sc.labels_, "spectral", started)


def nmf(X: Any, n_clusters: int, *, max_iter: int = 500, random_state: int = 0) -> BaselineResult:
    """NMF clustering: X ≈ W·H with K components (NNDSVDA initialisation); a point's cluster is
    its strongest component, argmax_k W_ik. Needs non-negative inputs (raw pixels are)."""
    from sklearn.decomposition import NMF

    x = as_features(X)
    k = _check_k(x, n_clusters)
    if x.min() < 0:
        raise ValueError(
            f"NMF needs non-negative inputs, but the minimum is {x.min():.3g}; use raw pixels, or shift the "
            "learned features (e.g. X - X.min(0)) before calling nmf"
        )
    started = time.perf_counter()
    w = NMF(n_components=k, init="nndsvda", max_iter=max_iter, random_state=random_state).fit_transform(x)
    return _flat_result(w.argmax(1), "nmf", started)


def truncate_linkage(linkage: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Cuts a linkage over points at its K−1 highest merges.

    Args:
        linkage: SciPy linkage (N−1, 4) over N points with monotone heights (ward, average,
            complete, single).
        n_clusters: K in 1..N.

    Returns:
        labels (N,) in 0..K−1 (clusters numbered left to right in the dendrogram) and the
        linkage (K−1, 4) of the top of the tree whose leaves are those K clusters (heights and
        counts of points kept).
    """
    h = Hierarchy.from_linkage(linkage)
    k = int(n_clusters)
    if not 1 <= k <= h.n_leaves:
        raise ValueError(f"n_clusters must be in 1..{h.n_leaves}, got {n_clusters}")
    groups, leaf_labels = h.cut_nodes(n_clusters=k)
    # The kept internal nodes are the ancestors of the groups: climb one level per step.
    above = np.zeros(h.n_nodes, dtype=bool)
    frontier = h.parent[groups]
    frontier = np.unique(frontier[frontier >= 0])
    while frontier.size:
        above[frontier] = True
        frontier = h.parent[frontier]
        frontier = np.unique(frontier[(frontier >= 0) & ~above[np.maximum(frontier, 0)]])
    inner = np.flatnonzero(above)  # increasing id = children before parents (SciPy order)
    new_id = np.full(h.n_nodes, -1, dtype=np.int64)
    new_id[groups] = np.arange(groups.size)
    new_id[inner] = k + np.arange(inner.size)
    z = np.empty((inner.size, 4), dtype=np.float64)
    z[:, :2] = new_id[h.children_array[inner]]
    z[:, 2] = h.height[inner]
    z[:, 3] = h.sizes[inner]
    return leaf_labels.astype(np.int64), z


def _tree_over_clusters(labels: np.ndarray, top: np.ndarray | None) -> Hierarchy:
    k = int(labels.max()) + 1
    if k == 1 or top is None:
        return Hierarchy(np.full((1, 2), -1), leaf_of=labels)
    return Hierarchy.from_linkage(top).fit_points(labels)


_LINKAGES = ("ward", "average", "complete", "single")


def agglomerative(X: Any, n_clusters: int, *, linkage: str = "ward") -> BaselineResult:
    """Agglomerative clustering (SciPy ``linkage`` on Euclidean distances), cut at K clusters.

    Memory is O(N²) (the condensed distance matrix): about 100 MB for N = 5,000 and 20 GB for
    70,000 — subsample large data sets.

    Returns labels, the ``Hierarchy`` of the top K−1 merges over the K clusters, and the full
    point-level ``linkage`` (for dendrogram purity on the whole dendrogram, pass it to
    ``hiclust.metrics.dendrogram_purity(y, result.linkage)``).
    """
    from scipy.cluster.hierarchy import linkage as scipy_linkage

    if linkage not in _LINKAGES:
        raise ValueError(f"linkage must be one of {', '.join(_LINKAGES)}, got {linkage!r}")
    x = as_features(X)
    k = _check_k(x, n_clusters)
    if x.shape[0] < 2:
        raise ValueError("agglomerative clustering needs at least 2 samples")
    started = time.perf_counter()
    z = scipy_linkage(x, method=linkage, metric="euclidean")
    labels, top = truncate_linkage(z, k)
    return BaselineResult(labels, _tree_over_clusters(labels, top), z, f"agglomerative_{linkage}",
                          time.perf_counter() - started)


def bisecting_kmeans(X: Any, n_clusters: int, *, random_state: int = 0, n_init: int = 1) -> BaselineResult:
    """Bisecting k-means (split the cluster of largest SSE with 2-means, K−1 times); the split
    tree is the hierarchy (see :func:`hiclust.hierarchy.bisecting_kmeans`)."""
    from hiclust.hierarchy import bisecting_kmeans as _bkm

    x = as_features(X)
    k = _check_k(x, n_clusters)
    started = time.perf_counter()
    labels, tree = _bkm(x, k, random_state=random_state, n_init=n_init)
    return BaselineResult(labels, tree, None, "bisecting_kmeans", time.perf_counter() - started)


# ------------------------------------------------------------------------------------------------
# post-hoc trees over the clusters of a fitted model
# ------------------------------------------------------------------------------------------------
def complete_linkage_between_clusters(
    z: Any,
    labels: Any,
    *,
    n_clusters: int | None = None,
    chunk_size: int | None = None,
    max_block_bytes: int = 128 * 2**20,
    device: Any = None,
) -> np.ndarray:
    """Exact complete-linkage distances between clusters: D[a, b] = max ‖z_i − z_j‖ over the
    points i of cluster a and j of cluster b.

    The points are sorted by cluster, and for each chunk of ``chunk_size`` rows (points
    ``s..e−1``) one block ``torch.cdist(z[s:e], z[s:])`` is computed (Euclidean, float64); every
    unordered pair of points lies in exactly one such block. The block is reduced with ``amax``
    over the columns of each cluster (contiguous after sorting, so these are views), giving
    (rows, K), then over the rows of each cluster (contiguous too) with ``amax``. The loops
    run over chunks and clusters only; nothing loops over points. Finally D = max(D, Dᵀ), with the
    diagonal set to 0, so ``scipy.spatial.distance.squareform(D)`` works.

    Memory: one (chunk_size, N) float64 block at a time. By default ``chunk_size`` is chosen so
    that the block takes at most ``max_block_bytes`` (128 MiB). For example, N = 70,000 gives
    chunks of 239 rows and 293 blocks. Peak extra memory is about one block plus O(N·d + K²),
    far below 1 GB. The work is about N²/2 distances.

    Args:
        z: (N, d) embeddings (NumPy array or torch tensor).
        labels: (N,) cluster ids in 0..K−1. Every cluster must have at least one point
            (compact the ids first, e.g. ``np.unique(labels, return_inverse=True)``).
        n_clusters: K. Default ``labels.max() + 1``.
        chunk_size: rows per block. Default: derived from ``max_block_bytes``.
        max_block_bytes: upper bound on the bytes of one distance block (used without
            ``chunk_size``).
        device: torch device to compute on. Default: z's device for a tensor, else the CPU.

    Returns:
        (K, K) float64 NumPy array: symmetric, zero diagonal, D[a, b] = the largest distance
        between a point of a and a point of b.

    Raises:
        ValueError: bad shapes, ids out of range, an empty cluster, or non-finite z.
    """
    import torch

    zt = z if isinstance(z, torch.Tensor) else torch.as_tensor(np.asarray(z))
    if device is None:
        device = zt.device
    zt = zt.detach().to(device=device, dtype=torch.float64)
    if zt.ndim != 2 or zt.shape[0] == 0:
        raise ValueError(f"z must be a non-empty (N, d) array, got shape {tuple(zt.shape)}")
    if not bool(torch.isfinite(zt).all()):
        raise ValueError("z contains NaN or infinite values")
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != zt.shape[0]:
        raise ValueError(f"labels must have shape ({zt.shape[0]},) (one per row of z), got {lab.shape}")
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integer cluster ids, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    k = int(lab.max()) + 1 if n_clusters is None else int(n_clusters)
    if lab.min() < 0 or lab.max() >= k:
        raise ValueError(f"labels must be in 0..{k - 1}, got values in {lab.min()}..{lab.max()}")
    counts = np.bincount(lab, minlength=k)
    if (counts == 0).any():
        raise ValueError(f"cluster(s) {np.flatnonzero(counts == 0).tolist()} have no points; the distance to an "
                         "empty cluster is undefined (compact the ids with np.unique(labels, return_inverse=True))")
    n = zt.shape[0]
    if chunk_size is None:
        chunk_size = max(1, int(max_block_bytes) // (8 * n))
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    order = np.argsort(lab, kind="stable")
    zs = zt[torch.as_tensor(order, device=device)]
    bounds = np.concatenate([[0], np.cumsum(counts)])  # cluster b holds sorted rows bounds[b]..bounds[b+1]−1
    out = torch.full((k, k), -np.inf, dtype=torch.float64, device=device)
    for start in range(0, n, chunk_size):  # loop over chunks: block (rows start..stop−1) × (columns start..n−1)
        stop = min(start + chunk_size, n)
        block = torch.cdist(zs[start:stop], zs[start:])
        per_cluster = torch.full((stop - start, k), -np.inf, dtype=torch.float64, device=device)
        for b in range(k):  # loop over clusters: the columns of cluster b are one contiguous slice
            lo, hi = max(int(bounds[b]), start) - start, int(bounds[b + 1]) - start
            if hi > lo:
                per_cluster[:, b] = block[:, lo:hi].amax(dim=1)
        del block
        for a in range(k):  # ... and so are its rows
            lo, hi = max(int(bounds[a]), start) - start, min(int(bounds[a + 1]), stop) - start
            if hi > lo:
                out[a] = torch.maximum(out[a], per_cluster[lo:hi].amax(dim=0))
    d = torch.maximum(out, out.T)
    d.fill_diagonal_(0.0)
    return d.cpu().numpy()


def complete_linkage_cluster_tree(z: Any, labels: Any, **kwargs: Any) -> BaselineResult:
    """Merges the clusters of a flat partition by complete-linkage agglomerative clustering in
    the embedding z ("IDEC (agglomerative complete*)" in CoHiClust's hierarchical table).

    The distance between two clusters is the largest distance between a point of one and a
    point of the other (:func:`complete_linkage_between_clusters`, exact). SciPy's complete
    linkage on that K×K matrix gives the tree. Complete linkage of a union is the max of its
    parts, so this is the same tree as complete linkage over the points with the clusters held
    together.

    Args:
        z: (N, d) embeddings (e.g. ``model.transform(X)``).
        labels: (N,) integer cluster ids (e.g. ``model.labels_``). Ids with no points are
            dropped: the remaining K' clusters are renumbered 0..K'−1 in increasing id order.
        **kwargs: passed to :func:`complete_linkage_between_clusters` (``chunk_size``,
            ``max_block_bytes``, ``device``).

    Returns:
        A :class:`BaselineResult` with the renumbered ``labels`` and a ``hierarchy`` over the
        K' clusters with the points attached (leaf j = cluster j). ``extra["cluster_ids"]`` holds
        the original id of each leaf, and ``extra["distances"]`` the K'×K' matrix.
    """
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import squareform

    started = time.perf_counter()
    lab = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    ids, compact = np.unique(lab, return_inverse=True)
    compact = compact.reshape(-1).astype(np.int64)
    d = complete_linkage_between_clusters(z, compact, n_clusters=ids.size, **kwargs)
    if ids.size == 1:
        tree = Hierarchy(np.full((1, 2), -1), leaf_of=compact)
    else:
        z_clusters = scipy_linkage(squareform(d, checks=False), method="complete")
        tree = Hierarchy.from_linkage(z_clusters).with_points(compact)
    return BaselineResult(compact, tree, None, "complete_linkage_over_clusters", time.perf_counter() - started,
                          {"cluster_ids": ids, "distances": d})


# ------------------------------------------------------------------------------------------------
# learned features
# ------------------------------------------------------------------------------------------------
def autoencoder_features(X: Any, **dec_params: Any) -> tuple[np.ndarray, Any]:
    """Embeddings z of DEC's autoencoder after pre-training only (no clustering phase).

    ``dec_params`` are :class:`hiclust.DEC` parameters (``n_clusters``, ``pretrain_epochs``,
    ``autoencoder``...). Returns (z (N, embedding_dim), the fitted DEC model).
    """
    from hiclust.methods.dec import DEC

    params = dict(dec_params)
    params["epochs"] = 0  # pre-training + k-means initialisation, no KL fine-tuning
    model = DEC(**params).fit(X)
    return model.transform(X), model


def simclr_features(X: Any, **simclr_params: Any) -> tuple[np.ndarray, Any]:
    """Backbone features h of :class:`hiclust.methods.simclr.SimCLR` (NT-Xent only).

    Returns (h (N, d), the fitted SimCLR model)."""
    from hiclust.methods.simclr import SimCLR

    params = dict(simclr_params)
    model = SimCLR(**params).fit(X)
    return model.transform(X), model


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------
def _agg(link: str) -> Callable[..., BaselineResult]:
    def run(X: Any, n_clusters: int, *, random_state: int = 0) -> BaselineResult:
        return agglomerative(X, n_clusters, linkage=link)

    run.__doc__ = f"agglomerative clustering with {link} linkage"
    return run


def _seeded(fn: Callable[..., BaselineResult]) -> Callable[..., BaselineResult]:
    def run(X: Any, n_clusters: int, *, random_state: int = 0) -> BaselineResult:
        return fn(X, n_clusters, random_state=random_state)

    run.__doc__ = fn.__doc__
    return run


# name → fn(X, n_clusters, *, random_state) on the given features.
BASELINES: dict[str, Callable[..., BaselineResult]] = {
    "kmeans": _seeded(kmeans),
    "spectral": _seeded(spectral),
    "nmf": _seeded(nmf),
    "agglomerative": _agg("ward"),
    "agglomerative_ward": _agg("ward"),
    "agglomerative_average": _agg("average"),
    "agglomerative_complete": _agg("complete"),
    "agglomerative_single": _agg("single"),
    "bisecting_kmeans": _seeded(bisecting_kmeans),
}

# Deep-feature baselines: name → (feature learner, clustering baseline).
FEATURE_BASELINES: dict[str, tuple[str, str]] = {
    "ae_kmeans": ("autoencoder", "kmeans"),
    "ae_agglomerative": ("autoencoder", "agglomerative_ward"),
    "simclr_agglomerative": ("simclr", "agglomerative_ward"),
    "simclr_kmeans": ("simclr", "kmeans"),
}


def run_baseline(
    name: str,
    X: Any,
    n_clusters: int,
    *,
    random_state: int = 0,
    feature_params: dict[str, Any] | None = None,
) -> BaselineResult:
    """Runs a baseline by name: one of ``BASELINES`` (on X as given: raw pixels or features) or
    of ``FEATURE_BASELINES`` (learns the features first with ``feature_params``, then clusters;
    ``seconds`` then includes the feature learning, and ``extra["feature_seconds"]`` says how much)."""
    if name in BASELINES:
        return BASELINES[name](X, n_clusters, random_state=random_state)
    if name not in FEATURE_BASELINES:
        raise ValueError(
            f"unknown baseline {name!r}; choose one of {', '.join(sorted(BASELINES) + sorted(FEATURE_BASELINES))}"
        )
    learner, clusterer = FEATURE_BASELINES[name]
    params = {"n_clusters": n_clusters, "seed": random_state, **(feature_params or {})}
    started = time.perf_counter()
    learn = autoencoder_features if learner == "autoencoder" else simclr_features
    feats, _ = learn(X, **params)
    feature_seconds = time.perf_counter() - started
    result = BASELINES[clusterer](feats, n_clusters, random_state=random_state)
    result.method = name
    result.extra["feature_seconds"] = feature_seconds
    result.seconds += feature_seconds
    return result
