"""Tests for hiclust.hierarchy.Hierarchy against brute force and SciPy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.cluster.hierarchy import dendrogram, fcluster, is_valid_linkage
from scipy.cluster.hierarchy import linkage as scipy_linkage
from sklearn.cluster import BisectingKMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from hiclust.hierarchy import Hierarchy, bisecting_kmeans
from hiclust.metrics import dendrogram_purity

PRUNE_CASES = [
    (1, []),
    (2, []),
    (2, [0]),
    (3, [0, 1]),
    (3, [0, 1, 2]),
    (3, [1, 6]),
    (4, [0, 3, 4, 5, 9, 15]),
    (5, list(range(0, 32, 3))),
    (5, list(range(1, 31))),
]


# ------------------------------------------------------------------ brute-force helpers
def leaf_sets_of_linkage(Z: np.ndarray) -> list[frozenset]:
    """Leaf set of every internal node, by plain recursion over the linkage rows."""
    n = Z.shape[0] + 1
    sets: list[frozenset] = [frozenset([i]) for i in range(n)]
    for a, b in Z[:, :2].astype(int):
        sets.append(sets[a] | sets[b])
    return sets[n:]


def group_partition(labels) -> set[frozenset]:
    labels = np.asarray(labels)
    return {frozenset(np.flatnonzero(labels == g).tolist()) for g in np.unique(labels)}


def parse_newick(s: str):
    """Tiny recursive Newick parser: returns (nested tree, {node: branch length}).

    A tree is a leaf name (str) or a tuple of subtrees; branch lengths are returned in a list
    in pre-order next to the structure.
    """
    assert s.endswith(";")
    pos = 0

    def name():
        nonlocal pos
        if s[pos] == "'":
            end = pos + 1
            out = []
            while True:
                if s[end] == "'" and s[end + 1: end + 2] == "'":
                    out.append("'")
                    end += 2
                elif s[end] == "'":
                    break
                else:
                    out.append(s[end])
                    end += 1
            pos = end + 1
            return "".join(out)
        start = pos
        while s[pos] not in ",():;":
            pos += 1
        return s[start:pos]

    def length():
        nonlocal pos
        if s[pos] != ":":
            return None
        pos += 1
        start = pos
        while s[pos] not in ",();":
            pos += 1
        return float(s[start:pos])

    def node():
        nonlocal pos
        if s[pos] == "(":
            pos += 1
            kids = [node()]
            while s[pos] == ",":
                pos += 1
                kids.append(node())
            assert s[pos] == ")"
            pos += 1
            label = name()
            return {"kids": kids, "name": label, "len": length()}
        label = name()
        return {"leaf": label, "len": length()}

    tree = node()
    assert s[pos] == ";"
    return tree


def newick_leaf_sets(tree, out, depth_len=0.0, leaf_dist=None):
    """Collect leaf sets of internal nodes; leaf_dist[name] = summed branch length from root."""
    if "leaf" in tree:
        if leaf_dist is not None:
            leaf_dist[tree["leaf"]] = depth_len
        return frozenset([tree["leaf"]])
    s = frozenset()
    for k in tree["kids"]:
        s |= newick_leaf_sets(k, out, depth_len + (k["len"] or 0.0), leaf_dist)
    out.append(s)
    return s


def brute_dp(y, Z, leaf_of):
    n_leaves = Z.shape[0] + 1
    sets = [frozenset([i]) for i in range(n_leaves)] + leaf_sets_of_linkage(Z)
    total, count = 0.0, 0
    for i in range(len(y)):
        for j in range(i + 1, len(y)):
            if y[i] != y[j]:
                continue
            node = min((s for s in sets if leaf_of[i] in s and leaf_of[j] in s), key=len)
            pts = [p for p in range(len(y)) if leaf_of[p] in node]
            total += sum(y[p] == y[i] for p in pts) / len(pts)
            count += 1
    return total / count


def random_tree(seed: int, n: int = 25, method: str = "average") -> tuple[Hierarchy, np.ndarray]:
    Z = scipy_linkage(np.random.default_rng(seed).normal(size=(n, 2)), method)
    return Hierarchy.from_linkage(Z), Z


# ------------------------------------------------------------------ complete tree
@pytest.mark.parametrize("T,pruned", PRUNE_CASES)
def test_complete_tree_leaves_and_level_cuts(T, pruned):
    h = Hierarchy.from_complete_tree(T, pruned)
    survivors = np.array(sorted(set(range(2**T)) - set(pruned)))  # original leaf index per leaf id
    K = survivors.size
    assert h.n_leaves == K and h.n_nodes == 2 * K - 1
    assert np.array_equal(h.heap_index[:K], survivors + 2**T - 1)
    assert h.n_levels == T
    for t in range(T + 1):
        labels = h.cut(level=t)
        # brute force: the level-t node of the complete tree over each leaf, ranked
        anc = survivors >> (T - t)
        expected = np.searchsorted(np.unique(anc), anc)
        assert np.array_equal(labels, expected)
        assert labels.max() + 1 == np.unique(anc).size  # 2^t minus empty level-t nodes
        if not pruned:
            assert labels.max() + 1 == 2**t
            assert np.array_equal(h.cut(n_clusters=2**t), labels)


@pytest.mark.parametrize("T,pruned", PRUNE_CASES)
def test_complete_tree_linkage_scipy(T, pruned):
    h = Hierarchy.from_complete_tree(T, pruned)
    Z = h.to_linkage()
    if h.n_leaves >= 2:
        assert is_valid_linkage(Z)
        assert dendrogram(Z, no_plot=True)["leaves"] == list(range(h.n_leaves))
        # heights are T - level: fcluster at distance T - t reproduces cut(level=t)
        for t in range(1, T + 1):
            f = fcluster(Z, T - t, criterion="distance")
            assert group_partition(f) == group_partition(h.cut(level=t))
    # every internal node is a real split with a monotone height
    inner = np.arange(h.n_leaves, h.n_nodes)
    assert np.all(h.height[h.children_array[inner]] < h.height[inner, None])


def test_complete_tree_metadata():
    h = Hierarchy.from_complete_tree(3, pruned_leaves=[0, 1])
    # left subtree keeps only leaves 2,3 under heap node 4 ("LR"); node 1 ("L") is collapsed
    assert "L" not in h.name and "LR" in h.name
    assert h.name[h.root] == "" and h.heap_index[h.root] == 0
    v = h.name.index("LR")
    assert h.heap_index[v] == 4 and h.level[v] == 2 and h.depth_of(v) == 1
    assert h.parent[v] == h.root
    assert [h.name[i] for i in range(h.n_leaves)] == ["LRL", "LRR", "RLL", "RLR", "RRL", "RRR"]
    # level 2 has 3 non-empty nodes; cutting by depth would give 4 groups here
    assert h.cut(level=2).max() + 1 == 3


def test_complete_tree_errors():
    with pytest.raises(ValueError, match="lie in 0..7"):
        Hierarchy.from_complete_tree(3, [8])
    with pytest.raises(ValueError, match="duplicates"):
        Hierarchy.from_complete_tree(3, [1, 1])
    with pytest.raises(ValueError, match="every leaf"):
        Hierarchy.from_complete_tree(1, [0, 1])
    with pytest.raises(ValueError, match="integer >= 0"):
        Hierarchy.from_complete_tree(-1)


# ------------------------------------------------------------------ serialization
def _assert_same(h: Hierarchy, g: Hierarchy) -> None:
    for attr in ("children_array", "parent", "depth", "height", "level", "sizes", "heap_index",
                 "leaf_of", "y", "counts", "class_counts", "classes"):
        a, b = getattr(h, attr), getattr(g, attr)
        if a is None:
            assert b is None, attr
        else:
            assert a.dtype == b.dtype and np.array_equal(a, b), attr
    assert h.name == g.name and h.source == g.source


def test_json_round_trip_exact():
    rng = np.random.default_rng(0)
    h = Hierarchy.from_complete_tree(4, [0, 3, 9])
    h = h.fit_points(rng.integers(0, h.n_leaves, 100), rng.integers(0, 5, 100))
    Z = scipy_linkage(rng.normal(size=(20, 3)), "ward")  # irrational heights
    labels, hb = bisecting_kmeans(rng.normal(size=(60, 2)), 6, random_state=0)
    for tree in (h, Hierarchy.from_linkage(Z), hb):
        s = tree.to_json()
        g = Hierarchy.from_json(s)
        assert g.to_json() == s
        _assert_same(tree, g)
    assert np.array_equal(Hierarchy.from_json(Hierarchy.from_linkage(Z).to_json()).to_linkage(), Z)
    with pytest.raises(ValueError, match="not a serialized Hierarchy"):
        Hierarchy.from_json(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="invalid Hierarchy JSON"):
        Hierarchy.from_json("{")


@pytest.mark.parametrize("which", ["complete", "linkage"])
def test_newick_round_trip_topology(which):
    if which == "complete":
        h = Hierarchy.from_complete_tree(4, [1, 2, 7, 8, 9])
        names = [f"c {i}'x" for i in range(h.n_leaves)]  # needs quoting
    else:
        h, _ = random_tree(1, 30)
        names = None
    s = h.to_newick(leaf_names=names)
    tree = parse_newick(s)
    leaf_dist: dict[str, float] = {}
    sets: list[frozenset] = []
    newick_leaf_sets(tree, sets, 0.0, leaf_dist)
    names = names or [str(i) for i in range(h.n_leaves)]
    expected = {frozenset(names[i] for i in h.leaves_under(v)) for v in range(h.n_leaves, h.n_nodes)}
    assert set(sets) == expected and len(sets) == h.n_leaves - 1
    # branch lengths sum to the root height minus the leaf height (0)
    for i, nm in enumerate(names):
        assert leaf_dist[nm] == pytest.approx(h.height[h.root])
    # internal names (heap paths) appear on the complete tree
    if which == "complete":
        t2 = parse_newick(h.to_newick(internal_names=True, branch_lengths=False))
        assert t2["name"] == "" and {k["name"] for k in t2["kids"]} == {"L", "R"}


# ------------------------------------------------------------------ DP, LCA, structure
@pytest.mark.parametrize("seed", range(4))
def test_dp_hierarchy_linkage_brute_force(seed):
    rng = np.random.default_rng(seed)
    h = Hierarchy.from_complete_tree(3, rng.choice(8, size=seed, replace=False))
    leaf_of = rng.integers(0, h.n_leaves, 40)
    y = rng.integers(0, 3, 40)
    h = h.fit_points(leaf_of, y)
    dp_h = h.dendrogram_purity()
    dp_z = dendrogram_purity(y, h.to_linkage(), leaf_of=leaf_of)
    assert dp_h == pytest.approx(dp_z, abs=1e-12)
    assert dp_h == pytest.approx(brute_dp(y, h.to_linkage(), leaf_of), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_lca_and_ancestors_against_brute_force(seed):
    h, Z = random_tree(seed, 25, "single")
    sets = [frozenset([i]) for i in range(h.n_leaves)] + leaf_sets_of_linkage(Z)
    a, b = np.meshgrid(np.arange(h.n_leaves), np.arange(h.n_leaves))
    got = h.lca_many(a.ravel(), b.ravel())
    for i, j, v in zip(a.ravel(), b.ravel(), got):
        brute = min(range(len(sets)), key=lambda u: (len(sets[u]) if {i, j} <= sets[u] else 10**9))
        assert v == brute
    assert h.lca(3, 3) == 3
    for v in range(h.n_nodes):
        anc = h.ancestors(v)
        expected = sorted((u for u in range(h.n_nodes) if sets[v] < sets[u]), key=lambda u: len(sets[u]))
        assert anc.tolist() == expected
        assert set(h.leaves_under(v).tolist()) == sets[v]
        assert h.sizes[v] == len(sets[v]) and h.depth_of(v) == len(expected)


@pytest.mark.parametrize("method", ["single", "average", "complete", "ward"])
def test_from_linkage_round_trip(method):
    h, Z = random_tree(7, 30, method)
    Z2 = h.to_linkage()
    assert leaf_sets_of_linkage(Z2) == leaf_sets_of_linkage(Z)
    assert np.array_equal(Z2, Z)
    # cut(n_clusters=k) cuts the k-1 highest merges, like fcluster maxclust (no height ties here)
    for k in (1, 2, 5, 11, 30):
        assert group_partition(h.cut(n_clusters=k)) == group_partition(fcluster(Z, k, "maxclust"))
    assert np.array_equal(h.leaf_order, dendrogram(Z, no_plot=True)["leaves"])


def test_points_counts_and_contingency():
    rng = np.random.default_rng(5)
    h, _ = random_tree(5, 12)
    leaf_of = rng.integers(0, 12, 80)
    y = rng.choice([3, 7, 9], 80)
    h = h.fit_points(leaf_of, y)
    assert h.classes.tolist() == [3, 7, 9]
    for v in range(h.n_nodes):
        pts = np.flatnonzero(np.isin(leaf_of, h.leaves_under(v)))
        assert np.array_equal(h.points_of(v), pts)
        assert h.counts[v] == pts.size
        assert h.class_counts[v].tolist() == [int(np.sum(y[pts] == c)) for c in (3, 7, 9)]
    cont = h.contingency()
    assert np.array_equal(cont, h.class_counts[: h.n_leaves])
    # cut labels of points follow their leaves
    assert np.array_equal(h.cut(n_clusters=4), h.cut_nodes(n_clusters=4)[1][leaf_of])


def test_level_metrics_and_super_groups():
    h = Hierarchy.from_complete_tree(2)
    leaf_of = np.repeat(np.arange(4), 5)
    y = np.array([0] * 10 + [1] * 5 + [2] * 5)  # leaves 0,1: class 0; leaf 2: class 1; leaf 3: class 2
    h = h.fit_points(leaf_of, y)
    lm = h.level_metrics()
    assert [m["n_groups"] for m in lm] == [2, 4]
    assert lm[0]["acc"] == pytest.approx(15 / 20)  # level 1: {0,0} vs {1,2}
    assert lm[1]["acc"] == pytest.approx(15 / 20)  # level 2: one class-0 leaf is unmatched
    assert lm[1]["nmi"] == pytest.approx(normalized_mutual_info_score(y, leaf_of))
    sg = h.super_groups(level=1)
    assert [g["name"] for g in sg] == ["L", "R"]
    assert [g["size"] for g in sg] == [10, 10]
    assert sg[0]["top"] == [(0, 1.0)]
    assert sg[1]["top"] == [(1, 0.5), (2, 0.5)]


def test_bisecting_kmeans():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10, size=(6, 2))
    X = np.concatenate([c + rng.normal(size=(30, 2)) for c in centers])
    labels, h = bisecting_kmeans(X, 6, random_state=0)
    assert h.n_leaves == 6 and np.unique(labels).size == 6
    assert np.array_equal(h.cut(n_clusters=6), labels)
    # coarser cuts replay earlier splits: each is a coarsening of the finer one
    for k in range(1, 6):
        coarse, fine = h.cut(n_clusters=k), h.cut(n_clusters=k + 1)
        assert np.unique(coarse).size == k
        assert all(np.unique(coarse[fine == g]).size == 1 for g in np.unique(fine))
    truth = np.repeat(np.arange(6), 30)
    assert adjusted_rand_score(truth, labels) > 0.9

    model = BisectingKMeans(n_clusters=5, random_state=0).fit(X)
    hm = Hierarchy.from_bisecting_kmeans(model)
    assert hm.n_leaves == 5
    assert np.array_equal(hm.leaf_of, model.labels_)
    assert group_partition(hm.cut(n_clusters=5)) == group_partition(model.labels_)
    with pytest.raises(ValueError, match="fitted sklearn.cluster.BisectingKMeans"):
        Hierarchy.from_bisecting_kmeans(BisectingKMeans(n_clusters=2))
    with pytest.raises(ValueError, match="identical points"):
        bisecting_kmeans(np.zeros((5, 2)), 2)


def test_bad_input():
    h = Hierarchy.from_complete_tree(2)
    with pytest.raises(ValueError, match="exactly one"):
        h.cut(level=1, n_clusters=2)
    with pytest.raises(ValueError, match="n_clusters must be"):
        h.cut(n_clusters=5)
    with pytest.raises(ValueError, match="no points attached"):
        h.points_of(0)
    with pytest.raises(ValueError, match=r"leaf_of must lie in 0\.\.3"):
        h = h.fit_points([0, 4])
    with pytest.raises(ValueError, match="node must be in"):
        h.children(99)
    with pytest.raises(ValueError, match="one parent"):
        Hierarchy(np.array([[-1, -1], [-1, -1], [-1, -1], [0, 0], [1, 3]]))
    with pytest.raises(ValueError, match="children come before parents"):
        Hierarchy(np.array([[-1, -1], [-1, -1], [0, 2]]))
    with pytest.raises(ValueError, match="increase strictly"):
        Hierarchy(np.array([[-1, -1], [-1, -1], [0, 1]]), level=[1, 1, 1])
    assert h.children(h.root) == (4, 5) and h.children(0) == ()


def test_cut_n_clusters_with_tied_and_inverted_heights():
    # parent and child at the same height: the parent (shallower) must split first
    tied = Hierarchy.from_linkage(np.array([[0, 1, 1.0, 2], [3, 2, 1.0, 3]]))
    assert tied.cut(n_clusters=2).tolist() == [0, 0, 1]
    assert tied.cut(n_clusters=3).tolist() == [0, 1, 2]
    # centroid-style inversion (child higher than parent): still top-down
    inv = Hierarchy.from_linkage(np.array([[0, 1, 2.0, 2], [3, 2, 1.0, 3]]))
    assert inv.cut(n_clusters=2).tolist() == [0, 0, 1]
    # two subtrees: the higher one splits first whatever its side
    z = np.array([[0, 1, 1.0, 2], [2, 3, 3.0, 2], [4, 5, 5.0, 4]])
    assert Hierarchy.from_linkage(z).cut(n_clusters=3).tolist() == [0, 0, 1, 2]
