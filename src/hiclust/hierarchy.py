"""One tree type for every hierarchical result: :class:`Hierarchy`.

A fitted CoHiClust tree (pruned leaves removed, single-child nodes collapsed), a SciPy linkage
over points or clusters, and bisecting k-means all become a ``Hierarchy``, so every method is
evaluated, exported and drawn the same way.

Representation (the SciPy linkage convention)
---------------------------------------------
The tree is a *full* binary tree with L leaves and ``n_nodes = 2L − 1`` nodes:

* nodes ``0..L−1`` are the leaves (leaf id = node id),
* nodes ``L..2L−2`` are internal, numbered so that children come before their parent
  (node ``L + i`` is row ``i`` of :meth:`Hierarchy.to_linkage`), the root is node ``2L − 2``,
* ``children_array`` (n_nodes, 2) int64 holds (left, right), −1 for leaves; "left" is the
  child drawn first, and "left-to-right" leaf order is the in-order of leaves.

Per node: ``parent`` (−1 at the root), ``depth`` (root 0), ``height`` (dendrogram height,
leaves 0, never below a child's height when built here), ``level`` (what :meth:`cut` with
``level=`` uses: the original complete-tree level for trees from :meth:`from_complete_tree`,
the depth otherwise), ``sizes`` (number of leaves under the node) and optionally ``name``
(e.g. the root-to-node path "LRR") and ``heap_index`` (index in the complete tree).

Points may be attached (:meth:`fit_points`): ``leaf_of`` (n,) gives the leaf holding each point
and ``y`` (n,) optional class labels; ``counts`` and ``class_counts`` are then per-node totals.

All per-node quantities are computed with one vectorized NumPy step per depth level (never per
node or per point), so balanced trees cost O(log n) NumPy calls.

Example
-------
>>> h = Hierarchy.from_complete_tree(3, pruned_leaves=[0, 5])
>>> h.n_leaves, h.cut(level=1).tolist()
(6, [0, 0, 0, 1, 1, 1])
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import numpy as np

from . import metrics as _metrics
from .metrics import _as_labels, _as_numpy, _bfs_levels, _check_linkage, _linkage_children, _subtree_sums

__all__ = ["Hierarchy", "bisecting_kmeans"]

_JSON_FORMAT = "hiclust.Hierarchy"
_JSON_VERSION = 1


# --------------------------------------------------------------------------------------
# generic tree arrays
# --------------------------------------------------------------------------------------
def _structure(children: np.ndarray, root: int) -> dict[str, Any]:
    """Parent, depth, leaf counts and left-most leaf position of every node reachable from root.

    children: (m, 2) int64, −1 for leaves. Unreachable rows get parent −1, depth −1, size 0.
    Returns a dict with "levels" (list of node arrays per depth, left to right), "parent",
    "depth", "sizes" (leaves under each node) and "offset" (left-to-right position of the
    node's first leaf; a node's leaves occupy positions offset..offset+size−1).
    """
    m = children.shape[0]
    levels = _bfs_levels(children, root)
    parent = np.full(m, -1, dtype=np.int64)
    depth = np.full(m, -1, dtype=np.int64)
    is_leaf = children[:, 0] < 0
    for d, nodes in enumerate(levels):
        depth[nodes] = d
        inner = nodes[~is_leaf[nodes]]
        parent[children[inner, 0]] = inner
        parent[children[inner, 1]] = inner
    sizes = _subtree_sums(children, levels, is_leaf.astype(np.int64))
    offset = np.zeros(m, dtype=np.int64)
    for nodes in levels:  # top-down: left child starts where the parent starts
        inner = nodes[~is_leaf[nodes]]
        left, right = children[inner, 0], children[inner, 1]
        offset[left] = offset[inner]
        offset[right] = offset[inner] + sizes[left]
    return {"levels": levels, "parent": parent, "depth": depth, "sizes": sizes, "offset": offset}


def _canonical(children_raw: np.ndarray, root: int, leaf_key: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Renumber an arbitrary binary tree into the SciPy convention.

    Args:
        children_raw: (m, 2) children over raw ids (−1 for leaves); rows not reachable from
            root are ignored.
        root: raw id of the root.
        leaf_key: optional (m,) key; leaves are numbered by increasing key. Default: left to
            right.
    Returns:
        children (2L−1, 2) in the new numbering, and raw_of_new (2L−1,) the raw id of each node.
    """
    st = _structure(children_raw, root)
    reach = np.concatenate(st["levels"])
    is_leaf = children_raw[reach, 0] < 0
    leaves, inner = reach[is_leaf], reach[~is_leaf]
    key = st["offset"][leaves] if leaf_key is None else leaf_key[leaves]
    leaves = leaves[np.argsort(key, kind="stable")]
    # deepest first (then left to right) is a topological order: children before parents
    inner = inner[np.lexsort((st["offset"][inner], -st["depth"][inner]))]
    raw_of_new = np.concatenate([leaves, inner])
    new_of_raw = np.full(children_raw.shape[0], -1, dtype=np.int64)
    new_of_raw[raw_of_new] = np.arange(raw_of_new.size)
    children = np.full((raw_of_new.size, 2), -1, dtype=np.int64)
    children[leaves.size:] = new_of_raw[children_raw[inner]]
    return children, raw_of_new


