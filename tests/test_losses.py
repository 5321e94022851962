"""Tree and contrastive losses against the reference values and brute-force definitions."""

import json
import math
from pathlib import Path

import pytest
import torch

from hiclust.losses import (
    cluster_contrastive_loss,
    cluster_entropy,
    cohiloss,
    level_probabilities,
    nt_xent,
    tree_balance_loss,
)

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "cohiloss_reference.json").read_text())


def _mask(depth, pruned):
    m = torch.ones(2**depth, dtype=torch.float64)
    m[list(pruned)] = 0
    return m


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=lambda c: f"B{c['batch_size']}T{c['depth']}p{len(c['pruned_leaves'])}")
def test_matches_reference_code(case):
    a = torch.tensor(case["decisions_view1"], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(case["decisions_view2"], dtype=torch.float64)
    mask = _mask(case["depth"], case["pruned_leaves"])
    loss = cohiloss(a, b, mask)
    r1 = tree_balance_loss(a, b, mask)
    assert loss.item() == pytest.approx(case["cohiloss_reference_form"], abs=1e-5)
    assert r1.item() == pytest.approx(case["r1_reference_form_unscaled"], abs=1e-5)
    (loss + r1).backward()
    torch.testing.assert_close(a.grad, torch.tensor(case["grad_view1_of_sum"], dtype=torch.float64), atol=1e-5, rtol=0)
    leaves = level_probabilities(a.detach())[-1][0]
    torch.testing.assert_close(leaves, torch.tensor(case["leaf_probs_first_row"], dtype=torch.float64), atol=1e-6, rtol=0)


def _levels_by_node_loop(decisions):
    """Per-node recursion over the heap, the definition in docs/methods.md, "Tree probabilities"."""
    n, k = decisions.shape
    depth = int(math.log2(k + 1))
    reach = {0: torch.ones(n, dtype=decisions.dtype)}
    for u in range(k):
        reach[2 * u + 1] = reach[u] * decisions[:, u]
        reach[2 * u + 2] = reach[u] * (1 - decisions[:, u])
    return [torch.stack([reach[2**t - 1 + i] for i in range(2**t)], 1) for t in range(1, depth + 1)]


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_level_probabilities_match_node_loop_and_sum_to_one(depth):
    g = torch.Generator().manual_seed(depth)
    d = torch.rand(7, 2**depth - 1, generator=g, dtype=torch.float64)
    fast = level_probabilities(d)
    slow = _levels_by_node_loop(d)
    assert [p.shape for p in fast] == [(7, 2**t) for t in range(1, depth + 1)]
    for p, q in zip(fast, slow):
        torch.testing.assert_close(p, q)
        torch.testing.assert_close(p.sum(1), torch.ones(7, dtype=torch.float64))


def _paper_brute_force(a, b):
    n = a.shape[0]
    la, lb = level_probabilities(a), level_probabilities(b)

    def s(j, i):
        return sum(torch.sqrt(pa[j] * pb[i]).sum() for pa, pb in zip(la, lb))

    neg = sum(s(j, i) for j in range(n) for i in range(n) if i != j) / (n * (n - 1))
    pos = sum(s(j, j) for j in range(n)) / n
    return neg - pos


def _reference_brute_force(a, b, mask):
    n = a.shape[0]
    levels = level_probabilities(torch.cat([a, b]))
    total = 0.0
    for t, p in enumerate(levels, start=1):
        m = mask if t == len(levels) else torch.ones(p.shape[1], dtype=p.dtype)
        r = torch.sqrt(p * m + 1e-8)
        pos, neg, n_pos, n_neg = 0.0, 0.0, 0, 0
        for i in range(2 * n):
            for j in range(2 * n):
                v = (r[i] * r[j]).sum()
                if j == (i + n) % (2 * n):
                    pos, n_pos = pos + v, n_pos + 1
                else:
                    neg, n_neg = neg + v, n_neg + 1
        total = total + neg / n_neg - pos / n_pos
    return total


@pytest.mark.parametrize("seed", range(4))
def test_paper_form_equals_pairwise_definition(seed):
    g = torch.Generator().manual_seed(seed)
    depth = 1 + seed
    a = torch.rand(6, 2**depth - 1, generator=g, dtype=torch.float64)
    b = torch.rand(6, 2**depth - 1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(cohiloss(a, b, form="paper"), _paper_brute_force(a, b))


@pytest.mark.parametrize("seed", range(3))
def test_reference_form_equals_pairwise_definition(seed):
    g = torch.Generator().manual_seed(100 + seed)
    depth = 2 + seed
    a = torch.rand(5, 2**depth - 1, generator=g, dtype=torch.float64)
    b = torch.rand(5, 2**depth - 1, generator=g, dtype=torch.float64)
    mask = _mask(depth, [0, 2 ** depth - 1])
    torch.testing.assert_close(cohiloss(a, b, mask), _reference_brute_force(a, b, mask))


def test_cohiloss_rewards_agreeing_views():
    """Identical confident views score lower than views routed to different leaves."""
    same = torch.tensor([[0.99, 0.99, 0.5], [0.01, 0.5, 0.01]], dtype=torch.float64)
    swapped = same.flip(0)
    assert cohiloss(same, same, form="paper") < cohiloss(same, swapped, form="paper")
    assert cohiloss(same, same) < cohiloss(same, swapped)


def test_balance_loss_is_minimal_for_balanced_use():
    balanced = torch.full((4, 3), 0.5, dtype=torch.float64)
    skewed = torch.full((4, 3), 0.9, dtype=torch.float64)
    assert tree_balance_loss(balanced, balanced) < tree_balance_loss(skewed, skewed)
    # At perfect balance p̄ = 2^-t, so level t adds 2^(t-1) pairs × (1/2^t)·½·2·t·log 2.
    expected = sum(2 ** (t - 1) * (0.5 / 2**t) * 2 * t * math.log(2) for t in (1, 2))
    assert tree_balance_loss(balanced, balanced).item() == pytest.approx(expected)


@pytest.mark.parametrize("form", ["reference", "paper"])
def test_losses_stay_finite_at_saturated_decisions(form):
    d = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0])
    loss = cohiloss(d, d.detach().flip(0), mask, form=form) + tree_balance_loss(d, d, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(d.grad).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="2\\^T - 1"):
        cohiloss(torch.rand(4, 4), torch.rand(4, 4))
    with pytest.raises(ValueError, match="same shape"):
        cohiloss(torch.rand(4, 3), torch.rand(5, 3))
    with pytest.raises(ValueError, match="leaf_mask"):
        cohiloss(torch.rand(4, 3), torch.rand(4, 3), torch.ones(3))
    with pytest.raises(ValueError, match="form"):
        cohiloss(torch.rand(4, 3), torch.rand(4, 3), form="other")


