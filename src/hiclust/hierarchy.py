"""Trees as arrays, with functions over them, in the manner of :mod:`scipy.cluster.hierarchy`.

Every hierarchical result (a fitted CoHiClust tree, a SciPy linkage over points or clusters,
bisecting k-means) is a full binary tree held in plain arrays. The module-level functions
compute over those arrays; :class:`Hierarchy` is an immutable object view that stores them once
and forwards to the same code, so every method is evaluated, exported and drawn the same way.

Representation
--------------
A tree with L leaves has ``2L − 1`` nodes, numbered as in a SciPy linkage matrix Z:

* ``children`` (2L−1, 2) int64: rows 0..L−1 are the leaves, ``(-1, -1)``; row L+i is the
  internal node L+i = row i of Z, ``(left, right)`` with both ids < L+i (children before
  parents), every node except the root (the last row) used exactly once. So
  ``children[L:] == Z[:, :2]``. "Left" is drawn first; the left-to-right leaf order is
  :func:`leaves_list`.
* per-node arrays, (2L−1,) each: ``height`` (float64 dendrogram height; default: the longest
  downward path in edges) and ``level`` (int64, what ``cut(level=t)`` uses; default: the
  depth; for CoHiClust trees the level in the complete tree, so collapsed chains keep their
  levels). Optionally ``name`` (root-to-node path such as "LRR") and ``heap_index`` (index of
  the node in the complete tree it came from).
* points: ``leaf_of`` (n,) int, the leaf holding each point, and optionally ``y`` (n,) class
  labels. Functions given labels but no ``leaf_of`` take each leaf to be one point.

:func:`check_children` and :func:`check_linkage` validate the two array forms; :func:`from_linkage`
and :func:`to_linkage` convert between them. Per-node quantities are computed with one vectorized
NumPy step per depth (never per node or per point), so balanced trees cost O(log n) NumPy calls.

Examples
--------
>>> children, height = from_linkage([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])
>>> cut(children, n_clusters=2, height=height).tolist()
[1, 1, 0]
>>> h = Hierarchy.from_complete_tree(3, pruned_leaves=[0, 5])
>>> h.n_leaves, h.cut(level=1).tolist()
(6, [0, 0, 0, 1, 1, 1])
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any, NamedTuple, Sequence

import numpy as np

from . import metrics as _metrics
from ._warnings import user_stacklevel
from .metrics import _as_class_labels, _as_labels, _as_numpy

__all__ = [
    "Hierarchy",
    "check_children",
    "check_linkage",
    "from_linkage",
    "to_linkage",
    "complete_tree",
    "leaves_list",
    "subtree_sums",
    "lca",
    "cut_nodes",
    "cut",
    "level_metrics",
    "super_groups",
    "dendrogram_purity",
    "to_newick",
    "to_dict",
    "from_dict",
    "to_json",
    "from_json",
    "bisecting_kmeans",
    "l2h_linkage",
]

_JSON_FORMAT = "hiclust.Hierarchy"
_JSON_VERSION = 1


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def _check_merges(ids: np.ndarray, n_leaves: int, name: str, first_row: int) -> None:
    """ids (L−1, 2): the children of nodes L..2L−2 in order; rows are reported as first_row + k."""
    node = n_leaves + np.arange(ids.shape[0])
    bad = np.flatnonzero((ids < 0).any(axis=1))
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"{name} row {first_row + k} holds a negative id {int(ids[k].min())}; "
                         "internal nodes merge two node ids >= 0.")
    bad = np.flatnonzero((ids >= node[:, None]).any(axis=1))
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"{name} row {first_row + k} merges node {int(ids[k].max())} before it is formed: node "
            f"{int(node[k])} may only merge ids < {int(node[k])} (children come before parents, as in "
            "a SciPy linkage)."
        )
    values, counts = np.unique(ids, return_counts=True)
    if values.size != ids.size:
        raise ValueError(f"{name} merges node {int(values[counts > 1][0])} more than once; every node "
                         "except the root needs exactly one parent.")


def check_children(children: Any, *, name: str = "children") -> np.ndarray:
    """Validate a children array and return it as a new int64 array.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
        Integer node ids: ``(-1, -1)`` for the leaves 0..L-1, then ``(left, right)`` for each
        internal node L+i, both ids < L+i, every node except the root used once.
    name : str
        What to call the array in error messages.

    Returns
    -------
    numpy.ndarray, shape (2L-1, 2), int64

    Raises
    ------
    ValueError
        Wrong shape, non-integer ids, a leaf row that is not ``(-1, -1)``, a negative id, a
        node used before it is formed or used twice.

    Examples
    --------
    >>> check_children([[-1, -1], [-1, -1], [0, 1]]).tolist()
    [[-1, -1], [-1, -1], [0, 1]]
    >>> check_children([[-1, -1], [-1, -1], [0, 0]])
    Traceback (most recent call last):
    ...
    ValueError: children merges node 0 more than once; every node except the root needs exactly one parent.
    """
    c = _as_numpy(children, name)
    if c.ndim != 2 or c.shape[1] != 2 or c.shape[0] % 2 != 1:
        raise ValueError(f"{name} must have shape (2L-1, 2) for a full binary tree with L leaves, got {c.shape}.")
    integral = np.issubdtype(c.dtype, np.integer) or (
        np.issubdtype(c.dtype, np.floating) and bool(np.all(c == np.round(c))))
    if not integral:
        raise ValueError(f"{name} must hold integer node ids (-1 for leaves).")
    c = c.astype(np.int64)  # a copy: the caller's array is never shared
    n_leaves = (c.shape[0] + 1) // 2
    if np.any(c[:n_leaves] != -1):
        raise ValueError(f"rows 0..{n_leaves - 1} of {name} must be leaves (-1, -1).")
    _check_merges(c[n_leaves:], n_leaves, name, first_row=n_leaves)
    return c


def _linkage_array(Z: Any, name: str) -> np.ndarray:
    """Z as float64 with a valid tree in columns 0-1; heights and counts not checked."""
    z = _as_numpy(Z, name)
    if z.ndim != 2 or z.shape[1] != 4:
        raise ValueError(f"{name} must be a SciPy linkage matrix of shape (n_leaves - 1, 4), got shape {z.shape}.")
    if not (np.issubdtype(z.dtype, np.integer) or np.issubdtype(z.dtype, np.floating)):
        raise TypeError(f"{name} must be numeric, got dtype {z.dtype}.")
    z = z.astype(np.float64)
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    ids = z[:, :2]
    if not np.all(ids == np.round(ids)):
        raise ValueError(f"{name} columns 0 and 1 (the merged node ids) must be integers.")
    _check_merges(ids.astype(np.int64), z.shape[0] + 1, name, first_row=0)
    return z


def check_linkage(Z: Any, *, name: str = "Z") -> np.ndarray:
    """Validate a SciPy linkage matrix and return it as a new float64 array.

    Row i creates node L+i from the two nodes in columns 0 and 1, at the height in column 2,
    holding the number of leaves in column 3. Checked: shape; finite numbers; integer ids;
    no negative id; ids formed before they are used (< L+i) and used once; heights >= 0 (as
    SciPy requires); every count equal to the leaves under the node. Heights may decrease
    from a node to its parent (centroid and median linkage do this); :func:`cut` handles it.
    A tree with one leaf is the empty (0, 4) matrix.

    Parameters
    ----------
    Z : array_like, shape (L-1, 4)
    name : str
        What to call the matrix in error messages.

    Returns
    -------
    numpy.ndarray, shape (L-1, 4), float64

    Raises
    ------
    ValueError
        Naming the row and what is wrong with it.
    TypeError
        Z is not numeric.

    Examples
    --------
    >>> check_linkage([[0, 1, 0.5, 2], [2, 3, 1.5, 3]]).dtype
    dtype('float64')
    >>> check_linkage([[0, 1, 0.5, 2], [2, 3, 1.5, 2]])
    Traceback (most recent call last):
    ...
    ValueError: Z row 1 counts 2 leaves in column 3, but the nodes it merges hold 3.
    """
    z = _linkage_array(Z, name)
    heights, counts = z[:, 2], z[:, 3]
    bad = np.flatnonzero(heights < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} row {i} has negative height {float(heights[i])!r}; "
                         "heights (column 2) must be >= 0.")
    # each row checked against its children's (already checked) counts: by induction, all exact
    leaves_under = np.concatenate([np.ones(z.shape[0] + 1), counts])
    expected = leaves_under[z[:, :2].astype(np.int64)].sum(axis=1)
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} row {i} counts {counts[i]:g} leaves in column 3, but the nodes it merges "
                         f"hold {expected[i]:g}.")
    return z


def _check_height(height: Any, n_nodes: int) -> np.ndarray:
    h = _as_numpy(height, "height").astype(np.float64).reshape(-1)
    if h.shape != (n_nodes,):
        raise ValueError(f"height must have shape ({n_nodes},), got {h.shape}.")
    if not np.all(np.isfinite(h)):
        raise ValueError("height contains NaN or infinite values.")
    return h


def _check_level(level: Any, children: np.ndarray, name: str) -> np.ndarray:
    lv = _as_labels(level, name).copy()
    n = children.shape[0]
    if lv.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {lv.shape}.")
    inner = np.arange((n + 1) // 2, n)
    if lv.min() < 0 or np.any(lv[children[inner]] <= lv[inner, None]):
        raise ValueError(f"{name} must be >= 0 and increase strictly from each node to its children.")
    return lv


def _check_name(name: Sequence[str] | None, n_nodes: int) -> tuple[str, ...] | None:
    if name is None:
        return None
    out = tuple(str(s) for s in name)
    if len(out) != n_nodes:
        raise ValueError(f"name must have one entry per node ({n_nodes}), got {len(out)}.")
    return out


def _check_heap_index(heap_index: Any, n_nodes: int) -> np.ndarray | None:
    if heap_index is None:
        return None
    hi = _as_labels(heap_index, "heap_index").copy()
    if hi.shape != (n_nodes,):
        raise ValueError(f"heap_index must have shape ({n_nodes},), got {hi.shape}.")
    return hi


def _check_leaf_of(leaf_of: Any, n_leaves: int) -> np.ndarray:
    leaf = _as_labels(leaf_of, "leaf_of").copy()
    if leaf.min() < 0 or leaf.max() >= n_leaves:
        raise ValueError(f"leaf_of must lie in 0..{n_leaves - 1} (the leaf ids of the tree), "
                         f"got {leaf.min()}..{leaf.max()}.")
    return leaf


def _check_points(leaf_of: Any, y: Any, n_leaves: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validated (leaf_of, y) of attached points; both None when no points."""
    if leaf_of is None:
        if y is not None:
            raise ValueError("y was given without leaf_of; pass leaf_of (the leaf of each point) too.")
        return None, None
    leaf = _check_leaf_of(leaf_of, n_leaves)
    if y is None:
        return leaf, None
    labels = _as_class_labels(y, "y").copy()
    if labels.shape != leaf.shape:
        raise ValueError(f"leaf_of and y must have the same length (one entry per point), "
                         f"got {leaf.shape[0]} and {labels.shape[0]}.")
    return leaf, labels


