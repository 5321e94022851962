"""Tests for hiclust.metrics against brute force and known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import linkage as scipy_linkage

from hiclust.metrics import (
    ari,
    clustering_accuracy,
    dendrogram_purity,
    evaluate,
    leaf_purity,
    nmi,
)

HYP = settings(max_examples=40, deadline=None)


# ------------------------------------------------------------------ brute forces
def brute_acc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Best one-to-one map of clusters to classes, by enumerating permutations."""
    n_lab = max(y_true.max(), y_pred.max()) + 1  # pad so every injective map is some permutation
    best = 0
    for perm in itertools.permutations(range(n_lab)):
        best = max(best, int(np.sum(np.asarray(perm)[y_pred] == y_true)))
    return best / y_true.size


def brute_dp(y: np.ndarray, Z: np.ndarray, leaf_of: np.ndarray | None = None) -> float:
    """Dendrogram purity by enumerating every same-class pair and walking up parents."""
    n_leaves = Z.shape[0] + 1
    leaf_of = np.arange(n_leaves) if leaf_of is None else leaf_of
    parent = {}
    for i, (a, b) in enumerate(Z[:, :2].astype(int)):
        parent[a] = parent[b] = n_leaves + i

    def path_up(v):
        out = [v]
        while out[-1] in parent:
            out.append(parent[out[-1]])
        return out

    paths = [path_up(v) for v in range(n_leaves)]
    # points under each node
    under = {v: set() for v in range(2 * n_leaves - 1)}
    for p, leaf in enumerate(leaf_of):
        for v in paths[leaf]:
            under[v].add(p)
    total, count = 0.0, 0
    n = len(y)
    for i in range(n):
        for j in range(i + 1, n):
            if y[i] != y[j]:
                continue
            anc_j = set(paths[leaf_of[j]])
            lca = next(v for v in paths[leaf_of[i]] if v in anc_j)
            desc = under[lca]
            total += sum(1 for p in desc if y[p] == y[i]) / len(desc)
            count += 1
    return total / count


def relabel_leaves(Z: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """The same tree with leaf v renamed perm[v]."""
    Z = Z.copy()
    n_leaves = Z.shape[0] + 1
    ids = Z[:, :2].astype(int)
    leaf = ids < n_leaves
    ids[leaf] = perm[ids[leaf]]
    Z[:, :2] = ids
    return Z


# ------------------------------------------------------------------ ACC
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_classes,n_clusters", [(3, 3), (4, 2), (2, 5), (5, 5), (3, 6)])
def test_acc_matches_brute_force(seed, n_classes, n_clusters):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, 40)
    p = rng.integers(0, n_clusters, 40)
    assert clustering_accuracy(y, p) == pytest.approx(brute_acc(y, p), abs=1e-12)


def test_acc_known_answers():
    y = [0, 0, 1, 1, 2, 2]
    assert clustering_accuracy(y, y) == 1.0
    assert clustering_accuracy(y, [2, 2, 0, 0, 1, 1]) == 1.0
    assert clustering_accuracy(y, [0, 0, 0, 0, 0, 0]) == pytest.approx(1 / 3)
    # two clusters for three classes: one class is necessarily wrong
    assert clustering_accuracy(y, [0, 0, 1, 1, 1, 1]) == pytest.approx(4 / 6)


def test_accepts_tensors_and_lists():
    y = np.array([0, 1, 1, 2, 2, 2])
    p = np.array([1, 0, 0, 2, 2, 1])
    ref = clustering_accuracy(y, p)
    assert clustering_accuracy(torch.tensor(y), torch.tensor(p)) == ref
    assert clustering_accuracy(y.tolist(), p.astype(np.float32)) == ref
    out = evaluate(torch.tensor(y), p.tolist())
    assert all(type(v) is float for v in out.values())
    assert set(out) == {"acc", "nmi", "ari", "leaf_purity"}


def test_nmi_ari_known_answers():
    y = [0, 0, 1, 1]
    assert nmi(y, [1, 1, 0, 0]) == pytest.approx(1.0)
    assert ari(y, [1, 1, 0, 0]) == pytest.approx(1.0)
    assert nmi(y, [0, 1, 0, 1]) == pytest.approx(0.0)
    assert ari(y, [0, 1, 0, 1]) == pytest.approx(-0.5)


