"""Clustering metrics: ACC, NMI, ARI, dendrogram purity and leaf purity (SPEC §4).

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


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _as_labels(y_true, "y_true")
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
# tree helpers shared with hiclust.hierarchy
# --------------------------------------------------------------------------------------
def _bfs_levels(children: np.ndarray, root: int) -> list[np.ndarray]:
    """Nodes grouped by depth, top-down; each group in left-to-right order.

    children: (n_nodes, 2) int, -1 for leaves. One vectorized step per depth level, so a
    balanced tree costs O(log n) NumPy calls rather than one per node.
    """
    levels = []
    frontier = np.array([root], dtype=np.int64)
    while frontier.size:
        levels.append(frontier)
        ch = children[frontier].ravel()  # (left, right) interleaved keeps left-to-right order
        frontier = ch[ch >= 0]
    return levels


def _subtree_sums(children: np.ndarray, levels: list[np.ndarray], values: np.ndarray) -> np.ndarray:
    """Bottom-up sums: out[v] = values[v] for leaves, out[left] + out[right] for internal nodes.

    values: (n_nodes, ...) array whose rows for internal nodes are ignored.
    """
    out = values.copy()
    for nodes in reversed(levels):  # deepest level first, so children are final before parents
        inner = nodes[children[nodes, 0] >= 0]
        if inner.size:
            out[inner] = out[children[inner, 0]] + out[children[inner, 1]]
    return out


def _check_linkage(linkage: Any) -> np.ndarray:
    """Validate a SciPy linkage matrix (L−1, 4) and return it as float64.

    Checked: shape, finite values, integer child ids, every child formed before it is used and
    used exactly once. The counts column (col. 3) is not used by the metrics and not checked.
    """
    z = _as_numpy(linkage, "linkage")
    if z.ndim != 2 or z.shape[1] != 4:
        raise ValueError(
            f"linkage must be a SciPy linkage matrix of shape (n_leaves - 1, 4), got shape {z.shape}."
        )
    if not np.issubdtype(z.dtype, np.number):
        raise TypeError(f"linkage must be numeric, got dtype {z.dtype}.")
    z = z.astype(np.float64)
    if not np.all(np.isfinite(z)):
        raise ValueError("linkage contains NaN or infinite values.")
    m = z.shape[0]
    ids = z[:, :2]
    if not np.all(ids == np.round(ids)):
        raise ValueError("linkage columns 0 and 1 (merged cluster ids) must be integers.")
    ids = ids.astype(np.int64)
    limit = m + 1 + np.arange(m)  # row i may only merge clusters formed before node L + i
    if np.any(ids < 0) or np.any(ids.max(axis=1, initial=-1) >= limit):
        raise ValueError(
            "linkage uses a negative cluster id or a cluster before it is formed; "
            "row i may only merge ids < n_leaves + i."
        )
    if np.unique(ids).size != 2 * m:
        raise ValueError("linkage merges the same cluster more than once.")
    return z


def _linkage_children(z: np.ndarray) -> np.ndarray:
    """(2L−1, 2) children array (−1 for leaves) of a validated linkage matrix."""
    n_leaves = z.shape[0] + 1
    children = np.full((2 * n_leaves - 1, 2), -1, dtype=np.int64)
    children[n_leaves:] = z[:, :2].astype(np.int64)
    return children


# --------------------------------------------------------------------------------------
# dendrogram purity
# --------------------------------------------------------------------------------------
def _dp_from_counts(children: np.ndarray, counts: np.ndarray, root: int | None = None) -> float:
    """Dendrogram purity from per-node class counts (n_nodes, n_classes), subtree-summed.

    For node v and class c, the same-class pairs whose LCA is v number
    C(n_vc, 2) − Σ_children C(n_child,c, 2) (all C(n_vc, 2) for a leaf), and each has purity
    n_vc / n_v. Exact, O(nodes · classes), no enumeration of pairs.
    """
    counts = counts.astype(np.float64)  # exact: counts < 2^53
    pairs = counts * (counts - 1.0) / 2.0
    inner = children[:, 0] >= 0
    lca_pairs = pairs.copy()
    lca_pairs[inner] -= pairs[children[inner, 0]] + pairs[children[inner, 1]]
    sizes = counts.sum(axis=1, keepdims=True)
    purity = np.divide(counts, sizes, out=np.zeros_like(counts), where=sizes > 0)
    total = float(np.sum(pairs[_root_of(children) if root is None else root]))  # all same-class pairs
    if total == 0:
        raise ValueError(
            "dendrogram purity is undefined: no two points share a class "
            "(every class has at most one point)."
        )
    return float(np.sum(lca_pairs * purity) / total)


def _root_of(children: np.ndarray) -> int:
    """Root of a children array whose nodes are numbered children-before-parents (SciPy order)."""
    return children.shape[0] - 1


def dendrogram_purity(y_true: Any, linkage: Any, leaf_of: Any = None) -> float:
    """Dendrogram purity (Kobren et al. 2017), computed exactly from per-node class counts.

    Average over all unordered pairs of distinct points of the same class c of
    |desc(LCA) ∩ c| / |desc(LCA)|, where desc(v) are the points under node v and two points in
    the same leaf have that leaf as LCA.

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
    y = _as_labels(y_true, "y_true")
    z = _check_linkage(linkage)
    n_leaves = z.shape[0] + 1
    if leaf_of is None:
        if y.shape[0] != n_leaves:
            raise ValueError(
                f"linkage has {n_leaves} leaves but y_true has {y.shape[0]} points; pass leaf_of "
                "(the leaf id of each point) when leaves hold several points."
            )
        leaf = np.arange(n_leaves)
    else:
        leaf = _as_labels(leaf_of, "leaf_of")
        if leaf.shape[0] != y.shape[0]:
            raise ValueError(
                f"leaf_of must have one entry per point: got {leaf.shape[0]}, y_true has {y.shape[0]}."
            )
        if leaf.min() < 0 or leaf.max() >= n_leaves:
            raise ValueError(
                f"leaf_of must lie in 0..{n_leaves - 1} (the linkage's leaves), "
                f"got range {leaf.min()}..{leaf.max()}."
            )
    _, codes = np.unique(y, return_inverse=True)
    n_classes = int(codes.max()) + 1
    children = _linkage_children(z)
    leaf_counts = np.zeros((children.shape[0], n_classes), dtype=np.int64)
    np.add.at(leaf_counts, (leaf, codes), 1)
    counts = _subtree_sums(children, _bfs_levels(children, _root_of(children)), leaf_counts)
    return _dp_from_counts(children, counts)


# --------------------------------------------------------------------------------------
# all at once
# --------------------------------------------------------------------------------------
def evaluate(
    y_true: Any, y_pred: Any, linkage: Any = None, leaf_of: Any = None
) -> dict[str, float]:
    """All metrics in one dict of plain floats.

    Keys: "acc", "nmi", "ari", "leaf_purity", plus "dp" when a linkage is given. With a linkage
    and no leaf_of, the clusters are taken to be the leaves (leaf_of = y_pred).

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