def _points(y: Any, leaf_of: Any, n_leaves: int) -> tuple[np.ndarray, np.ndarray]:
    """(leaf of each point, labels) for the metrics: leaf_of, or one point per leaf."""
    if leaf_of is None:
        labels = _as_class_labels(y, "y")
        if labels.shape[0] != n_leaves:
            raise ValueError(
                f"y has {labels.shape[0]} labels but the tree has {n_leaves} leaves; pass leaf_of (the leaf "
                "of each point), or attach the points to the Hierarchy with fit_points / with_points."
            )
        return np.arange(n_leaves), labels
    return _check_points(leaf_of, y, n_leaves)


def _check_node_ids(nodes: Any, n_nodes: int, what: str) -> np.ndarray:
    a = _as_labels(np.atleast_1d(_as_numpy(nodes, what)), what)
    if a.min() < 0 or a.max() >= n_nodes:
        raise ValueError(f"{what} must be node ids in 0..{n_nodes - 1}.")
    return a


def _check_int(value: Any, what: str, low: int, high: int | None = None) -> int:
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= low
    if not ok or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{what} must be an integer {bound}, got {value!r}.")
    return int(value)


# --------------------------------------------------------------------------------------
# walking the tree: one vectorized step per depth
# --------------------------------------------------------------------------------------
def _bfs_levels(children: np.ndarray, root: int) -> list[np.ndarray]:
    """Nodes grouped by depth, top-down; each group in left-to-right order."""
    levels = []
    frontier = np.array([root], dtype=np.int64)
    while frontier.size:
        levels.append(frontier)
        ch = children[frontier].ravel()  # (left, right) interleaved keeps left-to-right order
        frontier = ch[ch >= 0]
    return levels


def _subtree_sums(children: np.ndarray, by_depth: list[np.ndarray], values: np.ndarray) -> np.ndarray:
    """out[v] = values[v] at leaves, out[left] + out[right] at internal nodes."""
    out = values.copy()
    for nodes in reversed(by_depth):  # deepest first, so children are final before their parent
        inner = nodes[children[nodes, 0] >= 0]
        if inner.size:
            out[inner] = out[children[inner, 0]] + out[children[inner, 1]]
    return out


_Walk = tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _structure(children: np.ndarray, root: int) -> _Walk:
    """(by_depth, parent, depth, sizes, offset) of the nodes reachable from root.

    children may hold unreachable rows (raw trees before :func:`_canonical`): they get parent
    −1, depth −1, size 0. offset is the left-to-right position of the node's first leaf: its
    leaves occupy positions offset..offset+size−1.
    """
    m = children.shape[0]
    by_depth = _bfs_levels(children, root)
    parent = np.full(m, -1, dtype=np.int64)
    depth = np.full(m, -1, dtype=np.int64)
    is_leaf = children[:, 0] < 0
    for d, nodes in enumerate(by_depth):
        depth[nodes] = d
        inner = nodes[~is_leaf[nodes]]
        parent[children[inner, 0]] = inner
        parent[children[inner, 1]] = inner
    sizes = _subtree_sums(children, by_depth, is_leaf.astype(np.int64))
    offset = np.zeros(m, dtype=np.int64)
    for nodes in by_depth:  # top-down: the left child starts where its parent starts
        inner = nodes[~is_leaf[nodes]]
        left, right = children[inner, 0], children[inner, 1]
        offset[left] = offset[inner]
        offset[right] = offset[inner] + sizes[left]
    return by_depth, parent, depth, sizes, offset


def _rank_heights(children: np.ndarray, by_depth: list[np.ndarray]) -> np.ndarray:
    """Longest downward path in edges: leaves 0, a parent 1 + its higher child."""
    h = np.zeros(children.shape[0], dtype=np.float64)
    for nodes in reversed(by_depth):
        inner = nodes[children[nodes, 0] >= 0]
        if inner.size:
            h[inner] = 1.0 + np.maximum(h[children[inner, 0]], h[children[inner, 1]])
    return h


class _Tree(NamedTuple):
    """A validated tree with its walk, built once by :func:`_tree` (or by a Hierarchy)."""

    children: np.ndarray  # (2L−1, 2)
    height: np.ndarray  # (2L−1,)
    level: np.ndarray  # (2L−1,)
    by_depth: list[np.ndarray]  # node ids per depth, top-down, left to right
    parent: np.ndarray  # −1 at the root
    depth: np.ndarray
    sizes: np.ndarray  # leaves under each node
    offset: np.ndarray  # left-to-right position of the node's first leaf

    @property
    def n_leaves(self) -> int:
        return (self.children.shape[0] + 1) // 2


def _tree(children: Any, height: Any = None, level: Any = None, level_name: str = "level") -> _Tree:
    ch = check_children(children)
    by_depth, parent, depth, sizes, offset = _structure(ch, ch.shape[0] - 1)
    h = _rank_heights(ch, by_depth) if height is None else _check_height(height, ch.shape[0])
    lv = depth if level is None else _check_level(level, ch, level_name)
    return _Tree(ch, h, lv, by_depth, parent, depth, sizes, offset)