# ------------------------------------------------------------------ leaf purity
def test_leaf_purity_known_answers():
    assert leaf_purity([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    assert leaf_purity([0, 0, 1, 1], [0, 0, 0, 0]) == 0.5
    # cluster 0 majority class 0 (2 of 3), cluster 1 majority class 1 (3 of 3)
    assert leaf_purity([0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]) == pytest.approx(5 / 6)
    # one point per cluster: every point is its cluster's majority
    assert leaf_purity([0, 1, 2, 0], [0, 1, 2, 3]) == 1.0


# ------------------------------------------------------------------ dendrogram purity
@pytest.mark.parametrize("seed", range(6))
def test_dp_matches_brute_force_point_leaves(seed):
    rng = np.random.default_rng(seed)
    n = 30
    X = rng.normal(size=(n, 2))
    y = rng.integers(0, 4, n)
    for method in ("single", "average", "ward"):
        Z = scipy_linkage(X, method=method)
        assert dendrogram_purity(y, Z) == pytest.approx(brute_dp(y, Z), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_dp_matches_brute_force_with_leaf_of(seed):
    rng = np.random.default_rng(100 + seed)
    n_leaves, n = 9, 60
    Z = scipy_linkage(rng.normal(size=(n_leaves, 3)), method="average")
    leaf_of = rng.integers(0, n_leaves, n)  # several points per leaf, maybe empty leaves
    y = rng.integers(0, 3, n)
    got = dendrogram_purity(y, Z, leaf_of=leaf_of)
    assert got == pytest.approx(brute_dp(y, Z, leaf_of), abs=1e-12)
    assert got == pytest.approx(dendrogram_purity(torch.tensor(y), Z, leaf_of=torch.tensor(leaf_of)))


def test_dp_perfect_separation_and_known_value():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    X = y[:, None] * 100.0 + rng.normal(size=(40, 2))  # classes far apart: each is a subtree
    assert dendrogram_purity(y, scipy_linkage(X, "single")) == pytest.approx(1.0)
    # hand example: leaves 0,1 merged first, then 2. Points: leaf0 {a0,a0}, leaf1 {a0,b1}, leaf2 {b1}
    Z = np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])
    y = np.array([0, 0, 0, 1, 1])
    leaf_of = np.array([0, 0, 1, 1, 2])
    # class 0 pairs: (0,1) leaf0 purity 1; (0,2),(1,2) LCA node3 {0,0,0,1} purity 3/4
    # class 1 pair: (3,4) LCA root, purity 2/5
    expected = (1 + 0.75 + 0.75 + 0.4) / 4
    assert dendrogram_purity(y, Z, leaf_of) == pytest.approx(expected)


def test_single_leaf_linkage():
    Z = np.zeros((0, 4))
    assert dendrogram_purity([0, 0, 1], Z, leaf_of=[0, 0, 0]) == pytest.approx((2 / 3 * 1) / 1)


def test_evaluate_with_linkage_uses_clusters_as_leaves():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 50)
    p = rng.integers(0, 5, 50)
    Z = scipy_linkage(rng.normal(size=(5, 2)), "average")
    out = evaluate(y, p, linkage=Z)
    assert out["dp"] == pytest.approx(brute_dp(y, Z, p), abs=1e-12)
    assert out["acc"] == pytest.approx(brute_acc(y, p))


# ------------------------------------------------------------------ properties
labels_st = st.integers(min_value=2, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
        st.permutations(range(5)),
        st.integers(0, 2**31 - 1),
    )
)


@HYP
@given(labels_st)
def test_metrics_invariant_to_cluster_relabeling(data):
    y, p, perm, seed = data
    y, p, perm = np.array(y), np.array(p), np.array(perm)
    q = perm[p]
    assert clustering_accuracy(y, q) == pytest.approx(clustering_accuracy(y, p), abs=1e-12)
    assert nmi(y, q) == pytest.approx(nmi(y, p), abs=1e-12)
    assert ari(y, q) == pytest.approx(ari(y, p), abs=1e-12)
    assert leaf_purity(y, q) == pytest.approx(leaf_purity(y, p), abs=1e-12)
    if len(set(y.tolist())) < len(y):  # DP needs a same-class pair
        Z = scipy_linkage(np.random.default_rng(seed).normal(size=(5, 2)), "average")
        dp = dendrogram_purity(y, Z, leaf_of=p)
        assert dendrogram_purity(y, relabel_leaves(Z, perm), leaf_of=q) == pytest.approx(dp, abs=1e-12)
        # and invariant to relabeling classes
        assert dendrogram_purity(perm[y], Z, leaf_of=p) == pytest.approx(dp, abs=1e-12)


