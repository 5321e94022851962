"""Clustering metrics: ACC, NMI, ARI, dendrogram purity and leaf purity (docs/methods.md, "Metrics").

Every function accepts NumPy arrays, torch tensors (any device) or Python lists of integer
labels of shape (n,). Results are plain Python floats.

Example
-------
>>> from hiclust.metrics import evaluate
>>> evaluate([0, 0, 1, 1], [1, 1, 0, 0])["acc"]
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

__all__ = [
    "clustering_accuracy",
    "nmi",
    "ari",
    "dendrogram_purity",
    "leaf_purity",
    "evaluate",
]


# --------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------
def _as_numpy(x: Any, name: str) -> np.ndarray:
    """Convert a list / NumPy array / torch tensor to a NumPy array without copying when possible."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:  # ragged lists etc.
        raise TypeError(f"{name} must be array-like (list, NumPy array or torch tensor): {e}") from e


def _as_labels(x: Any, name: str) -> np.ndarray:
    """Validate a 1-D, non-empty, integer-valued label vector and return it as int64 (n,)."""
    a = _as_numpy(x, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per point), got shape {a.shape}.")
    if a.size == 0:
        raise ValueError(f"{name} is empty; metrics need at least one point.")
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64, copy=False)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values; labels must be integers.")
        if not np.all(a == np.round(a)):
            raise ValueError(
                f"{name} contains non-integer values; pass integer class/cluster ids "
                "(e.g. argmax of probabilities), not probabilities or scores."
            )
        return a.astype(np.int64)
    raise TypeError(f"{name} must hold integer labels, got dtype {a.dtype}.")


def _as_class_labels(x: Any, name: str) -> np.ndarray:
    """Class labels as int64 ids (n,): integer ids as :func:`_as_labels` takes them, or names
    (strings, as scikit-learn's metrics take them) numbered in sorted order. Every metric here
    depends only on which points share a class, not on the ids."""
    a = _as_numpy(x, name)
    if a.dtype.kind in "USO" and a.ndim == 1 and a.size:
        try:
            return np.unique(a, return_inverse=True)[1].astype(np.int64).reshape(-1)
        except TypeError:
            raise TypeError(f"{name} mixes label types that cannot be compared ({a.dtype}); use one type, "
                            "e.g. all strings") from None
    return _as_labels(a, name)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _as_class_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}."
        )
    return t, p


# --------------------------------------------------------------------------------------
# flat metrics
# --------------------------------------------------------------------------------------
def clustering_accuracy(y_true: Any, y_pred: Any) -> float:
    """Unsupervised clustering accuracy (ACC).

    max over one-to-one maps m from clusters to classes of (1/n) Σ_i 1{y_true_i = m(y_pred_i)},
    solved with the Hungarian method on the (classes × clusters) contingency table. The numbers
    of classes and clusters may differ; points of unmatched clusters count as errors.

    Args:
        y_true: (n,) integer class labels.
        y_pred: (n,) integer cluster ids.
    Returns:
        ACC in [0, 1].
    """
    t, p = _pair(y_true, y_pred)
    c = contingency_matrix(t, p)
    rows, cols = linear_sum_assignment(c, maximize=True)
    return float(c[rows, cols].sum() / t.shape[0])


def nmi(y_true: Any, y_pred: Any) -> float:
    """Normalized mutual information (scikit-learn, arithmetic-mean normalization), in [0, 1]."""
    t, p = _pair(y_true, y_pred)
    return float(normalized_mutual_info_score(t, p, average_method="arithmetic"))


def ari(y_true: Any, y_pred: Any) -> float:
    """Adjusted Rand index (scikit-learn), in [-0.5, 1]; 0 for random labelings."""
    t, p = _pair(y_true, y_pred)
    return float(adjusted_rand_score(t, p))


def leaf_purity(y_true: Any, y_pred: Any) -> float:
    """Fraction of points whose cluster's majority class equals their own class.

    Equals Σ_clusters max_c n_{cluster,c} / n (ties between majority classes do not matter).
    """
    t, p = _pair(y_true, y_pred)
    c = contingency_matrix(t, p)  # (classes, clusters)
    return float(c.max(axis=0).sum() / t.shape[0])


# --------------------------------------------------------------------------------------
# dendrogram purity
# --------------------------------------------------------------------------------------
def dendrogram_purity(y_true: Any, linkage: Any, leaf_of: Any = None) -> float:
    """Dendrogram purity (Kobren et al. 2017), computed exactly from per-node class counts.

    Average over all unordered pairs of distinct points of the same class c of
    |desc(LCA) ∩ c| / |desc(LCA)|, where desc(v) are the points under node v and two points in
    the same leaf have that leaf as LCA. The same as :func:`hiclust.hierarchy.dendrogram_purity`
    over the tree of the linkage.

    Args:
        y_true: (n,) integer class labels.
        linkage: SciPy linkage matrix (L−1, 4) over L leaves (leaves are nodes 0..L−1,
            row i creates node L+i). Heights and counts columns are not used.
        leaf_of: (n,) leaf id in 0..L−1 holding each point. Default: point i is leaf i, which
            requires n == L.
    Returns:
        DP in (0, 1].
    Raises:
        ValueError: bad shapes / ids, or no pair of points shares a class.
    """
    from hiclust.hierarchy import dendrogram_purity as tree_purity, from_linkage  # lazy: it imports us

    y = _as_class_labels(y_true, "y_true")
    children, _ = from_linkage(linkage, name="linkage")
    return tree_purity(children, y, leaf_of=leaf_of)


# --------------------------------------------------------------------------------------
# all at once
# --------------------------------------------------------------------------------------
def evaluate(
    y_true: Any, y_pred: Any, linkage: Any = None, leaf_of: Any = None
) -> dict[str, float]:
    """All metrics in one dict of plain floats.

    Keys: "acc", "nmi", "ari", "leaf_purity", plus "dp" when a linkage is given. With a linkage
    and no leaf_of, the clusters are taken to be the leaves (leaf_of = y_pred): right for a tree
    over the K clusters (CoHiClust, the post-hoc trees), wrong for a tree with more leaves than
    clusters (DeepECT: pass ``leaf_of=model.leaf_labels_``).

    Args:
        y_true: (n,) class labels.
        y_pred: (n,) cluster ids.
        linkage: optional SciPy linkage (L−1, 4) over the leaves.
        leaf_of: optional (n,) leaf id of each point.
    """
    t, p = _pair(y_true, y_pred)
    out = {
        "acc": clustering_accuracy(t, p),
        "nmi": nmi(t, p),
        "ari": ari(t, p),
        "leaf_purity": leaf_purity(t, p),
    }
    if linkage is not None:
        out["dp"] = dendrogram_purity(t, linkage, leaf_of=p if leaf_of is None else leaf_of)
    elif leaf_of is not None:
        raise ValueError("leaf_of was given without a linkage; pass the linkage too (or drop leaf_of).")
    return out