def _nt_xent_loop(z_a, z_b, tau):
    z = torch.nn.functional.normalize(torch.cat([z_a, z_b]), dim=1)
    n2 = z.shape[0]
    total = 0.0
    for a in range(n2):
        pos = (a + n2 // 2) % n2
        denom = sum(torch.exp(z[a] @ z[b] / tau) for b in range(n2) if b != a)
        total = total - torch.log(torch.exp(z[a] @ z[pos] / tau) / denom)
    return total / n2


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_nt_xent_equals_definition(tau):
    g = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(nt_xent(z_a, z_b, tau), _nt_xent_loop(z_a, z_b, tau))


def test_cluster_losses_equal_definition():
    g = torch.Generator().manual_seed(4)
    y_a = torch.softmax(torch.randn(8, 3, generator=g, dtype=torch.float64), 1)
    y_b = torch.softmax(torch.randn(8, 3, generator=g, dtype=torch.float64), 1)
    torch.testing.assert_close(cluster_contrastive_loss(y_a, y_b, 1.0), _nt_xent_loop(y_a.T, y_b.T, 1.0))
    h = 0.0
    for y in (y_a, y_b):
        for i in range(3):
            p = y[:, i].sum() / y.sum()
            h = h - p * torch.log(p)
    torch.testing.assert_close(cluster_entropy(y_a, y_b), h)
