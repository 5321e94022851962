"""Losses of DEC/IDEC and the other loss components of the deep clustering lecture (docs/methods.md, "DEC and IDEC").

All functions are pure functions of tensors, vectorized over samples and clusters.

Clustering losses (L_c): :func:`kl_divergence` of the target :func:`target_distribution` P from
the :func:`student_t_assignment` Q (DEC's cluster-assignment hardening), :func:`kmeans_loss`,
:func:`balance_kl` (KL(G‖U) with a uniform or :func:`zipf_prior`).
Non-clustering losses (L_n): reconstruction (plain MSE, not repeated here),
:func:`locality_loss` (with :func:`knn_graph` for the neighbours), :func:`self_augmentation_loss`.
Combination: L = α·L_c + (1 − α)·L_n with α from :func:`alpha_schedule` ("pretrain_finetune",
"joint", "rising"), see :func:`combine_losses`.

>>> import torch
>>> z, mu = torch.randn(6, 2), torch.randn(3, 2)
>>> q = student_t_assignment(z, mu)            # (6, 3), rows sum to 1
>>> p = target_distribution(q)                 # sharper, rows sum to 1
>>> loss = kl_divergence(p, q)                 # >= 0, == 0 iff p == q
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "student_t_assignment",
    "target_distribution",
    "kl_divergence",
    "kmeans_loss",
    "zipf_prior",
    "balance_kl",
    "knn_graph",
    "locality_loss",
    "self_augmentation_loss",
    "ALPHA_SCHEDULES",
    "alpha_schedule",
    "combine_losses",
]

_EPS = 1e-12


def _check_2d(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a 2-D tensor, got {shape}")


def _squared_distances(z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(N, D), (K, D) → (N, K) squared Euclidean distances (exact difference form: no
    cancellation error for points close to a centroid, and K·D is small)."""
    _check_2d("z", z)
    _check_2d("centroids", centroids)
    if z.shape[1] != centroids.shape[1]:
        raise ValueError(f"z has {z.shape[1]} dimensions but the centroids have {centroids.shape[1]}")
    return (z[:, None, :] - centroids[None, :, :]).pow(2).sum(-1)