@HYP
@given(labels_st)
def test_metric_bounds(data):
    y, p, _, seed = data
    y, p = np.array(y), np.array(p)
    for v in (clustering_accuracy(y, p), nmi(y, p), leaf_purity(y, p)):
        assert -1e-12 <= v <= 1 + 1e-12
    assert -1 <= ari(y, p) <= 1 + 1e-12
    assert clustering_accuracy(y, p) <= leaf_purity(y, p) + 1e-12  # a matching is one choice of majorities
    if len(set(y.tolist())) < len(y):
        Z = scipy_linkage(np.random.default_rng(seed).normal(size=(5, 2)), "single")
        assert 0 < dendrogram_purity(y, Z, leaf_of=p) <= 1 + 1e-12


@HYP
@given(st.lists(st.integers(0, 5), min_size=2, max_size=50), st.integers(0, 2**31 - 1))
def test_dp_is_one_when_leaves_are_classes(y, seed):
    y = np.array(y)
    if len(set(y.tolist())) == len(y):
        return
    n_leaves = int(y.max()) + 1
    if n_leaves == 1:
        Z = np.zeros((0, 4))
    else:
        Z = scipy_linkage(np.random.default_rng(seed).normal(size=(n_leaves, 2)), "complete")
    assert dendrogram_purity(y, Z, leaf_of=y) == pytest.approx(1.0)


# ------------------------------------------------------------------ errors
def test_errors():
    with pytest.raises(ValueError, match="same length"):
        clustering_accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        nmi([], [])
    with pytest.raises(ValueError, match="1-D"):
        ari([[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="non-integer"):
        leaf_purity([0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        leaf_purity([0, 1], [np.nan, 1.0])
    with pytest.raises(TypeError, match="integer labels"):  # class names are fine, cluster ids must be ids
        clustering_accuracy([0, 1], ["a", "b"])
    Z = scipy_linkage(np.random.default_rng(0).normal(size=(4, 2)))
    with pytest.raises(ValueError, match="no two points share a class"):
        dendrogram_purity([0, 1, 2, 3], Z)
    with pytest.raises(ValueError, match="pass leaf_of"):
        dendrogram_purity([0, 0, 1], Z)
    with pytest.raises(ValueError, match=r"leaf_of must lie in 0\.\.3"):
        dendrogram_purity([0, 0, 1], Z, leaf_of=[0, 4, 1])
    with pytest.raises(ValueError, match="one entry per point"):
        dendrogram_purity([0, 0, 1], Z, leaf_of=[0, 1])
    with pytest.raises(ValueError, match="shape"):
        dendrogram_purity([0, 0, 1, 1], Z[:, :3])
    bad = Z.copy()
    bad[0, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dendrogram_purity([0, 0, 1, 1], bad)
    bad = Z.copy()
    bad[0, 0] = bad[0, 1]
    with pytest.raises(ValueError, match="more than once"):
        dendrogram_purity([0, 0, 1, 1], bad)
    bad = Z.copy()
    bad[0, 0] = 6
    with pytest.raises(ValueError, match="before it is formed"):
        dendrogram_purity([0, 0, 1, 1], bad)
    with pytest.raises(ValueError, match="without a linkage"):
        evaluate([0, 1], [0, 1], leaf_of=[0, 1])


def test_dp_many_points_per_leaf_known_value():
    # leaf0: n points of class 0 and n/2 of class 1; leaf1: n/2 of class 1
    n = 2000
    y = np.repeat([0, 1], n)
    leaf_of = np.concatenate([np.zeros(n, int), np.zeros(n // 2, int), np.ones(n // 2, int)])
    Z = np.array([[0, 1, 1.0, 2]])
    c0 = math.comb(n, 2)
    h = n // 2
    p_leaf0 = h / (n + h)
    pairs1_leaf0 = math.comb(h, 2)
    pairs1_leaf1 = math.comb(h, 2)
    pairs1_root = h * h
    num = c0 * (n / (n + h)) + pairs1_leaf0 * p_leaf0 + pairs1_leaf1 * 1.0 + pairs1_root * 0.5
    den = c0 + math.comb(n, 2)
    assert dendrogram_purity(y, Z, leaf_of) == pytest.approx(num / den, rel=1e-12)