def _canonical(children_raw: np.ndarray, root: int,
               leaf_key: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Renumber an arbitrary binary tree into the SciPy numbering.

    children_raw (m, 2) over raw ids (−1 for leaves; rows unreachable from root are dropped);
    leaves are numbered by increasing leaf_key (m,) if given, else left to right. Returns
    children (2L−1, 2) and raw_of_new (2L−1,), the raw id of each new node.
    """
    by_depth, _, depth, _, offset = _structure(children_raw, root)
    reach = np.concatenate(by_depth)
    is_leaf = children_raw[reach, 0] < 0
    leaves, inner = reach[is_leaf], reach[~is_leaf]
    key = offset[leaves] if leaf_key is None else leaf_key[leaves]
    leaves = leaves[np.argsort(key, kind="stable")]
    # deepest first (then left to right) is a topological order: children before parents
    inner = inner[np.lexsort((offset[inner], -depth[inner]))]
    raw_of_new = np.concatenate([leaves, inner])
    new_of_raw = np.full(children_raw.shape[0], -1, dtype=np.int64)
    new_of_raw[raw_of_new] = np.arange(raw_of_new.size)
    children = np.full((raw_of_new.size, 2), -1, dtype=np.int64)
    children[leaves.size:] = new_of_raw[children_raw[inner]]
    return children, raw_of_new


# --------------------------------------------------------------------------------------
# conversions and construction
# --------------------------------------------------------------------------------------
def from_linkage(Z: Any, *, name: str = "Z") -> tuple[np.ndarray, np.ndarray]:
    """Children array and node heights of a SciPy linkage matrix; leaf and node ids are kept.

    Only the tree (columns 0-1) and the heights are read: column 3 is ignored, so a linkage
    whose counts are points rather than leaves (a tree over clusters) is accepted, and heights
    may be any finite values. :func:`check_linkage` checks the full SciPy format.

    Parameters
    ----------
    Z : array_like, shape (L-1, 4)
    name : str
        What to call the matrix in error messages.

    Returns
    -------
    children : numpy.ndarray, shape (2L-1, 2), int64
    height : numpy.ndarray, shape (2L-1,), float64
        0 at the leaves, ``Z[:, 2]`` at the internal nodes.

    Examples
    --------
    >>> children, height = from_linkage([[0, 1, 0.5, 2], [2, 3, 1.5, 3]])
    >>> children[3:].tolist(), height.tolist()
    ([[0, 1], [2, 3]], [0.0, 0.0, 0.0, 0.5, 1.5])
    """
    z = _linkage_array(Z, name)
    n_leaves = z.shape[0] + 1
    children = np.full((2 * n_leaves - 1, 2), -1, dtype=np.int64)
    children[n_leaves:] = z[:, :2].astype(np.int64)
    height = np.zeros(2 * n_leaves - 1)
    height[n_leaves:] = z[:, 2]
    return children, height


def _linkage(t: _Tree) -> np.ndarray:
    n_leaves = t.n_leaves
    z = np.empty((n_leaves - 1, 4), dtype=np.float64)
    z[:, :2] = t.children[n_leaves:]
    z[:, 2] = t.height[n_leaves:]
    z[:, 3] = t.sizes[n_leaves:]
    return z


def to_linkage(children: Any, height: Any = None) -> np.ndarray:
    """SciPy linkage matrix of a tree: row i = node L+i as ``[left, right, height, n_leaves]``.

    ``scipy.cluster.hierarchy.dendrogram`` draws left children first, so its leaf order is
    :func:`leaves_list`.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    height : array_like, shape (2L-1,), optional
        Default: the longest downward path in edges.

    Returns
    -------
    numpy.ndarray, shape (L-1, 4), float64

    Examples
    --------
    >>> to_linkage([[-1, -1], [-1, -1], [-1, -1], [0, 1], [2, 3]]).tolist()
    [[0.0, 1.0, 1.0, 2.0], [2.0, 3.0, 2.0, 3.0]]
    """
    return _linkage(_tree(children, height))


def _heap_level(heap_index: np.ndarray) -> np.ndarray:
    """Level of heap nodes (root 0): the bit length of heap_index + 1, minus 1 (exact)."""
    return (np.frexp((heap_index + 1).astype(np.float64))[1] - 1).astype(np.int64)


def _heap_path(heap_index: int) -> str:
    """Root-to-node path of a heap index: bits of heap_index+1 after the leading 1, 0→L, 1→R."""
    return bin(heap_index + 1)[3:].replace("0", "L").replace("1", "R")


def complete_tree(depth: int, pruned_leaves: Sequence[int] | Any = ()) -> tuple[np.ndarray, np.ndarray]:
    """The CoHiClust tree: a complete binary tree of depth T with some leaves removed.

    Heap order (docs/methods.md, "Tree probabilities"): root 0, children 2u+1 (left) and 2u+2 (right); the 2^T leaves of
    level T are 0..2^T−1 left to right. Pruned leaves are removed, internal nodes left without
    leaves are removed, and single-child nodes are collapsed into their child. The K remaining
    leaves are numbered 0..K−1 left to right (= CoHiClust cluster ids).

    Parameters
    ----------
    depth : int
        T, 0..30.
    pruned_leaves : array_like of int
        Distinct indices in 0..2^T−1 of the removed level-T leaves; at least one must remain.

    Returns
    -------
    children : numpy.ndarray, shape (2K-1, 2), int64
    heap_index : numpy.ndarray, shape (2K-1,), int64
        Index of each node in the complete tree; its level there is the bit length of
        ``heap_index + 1`` minus one.

    Examples
    --------
    >>> children, heap_index = complete_tree(2, pruned_leaves=[3])
    >>> children.tolist(), heap_index.tolist()
    ([[-1, -1], [-1, -1], [-1, -1], [0, 1], [3, 2]], [3, 4, 5, 1, 0])
    """
    t_max = _check_int(depth, "depth", 0)
    if t_max > 30:
        raise ValueError(f"depth {t_max} is too large (2^depth leaves); use depth <= 30.")
    n_leaf_full = 2**t_max
    pruned = _as_numpy(pruned_leaves, "pruned_leaves").reshape(-1)
    if pruned.size:
        pruned = _as_labels(pruned, "pruned_leaves")
        if pruned.min() < 0 or pruned.max() >= n_leaf_full:
            raise ValueError(f"pruned_leaves must lie in 0..{n_leaf_full - 1} for depth {t_max}.")
        if np.unique(pruned).size != pruned.size:
            raise ValueError("pruned_leaves contains duplicates.")
        if pruned.size == n_leaf_full:
            raise ValueError("pruned_leaves removes every leaf; at least one must remain.")
    n_heap = 2 * n_leaf_full - 1
    first_leaf = n_leaf_full - 1
    n_below = np.zeros(n_heap, dtype=np.int64)  # surviving leaves under each heap node
    down = np.full(n_heap, -1, dtype=np.int64)  # highest kept node at or below (−1: none)
    alive = np.ones(n_leaf_full, dtype=bool)
    alive[pruned.astype(np.int64)] = False
    n_below[first_leaf:] = alive
    down[first_leaf:] = np.where(alive, np.arange(first_leaf, n_heap), -1)
    children_raw = np.full((n_heap, 2), -1, dtype=np.int64)
    for t in range(t_max - 1, -1, -1):  # one vectorized step per level, bottom-up
        u = np.arange(2**t - 1, 2 ** (t + 1) - 1)
        nl, nr = n_below[2 * u + 1], n_below[2 * u + 2]
        n_below[u] = nl + nr
        both = (nl > 0) & (nr > 0)
        down[u] = np.where(both, u, np.where(nl > 0, down[2 * u + 1], down[2 * u + 2]))
        kept = u[both]
        children_raw[kept, 0] = down[2 * kept + 1]
        children_raw[kept, 1] = down[2 * kept + 2]
    return _canonical(children_raw, int(down[0]))  # raw ids are the heap indices


# --------------------------------------------------------------------------------------
# structure queries
# --------------------------------------------------------------------------------------
def leaves_list(children: Any) -> np.ndarray:
    """Leaf ids in left-to-right order (as ``scipy.cluster.hierarchy.leaves_list``).

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)

    Returns
    -------
    numpy.ndarray, shape (L,), int64

    Examples
    --------
    >>> leaves_list([[-1, -1], [-1, -1], [-1, -1], [0, 1], [2, 3]]).tolist()
    [2, 0, 1]
    """
    ch = check_children(children)
    offset = _structure(ch, ch.shape[0] - 1)[4]
    n_leaves = (ch.shape[0] + 1) // 2
    order = np.empty(n_leaves, dtype=np.int64)
    order[offset[:n_leaves]] = np.arange(n_leaves)
    return order


def subtree_sums(children: Any, values: Any) -> np.ndarray:
    """Bottom-up sums over a tree: ``values`` at the leaves, left + right at internal nodes.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    values : array_like, shape (2L-1, ...)
        Rows of internal nodes are ignored.

    Returns
    -------
    numpy.ndarray, shape (2L-1, ...), the dtype of values

    Examples
    --------
    >>> subtree_sums([[-1, -1], [-1, -1], [-1, -1], [0, 1], [2, 3]], [1, 2, 4, 0, 0]).tolist()
    [1, 2, 4, 3, 7]
    """
    ch = check_children(children)
    v = _as_numpy(values, "values")
    if v.ndim == 0 or v.shape[0] != ch.shape[0]:
        raise ValueError(f"values must have one row per node ({ch.shape[0]}), got shape {v.shape}.")
    return _subtree_sums(ch, _bfs_levels(ch, ch.shape[0] - 1), v)


def _lca(parent: np.ndarray, depth: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.copy(), b.copy()
    while True:  # one step per depth level, vectorized over the pairs
        diff = a != b
        if not diff.any():
            return a
        da, db = depth[a], depth[b]
        up_a = diff & (da >= db)
        up_b = diff & (db >= da)
        a[up_a] = parent[a[up_a]]
        b[up_b] = parent[b[up_b]]


def lca(children: Any, a: Any, b: Any) -> np.ndarray:
    """Lowest common ancestors of the node pairs ``(a[i], b[i])``.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    a, b : array_like of int, shape (m,)
        Node ids (leaves or internal nodes).

    Returns
    -------
    numpy.ndarray, shape (m,), int64

    Examples
    --------
    >>> lca([[-1, -1], [-1, -1], [-1, -1], [0, 1], [2, 3]], [0, 0, 2], [1, 2, 2]).tolist()
    [3, 4, 2]
    """
    ch = check_children(children)
    _, parent, depth, _, _ = _structure(ch, ch.shape[0] - 1)
    a = _check_node_ids(a, ch.shape[0], "a")
    b = _check_node_ids(b, ch.shape[0], "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}.")
    return _lca(parent, depth, a, b)


# --------------------------------------------------------------------------------------
# cuts
# --------------------------------------------------------------------------------------
def _level_groups(t: _Tree, level: int) -> np.ndarray:
    """rep (2L−1,): each node's highest ancestor-or-self with t.level >= level."""
    rep = np.arange(t.children.shape[0])
    for nodes in t.by_depth[1:]:
        p = t.parent[nodes]
        merge = t.level[p] >= level  # the parent is already at or below the cut: join its group
        rep[nodes[merge]] = rep[p[merge]]
    return rep


def _split_groups(t: _Tree, n_clusters: int) -> np.ndarray:
    """rep (2L−1,) after n_clusters − 1 top-down splits, highest node first."""
    # effective height: never above the parent's, so splitting by it respects the tree
    eff = t.height.copy()
    for nodes in t.by_depth[1:]:
        eff[nodes] = np.minimum(eff[nodes], eff[t.parent[nodes]])
    inner = np.arange(t.n_leaves, t.children.shape[0])
    order = inner[np.lexsort((t.offset[inner], t.depth[inner], -eff[inner]))]
    split = np.zeros(t.children.shape[0], dtype=bool)
    split[order[: n_clusters - 1]] = True
    rep = np.arange(t.children.shape[0])
    for nodes in t.by_depth[1:]:
        p = t.parent[nodes]
        rep[nodes] = np.where(split[p], nodes, rep[p])
    return rep


