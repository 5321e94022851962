"""L2H (From Logits to Hierarchies): l2h_linkage and Hierarchy.from_logits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.cluster import hierarchy as sch

from hiclust.hierarchy import Hierarchy, check_linkage, l2h_linkage

TOL = 1e-12  # the documented tie tolerance


# --------------------------------------------------------------------------------------
# a slow reference with explicit Python loops over points
# --------------------------------------------------------------------------------------
def _softmax_list(row, allowed):
    m = max(row[k] for k in allowed)
    e = {k: math.exp(row[k] - m) for k in allowed}
    s = sum(e.values())
    return {k: v / s for k, v in e.items()}


def reference_l2h(logits):
    """Straightforward L2H; returns [(low, into, score, affinity)] per merge."""
    logits = [list(map(float, r)) for r in np.asarray(logits)]
    n, k = len(logits), len(logits[0])
    every = list(range(k))
    probs = [_softmax_list(r, every) for r in logits]
    assign, conf = [], []
    for pr in probs:
        best = 0
        for j in every:
            if pr[j] > pr[best]:
                best = j
        assign.append(best)
        conf.append(pr[best])
    mean_conf = []
    for j in every:
        cs = [conf[i] for i in range(n) if assign[i] == j]
        mean_conf.append(sum(cs) / len(cs) if cs else 0.0)

    groups = {j: [j] for j in every}  # node id -> clusters
    out = []
    next_id = k
    while len(groups) > 1:
        ids = sorted(groups)
        scores = {g: sum(mean_conf[j] for j in groups[g]) for g in ids}
        lo = min(scores.values())
        low = next(g for g in ids if scores[g] <= lo + TOL)
        inside = set(groups[low])
        outside = [j for j in every if j not in inside]
        pts = [i for i in range(n) if assign[i] in inside]
        others = [g for g in ids if g != low]
        aff = {g: 0.0 for g in others}
        if pts:
            for i in pts:
                q = _softmax_list(logits[i], outside)
                for g in others:
                    aff[g] += sum(q[j] for j in groups[g]) / len(pts)
        else:
            weights = [sum(probs[i][j] for j in inside) for i in range(n)]
            total = sum(weights)
            for i in range(n):
                q = _softmax_list(logits[i], outside)
                w = weights[i] / total if total > 0 else 1.0 / n
                for g in others:
                    aff[g] += w * sum(q[j] for j in groups[g])
        hi = max(aff.values())
        into = next(g for g in others if aff[g] >= hi - TOL)
        out.append((low, into, scores[low], aff[into]))
        groups[next_id] = groups.pop(low) + groups.pop(into)
        next_id += 1
    return out


def _partition(labels):
    """Partition as a frozenset of frozensets of indices (label names ignored)."""
    labels = np.asarray(labels)
    return frozenset(frozenset(np.flatnonzero(labels == v).tolist()) for v in np.unique(labels))


def _replay(Z, k, n_merges):
    """Partition of the clusters after the first n_merges rows of Z."""
    members = {j: {j} for j in range(k)}
    for s in range(n_merges):
        a, b = int(Z[s, 0]), int(Z[s, 1])
        members[k + s] = members.pop(a) | members.pop(b)
    return frozenset(frozenset(m) for m in members.values())


def _super_group_logits(seed, n_per=40):
    """K=8 clusters in super-groups {0..3} and {4..7}: a point of cluster k puts its top logit on
    k, its second-highest mass on the other clusters of its super-group, little elsewhere."""
    rng = np.random.default_rng(seed)
    k = 8
    own = rng.uniform(5.0, 6.0, size=k)  # clusters differ in confidence
    rows = []
    for c in range(k):
        sup = c // 4
        base = np.where(np.arange(k) // 4 == sup, 2.5, 0.0)
        r = base + rng.normal(0.0, 0.3, size=(n_per, k))
        r[:, c] = own[c] + rng.normal(0.0, 0.3, size=n_per)
        rows.append(r)
    return np.concatenate(rows)


# --------------------------------------------------------------------------------------
# (a) hand-made logits, merges known by hand
# --------------------------------------------------------------------------------------
def test_confidence_order_k4():
    # confidences: c0 = e^4/(e^4+e^2+2) ~ .853, c1 = e^4/(e^4+e^1.9+2) ~ .864,
    # c2 = e/(2+e+e^.5) ~ .427 (lowest), c3 = e^2/(2+e^.5+e^2) ~ .669.
    logits = [[4.0, 2.0, 0.0, 0.0],   # cluster 0, leans to 1
              [1.9, 4.0, 0.0, 0.0],   # cluster 1, leans to 0
              [0.0, 0.0, 1.0, 0.5],   # cluster 2, unsure, leans to 3
              [0.0, 0.0, 0.5, 2.0]]   # cluster 3, leans to 2
    Z, m = l2h_linkage(logits, return_merges=True)
    # 2 (lowest) -> 3 = node 4 (score .427+.669 = 1.10); then 0 (.853 < .864) -> 1 = node 5;
    # then node 4 (1.10 < 1.72) -> node 5.
    assert Z.tolist() == [[2, 3, 1, 2], [0, 1, 2, 2], [4, 5, 3, 4]]
    assert m["low"].tolist() == [2, 0, 4] and m["into"].tolist() == [3, 1, 5]
    e = math.e
    c = [e**4 / (e**4 + e**2 + 2), e**4 / (e**4 + e**1.9 + 2), e / (2 + e + e**0.5), e**2 / (2 + e**0.5 + e**2)]
    np.testing.assert_allclose(m["score"], [c[2], c[0], c[2] + c[3]], rtol=1e-12)
    np.testing.assert_allclose(m["affinity"][:2], [e**0.5 / (2 + e**0.5), e**2 / (e**2 + 2)], rtol=1e-12)
    assert m["n_points"].tolist() == [1, 1, 2]


def test_reassigned_mass_prefers_group_over_best_single_cluster():
    logits = [[3.5, 0.0, 0.0, 0.0],   # cluster 0, confident (.917)
              [0.0, 1.0, 0.95, 0.0],  # cluster 1, least confident (.372), leans to 2
              [0.0, 0.0, 3.0, 0.0],   # cluster 2 (.870)
              [1.0, 0.8, 0.8, 1.5]]   # cluster 3 (.385): outside it, 0 beats 1 and 2 singly
    Z, m = l2h_linkage(logits, return_merges=True)
    assert Z.tolist() == [[1, 2, 1, 2], [3, 4, 2, 3], [0, 5, 3, 4]]
    e = math.e
    # step 2: cluster 3 re-assigned over {0, 1, 2}: {1, 2} = node 4 gets 2e^.8/(e+2e^.8) > 1/2
    np.testing.assert_allclose(m["affinity"][1], 2 * e**0.8 / (e + 2 * e**0.8), rtol=1e-12)
    assert m["affinity"][1] > 0.6
    # the per-cluster argmax of the re-assignment would have picked cluster 0
    q = np.exp([1.0, 0.8, 0.8])
    assert np.argmax(q) == 0


def test_ties_go_to_lowest_node_id():
    # three identical, symmetric clusters: every score ties, every re-assignment ties
    Z = l2h_linkage(2.0 * np.eye(3))
    assert Z.tolist() == [[0, 1, 1, 2], [2, 3, 2, 3]]
    # identical points of two clusters: cluster 0 merges into 1, the lowest other id
    Z = l2h_linkage([[1.0, 0.0], [0.0, 1.0]])
    assert Z.tolist() == [[0, 1, 1, 2]]


def test_empty_cluster_scores_zero_and_follows_soft_membership():
    # no point is assigned to cluster 2; it is merged first (score 0) and follows the point that
    # gives it the most mass (the cluster-0 point), so it joins cluster 0.
    logits = [[3.0, 0.0, 2.0],
              [0.0, 3.0, 0.0]]
    Z, m = l2h_linkage(logits, return_merges=True)
    assert Z.tolist() == [[2, 0, 1, 2], [3, 1, 2, 3]]
    assert m["score"][0] == 0.0 and m["n_points"].tolist() == [0, 1]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    w = p[:, 2]
    q = np.exp(np.asarray(logits)[:, :2])
    q /= q.sum(1, keepdims=True)
    np.testing.assert_allclose(m["affinity"][0], (w @ q[:, 0]) / w.sum(), rtol=1e-12)


def test_scores_non_decreasing_and_heights_are_steps():
    rng = np.random.default_rng(3)
    Z, m = l2h_linkage(rng.normal(0, 2, size=(200, 9)), return_merges=True)
    assert np.all(np.diff(m["score"]) >= -1e-12)
    assert Z[:, 2].tolist() == list(range(1, 9))
    assert (Z[:, :2] == np.stack([m["low"], m["into"]], 1)).all()


# --------------------------------------------------------------------------------------
# (b) two super-groups of four clusters
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cut_at_two_recovers_super_groups(seed):
    logits = _super_group_logits(seed)
    Z = l2h_linkage(logits)
    expected = frozenset({frozenset(range(4)), frozenset(range(4, 8))})
    assert _partition(Hierarchy.from_logits(logits).cut(n_clusters=2)) == expected
    assert _partition(sch.fcluster(Z, 2, criterion="maxclust")) == expected
    # and no merge crosses the super-groups before the last one
    assert _replay(Z, 8, 6) == expected


# --------------------------------------------------------------------------------------
# (c) valid linkage; Hierarchy round trip
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_linkage_valid_and_hierarchy_reproduces_it(k):
    rng = np.random.default_rng(k)
    logits = rng.normal(0, 3, size=(50, k))
    Z = l2h_linkage(logits)
    assert Z.shape == (k - 1, 4) and Z.dtype == np.float64
    assert sch.is_valid_linkage(Z)
    assert sch.is_monotonic(Z)
    np.testing.assert_array_equal(check_linkage(Z), Z)
    h = Hierarchy.from_logits(logits)
    assert h.source == "l2h" and h.n_leaves == k
    np.testing.assert_array_equal(h.to_linkage(), Z)
    h2 = Hierarchy.from_json(h.to_json())
    assert h2.source == "l2h" and json.loads(h2.to_json()) == json.loads(h.to_json())
    np.testing.assert_array_equal(h2.to_linkage(), Z)
    # cut(n_clusters=j) undoes the last j−1 merges, as fcluster maxclust does
    for j in range(1, k + 1):
        want = _replay(Z, k, k - j)
        assert _partition(h.cut(n_clusters=j)) == want
        assert _partition(sch.fcluster(Z, j, criterion="maxclust")) == want


def test_input_types_and_no_mutation():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(30, 5)).astype(np.float32)
    before = logits.copy()
    Z = l2h_linkage(logits)
    np.testing.assert_array_equal(logits, before)
    np.testing.assert_array_equal(l2h_linkage(logits.tolist()), Z)
    np.testing.assert_array_equal(l2h_linkage(logits.astype(np.float64)), Z)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(l2h_linkage(torch.from_numpy(logits)), Z)
    # integer logits are accepted; a single point works
    assert l2h_linkage(np.array([[3, 1, 0]])).shape == (2, 4)


# --------------------------------------------------------------------------------------
# (d) validation
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, match", [
    (np.zeros(4), "2-D"),
    (np.zeros((2, 3, 4)), "2-D"),
    (np.zeros((5, 1)), "at least 2 clusters"),
    (np.zeros((0, 3)), "at least one point"),
    ([[0.0, np.nan]], "NaN or infinite"),
    ([[0.0, np.inf]], "NaN or infinite"),
    ([[0.0, -np.inf]], "NaN or infinite"),
    ([["a", "b"]], "numeric"),
    (np.ones((2, 2), dtype=bool), "numeric"),
    (np.ones((2, 2), dtype=complex), "numeric"),
    ([[0.0, 1.0], [2.0]], "array-like"),
])
def test_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        l2h_linkage(bad)
    with pytest.raises(ValueError, match=match):
        Hierarchy.from_logits(bad)


# --------------------------------------------------------------------------------------
# (e) agreement with the slow reference
# --------------------------------------------------------------------------------------
_REF_K = [2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10]


def _random_logits(seed):
    """K cycles through 2..10; few points, so empty clusters (and their fallback) occur."""
    rng = np.random.default_rng(100 + seed)
    k = _REF_K[seed]
    n = int(rng.integers(1, 60))
    return rng.normal(0, rng.uniform(0.5, 4.0), size=(n, k)) + rng.normal(0, 1.0, size=k)


@pytest.mark.parametrize("seed", range(len(_REF_K)))
def test_matches_reference(seed):
    logits = _random_logits(seed)
    Z, m = l2h_linkage(logits, return_merges=True)
    ref = reference_l2h(logits)
    assert [(int(a), int(b)) for a, b in Z[:, :2]] == [(r[0], r[1]) for r in ref]
    np.testing.assert_allclose(m["score"], [r[2] for r in ref], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m["affinity"], [r[3] for r in ref], rtol=1e-9, atol=1e-12)


def test_reference_covers_empty_clusters():
    # the reference comparison above must exercise the no-points fallback at least once
    hit = 0
    for seed in range(len(_REF_K)):
        logits = _random_logits(seed)
        hit += int((l2h_linkage(logits, return_merges=True)[1]["n_points"] == 0).any())
    assert hit > 0
