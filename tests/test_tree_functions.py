"""Tests for the array functions of hiclust.hierarchy: they agree with the Hierarchy view, with
SciPy, and with brute force; check_linkage names what is wrong; exports round-trip exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.cluster.hierarchy import cut_tree, fcluster, is_valid_linkage
from scipy.cluster.hierarchy import leaves_list as scipy_leaves_list
from scipy.cluster.hierarchy import linkage as scipy_linkage

import hiclust.hierarchy as H
from hiclust import metrics
from hiclust.hierarchy import Hierarchy


def partition(labels) -> set[frozenset]:
    labels = np.asarray(labels).reshape(-1)
    return {frozenset(np.flatnonzero(labels == g).tolist()) for g in np.unique(labels)}


def random_trees():
    """(id, Hierarchy) over every kind of source: complete trees, linkages, bisecting k-means."""
    rng = np.random.default_rng(0)
    out = []
    for depth, n_pruned in ((0, 0), (1, 0), (3, 2), (4, 9), (5, 20)):
        pruned = rng.choice(2**depth, size=n_pruned, replace=False)
        out.append((f"complete-{depth}-{n_pruned}", Hierarchy.from_complete_tree(depth, pruned)))
    for method in ("single", "average", "ward", "centroid"):
        z = scipy_linkage(rng.normal(size=(23, 3)), method)
        out.append((f"linkage-{method}", Hierarchy.from_linkage(z)))
    _, hb = H.bisecting_kmeans(rng.normal(size=(80, 2)), 7, random_state=0)
    out.append(("bisecting", hb))
    return out


TREES = random_trees()


# ------------------------------------------------------------------ functions == Hierarchy
@pytest.mark.parametrize("tree_id,h", TREES, ids=[t[0] for t in TREES])
def test_functions_agree_with_hierarchy(tree_id, h):
    rng = np.random.default_rng(1)
    ch, kw = h.children_array, {"height": h.height, "node_level": h.level}
    n_points = 60
    leaf_of = rng.integers(0, h.n_leaves, n_points)
    y = rng.integers(0, 4, n_points)
    hp = h.with_points(leaf_of, y)

    for t in range(h.n_levels + 2):
        nodes, labels = H.cut_nodes(ch, level=t, **kw)
        h_nodes, h_labels = h.cut_nodes(level=t)
        assert np.array_equal(nodes, h_nodes) and np.array_equal(labels, h_labels)
        assert np.array_equal(H.cut(ch, level=t, leaf_of=leaf_of, **kw), hp.cut(level=t))
    for k in range(1, h.n_leaves + 1):
        assert np.array_equal(H.cut(ch, n_clusters=k, **kw), h.cut_nodes(n_clusters=k)[1])
        assert np.array_equal(H.cut(ch, n_clusters=k, leaf_of=leaf_of, **kw), hp.cut(n_clusters=k))

    assert H.level_metrics(ch, y, leaf_of=leaf_of, node_level=h.level) == hp.level_metrics()
    if h.n_levels >= 1:
        assert H.super_groups(ch, y, leaf_of=leaf_of, node_level=h.level, node_names=h.name) == hp.super_groups()
    if h.n_leaves > 1:
        assert H.dendrogram_purity(ch, y, leaf_of=leaf_of) == hp.dendrogram_purity()
        assert H.dendrogram_purity(ch, y, leaf_of=leaf_of) == pytest.approx(
            metrics.dendrogram_purity(y, h.to_linkage(), leaf_of=leaf_of), abs=1e-12)

    assert np.array_equal(H.to_linkage(ch, h.height), h.to_linkage())
    assert np.array_equal(H.leaves_list(ch), h.leaf_order)
    assert H.to_newick(ch, height=h.height) == h.to_newick()
    if h.name is not None:
        assert (H.to_newick(ch, height=h.height, node_names=h.name, branch_lengths=False)
                == h.to_newick(internal_names=True, branch_lengths=False))
    fields = {"height": hp.height, "level": hp.level, "name": hp.name, "heap_index": hp.heap_index,
              "leaf_of": hp.leaf_of, "y": hp.y, "source": hp.source}
    assert H.to_dict(ch, **fields) == hp.to_dict()
    assert H.to_json(ch, **fields) == hp.to_json()

    a, b = rng.integers(0, h.n_nodes, (2, 50))
    assert np.array_equal(H.lca(ch, a, b), h.lca_many(a, b))
    per_leaf = np.zeros(h.n_nodes, dtype=np.int64)
    per_leaf[: h.n_leaves] = np.bincount(leaf_of, minlength=h.n_leaves)
    assert np.array_equal(H.subtree_sums(ch, per_leaf), hp.counts)
    assert np.array_equal(H.subtree_sums(ch, np.r_[np.ones(h.n_leaves, int), np.zeros(h.n_leaves - 1, int)]), h.sizes)


def test_default_heights_and_levels_match_hierarchy_defaults():
    h = Hierarchy.from_linkage(scipy_linkage(np.random.default_rng(2).normal(size=(15, 2)), "average"))
    bare = Hierarchy(h.children_array)  # default height: longest downward path; level: depth
    ch = h.children_array
    assert np.array_equal(H.to_linkage(ch), bare.to_linkage())
    for k in range(1, h.n_leaves + 1):
        assert np.array_equal(H.cut(ch, n_clusters=k), bare.cut(n_clusters=k))
    for t in range(bare.n_levels + 1):
        assert np.array_equal(H.cut(ch, level=t), bare.cut(level=t))
    # a level cut at depth t: every leaf joins its ancestor at depth t (itself if shallower)
    for t in range(bare.max_depth + 1):
        expected = [int(np.r_[bare.ancestors(leaf)[::-1], leaf][min(t, bare.depth[leaf])])
                    for leaf in range(bare.n_leaves)]
        assert partition(H.cut(ch, level=t)) == partition(expected)


@pytest.mark.parametrize("depth,pruned", [(0, []), (3, [0, 1]), (4, [2, 3, 4, 5, 14])])
def test_complete_tree_matches_hierarchy(depth, pruned):
    children, heap_index = H.complete_tree(depth, pruned)
    h = Hierarchy.from_complete_tree(depth, pruned)
    assert np.array_equal(children, h.children_array) and np.array_equal(heap_index, h.heap_index)


def test_dendrogram_purity_against_brute_force():
    rng = np.random.default_rng(3)
    z = scipy_linkage(rng.normal(size=(9, 2)), "complete")
    children, _ = H.from_linkage(z)
    leaf_of = rng.integers(0, 9, 40)
    y = rng.integers(0, 3, 40)
    leaf_sets = [{v} for v in range(9)]
    for a, b in z[:, :2].astype(int):
        leaf_sets.append(leaf_sets[a] | leaf_sets[b])
    total = []
    for i in range(40):
        for j in range(i + 1, 40):
            if y[i] == y[j]:
                node = min((s for s in leaf_sets if {leaf_of[i], leaf_of[j]} <= s), key=len)
                under = np.isin(leaf_of, list(node))
                total.append(np.mean(y[under] == y[i]))
    assert H.dendrogram_purity(children, y, leaf_of=leaf_of) == pytest.approx(np.mean(total), abs=1e-12)


# ------------------------------------------------------------------ check_linkage
@pytest.mark.parametrize("method", ["single", "complete", "average", "weighted", "centroid", "median", "ward"])
def test_check_linkage_accepts_scipy_output(method):
    z = scipy_linkage(np.random.default_rng(4).normal(size=(30, 4)), method)
    out = H.check_linkage(z)
    assert out.dtype == np.float64 and np.array_equal(out, z) and out is not z
    assert np.array_equal(H.check_linkage(z.tolist()), z)  # lists too
    children, height = H.from_linkage(z)
    assert np.array_equal(H.to_linkage(children, height), z)


def test_check_linkage_accepts_inversions_and_a_single_leaf():
    inverted = np.array([[0, 1, 2.0, 2], [3, 2, 1.0, 3]])  # centroid-style: parent below child
    assert np.array_equal(H.check_linkage(inverted), inverted)
    assert H.check_linkage(np.zeros((0, 4))).shape == (0, 4)


def _good() -> np.ndarray:
    return np.array([[0, 1, 0.5, 2], [2, 3, 1.0, 2], [4, 5, 2.0, 4]])  # 4 leaves


def _with(i, j, value) -> np.ndarray:
    z = _good()
    z[i, j] = value
    return z


@pytest.mark.parametrize("bad,error,pattern", [
    (_good()[:, :3], ValueError, r"shape \(n_leaves - 1, 4\), got shape \(3, 3\)"),
    (_good().ravel(), ValueError, r"got shape \(12,\)"),
    (_with(0, 2, np.nan), ValueError, "NaN or infinite"),
    (_with(1, 3, np.inf), ValueError, "NaN or infinite"),
    (_with(0, 1, 1.5), ValueError, "must be integers"),
    (_with(1, 0, -1), ValueError, "row 1 holds a negative id -1"),
    (_with(0, 1, 4), ValueError, "row 0 merges node 4 before it is formed"),
    (_with(2, 0, 9), ValueError, "row 2 merges node 9 before it is formed"),
    (_with(1, 0, 1), ValueError, "merges node 1 more than once"),
    (_with(2, 1, 4), ValueError, "merges node 4 more than once"),
    (_with(1, 2, -0.5), ValueError, r"row 1 has negative height -0\.5"),
    (_with(2, 3, 5), ValueError, "row 2 counts 5 leaves in column 3, but the nodes it merges hold 4"),
    (_with(0, 3, 1), ValueError, "row 0 counts 1 leaves"),
    (np.array([["a"] * 4] * 3), TypeError, "must be numeric"),
])
def test_check_linkage_rejects_malformed(bad, error, pattern):
    with pytest.raises(error, match=pattern):
        H.check_linkage(bad)
    with pytest.raises(error, match="^linkage "):  # the caller's name for the matrix
        H.check_linkage(bad, name="linkage")


def test_check_linkage_rejects_what_scipy_rejects():
    # the structural faults are faults for SciPy too; counts that do not add up are ours
    for bad in (_with(1, 0, -1), _with(0, 1, 4), _with(1, 0, 1), _with(1, 2, -0.5)):
        assert not is_valid_linkage(bad)
        with pytest.raises(ValueError):
            H.check_linkage(bad)
    assert is_valid_linkage(_good()) and np.array_equal(H.check_linkage(_good()), _good())


def test_from_linkage_reads_tree_and_heights_only():
    # counts of points instead of leaves (a tree over clusters) are accepted by the reader
    z = np.array([[0, 1, 0.5, 30], [2, 3, 1.0, 50]])
    with pytest.raises(ValueError, match="counts 30 leaves"):
        H.check_linkage(z)
    children, height = H.from_linkage(z)
    assert children.tolist() == [[-1, -1]] * 3 + [[0, 1], [2, 3]]
    assert height.tolist() == [0, 0, 0, 0.5, 1.0]
    assert H.to_linkage(children, height)[:, 3].tolist() == [2, 3]  # counts recomputed
    with pytest.raises(ValueError, match="before it is formed"):
        H.from_linkage(_with(0, 1, 4))


@pytest.mark.parametrize("bad,pattern", [
    (np.full((4, 2), -1), r"shape \(2L-1, 2\)"),
    (np.array([[-1, -1], [-1, -1], [0.5, 1]]), "integer node ids"),
    (np.array([[-1, -1], [0, 1], [0, 1]]), "must be leaves"),
    (np.array([[-1, -1], [-1, -1], [0, 2]]), "children come before parents"),
    (np.array([[-1, -1]] * 3 + [[0, 0], [1, 3]]), "needs exactly one parent"),
    (np.array([[-1, -1], [-1, -1], [-1, 1]]), "negative id"),
])
def test_check_children_rejects_malformed(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        H.check_children(bad)


# ------------------------------------------------------------------ cuts against SciPy
@pytest.mark.parametrize("method", ["single", "complete", "average", "ward"])
@pytest.mark.parametrize("seed", range(3))
def test_cut_n_clusters_matches_fcluster_and_cut_tree(method, seed):
    z = scipy_linkage(np.random.default_rng(seed).normal(size=(26, 3)), method)
    assert np.unique(z[:, 2]).size == z.shape[0]  # distinct heights: the k-cut is unique
    children, height = H.from_linkage(z)
    for k in range(1, 27):
        ours = H.cut(children, n_clusters=k, height=height)
        assert np.unique(ours).size == k
        assert partition(ours) == partition(fcluster(z, k, criterion="maxclust"))
        assert partition(ours) == partition(cut_tree(z, n_clusters=k))
    assert np.array_equal(H.leaves_list(children), scipy_leaves_list(z))


def test_cut_errors():
    children, _ = H.complete_tree(2)
    with pytest.raises(ValueError, match="exactly one"):
        H.cut(children)
    with pytest.raises(ValueError, match="n_clusters must be an integer in 1..4"):
        H.cut(children, n_clusters=5)
    with pytest.raises(ValueError, match="level must be an integer >= 0"):
        H.cut(children, level=-1)
    with pytest.raises(ValueError, match="node_level must be >= 0 and increase strictly"):
        H.cut(children, level=1, node_level=np.zeros(7, int))
    with pytest.raises(ValueError, match=r"height must have shape \(7,\)"):
        H.cut(children, n_clusters=2, height=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"leaf_of must lie in 0\.\.3"):
        H.cut(children, level=1, leaf_of=[0, 4])
    with pytest.raises(ValueError, match="pass leaf_of"):
        H.level_metrics(children, [0, 1, 0])


# ------------------------------------------------------------------ exports round-trip exactly
def test_json_round_trip_exact():
    rng = np.random.default_rng(5)
    z = scipy_linkage(rng.normal(size=(20, 3)), "ward")  # irrational heights
    children, height = H.from_linkage(z)
    leaf_of, y = rng.integers(0, 20, 50), rng.integers(0, 3, 50)
    s = H.to_json(children, height=height, leaf_of=leaf_of, y=y, source="test")
    f = H.from_json(s)
    assert np.array_equal(f["children"], children) and f["children"].dtype == np.int64
    assert np.array_equal(f["height"], height) and f["height"].dtype == np.float64  # bit-exact floats
    assert np.array_equal(f["leaf_of"], leaf_of) and np.array_equal(f["y"], y)
    assert f["source"] == "test" and f["name"] is None and f["heap_index"] is None
    assert H.to_json(**f) == s
    assert H.from_dict(json.loads(s)).keys() == f.keys()
    assert Hierarchy(**f).to_json() == s == Hierarchy.from_json(s).to_json()
    h = Hierarchy.from_complete_tree(4, [1, 5, 6])
    f = H.from_dict(h.to_dict())
    assert f["name"] == h.name and np.array_equal(f["heap_index"], h.heap_index)
    with pytest.raises(ValueError, match="not a serialized Hierarchy"):
        H.from_json(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="y was given without leaf_of"):
        H.to_dict(children, y=y)


def parse_newick(s: str) -> tuple[list[str], list[tuple[frozenset, float]]]:
    """Leaves in text order and (leaf set, branch length) of every non-root node."""
    pos = 0
    order: list[str] = []
    branches: list[tuple[frozenset, float]] = []

    def name() -> str:
        nonlocal pos
        start = pos
        while s[pos] not in ",():;":
            pos += 1
        return s[start:pos]

    def length() -> float:
        nonlocal pos
        assert s[pos] == ":"
        pos += 1
        return float(name())

    def node(is_root: bool) -> frozenset:
        nonlocal pos
        if s[pos] == "(":
            pos += 1
            leaves = node(False)
            while s[pos] == ",":
                pos += 1
                leaves |= node(False)
            assert s[pos] == ")"
            pos += 1
            name()  # internal label, not used here
        else:
            leaves = frozenset([name()])
            order.append(next(iter(leaves)))
        if not is_root:
            branches.append((leaves, length()))
        return leaves

    node(True)
    assert s[pos:] == ";"
    return order, branches


@pytest.mark.parametrize("tree_id,h", TREES, ids=[t[0] for t in TREES])
def test_newick_round_trip_exact(tree_id, h):
    order, branches = parse_newick(H.to_newick(h.children_array, height=h.height))
    assert order == [str(v) for v in H.leaves_list(h.children_array)]
    expected = {(frozenset(str(v) for v in h.leaves_under(u)), float(h.height[h.parent[u]] - h.height[u]))
                for u in range(h.n_nodes) if u != h.root}
    assert set(branches) == expected and len(branches) == h.n_nodes - 1  # lengths bit-exact


# ------------------------------------------------------------------ the Hierarchy view
def test_hierarchy_is_immutable_and_with_points_is_a_new_view():
    h = Hierarchy.from_complete_tree(3, [0, 7])
    for arr in (h.children_array, h.height, h.level, h.parent, h.depth, h.sizes, h.heap_index,
                h.leaf_order, h.leaf_position):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1
    with pytest.raises(AttributeError, match="immutable"):
        h.height = np.zeros(h.n_nodes)
    with pytest.raises(AttributeError, match="immutable"):
        del h.name
    assert isinstance(h.name, tuple)
    hp = h.with_points([0, 1, 1, 5], [2, 2, 3, 3])
    assert h.leaf_of is None and h.counts is None  # the original is untouched
    assert hp.counts[hp.root] == 4 and hp.classes.tolist() == [2, 3]
    assert hp.children_array is h.children_array  # the tree is shared, not copied
    with pytest.raises(ValueError, match="read-only"):
        hp.leaf_of[0] = 3
    assert hp.with_points([0]).y is None and hp.y is not None
    # fit_points is the same new-view operation (scikit-learn's name for it)
    fp = h.fit_points([2, 2])
    assert fp is not h and fp.counts[fp.root] == 2 and h.leaf_of is None


def test_constructor_does_not_freeze_or_share_caller_arrays():
    children = np.array([[-1, -1], [-1, -1], [0, 1]])
    level = np.array([1, 1, 0])
    leaf_of = np.array([0, 1, 1])
    h = Hierarchy(children, level=level, leaf_of=leaf_of)
    assert children.flags.writeable and level.flags.writeable and leaf_of.flags.writeable
    level[0] = 5
    assert h.level[0] == 1