def _cut_nodes(t: _Tree, level: int | None, n_clusters: int | None) -> tuple[np.ndarray, np.ndarray]:
    if (level is None) == (n_clusters is None):
        raise ValueError("pass exactly one of level= or n_clusters=.")
    if level is not None:
        rep = _level_groups(t, _check_int(level, "level", 0))
    else:
        rep = _split_groups(t, _check_int(n_clusters, "n_clusters", 1, t.n_leaves))
    rep = rep[: t.n_leaves]
    groups = np.unique(rep)
    groups = groups[np.argsort(t.offset[groups], kind="stable")]  # left to right
    label_of = np.empty(t.children.shape[0], dtype=np.int64)
    label_of[groups] = np.arange(groups.size)
    return groups, label_of[rep]


def cut_nodes(
    children: Any,
    *,
    level: int | None = None,
    n_clusters: int | None = None,
    height: Any = None,
    node_level: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The group nodes of a cut and the group of each leaf; the rules are those of :func:`cut`.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    level, n_clusters : int
        Exactly one of them, see :func:`cut`.
    height : array_like, shape (2L-1,), optional
        Node heights for ``n_clusters=`` (default: the longest downward path in edges).
    node_level : array_like of int, shape (2L-1,), optional
        Node levels for ``level=``, increasing strictly from parent to child (default: depth).

    Returns
    -------
    nodes : numpy.ndarray, shape (g,), int64
        The group nodes, left to right.
    leaf_labels : numpy.ndarray, shape (L,), int64
        The group (0..g−1) of each leaf.

    Examples
    --------
    >>> nodes, labels = cut_nodes([[-1, -1], [-1, -1], [-1, -1], [0, 1], [2, 3]], level=1)
    >>> nodes.tolist(), labels.tolist()
    ([2, 3], [1, 1, 0])
    """
    return _cut_nodes(_tree(children, height, node_level, "node_level"), level, n_clusters)


def cut(
    children: Any,
    *,
    level: int | None = None,
    n_clusters: int | None = None,
    height: Any = None,
    node_level: Any = None,
    leaf_of: Any = None,
) -> np.ndarray:
    """Flat clustering of a tree: the group of each point (or leaf), groups numbered left to right.

    * ``level=t``: each leaf joins its highest ancestor-or-self whose level is >= t (with depth
      levels: its ancestor at depth t; leaves shallower than t stay alone). For the complete
      tree of depth T this is the partition by the level-t nodes: 2^t groups minus those left
      empty by pruning.
    * ``n_clusters=k``: top-down splits, always splitting next the node of greatest height
      (heights first clipped to never exceed the parent's), ties broken by smaller depth, then
      leftmost; exactly k groups. For a linkage with monotone distinct heights this cuts the
      k−1 highest merges, as ``scipy.cluster.hierarchy.fcluster(Z, k, "maxclust")``.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    level : int, optional
        t >= 0.
    n_clusters : int, optional
        k in 1..L.
    height, node_level : array_like, shape (2L-1,), optional
        See :func:`cut_nodes`.
    leaf_of : array_like of int, shape (n,), optional
        The leaf of each point; default: label the leaves.

    Returns
    -------
    numpy.ndarray, shape (n,) or (L,), int64

    Examples
    --------
    >>> children, height = from_linkage([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])
    >>> cut(children, n_clusters=2, height=height, leaf_of=[0, 2, 2]).tolist()
    [1, 0, 0]
    """
    t = _tree(children, height, node_level, "node_level")
    _, leaf_labels = _cut_nodes(t, level, n_clusters)
    return leaf_labels if leaf_of is None else leaf_labels[_check_leaf_of(leaf_of, t.n_leaves)]


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------
def _level_metrics(t: _Tree, leaf: np.ndarray, labels: np.ndarray) -> list[dict[str, float]]:
    out = []
    for lv in range(1, int(t.level.max()) + 1):
        _, leaf_labels = _cut_nodes(t, lv, None)
        pred = leaf_labels[leaf]
        out.append({
            "level": lv,
            "n_groups": int(leaf_labels.max()) + 1,
            "acc": _metrics.clustering_accuracy(labels, pred),
            "nmi": _metrics.nmi(labels, pred),
            "ari": _metrics.ari(labels, pred),
        })
    return out


def level_metrics(children: Any, y: Any, *, leaf_of: Any = None, node_level: Any = None) -> list[dict[str, float]]:
    """ACC, NMI and ARI of ``cut(level=t)`` for every level t = 1..max(node_level).

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    y : array_like of int, shape (n,)
        Class labels of the points (of the leaves when ``leaf_of`` is None, n = L).
    leaf_of : array_like of int, shape (n,), optional
    node_level : array_like of int, shape (2L-1,), optional
        Default: depth.

    Returns
    -------
    list of dict
        One ``{"level", "n_groups", "acc", "nmi", "ari"}`` per level, top-down.

    Examples
    --------
    >>> children, _ = complete_tree(2)
    >>> [m["acc"] for m in level_metrics(children, [0, 0, 1, 1])]
    [1.0, 0.5]
    """
    t = _tree(children, None, node_level, "node_level")
    leaf, labels = _points(y, leaf_of, t.n_leaves)
    return _level_metrics(t, leaf, labels)


def _super_groups(t: _Tree, leaf: np.ndarray, labels: np.ndarray, level: int, top: int,
                  node_names: Sequence[str] | None) -> list[dict[str, Any]]:
    nodes, leaf_labels = _cut_nodes(t, level, None)
    classes, codes = np.unique(labels, return_inverse=True)
    table = np.zeros((nodes.size, classes.size), dtype=np.int64)
    np.add.at(table, (leaf_labels[leaf], codes), 1)
    sizes = table.sum(axis=1)
    best = np.argsort(-table, axis=1, kind="stable")[:, :top]
    out = []
    for g, node in enumerate(nodes):  # one entry per group: output assembly only
        tops = [(classes[c].item(), float(table[g, c] / sizes[g])) for c in best[g] if table[g, c] > 0]
        out.append({
            "node": int(node),
            "name": None if node_names is None else node_names[node],
            "size": int(sizes[g]),
            "top": tops,
        })
    return out


def super_groups(
    children: Any,
    y: Any,
    *,
    leaf_of: Any = None,
    level: int = 1,
    top: int = 3,
    node_level: Any = None,
    node_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The groups of ``cut(level=level)`` with their most frequent classes.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    y : array_like of int, shape (n,)
        Class labels of the points (of the leaves when ``leaf_of`` is None).
    leaf_of : array_like of int, shape (n,), optional
    level : int
    top : int
        Classes listed per group.
    node_level : array_like of int, shape (2L-1,), optional
    node_names : sequence of str, length 2L-1, optional

    Returns
    -------
    list of dict
        Left to right, ``{"node", "name", "size", "top"}`` with ``top`` the (label, fraction of
        the group) pairs of the ``top`` most frequent classes.

    Examples
    --------
    >>> children, _ = complete_tree(2)
    >>> [g["top"] for g in super_groups(children, [0, 0, 1, 2])]
    [[(0, 1.0)], [(1, 0.5), (2, 0.5)]]
    """
    t = _tree(children, None, node_level, "node_level")
    leaf, labels = _points(y, leaf_of, t.n_leaves)
    names = _check_name(node_names, t.children.shape[0])
    return _super_groups(t, leaf, labels, level, top, names)


def _dp_from_counts(children: np.ndarray, counts: np.ndarray) -> float:
    """Dendrogram purity from per-node class counts (2L−1, C), subtree-summed.

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
    total = float(np.sum(pairs[-1]))  # all same-class pairs: their counts at the root
    if total == 0:
        raise ValueError("dendrogram purity is undefined: no two points share a class "
                         "(every class has at most one point).")
    return float(np.sum(lca_pairs * purity) / total)


def _dendrogram_purity(children: np.ndarray, by_depth: list[np.ndarray], leaf: np.ndarray,
                       labels: np.ndarray) -> float:
    _, codes = np.unique(labels, return_inverse=True)
    per_leaf = np.zeros((children.shape[0], int(codes.max()) + 1), dtype=np.int64)
    np.add.at(per_leaf, (leaf, codes), 1)
    return _dp_from_counts(children, _subtree_sums(children, by_depth, per_leaf))


def dendrogram_purity(children: Any, y: Any, *, leaf_of: Any = None) -> float:
    """Dendrogram purity (Kobren et al. 2017), exact, from per-node class counts.

    The average over all unordered pairs of distinct points of the same class c of
    ``|desc(LCA) ∩ c| / |desc(LCA)|``, where desc(v) are the points under node v; two points
    in the same leaf have that leaf as LCA. :func:`hiclust.metrics.dendrogram_purity` is the
    same over a linkage matrix.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    y : array_like of int, shape (n,)
        Class labels of the points (of the leaves when ``leaf_of`` is None, n = L).
    leaf_of : array_like of int, shape (n,), optional

    Returns
    -------
    float
        In (0, 1].

    Raises
    ------
    ValueError
        Bad shapes or ids, or no two points share a class.

    Examples
    --------
    >>> children, _ = complete_tree(1)
    >>> dendrogram_purity(children, [0, 0, 1, 1], leaf_of=[0, 0, 1, 1])
    1.0
    >>> dendrogram_purity(children, [0, 0, 1, 1], leaf_of=[0, 1, 0, 1])
    0.5
    """
    ch = check_children(children)
    leaf, labels = _points(y, leaf_of, (ch.shape[0] + 1) // 2)
    return _dendrogram_purity(ch, _bfs_levels(ch, ch.shape[0] - 1), leaf, labels)


# --------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------
_NEWICK_SAFE = re.compile(r"[A-Za-z0-9_.\-]+")


def _newick_label(s: str) -> str:
    return s if _NEWICK_SAFE.fullmatch(s) else "'" + s.replace("'", "''") + "'"


def _newick(t: _Tree, leaf_names: Sequence[str] | None, node_names: Sequence[str] | None,
            branch_lengths: bool) -> str:
    n_leaves = t.n_leaves
    if leaf_names is None:
        labels = [str(i) for i in range(n_leaves)]
    else:
        labels = [str(s) for s in leaf_names]
        if len(labels) != n_leaves:
            raise ValueError(f"leaf_names must have {n_leaves} entries, got {len(labels)}.")
    ch, par, h = t.children, t.parent, t.height

    def suffix(v: int) -> str:
        s = ""
        if v >= n_leaves and node_names is not None and node_names[v]:
            s = _newick_label(node_names[v])
        if branch_lengths and par[v] >= 0:
            s += f":{float(h[par[v]] - h[v])!r}"
        return s

    # iterative DFS (a SciPy linkage can be n levels deep: no recursion); export, not hot path
    tokens: list[str] = []
    stack: list[tuple[int, int]] = [(ch.shape[0] - 1, 0)]
    while stack:
        v, state = stack.pop()
        if state == 1:
            tokens.append(",")
        elif state == 2:
            tokens.append(")" + suffix(v))
        elif v < n_leaves:
            tokens.append(_newick_label(labels[v]) + suffix(v))
        else:
            tokens.append("(")
            stack += [(v, 2), (int(ch[v, 1]), 0), (v, 1), (int(ch[v, 0]), 0)]
    return "".join(tokens) + ";"


def to_newick(
    children: Any,
    *,
    height: Any = None,
    leaf_names: Sequence[str] | None = None,
    node_names: Sequence[str] | None = None,
    branch_lengths: bool = True,
) -> str:
    """Newick text of a tree; branch lengths are height differences.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    height : array_like, shape (2L-1,), optional
        Default: the longest downward path in edges.
    leaf_names : sequence of str, length L, optional
        Default: the leaf ids. Names outside ``[A-Za-z0-9_.-]`` are quoted.
    node_names : sequence of str, length 2L-1, optional
        Labels of the internal nodes (empty strings are left out).
    branch_lengths : bool

    Returns
    -------
    str

    Examples
    --------
    >>> to_newick([[-1, -1], [-1, -1], [-1, -1], [0, 1], [2, 3]], leaf_names=["a", "b", "c d"])
    "('c d':2.0,(a:1.0,b:1.0):1.0);"
    """
    t = _tree(children, height)
    return _newick(t, leaf_names, _check_name(node_names, t.children.shape[0]), branch_lengths)


def _as_dict(children: np.ndarray, height: np.ndarray, level: np.ndarray, name: Sequence[str] | None,
             heap_index: np.ndarray | None, leaf_of: np.ndarray | None, y: np.ndarray | None,
             source: str) -> dict[str, Any]:
    def lst(a: np.ndarray | None) -> list | None:
        return None if a is None else a.tolist()

    return {
        "format": _JSON_FORMAT,
        "version": _JSON_VERSION,
        "source": source,
        "children": children.tolist(),
        "height": height.tolist(),  # Python floats: JSON keeps their exact repr
        "level": level.tolist(),
        "name": None if name is None else list(name),
        "heap_index": lst(heap_index),
        "leaf_of": lst(leaf_of),
        "y": lst(y),
    }


def _fields(children: Any, height: Any = None, level: Any = None, name: Sequence[str] | None = None,
            heap_index: Any = None, leaf_of: Any = None, y: Any = None,
            source: str = "custom") -> tuple[_Tree, dict[str, Any]]:
    """Every field of a tree validated, defaults filled in (the arguments of :class:`Hierarchy`)."""
    t = _tree(children, height, level)
    n_nodes = t.children.shape[0]
    leaf, labels = _check_points(leaf_of, y, t.n_leaves)
    return t, {
        "children": t.children, "height": t.height, "level": t.level,
        "name": _check_name(name, n_nodes), "heap_index": _check_heap_index(heap_index, n_nodes),
        "leaf_of": leaf, "y": labels, "source": str(source),
    }


def to_dict(
    children: Any,
    *,
    height: Any = None,
    level: Any = None,
    name: Sequence[str] | None = None,
    heap_index: Any = None,
    leaf_of: Any = None,
    y: Any = None,
    source: str = "custom",
) -> dict[str, Any]:
    """Plain-Python dict with everything needed to rebuild a tree exactly.

    The keyword arguments are the fields of :class:`Hierarchy`; missing heights and levels are
    filled in with their defaults.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    height : array_like, shape (2L-1,), optional
    level : array_like of int, shape (2L-1,), optional
    name : sequence of str, length 2L-1, optional
    heap_index : array_like of int, shape (2L-1,), optional
    leaf_of, y : array_like of int, shape (n,), optional
    source : str

    Returns
    -------
    dict
        JSON-serializable; ``from_dict`` inverts it.

    Examples
    --------
    >>> d = to_dict([[-1, -1], [-1, -1], [0, 1]])
    >>> d["children"], d["height"], d["level"]
    ([[-1, -1], [-1, -1], [0, 1]], [0.0, 0.0, 1.0], [1, 1, 0])
    """
    _, f = _fields(children, height, level, name, heap_index, leaf_of, y, source)
    return _as_dict(**f)


def _parse_dict(d: Any) -> dict[str, Any]:
    """The fields of a serialized tree as arrays, not yet validated."""
    if not isinstance(d, dict) or d.get("format") != _JSON_FORMAT:
        raise ValueError(f"not a serialized Hierarchy (expected format {_JSON_FORMAT!r}).")
    if d.get("version") != _JSON_VERSION:
        raise ValueError(f"unsupported Hierarchy JSON version {d.get('version')!r}; expected {_JSON_VERSION}.")
    missing = {"children", "height", "level"} - set(d)
    if missing:
        raise ValueError(f"Hierarchy JSON lacks fields {sorted(missing)}.")

    def arr(key: str, dtype: type) -> np.ndarray | None:
        return None if d.get(key) is None else np.asarray(d[key], dtype=dtype)

    return {
        "children": np.asarray(d["children"], dtype=np.int64).reshape(-1, 2),
        "height": arr("height", np.float64),
        "level": arr("level", np.int64),
        "name": d.get("name"),
        "heap_index": arr("heap_index", np.int64),
        "leaf_of": arr("leaf_of", np.int64),
        "y": arr("y", np.int64),
        "source": d.get("source", "custom"),
    }


def from_dict(d: dict[str, Any]) -> dict[str, Any]:
    """The validated fields of a tree written by :func:`to_dict`.

    Parameters
    ----------
    d : dict

    Returns
    -------
    dict
        ``children``, ``height``, ``level``, ``name`` (tuple or None), ``heap_index``,
        ``leaf_of``, ``y`` (arrays or None) and ``source``: the arguments of
        :func:`to_dict` and of :class:`Hierarchy`.

    Examples
    --------
    >>> f = from_dict(to_dict([[-1, -1], [-1, -1], [0, 1]], leaf_of=[0, 1, 1]))
    >>> f["level"].tolist(), f["leaf_of"].tolist(), f["y"]
    ([1, 1, 0], [0, 1, 1], None)
    """
    return _fields(**_parse_dict(d))[1]


def to_json(children: Any, **fields: Any) -> str:
    """Compact JSON text of :func:`to_dict`, keys sorted; floats are written exactly.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
    **fields
        ``height``, ``level``, ``name``, ``heap_index``, ``leaf_of``, ``y``, ``source``: as
        for :func:`to_dict`.

    Returns
    -------
    str

    Examples
    --------
    >>> s = to_json([[-1, -1], [-1, -1], [0, 1]], height=[0, 0, 0.1])
    >>> to_json(**from_json(s)) == s
    True
    """
    return json.dumps(to_dict(children, **fields), sort_keys=True, separators=(",", ":"))


def _load_json(s: str) -> Any:
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid Hierarchy JSON: {e}") from e


def from_json(s: str) -> dict[str, Any]:
    """The validated fields of a tree written by :func:`to_json`.

    Parameters
    ----------
    s : str

    Returns
    -------
    dict
        As :func:`from_dict` returns them.

    Raises
    ------
    ValueError
        Not JSON, not a serialized tree, or an invalid tree.

    Examples
    --------
    >>> from_json(to_json([[-1, -1], [-1, -1], [0, 1]]))["height"].tolist()
    [0.0, 0.0, 1.0]
    """
    return from_dict(_load_json(s))


# --------------------------------------------------------------------------------------
# L2H: a hierarchy over the clusters of a flat model, from its logits
# --------------------------------------------------------------------------------------
_L2H_TIE_TOL = 1e-12  # scores / affinities closer than this are ties (broken by lowest node id)


def _check_logits(logits: Any) -> np.ndarray:
    """Validated logits as a new float64 (N, K) array."""
    try:
        x = _as_numpy(logits, "logits")
    except TypeError as e:
        raise ValueError(str(e)) from e
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"logits must be a real numeric array, got dtype {x.dtype}.")
    if x.ndim != 2:
        raise ValueError(f"logits must be 2-D of shape (n_points, n_clusters), got shape {x.shape}.")
    if x.shape[1] < 2:
        raise ValueError(f"logits need at least 2 clusters (columns) to build a hierarchy, got {x.shape[1]}.")
    if x.shape[0] < 1:
        raise ValueError("logits has no rows; L2H needs at least one point.")
    x = x.astype(np.float64)  # a copy: the caller's array is never modified
    if not np.all(np.isfinite(x)):
        raise ValueError("logits contains NaN or infinite values.")
    return x


def _row_softmax(x: np.ndarray) -> np.ndarray:
    """Softmax of each row; entries of -inf get probability 0 (each row needs one finite entry)."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def l2h_linkage(logits: Any, *, return_merges: bool = False) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """L2H ("From Logits to Hierarchies", Palumbo et al. 2024): a hierarchy over the K clusters
    of a flat model, built from its logits alone in K−1 merges.

    With p = softmax(logits) (N, K), every point i has the assignment a_i = argmax_k p_ik and
    the confidence c_i = max_k p_ik, both fixed once from the full softmax. The points *of* a
    group of clusters are those whose a_i lies in the group. Groups start as the K singletons;
    at each step

    1. every current group G scores S(G) = Σ_{k∈G} m_k, where m_k is the mean confidence of the
       points assigned to cluster k, and m_k = 0 for a cluster no point is assigned to (an empty
       cluster carries no evidence, so it scores lowest and is merged first);
    2. the group of lowest score, L, is merged (ties: the lowest node id);
    3. its points are re-assigned by a softmax restricted to the logits of the clusters outside
       L, p'_ik = exp(x_ik) / Σ_{j∉L} exp(x_ij) for k ∉ L, and L merges into the other group H
       of highest affinity mean_i Σ_{k∈H} p'_ik (ties: the lowest node id). If L has no points
       (all its clusters are empty) the mean is replaced by a mean over all points weighted by
       their soft membership in L, w_i = Σ_{k∈L} p_ik (uniform if every w_i underflows to 0);
    4. L ∪ H replaces L and H as a new node, numbered K, K+1, … as SciPy numbers them.

    Scores and affinities within 1e-12 of the extreme count as ties. The score of the merged
    group never decreases from one step to the next (every group left scores at least the
    current minimum, and a union scores at least as much as its parts).

    Everything is vectorized over points; the loop runs over the K−1 merges, O(N·K) per merge.

    Parameters
    ----------
    logits : array_like, shape (N, K)
        Real, finite logits of N >= 1 points over K >= 2 clusters (NumPy array, list or torch
        tensor); computed in float64.
    return_merges : bool
        Also return the per-merge record.

    Returns
    -------
    Z : numpy.ndarray, shape (K-1, 4), float64
        SciPy linkage matrix, one row per merge in merge order: ``[L, H, step, n_leaves]``
        with column 0 the low-scoring group that was merged, column 1 the group it merged into,
        leaf k = cluster k and row s creating node K+s. The height is the merge step 1..K−1:
        strictly increasing, so SciPy accepts Z, every node is higher than its children and
        ``cut(n_clusters=j)`` (or ``fcluster(Z, j, "maxclust")``) is exactly the partition after
        K−j merges with no ties to break. (The merge scores are monotone too, but can tie, e.g.
        0 for several empty clusters; they are in the record.) Column 3 counts the clusters
        (leaves) under the new node, not points.
    merges : dict of numpy.ndarray, shape (K-1,) each
        Only with ``return_merges=True``: ``"low"`` and ``"into"`` (int64 node ids, = Z[:, 0]
        and Z[:, 1]), ``"score"`` (S(L), non-decreasing), ``"affinity"`` (the affinity of L to
        H) and ``"n_points"`` (int64, the points of L).

    Raises
    ------
    ValueError
        logits is not a finite real 2-D array with at least one row and two columns.

    See Also
    --------
    Hierarchy.from_logits : the same tree as a :class:`Hierarchy`.

    Examples
    --------
    Cluster 1 is the least confident and its point leans to cluster 2; then cluster 3's point
    prefers cluster 0 to 1 or 2 alone, but the group {1, 2} as a whole:

    >>> logits = [[3.5, 0, 0, 0], [0, 1, 0.95, 0], [0, 0, 3, 0], [1, 0.8, 0.8, 1.5]]
    >>> l2h_linkage(logits).tolist()
    [[1.0, 2.0, 1.0, 2.0], [3.0, 4.0, 2.0, 3.0], [0.0, 5.0, 3.0, 4.0]]
    >>> Z, merges = l2h_linkage(logits, return_merges=True)
    >>> np.round(merges["affinity"], 3).tolist(), merges["n_points"].tolist()
    ([0.564, 0.621, 1.0], [1, 1, 1])
    """
    x = _check_logits(logits)
    n, k = x.shape
    if x.min() >= 0.0 and np.allclose(x.sum(axis=1), 1.0, atol=1e-6):
        # The softmax of probabilities is far flatter than the model's own: the tree would differ.
        warnings.warn("these logits look like probabilities (every row is non-negative and sums to 1); L2H takes "
                      "logits: pass np.log(probabilities), e.g. np.log(model.predict_proba(X))",
                      UserWarning, stacklevel=user_stacklevel())
    p = _row_softmax(x)
    assign = p.argmax(axis=1)
    conf = p[np.arange(n), assign]
    n_assigned = np.bincount(assign, minlength=k)
    mean_conf = np.bincount(assign, weights=conf, minlength=k) / np.maximum(n_assigned, 1)  # 0 if empty

    n_nodes = 2 * k - 1
    group = np.arange(k)  # node id of the group holding each cluster
    leaves = np.ones(n_nodes, dtype=np.int64)
    z = np.empty((k - 1, 4), dtype=np.float64)
    rec = {"low": np.empty(k - 1, dtype=np.int64), "into": np.empty(k - 1, dtype=np.int64),
           "score": np.empty(k - 1), "affinity": np.empty(k - 1), "n_points": np.empty(k - 1, dtype=np.int64)}
    for step in range(k - 1):  # K−1 merges; each vectorized over points and clusters
        nodes = np.unique(group)  # current groups, ascending node id
        score = np.bincount(group, weights=mean_conf, minlength=n_nodes)[nodes]
        low = int(nodes[np.flatnonzero(score <= score.min() + _L2H_TIE_TOL)[0]])
        inside = group == low  # (K,) clusters of the low group
        members = inside[assign]  # (N,) its points
        n_members = int(members.sum())
        if n_members:
            col = _row_softmax(np.where(inside, -np.inf, x[members])).mean(axis=0)
        else:  # no points: soft membership in the group weighs every point
            q = _row_softmax(np.where(inside, -np.inf, x))
            w = p[:, inside].sum(axis=1)
            total = w.sum()
            col = (w @ q) / total if total > 0 else q.mean(axis=0)
        # mean_i Σ_{k∈H} p'_ik = Σ_{k∈H} mean_i p'_ik: column means summed per group
        affinity = np.bincount(group, weights=col, minlength=n_nodes)[nodes]
        affinity[nodes == low] = -np.inf
        into = int(nodes[np.flatnonzero(affinity >= affinity.max() - _L2H_TIE_TOL)[0]])
        new = k + step
        leaves[new] = leaves[low] + leaves[into]
        z[step] = (low, into, step + 1, leaves[new])
        rec["low"][step], rec["into"][step] = low, into
        rec["score"][step] = score[nodes == low][0]
        rec["affinity"][step] = affinity[nodes == into][0]
        rec["n_points"][step] = n_members
        group[inside | (group == into)] = new
    return (z, rec) if return_merges else z


# --------------------------------------------------------------------------------------
# Hierarchy: the object view
# --------------------------------------------------------------------------------------
def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a.flags.writeable = False
    return a


class Hierarchy:
    """Immutable view of a tree's arrays, optionally with points (and labels) attached.

    Holds the validated fields (``children_array``, ``height``, ``level``, ``name``,
    ``heap_index``, ``source``, and ``leaf_of`` / ``y`` with points) and what is derived from
    them once at construction (``parent``, ``depth``, ``sizes``, ``leaf_order``,
    ``leaf_position``; with points ``counts``, ``classes``, ``class_counts``). Arrays are
    read-only and attributes cannot be reassigned; the methods run the code of the module
    functions of the same names on the stored arrays.

    Parameters
    ----------
    children : array_like, shape (2L-1, 2)
        See :func:`check_children`.
    height : array_like, shape (2L-1,), optional
        Finite dendrogram heights. Default: the longest downward path in edges.
    level : array_like of int, shape (2L-1,), optional
        Levels for :meth:`cut`, increasing strictly from parent to child. Default: depth.
    name : sequence of str, length 2L-1, optional
        Node names (stored as a tuple).
    heap_index : array_like of int, shape (2L-1,), optional
        Index of each node in the complete tree it came from.
    leaf_of, y : array_like of int, shape (n,), optional
        Points, see :meth:`with_points`.
    source : str
        Where the tree came from.

    Use the constructors :meth:`from_complete_tree`, :meth:`from_linkage`,
    :meth:`from_bisecting_kmeans` or the function :func:`bisecting_kmeans`.

    Examples
    --------
    >>> h = Hierarchy.from_linkage([[0, 1, 1.0, 2], [2, 3, 2.0, 3]]).with_points([0, 0, 2], [5, 5, 7])
    >>> h.cut(n_clusters=2).tolist(), h.dendrogram_purity(), h.leaf_order.tolist()
    ([1, 1, 0], 1.0, [2, 0, 1])
    """

    def __init__(
        self,
        children: Any,
        *,
        height: Any = None,
        level: Any = None,
        name: Sequence[str] | None = None,
        heap_index: Any = None,
        leaf_of: Any = None,
        y: Any = None,
        source: str = "custom",
    ) -> None:
        t, f = _fields(children, height, level, name, heap_index, leaf_of, y, source)
        for a in (t.children, t.height, t.level, t.parent, t.depth, t.sizes, t.offset, *t.by_depth):
            _frozen(a)
        n_leaves = t.n_leaves
        order = np.empty(n_leaves, dtype=np.int64)
        order[t.offset[:n_leaves]] = np.arange(n_leaves)
        vars(self).update(  # bypasses __setattr__, which refuses every later assignment
            _t=t,
            n_leaves=n_leaves,
            n_nodes=t.children.shape[0],
            root=t.children.shape[0] - 1,
            source=f["source"],
            children_array=t.children,
            height=t.height,
            level=t.level,
            parent=t.parent,
            depth=t.depth,
            sizes=t.sizes,
            leaf_order=_frozen(order),  # leaf ids, left to right
            leaf_position=_frozen(t.offset[:n_leaves].copy()),
            name=f["name"],
            heap_index=_frozen(f["heap_index"]),
        )
        vars(self).update(self._point_fields(f["leaf_of"], f["y"]))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"Hierarchy is immutable: cannot set {key!r}; build a new one "
                             "(with_points for other points).")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"Hierarchy is immutable: cannot delete {key!r}.")

    def _check_node(self, node: int) -> int:
        node = int(node)
        if not 0 <= node < self.n_nodes:
            raise ValueError(f"node must be in 0..{self.n_nodes - 1}, got {node}.")
        return node

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_complete_tree(cls, depth: int, pruned_leaves: Sequence[int] | Any = ()) -> "Hierarchy":
        """The CoHiClust tree of :func:`complete_tree`, with node metadata.

        ``heap_index`` (index in the complete tree), ``name`` (root-to-node path of 'L'/'R', ""
        for the root), ``level`` (level in the complete tree, used by :meth:`cut`) and
        ``height`` = T − level.

        Parameters
        ----------
        depth : int
            T >= 0.
        pruned_leaves : array_like of int
            Indices in 0..2^T−1 of the removed level-T leaves.
        """
        children, heap = complete_tree(depth, pruned_leaves)
        level = _heap_level(heap)
        return cls(
            children,
            height=(int(depth) - level).astype(np.float64),
            level=level,
            name=[_heap_path(int(i)) for i in heap],
            heap_index=heap,
            source="complete_tree",
        )

    @classmethod
    def from_linkage(cls, linkage: Any) -> "Hierarchy":
        """From a SciPy linkage matrix (L−1, 4), read by :func:`from_linkage`: leaf and node ids
        are kept, so ``from_linkage(Z).to_linkage()`` returns Z (with counts recomputed)."""
        children, height = from_linkage(linkage, name="linkage")
        return cls(children, height=height, source="linkage")

    @classmethod
    def from_bisecting_kmeans(cls, model: Any) -> "Hierarchy":
        """From a fitted ``sklearn.cluster.BisectingKMeans``; leaf i is the model's cluster i and
        the training points are attached (``leaf_of = model.labels_``).

        scikit-learn keeps the tree only in the private attribute ``_bisecting_tree``; when that
        changes this raises, and :func:`bisecting_kmeans` (public API only) is the alternative.
        The split order is not stored by scikit-learn, so heights are the default
        (longest downward path).
        """
        tree = getattr(model, "_bisecting_tree", None)
        labels = getattr(model, "labels_", None)
        if tree is None or labels is None:
            raise ValueError(
                "model must be a fitted sklearn.cluster.BisectingKMeans (no _bisecting_tree / labels_ "
                "found); call fit first, or use hiclust.hierarchy.bisecting_kmeans(X, k)."
            )
        # walk the (few, k) cluster nodes of the sklearn object tree; not a hot path
        nodes, kids, key = [tree], [], []
        i = 0
        while i < len(nodes):
            node = nodes[i]
            left, right = getattr(node, "left", None), getattr(node, "right", None)
            if (left is None) != (right is None):
                raise ValueError("unexpected BisectingKMeans tree: a node with a single child.")
            if left is None:
                if not hasattr(node, "label"):
                    raise ValueError(
                        "unexpected BisectingKMeans tree (leaf without .label); this scikit-learn version "
                        "is not supported, use hiclust.hierarchy.bisecting_kmeans instead."
                    )
                kids.append((-1, -1))
                key.append(int(node.label))
            else:
                kids.append((len(nodes), len(nodes) + 1))
                nodes.extend([left, right])
                key.append(-1)
            i += 1
        ch, _ = _canonical(np.asarray(kids, dtype=np.int64).reshape(-1, 2), 0, np.asarray(key))
        return cls(ch, leaf_of=np.asarray(labels), source="bisecting_kmeans")

    @classmethod
    def from_logits(cls, logits: Any) -> "Hierarchy":
        """The L2H hierarchy over the K clusters of a flat model, from its logits (:func:`l2h_linkage`).

        Leaf k is cluster k and node K+s is merge s, so ``to_linkage()`` returns exactly
        ``l2h_linkage(logits)``: one row per merge, in merge order. Heights are the merge steps
        1..K−1, so ``cut(n_clusters=j)`` undoes the last j−1 merges. ``source`` is "l2h". No
        points are attached; attach them with ``with_points(np.argmax(logits, axis=1), y)``.

        Parameters
        ----------
        logits : array_like, shape (N, K)
            See :func:`l2h_linkage`.

        Returns
        -------
        Hierarchy
            With K leaves.

        Examples
        --------
        >>> h = Hierarchy.from_logits([[3.5, 0, 0, 0], [0, 1, 0.95, 0], [0, 0, 3, 0], [1, 0.8, 0.8, 1.5]])
        >>> h.source, h.n_leaves, h.cut(n_clusters=2).tolist()
        ('l2h', 4, [0, 1, 1, 1])
        """
        children, height = from_linkage(l2h_linkage(logits), name="logits linkage")
        return cls(children, height=height, source="l2h")

    # ---------------------------------------------------------------- structure queries
    @property
    def max_depth(self) -> int:
        """Depth of the deepest leaf (root alone: 0)."""
        return len(self._t.by_depth) - 1

    @property
    def n_levels(self) -> int:
        """Largest node level (= T for trees from :meth:`from_complete_tree`, else max_depth)."""
        return int(self.level.max())

    def is_leaf(self, node: int) -> bool:
        return self._check_node(node) < self.n_leaves

    def children(self, node: int) -> tuple[int, ...]:
        """(left, right) child ids of node, () for a leaf."""
        node = self._check_node(node)
        return () if node < self.n_leaves else tuple(int(c) for c in self.children_array[node])

    def depth_of(self, node: int) -> int:
        return int(self.depth[self._check_node(node)])

    def ancestors(self, node: int) -> np.ndarray:
        """Ancestors of node from its parent up to the root (node itself excluded)."""
        node = self._check_node(node)
        out = np.empty(int(self.depth[node]), dtype=np.int64)
        for k in range(out.size):  # depth steps
            node = int(self.parent[node])
            out[k] = node
        return out

    def leaves_under(self, node: int) -> np.ndarray:
        """Leaf ids under node (the node itself for a leaf), in left-to-right order."""
        node = self._check_node(node)
        start = self._t.offset[node]
        return self.leaf_order[start:start + self.sizes[node]].copy()

    def lca_many(self, a: Any, b: Any) -> np.ndarray:
        """Lowest common ancestors of node pairs (a[i], b[i]), see :func:`lca`."""
        a = _check_node_ids(a, self.n_nodes, "a")
        b = _check_node_ids(b, self.n_nodes, "b")
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}.")
        return _lca(self.parent, self.depth, a, b)

    def lca(self, i: int, j: int) -> int:
        """Lowest common ancestor of nodes i and j (usually leaves)."""
        return int(self.lca_many([self._check_node(i)], [self._check_node(j)])[0])

    # ---------------------------------------------------------------- points
    def _point_fields(self, leaf: np.ndarray | None, labels: np.ndarray | None) -> dict[str, Any]:
        """Attributes for validated points (leaf, labels), all None without points."""
        if leaf is None:
            return dict.fromkeys(("leaf_of", "y", "counts", "classes", "class_counts",
                                  "_point_order", "_point_start"))
        t = self._t
        per_leaf = np.zeros(self.n_nodes, dtype=np.int64)
        per_leaf[: self.n_leaves] = np.bincount(leaf, minlength=self.n_leaves)
        classes = class_counts = None
        if labels is not None:
            classes, codes = np.unique(labels, return_inverse=True)
            per = np.zeros((self.n_nodes, classes.size), dtype=np.int64)
            np.add.at(per, (leaf, codes), 1)
            class_counts = _subtree_sums(t.children, t.by_depth, per)
        # points sorted by the left-to-right position of their leaf: a node's points are a block
        pos = self.leaf_position[leaf]
        fields = {
            "leaf_of": leaf,
            "y": labels,
            "counts": _subtree_sums(t.children, t.by_depth, per_leaf),
            "classes": classes,
            "class_counts": class_counts,
            "_point_order": np.argsort(pos, kind="stable"),
            "_point_start": np.concatenate([[0], np.cumsum(np.bincount(pos, minlength=self.n_leaves))]),
        }
        return {k: _frozen(v) for k, v in fields.items()}

    def with_points(self, leaf_of: Any, y: Any = None) -> "Hierarchy":
        """A new Hierarchy with the same tree and these points attached; self is unchanged.

        Parameters
        ----------
        leaf_of : array_like of int, shape (n,)
            Leaf id in 0..L−1 of each point.
        y : array_like of int, shape (n,), optional
            Class labels.

        Returns
        -------
        Hierarchy
            With ``leaf_of``, ``y``, ``counts`` (2L−1,) points under each node and, with y,
            ``classes`` (C,) sorted distinct labels and ``class_counts`` (2L−1, C).
        """
        fields = self._point_fields(*_check_points(leaf_of, y, self.n_leaves))
        new = object.__new__(type(self))
        vars(new).update(vars(self))  # the tree's arrays are read-only: sharing them is safe
        vars(new).update(fields)
        return new

    # scikit-learn's verb for the same thing; like every method here it returns a new view.
    fit_points = with_points

    def points_of(self, node: int) -> np.ndarray:
        """Sorted indices of the attached points under node."""
        if self.leaf_of is None:
            raise ValueError("no points attached; call fit_points(leaf_of, y) first.")
        node = self._check_node(node)
        start = self._point_start[self._t.offset[node]]
        return np.sort(self._point_order[start:start + self.counts[node]])

    def _labels(self, y: Any) -> Any:
        if y is not None:
            return y
        if self.y is None:
            raise ValueError("no labels: pass y, or attach them with fit_points(leaf_of, y).")
        return self.y

    def contingency(self, y: Any = None) -> np.ndarray:
        """(n_leaves, n_classes) int64 counts of each class (sorted distinct labels) per leaf."""
        leaf, labels = _points(self._labels(y), self.leaf_of, self.n_leaves)
        _, codes = np.unique(labels, return_inverse=True)
        out = np.zeros((self.n_leaves, int(codes.max()) + 1), dtype=np.int64)
        np.add.at(out, (leaf, codes), 1)
        return out

    # ---------------------------------------------------------------- cuts and evaluation
    def cut_nodes(self, level: int | None = None, n_clusters: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Group nodes of a cut (g,) left to right and the group of each leaf (L,); see :func:`cut`."""
        return _cut_nodes(self._t, level, n_clusters)

    def cut(self, level: int | None = None, n_clusters: int | None = None) -> np.ndarray:
        """Flat labels (n,) of the attached points, or (L,) of the leaves if none; see :func:`cut`."""
        _, leaf_labels = _cut_nodes(self._t, level, n_clusters)
        return leaf_labels if self.leaf_of is None else leaf_labels[self.leaf_of]

    def dendrogram_purity(self, y: Any = None) -> float:
        """Dendrogram purity of the attached points (or of one point per leaf) w.r.t. labels y."""
        leaf, labels = _points(self._labels(y), self.leaf_of, self.n_leaves)
        return _dendrogram_purity(self.children_array, self._t.by_depth, leaf, labels)

    def level_metrics(self, y: Any = None) -> list[dict[str, float]]:
        """For each level t = 1..n_levels: {"level", "n_groups", "acc", "nmi", "ari"} of cut(level=t)."""
        leaf, labels = _points(self._labels(y), self.leaf_of, self.n_leaves)
        return _level_metrics(self._t, leaf, labels)

    def super_groups(self, y: Any = None, level: int = 1, top: int = 3) -> list[dict[str, Any]]:
        """Groups of cut(level=level), left to right, each with its node, name, size and the
        ``top`` most frequent classes as (label, fraction) pairs (fractions of the group)."""
        leaf, labels = _points(self._labels(y), self.leaf_of, self.n_leaves)
        return _super_groups(self._t, leaf, labels, level, top, self.name)

    # ---------------------------------------------------------------- export
    def to_linkage(self) -> np.ndarray:
        """SciPy linkage (L−1, 4) float64, see :func:`to_linkage`; its dendrogram's leaf order is
        ``leaf_order`` (0..K−1 for :meth:`from_complete_tree`)."""
        return _linkage(self._t)

    def to_newick(self, leaf_names: Sequence[str] | None = None, branch_lengths: bool = True,
                  internal_names: bool = False) -> str:
        """Newick string, see :func:`to_newick`; internal nodes carry ``name`` if internal_names."""
        if internal_names and self.name is None:
            raise ValueError("internal_names=True but this tree has no node names.")
        return _newick(self._t, leaf_names, self.name if internal_names else None, branch_lengths)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict with everything needed to rebuild the tree exactly (:func:`to_dict`)."""
        return _as_dict(self.children_array, self.height, self.level, self.name, self.heap_index,
                        self.leaf_of, self.y, self.source)

    def to_json(self) -> str:
        """JSON text; ``Hierarchy.from_json(h.to_json()).to_json() == h.to_json()``."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Hierarchy":
        """Rebuild a Hierarchy from :meth:`to_dict` output."""
        return cls(**_parse_dict(d))

    @classmethod
    def from_json(cls, s: str) -> "Hierarchy":
        """Rebuild a Hierarchy from :meth:`to_json` output."""
        return cls.from_dict(_load_json(s))

    def __repr__(self) -> str:
        pts = "" if self.leaf_of is None else f", n_points={self.leaf_of.shape[0]}"
        return (f"Hierarchy(n_leaves={self.n_leaves}, max_depth={self.max_depth}, "
                f"source={self.source!r}{pts})")


# --------------------------------------------------------------------------------------
# bisecting k-means with the public scikit-learn API
# --------------------------------------------------------------------------------------
def bisecting_kmeans(
    X: Any,
    n_clusters: int,
    random_state: int | None = None,
    strategy: str = "biggest_inertia",
    n_init: int = 1,
) -> tuple[np.ndarray, Hierarchy]:
    """Bisecting k-means built on ``sklearn.cluster.KMeans(n_clusters=2)``.

    Starting from one cluster, repeatedly split the cluster with the largest sum of squared
    distances to its mean (``strategy="biggest_inertia"``) or the most points
    (``"largest_cluster"``) in two with 2-means, until n_clusters clusters exist.

    Parameters
    ----------
    X : array_like, shape (n, d)
        Features (NumPy array, tensor or list).
    n_clusters : int
        k in 1..n.
    random_state : int, optional
        Seed for the KMeans calls.
    strategy : {"biggest_inertia", "largest_cluster"}
    n_init : int
        KMeans restarts per split.

    Returns
    -------
    labels : numpy.ndarray, shape (n,), int64
        In 0..k−1 (= leaf ids, numbered left to right).
    hierarchy : Hierarchy
        With the points attached. Heights record the split order (the first split is
        highest), so ``hierarchy.cut(n_clusters=j)`` is the clustering after j−1 splits and
        equals labels for j = k.

    Examples
    --------
    >>> labels, h = bisecting_kmeans([[0.0], [0.1], [5.0], [5.1], [9.0]], 3, random_state=0)
    >>> h.n_leaves, sorted(np.bincount(labels).tolist()), sorted(np.bincount(h.cut(n_clusters=2)).tolist())
    (3, [1, 2, 2], [2, 3])
    """
    from sklearn.cluster import KMeans

    x = _as_numpy(X, "X")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"X must be a non-empty (n_samples, n_features) array, got shape {x.shape}.")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("X contains NaN or infinite values.")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not 1 <= n_clusters <= x.shape[0]:
        raise ValueError(f"n_clusters must be an integer in 1..n_samples={x.shape[0]}, got {n_clusters!r}.")
    if strategy not in ("biggest_inertia", "largest_cluster"):
        raise ValueError(f"strategy must be 'biggest_inertia' or 'largest_cluster', got {strategy!r}.")
    k = int(n_clusters)
    rng = np.random.RandomState(random_state)
    node_of = np.zeros(x.shape[0], dtype=np.int64)  # current leaf (raw id) of each point
    children_raw = np.full((2 * k - 1, 2), -1, dtype=np.int64)
    height = np.zeros(2 * k - 1)
    leaves = [0]
    n_raw = 1
    for s in range(k - 1):  # k−1 splits; each one vectorized over its points
        lab = np.asarray(leaves)
        sizes = np.bincount(node_of, minlength=n_raw)[lab]
        if strategy == "largest_cluster":
            score = sizes.astype(np.float64)
        else:
            sums = np.zeros((n_raw, x.shape[1]))
            np.add.at(sums, node_of, x)
            cnt = np.maximum(np.bincount(node_of, minlength=n_raw), 1)[:, None]
            sse = np.bincount(node_of, weights=((x - sums[node_of] / cnt[node_of]) ** 2).sum(1), minlength=n_raw)
            score = sse[lab]
        score = np.where(sizes >= 2, score, -np.inf)  # a single point cannot be split
        pick = int(lab[np.argmax(score)])
        idx = np.flatnonzero(node_of == pick)
        if idx.size < 2 or np.ptp(x[idx], axis=0).max() == 0:
            raise ValueError(
                f"cannot split into {k} clusters: the cluster chosen at split {s + 1} has identical points; "
                "use fewer clusters."
            )
        km = KMeans(n_clusters=2, n_init=n_init, random_state=rng.randint(2**31 - 1)).fit(x[idx])
        if np.bincount(km.labels_, minlength=2).min() == 0:
            raise ValueError(f"KMeans left one side of split {s + 1} empty; use fewer clusters.")
        a, b = n_raw, n_raw + 1
        node_of[idx] = np.where(km.labels_ == 0, a, b)
        children_raw[pick] = (a, b)
        height[pick] = k - 1 - s  # first split highest: cut(n_clusters=j) replays j−1 splits
        leaves.remove(pick)
        leaves += [a, b]
        n_raw += 2
    ch, raw_of_new = _canonical(children_raw, 0)
    new_of_raw = np.empty(2 * k - 1, dtype=np.int64)
    new_of_raw[raw_of_new] = np.arange(2 * k - 1)
    labels = new_of_raw[node_of]
    return labels, Hierarchy(ch, height=height[raw_of_new], leaf_of=labels, source="bisecting_kmeans")