def _rank_heights(children: np.ndarray, levels: list[np.ndarray]) -> np.ndarray:
    """Height = longest downward path in edges (leaves 0, parent = 1 + max child height)."""
    h = np.zeros(children.shape[0], dtype=np.float64)
    for nodes in reversed(levels):
        inner = nodes[children[nodes, 0] >= 0]
        if inner.size:
            h[inner] = 1.0 + np.maximum(h[children[inner, 0]], h[children[inner, 1]])
    return h


def _heap_path(heap_index: int) -> str:
    """Root-to-node path of a heap index: bits of heap_index+1 after the leading 1, 0→L, 1→R."""
    return bin(heap_index + 1)[3:].replace("0", "L").replace("1", "R")


_NEWICK_SAFE = re.compile(r"[A-Za-z0-9_.\-]+")


def _newick_label(s: str) -> str:
    return s if _NEWICK_SAFE.fullmatch(s) else "'" + s.replace("'", "''") + "'"


def _readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a.flags.writeable = False
    return a


# --------------------------------------------------------------------------------------
# Hierarchy
# --------------------------------------------------------------------------------------
class Hierarchy:
    """A full binary tree over L leaves, optionally with points (and labels) attached.

    Args:
        children: (2L−1, 2) int, −1 for the L leaves (rows 0..L−1), children before parents
            for internal rows (row L+i may only use ids < L+i, each node used once).
        height: (2L−1,) finite dendrogram heights. Default: longest downward path in edges.
        level: (2L−1,) int levels for :meth:`cut`; must increase strictly from parent to
            child. Default: depth.
        name: optional list of 2L−1 node names.
        heap_index: optional (2L−1,) index of each node in the complete tree it came from.
        leaf_of, y: optional points, see :meth:`fit_points`.
        source: free text saying where the tree came from.

    Use the constructors :meth:`from_complete_tree`, :meth:`from_linkage`,
    :meth:`from_bisecting_kmeans` or the function :func:`bisecting_kmeans`.
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
        ch = self._check_children(children)
        n_nodes = ch.shape[0]
        self.n_leaves: int = (n_nodes + 1) // 2
        self.n_nodes: int = n_nodes
        self.root: int = n_nodes - 1
        self.source: str = str(source)
        st = _structure(ch, self.root)
        self._levels: list[np.ndarray] = st["levels"]
        self.children_array: np.ndarray = _readonly(ch)
        self.parent: np.ndarray = _readonly(st["parent"])
        self.depth: np.ndarray = _readonly(st["depth"])
        self.sizes: np.ndarray = _readonly(st["sizes"])
        self._offset: np.ndarray = _readonly(st["offset"])
        order = np.empty(self.n_leaves, dtype=np.int64)
        order[self._offset[: self.n_leaves]] = np.arange(self.n_leaves)
        self.leaf_order: np.ndarray = _readonly(order)  # leaf ids, left to right
        self.leaf_position: np.ndarray = _readonly(self._offset[: self.n_leaves].copy())

        inner = np.arange(self.n_leaves, n_nodes)
        if height is None:
            h = _rank_heights(ch, self._levels)
        else:
            h = _as_numpy(height, "height").astype(np.float64).reshape(-1)
            if h.shape != (n_nodes,):
                raise ValueError(f"height must have shape ({n_nodes},), got {h.shape}.")
            if not np.all(np.isfinite(h)):
                raise ValueError("height contains NaN or infinite values.")
        self.height: np.ndarray = _readonly(h)

        if level is None:
            lv = self.depth.copy()
        else:
            lv = _as_labels(level, "level")
            if lv.shape != (n_nodes,):
                raise ValueError(f"level must have shape ({n_nodes},), got {lv.shape}.")
            if lv.min() < 0 or np.any(lv[ch[inner]] <= lv[inner, None]):
                raise ValueError("level must be >= 0 and increase strictly from each node to its children.")
        self.level: np.ndarray = _readonly(lv)

        if name is not None:
            name = [str(s) for s in name]
            if len(name) != n_nodes:
                raise ValueError(f"name must have one entry per node ({n_nodes}), got {len(name)}.")
        self.name: list[str] | None = name
        if heap_index is not None:
            hi = _as_labels(heap_index, "heap_index")
            if hi.shape != (n_nodes,):
                raise ValueError(f"heap_index must have shape ({n_nodes},), got {hi.shape}.")
            heap_index = hi
        self.heap_index: np.ndarray | None = _readonly(heap_index)

        self.leaf_of: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self.classes: np.ndarray | None = None
        self.class_counts: np.ndarray | None = None
        if leaf_of is not None:
            self.fit_points(leaf_of, y)
        elif y is not None:
            raise ValueError("y was given without leaf_of; pass leaf_of (the leaf of each point) too.")

    # ---------------------------------------------------------------- validation
    @staticmethod
    def _check_children(children: Any) -> np.ndarray:
        c = _as_numpy(children, "children")
        if c.ndim != 2 or c.shape[1] != 2 or c.shape[0] % 2 != 1:
            raise ValueError(
                f"children must have shape (2L-1, 2) for a full binary tree with L leaves, got {c.shape}."
            )
        if not (np.issubdtype(c.dtype, np.integer) or (np.issubdtype(c.dtype, np.floating) and np.all(c == np.round(c)))):
            raise ValueError("children must hold integer node ids (-1 for leaves).")
        c = c.astype(np.int64)
        n = c.shape[0]
        n_leaves = (n + 1) // 2
        if np.any(c[:n_leaves] != -1):
            raise ValueError(f"rows 0..{n_leaves - 1} of children must be leaves (-1, -1).")
        inner = c[n_leaves:]
        rows = np.arange(n_leaves, n)[:, None]
        if np.any(inner < 0) or np.any(inner >= rows):
            raise ValueError(
                "internal rows of children must hold two ids, each smaller than the row's own id "
                "(children come before parents, as in a SciPy linkage)."
            )
        if np.unique(inner).size != 2 * (n - n_leaves):
            raise ValueError("children uses some node twice; every non-root node needs exactly one parent.")
        return c

    def _check_node(self, node: int) -> int:
        node = int(node)
        if not 0 <= node < self.n_nodes:
            raise ValueError(f"node must be in 0..{self.n_nodes - 1}, got {node}.")
        return node

    def _check_nodes(self, nodes: Any, what: str) -> np.ndarray:
        a = _as_labels(np.atleast_1d(_as_numpy(nodes, what)), what)
        if a.min() < 0 or a.max() >= self.n_nodes:
            raise ValueError(f"{what} must be node ids in 0..{self.n_nodes - 1}.")
        return a

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_complete_tree(cls, depth: int, pruned_leaves: Sequence[int] | Any = ()) -> "Hierarchy":
        """The CoHiClust tree: complete binary tree of depth T, pruned leaves removed.

        Heap order (SPEC §1.2): root 0, children 2u+1 (left) and 2u+2 (right); the 2^T leaves of
        level T are numbered 0..2^T−1 left to right. Pruned leaves are removed, internal nodes
        left without leaves are removed, and single-child nodes are collapsed into their child.
        The K remaining leaves are numbered 0..K−1 left to right (= CoHiClust cluster ids).

        Node metadata: ``heap_index`` (index in the complete tree), ``name`` (root-to-node path
        of 'L'/'R', "" for the root), ``level`` (level in the complete tree, used by
        :meth:`cut`), ``height`` = T − level.

        Args:
            depth: T >= 0.
            pruned_leaves: indices in 0..2^T−1 of the removed level-T leaves.
        """
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
            raise ValueError(f"depth must be an integer >= 0, got {depth!r}.")
        t_max = int(depth)
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
        ch, heap = _canonical(children_raw, int(down[0]))
        level = (np.frexp((heap + 1).astype(np.float64))[1] - 1).astype(np.int64)  # exact bit length
        return cls(
            ch,
            height=(t_max - level).astype(np.float64),
            level=level,
            name=[_heap_path(int(i)) for i in heap],
            heap_index=heap,
            source="complete_tree",
        )

    @classmethod
    def from_linkage(cls, linkage: Any) -> "Hierarchy":
        """From a SciPy linkage matrix (L−1, 4): leaf ids and internal numbering are kept, heights
        are column 2, so ``from_linkage(Z).to_linkage()`` returns Z (with counts recomputed)."""
        z = _check_linkage(linkage)
        ch = _linkage_children(z)
        height = np.zeros(ch.shape[0])
        height[z.shape[0] + 1:] = z[:, 2]
        return cls(ch, height=height, source="linkage")

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

    # ---------------------------------------------------------------- structure queries
    @property
    def max_depth(self) -> int:
        """Depth of the deepest leaf (root alone: 0)."""
        return len(self._levels) - 1

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
        start = self._offset[node]
        return self.leaf_order[start:start + self.sizes[node]].copy()

    def lca_many(self, a: Any, b: Any) -> np.ndarray:
        """Lowest common ancestors of node pairs (a[i], b[i]); vectorized over pairs, one step per
        depth level. a, b: (m,) node ids. Returns (m,) node ids."""
        a = self._check_nodes(a, "a").copy()
        b = self._check_nodes(b, "b").copy()
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}.")
        while True:
            diff = a != b
            if not diff.any():
                return a
            da, db = self.depth[a], self.depth[b]
            up_a = diff & (da >= db)
            up_b = diff & (db >= da)
            a[up_a] = self.parent[a[up_a]]
            b[up_b] = self.parent[b[up_b]]

    def lca(self, i: int, j: int) -> int:
        """Lowest common ancestor of nodes i and j (usually leaves)."""
        return int(self.lca_many([self._check_node(i)], [self._check_node(j)])[0])

    # ---------------------------------------------------------------- points
    def fit_points(self, leaf_of: Any, y: Any = None) -> "Hierarchy":
        """Attach points: leaf_of (n,) leaf id in 0..L−1 of each point, y (n,) optional labels.

        Sets ``leaf_of``, ``y``, ``counts`` (n_nodes,) points under each node and, with y,
        ``classes`` (C,) sorted distinct labels and ``class_counts`` (n_nodes, C). Returns self.
        """
        leaf = _as_labels(leaf_of, "leaf_of")
        if leaf.min() < 0 or leaf.max() >= self.n_leaves:
            raise ValueError(
                f"leaf_of must lie in 0..{self.n_leaves - 1} (the tree's leaves), got {leaf.min()}..{leaf.max()}."
            )
        per_leaf = np.zeros(self.n_nodes, dtype=np.int64)
        per_leaf[: self.n_leaves] = np.bincount(leaf, minlength=self.n_leaves)
        counts = _subtree_sums(self.children_array, self._levels, per_leaf)
        labels = classes = class_counts = None
        if y is not None:
            labels = _as_labels(y, "y")
            if labels.shape != leaf.shape:
                raise ValueError(f"y must have one label per point: got {labels.shape[0]}, leaf_of has {leaf.shape[0]}.")
            classes, codes = np.unique(labels, return_inverse=True)
            per = np.zeros((self.n_nodes, classes.size), dtype=np.int64)
            np.add.at(per, (leaf, codes), 1)
            class_counts = _subtree_sums(self.children_array, self._levels, per)
        self.leaf_of = _readonly(leaf.copy())
        self.y = _readonly(None if labels is None else labels.copy())
        self.counts = _readonly(counts)
        self.classes = _readonly(classes)
        self.class_counts = _readonly(class_counts)
        # points sorted by the left-to-right position of their leaf: a node's points are a block
        pos = self.leaf_position[leaf]
        self._point_order = np.argsort(pos, kind="stable")
        self._point_start = np.concatenate([[0], np.cumsum(np.bincount(pos, minlength=self.n_leaves))])
        return self

    def _require_points(self) -> None:
        if self.leaf_of is None:
            raise ValueError("no points attached; call fit_points(leaf_of, y) first.")

    def points_of(self, node: int) -> np.ndarray:
        """Sorted indices of the attached points under node."""
        self._require_points()
        node = self._check_node(node)
        start = self._point_start[self._offset[node]]
        return np.sort(self._point_order[start:start + self.counts[node]])

    def _leaf_and_labels(self, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """(leaf_of, y) for metrics: attached points, or one point per leaf when none attached."""
        if y is None:
            if self.y is None:
                raise ValueError("no labels: pass y, or attach them with fit_points(leaf_of, y).")
            return self.leaf_of, self.y
        labels = _as_labels(y, "y")
        if self.leaf_of is not None:
            if labels.shape[0] != self.leaf_of.shape[0]:
                raise ValueError(
                    f"y has {labels.shape[0]} labels but {self.leaf_of.shape[0]} points are attached."
                )
            return self.leaf_of, labels
        if labels.shape[0] != self.n_leaves:
            raise ValueError(
                f"y has {labels.shape[0]} labels but the tree has {self.n_leaves} leaves and no points "
                "attached; call fit_points(leaf_of) first."
            )
        return np.arange(self.n_leaves), labels

    def contingency(self, y: Any = None) -> np.ndarray:
        """(n_leaves, n_classes) int64 counts of each class (sorted distinct labels) per leaf."""
        leaf, labels = self._leaf_and_labels(y)
        _, codes = np.unique(labels, return_inverse=True)
        out = np.zeros((self.n_leaves, int(codes.max()) + 1), dtype=np.int64)
        np.add.at(out, (leaf, codes), 1)
        return out

    # ---------------------------------------------------------------- cuts
    def _group_of_nodes(self, level: int | None, n_clusters: int | None) -> np.ndarray:
        """rep (n_nodes,): the group node each node falls in, for the cut rules of :meth:`cut`."""
        if (level is None) == (n_clusters is None):
            raise ValueError("pass exactly one of level= or n_clusters=.")
        rep = np.arange(self.n_nodes)
        if level is not None:
            if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0:
                raise ValueError(f"level must be an integer >= 0, got {level!r}.")
            for nodes in self._levels[1:]:
                p = self.parent[nodes]
                merge = self.level[p] >= level  # parent already at/below the cut: join its group
                rep[nodes[merge]] = rep[p[merge]]
            return rep
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not 1 <= n_clusters <= self.n_leaves:
            raise ValueError(f"n_clusters must be an integer in 1..{self.n_leaves}, got {n_clusters!r}.")
        # effective height: never above the parent's, so sorting splits by it respects the tree
        eff = self.height.copy()
        for nodes in self._levels[1:]:
            eff[nodes] = np.minimum(eff[nodes], eff[self.parent[nodes]])
        inner = np.arange(self.n_leaves, self.n_nodes)
        order = inner[np.lexsort((self._offset[inner], self.depth[inner], -eff[inner]))]
        split = np.zeros(self.n_nodes, dtype=bool)
        split[order[: int(n_clusters) - 1]] = True
        for nodes in self._levels[1:]:
            p = self.parent[nodes]
            rep[nodes] = np.where(split[p], nodes, rep[p])
        return rep

    def cut_nodes(self, level: int | None = None, n_clusters: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Group nodes of a cut and the group label of each leaf.

        Returns (nodes (g,) left to right, leaf_labels (L,) in 0..g−1). See :meth:`cut`.
        """
        rep = self._group_of_nodes(level, n_clusters)[: self.n_leaves]
        groups = np.unique(rep)
        groups = groups[np.argsort(self._offset[groups], kind="stable")]
        label_of = np.empty(self.n_nodes, dtype=np.int64)
        label_of[groups] = np.arange(groups.size)
        return groups, label_of[rep]

    def cut(self, level: int | None = None, n_clusters: int | None = None) -> np.ndarray:
        """Flat labels (n,) of the attached points, or (L,) of the leaves if none attached.

        * ``level=t``: each leaf joins its highest ancestor-or-self whose ``level`` is >= t (for
          depth levels: its ancestor at depth t; leaves shallower than t stay alone). For the
          complete tree of depth T this is the partition by the level-t nodes of the complete
          tree: 2^t groups minus those left without leaves by pruning.
        * ``n_clusters=k``: top-down splits, always splitting next the node of greatest height
          (heights first clipped to never exceed the parent's), ties broken by smaller depth,
          then leftmost; exactly k groups. For a SciPy linkage with monotone heights this cuts
          the k−1 highest merges.

        Groups are labelled 0..g−1 left to right.
        """
        _, leaf_labels = self.cut_nodes(level, n_clusters)
        return leaf_labels if self.leaf_of is None else leaf_labels[self.leaf_of]

    # ---------------------------------------------------------------- evaluation
    def dendrogram_purity(self, y: Any = None) -> float:
        """Dendrogram purity of the attached points (or of one point per leaf) w.r.t. labels y."""
        leaf, labels = self._leaf_and_labels(y)
        return _metrics.dendrogram_purity(labels, self.to_linkage(), leaf_of=leaf)

    def level_metrics(self, y: Any = None) -> list[dict[str, float]]:
        """For each level t = 1..n_levels: {"level", "n_groups", "acc", "nmi", "ari"} of cut(level=t)."""
        leaf, labels = self._leaf_and_labels(y)
        out = []
        for t in range(1, self.n_levels + 1):
            _, leaf_labels = self.cut_nodes(level=t)
            pred = leaf_labels[leaf]
            out.append({
                "level": t,
                "n_groups": int(leaf_labels.max()) + 1,
                "acc": _metrics.clustering_accuracy(labels, pred),
                "nmi": _metrics.nmi(labels, pred),
                "ari": _metrics.ari(labels, pred),
            })
        return out

    def super_groups(self, y: Any = None, level: int = 1, top: int = 3) -> list[dict[str, Any]]:
        """Groups of cut(level=level), left to right, each with its node, name, size and the
        ``top`` most frequent classes as (label, fraction) pairs (fractions of the group)."""
        leaf, labels = self._leaf_and_labels(y)
        nodes, leaf_labels = self.cut_nodes(level=level)
        classes, codes = np.unique(labels, return_inverse=True)
        table = np.zeros((nodes.size, classes.size), dtype=np.int64)
        np.add.at(table, (leaf_labels[leaf], codes), 1)
        sizes = table.sum(axis=1)
        best = np.argsort(-table, axis=1, kind="stable")[:, :top]
        out = []
        for g, node in enumerate(nodes):  # one entry per group: output assembly only
            tops = [
                (classes[c].item(), float(table[g, c] / sizes[g]))
                for c in best[g] if table[g, c] > 0
            ]
            out.append({
                "node": int(node),
                "name": None if self.name is None else self.name[node],
                "size": int(sizes[g]),
                "top": tops,
            })
        return out

    # ---------------------------------------------------------------- export
    def to_linkage(self) -> np.ndarray:
        """SciPy linkage (L−1, 4) float64: row i = node L+i as [left, right, height, n_leaves].

        Leaves are leaf ids 0..L−1. ``scipy.cluster.hierarchy.dendrogram`` draws left children
        first, so its leaf order is ``leaf_order`` (0..K−1 for :meth:`from_complete_tree`).
        """
        inner = slice(self.n_leaves, self.n_nodes)
        z = np.empty((self.n_leaves - 1, 4), dtype=np.float64)
        z[:, :2] = self.children_array[inner]
        z[:, 2] = self.height[inner]
        z[:, 3] = self.sizes[inner]
        return z

    def to_newick(self, leaf_names: Sequence[str] | None = None, branch_lengths: bool = True,
                  internal_names: bool = False) -> str:
        """Newick string. Leaves are named ``leaf_names[i]`` (default: the leaf id); branch
        lengths are height differences; internal nodes carry ``name`` if internal_names."""
        if leaf_names is None:
            labels = [str(i) for i in range(self.n_leaves)]
        else:
            labels = [str(s) for s in leaf_names]
            if len(labels) != self.n_leaves:
                raise ValueError(f"leaf_names must have {self.n_leaves} entries, got {len(labels)}.")
        if internal_names and self.name is None:
            raise ValueError("internal_names=True but this tree has no node names.")
        ch, par, h = self.children_array, self.parent, self.height

        def suffix(v: int) -> str:
            s = ""
            if v >= self.n_leaves and internal_names and self.name[v]:
                s = _newick_label(self.name[v])
            if branch_lengths and par[v] >= 0:
                s += f":{float(h[par[v]] - h[v])!r}"
            return s

        # iterative DFS (a SciPy linkage can be n levels deep: no recursion); export, not hot path
        tokens: list[str] = []
        stack: list[tuple[int, int]] = [(self.root, 0)]
        while stack:
            v, state = stack.pop()
            if state == 1:
                tokens.append(",")
            elif state == 2:
                tokens.append(")" + suffix(v))
            elif v < self.n_leaves:
                tokens.append(_newick_label(labels[v]) + suffix(v))
            else:
                tokens.append("(")
                stack += [(v, 2), (int(ch[v, 1]), 0), (v, 1), (int(ch[v, 0]), 0)]
        return "".join(tokens) + ";"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict with everything needed to rebuild the tree exactly."""
        def lst(a: np.ndarray | None) -> list | None:
            return None if a is None else a.tolist()

        return {
            "format": _JSON_FORMAT,
            "version": _JSON_VERSION,
            "source": self.source,
            "children": self.children_array.tolist(),
            "height": [float(x) for x in self.height],
            "level": self.level.tolist(),
            "name": self.name,
            "heap_index": lst(self.heap_index),
            "leaf_of": lst(self.leaf_of),
            "y": lst(self.y),
        }

    def to_json(self) -> str:
        """JSON text; ``Hierarchy.from_json(h.to_json()).to_json() == h.to_json()``."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Hierarchy":
        if not isinstance(d, dict) or d.get("format") != _JSON_FORMAT:
            raise ValueError(f"not a serialized Hierarchy (expected format {_JSON_FORMAT!r}).")
        if d.get("version") != _JSON_VERSION:
            raise ValueError(f"unsupported Hierarchy JSON version {d.get('version')!r}; expected {_JSON_VERSION}.")
        missing = {"children", "height", "level"} - set(d)
        if missing:
            raise ValueError(f"Hierarchy JSON lacks fields {sorted(missing)}.")

        def arr(key: str, dtype: type) -> np.ndarray | None:
            return None if d.get(key) is None else np.asarray(d[key], dtype=dtype)

        children = np.asarray(d["children"], dtype=np.int64).reshape(-1, 2)
        return cls(
            children,
            height=np.asarray(d["height"], dtype=np.float64),
            level=np.asarray(d["level"], dtype=np.int64),
            name=d.get("name"),
            heap_index=arr("heap_index", np.int64),
            leaf_of=arr("leaf_of", np.int64),
            y=arr("y", np.int64),
            source=d.get("source", "custom"),
        )

    @classmethod
    def from_json(cls, s: str) -> "Hierarchy":
        """Rebuild a Hierarchy from :meth:`to_json` output."""
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(f"invalid Hierarchy JSON: {e}") from e
        return cls.from_dict(d)

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

    Args:
        X: (n, d) features (NumPy array, tensor or list).
        n_clusters: k >= 1.
        random_state: seed for the KMeans calls.
        strategy: "biggest_inertia" or "largest_cluster".
        n_init: KMeans restarts per split.
    Returns:
        labels (n,) in 0..k−1 (= leaf ids, numbered left to right) and the Hierarchy with the
        points attached. Heights record the split order (the first split is highest), so
        ``h.cut(n_clusters=j)`` is the clustering after j−1 splits and equals labels for j=k.
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