def student_t_assignment(z: torch.Tensor, centroids: torch.Tensor, nu: float = 1.0) -> torch.Tensor:
    """DEC's soft assignment Q with a Student's t kernel.

    q_ij ∝ (1 + ‖z_i − μ_j‖²/ν)^(−(ν+1)/2), normalized over j. Computed as a softmax of the
    log-kernel, so it stays finite for far-away points.

    Args:
        z: (N, D) embeddings.
        centroids: (K, D) cluster centres μ.
        nu: degrees of freedom ν > 0 (DEC uses 1).

    Returns:
        (N, K) rows summing to 1.
    """
    if nu <= 0:
        raise ValueError(f"nu (degrees of freedom) must be > 0, got {nu}")
    d2 = _squared_distances(z, centroids)
    return torch.softmax(-(nu + 1.0) / 2.0 * torch.log1p(d2 / nu), dim=1)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC's auxiliary target P: p_ij = (q_ij²/f_j) / Σ_j' (q_ij'²/f_j'), f_j = Σ_i q_ij.

    Squaring sharpens the assignments; dividing by the soft cluster frequency f_j keeps large
    clusters from absorbing the others. Returned without gradient (P is a fixed target).

    Args:
        q: (N, K) soft assignments (rows sum to 1), usually over the whole data set.

    Returns:
        (N, K) rows summing to 1.
    """
    _check_2d("q", q)
    q = q.detach()
    weight = q.pow(2) / q.sum(0).clamp_min(_EPS)
    return weight / weight.sum(1, keepdim=True).clamp_min(_EPS)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """KL(P‖Q) = Σ_i Σ_j p_ij log(p_ij / q_ij) between two row-stochastic matrices.

    Terms with p_ij = 0 contribute 0 (xlogy convention). Non-negative; 0 iff P = Q.

    Args:
        p, q: (N, K); the gradient flows into q (and p if it requires grad).
        reduction: "batchmean" (divide by N, as DEC-keras' Keras KLD and PyTorch's kl_div), or
            "sum" (the lecture's formula as written).
    """
    _check_2d("p", p)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    terms = torch.xlogy(p, p) - torch.xlogy(p, q.clamp_min(_EPS))
    total = terms.sum()
    if reduction == "sum":
        return total
    if reduction == "batchmean":
        return total / p.shape[0]
    raise ValueError(f"reduction must be 'batchmean' or 'sum', got {reduction!r}")


def kmeans_loss(
    z: torch.Tensor, centroids: torch.Tensor, assignments: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """k-means loss Σ_i Σ_k s_ik ‖z_i − μ_k‖² (Yang et al. 2016).

    Args:
        z: (N, D) embeddings; centroids: (K, D).
        assignments: (N, K) weights s_ik (hard one-hot or soft, e.g. Q). Default: hard
            assignment to the nearest centroid, i.e. Σ_i min_k ‖z_i − μ_k‖² (no s needed).
        reduction: "mean" over the N points (scale independent of the batch size) or "sum".
    """
    d2 = _squared_distances(z, centroids)
    if assignments is None:
        per_point = d2.min(1).values
    else:
        if assignments.shape != d2.shape:
            raise ValueError(f"assignments must have shape {tuple(d2.shape)} (N, K), got {tuple(assignments.shape)}")
        per_point = (assignments * d2).sum(1)
    if reduction == "mean":
        return per_point.mean()
    if reduction == "sum":
        return per_point.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def zipf_prior(n_clusters: int, s: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """Zipf's rank–frequency law f(k; s, K) = (1/k^s) / Σ_{n=1..K} 1/n^s for ranks k = 1..K.

    Returns (K,) decreasing probabilities (s = 0 gives the uniform distribution).
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if s < 0:
        raise ValueError(f"the Zipf exponent s must be >= 0, got {s}")
    w = torch.arange(1, n_clusters + 1, dtype=torch.float64, device=device).pow(-float(s))
    return (w / w.sum()).float()


def balance_kl(q: torch.Tensor, prior: str | torch.Tensor = "uniform", zipf_s: float = 1.0) -> torch.Tensor:
    """Cluster-size regularizer KL(G‖U), g_k = (1/N) Σ_i q_ik.

    Args:
        q: (N, K) soft assignments.
        prior: "uniform" (U_k = 1/K: promotes balanced clusters), "zipf" (sizes following
            Zipf's law with exponent ``zipf_s``; the prior is over *ranks*, so the k-th largest
            cluster of G is compared with the k-th Zipf frequency — no cluster is told in
            advance to be the big one), or a (K,) tensor of target frequencies in cluster order.

    Returns:
        Scalar ≥ 0; 0 when G equals the prior.
    """
    _check_2d("q", q)
    k = q.shape[1]
    g = q.mean(0)
    if isinstance(prior, torch.Tensor):
        if prior.shape != (k,) or (prior < 0).any():
            raise ValueError(f"a prior tensor must hold {k} non-negative frequencies, got shape {tuple(prior.shape)}")
        u = (prior / prior.sum()).to(g)
    elif prior == "uniform":
        u = torch.full_like(g, 1.0 / k)
    elif prior == "zipf":
        g = torch.sort(g, descending=True).values  # rank the clusters by size (sort is differentiable)
        u = zipf_prior(k, zipf_s, device=g.device).to(g)
    else:
        raise ValueError(f"prior must be 'uniform', 'zipf' or a tensor of K frequencies, got {prior!r}")
    return (torch.xlogy(g, g) - torch.xlogy(g, u.clamp_min(_EPS))).sum()


def knn_graph(x: torch.Tensor | np.ndarray, n_neighbors: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours N_k(i) of every point in input space, with heat-kernel similarities.

    s(x_i, x_j) = exp(−‖x_i − x_j‖² / σ²), σ² = mean squared distance to the k neighbours over
    all points (a scale-free default). Uses scikit-learn's NearestNeighbors (tree or brute
    force, vectorized); the point itself is excluded.

    Args:
        x: (N, ...) inputs; flattened to (N, D).
        n_neighbors: k, 1 ≤ k < N.

    Returns:
        indices (N, k) int64 and similarities (N, k) float32 in (0, 1].
    """
    from sklearn.neighbors import NearestNeighbors

    a = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    a = a.reshape(a.shape[0], -1)
    if not 1 <= n_neighbors < a.shape[0]:
        raise ValueError(f"n_neighbors must be in 1..{a.shape[0] - 1} (N − 1), got {n_neighbors}")
    dist, idx = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(a).kneighbors(a)
    # Column 0 is normally the point itself; with duplicates it may be another point, so drop
    # the self index wherever it is (and the last column where it does not appear).
    is_self = idx == np.arange(a.shape[0])[:, None]
    drop = np.where(is_self.any(1), is_self.argmax(1), n_neighbors)
    keep = np.ones_like(is_self)
    keep[np.arange(a.shape[0]), drop] = False
    idx = idx[keep].reshape(a.shape[0], n_neighbors)
    d2 = dist[keep].reshape(a.shape[0], n_neighbors) ** 2
    sigma2 = max(float(d2.mean()), _EPS)
    return torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(np.exp(-d2 / sigma2).astype(np.float32))


def locality_loss(z: torch.Tensor, z_neighbors: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Locality-preserving loss Σ_i Σ_{j∈N_k(i)} s(x_i, x_j) ‖z_i − z_j‖², averaged over i.

    Args:
        z: (B, D) embeddings of a batch.
        z_neighbors: (B, k, D) embeddings of each point's k input-space neighbours.
        weights: (B, k) similarities s(x_i, x_j) (see :func:`knn_graph`); default 1.

    Returns:
        Scalar: mean over the B points of the weighted sum over their neighbours.
    """
    _check_2d("z", z)
    if z_neighbors.ndim != 3 or z_neighbors.shape[0] != z.shape[0] or z_neighbors.shape[2] != z.shape[1]:
        raise ValueError(f"z_neighbors must be (B, k, D) = ({z.shape[0]}, k, {z.shape[1]}), got {tuple(z_neighbors.shape)}")
    d2 = (z[:, None, :] - z_neighbors).pow(2).sum(-1)
    if weights is not None:
        if weights.shape != d2.shape:
            raise ValueError(f"weights must have shape {tuple(d2.shape)} (B, k), got {tuple(weights.shape)}")
        d2 = d2 * weights
    return d2.sum(1).mean()


def self_augmentation_loss(z: torch.Tensor, z_augmented: torch.Tensor) -> torch.Tensor:
    """Self-augmentation loss −(1/N) Σ s(f(x), f(T(x))) with cosine similarity s (Hu et al. 2017).

    Args:
        z: (N, D) embeddings of the samples; z_augmented: (N, D) of their augmentations.

    Returns:
        Scalar in [−1, 1]; −1 when every augmented embedding points the same way as its original.
    """
    _check_2d("z", z)
    if z.shape != z_augmented.shape:
        raise ValueError(f"z and z_augmented must have the same shape, got {tuple(z.shape)} and {tuple(z_augmented.shape)}")
    return -F.cosine_similarity(z, z_augmented, dim=1, eps=1e-8).mean()


ALPHA_SCHEDULES = ("pretrain_finetune", "joint", "rising")


def alpha_schedule(
    kind: str, progress: float, *, alpha: float = 0.5, alpha_start: float = 0.0, alpha_end: float = 1.0
) -> float:
    """Weight α of the clustering loss in L = α·L_c + (1 − α)·L_n at a point of training.

    Args:
        kind: "pretrain_finetune" (α = 0 during pre-training, 1 afterwards), "joint" (fixed
            ``alpha`` after pre-training), "rising" (linear from ``alpha_start`` to ``alpha_end``
            over the clustering phase).
        progress: < 0 during pre-training; in [0, 1] = fraction of the clustering phase done
            (values above 1 are clamped).

    Every schedule gives α = 0 during pre-training (L_n alone, as all three lecture variants
    start from a pre-trained network).
    """
    if kind not in ALPHA_SCHEDULES:
        raise ValueError(f"unknown alpha schedule {kind!r}; choose one of {', '.join(ALPHA_SCHEDULES)}")
    for name, v in (("alpha", alpha), ("alpha_start", alpha_start), ("alpha_end", alpha_end)):
        if not 0.0 <= v <= 1.0 or math.isnan(v):
            raise ValueError(f"{name} must lie in [0, 1], got {v}")
    if progress < 0:
        return 0.0
    if kind == "pretrain_finetune":
        return 1.0
    if kind == "joint":
        return float(alpha)
    t = min(float(progress), 1.0)
    return float(alpha_start + (alpha_end - alpha_start) * t)


def combine_losses(clustering: torch.Tensor, non_clustering: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·L_c + (1 − α)·L_n (the lecture's combination)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha * clustering + (1.0 - alpha) * non_clustering
