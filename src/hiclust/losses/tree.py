"""Tree losses of CoHiClust (docs/methods.md, "CoHiClust"), vectorized over samples, pairs and nodes.

Conventions: a tree of depth T has 2^T − 1 internal nodes in heap order (root 0, children
2u+1 = left, 2u+2 = right) and 2^T leaves numbered left to right. ``decisions`` are the tree
head's sigmoid outputs, shape (N, 2^T − 1): decisions[:, u] is the probability of going LEFT at u.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "depth_from_decisions",
    "level_probabilities",
    "leaf_probabilities",
    "cohiloss",
    "tree_balance_loss",
]

# Added under the square root exactly as in the reference code, which keeps the gradient of
# sqrt finite when a probability reaches 0.
_SQRT_EPS = 1e-8
# Floor for log(p̄) in R1: the reference has none; a floor only matters when a whole sub-tree
# receives exactly zero mass, where the reference would return inf.
_LOG_FLOOR = 1e-12
# Floor under the square root of the paper form (which has no +1e-8 of its own).
_PAPER_FLOOR = 1e-12


def depth_from_decisions(n_decisions: int) -> int:
    """Depth T of the complete tree with ``n_decisions`` = 2^T − 1 internal nodes."""
    depth = int(round(math.log2(n_decisions + 1)))
    if depth < 1 or 2**depth - 1 != n_decisions:
        raise ValueError(
            f"decisions must have 2^T - 1 columns (1, 3, 7, 15, ...), got {n_decisions}"
        )
    return depth


def level_probabilities(decisions: torch.Tensor) -> list[torch.Tensor]:
    """Probability of reaching each node of every level.

    Args:
        decisions: (N, 2^T − 1) left-probabilities in heap order.

    Returns:
        T tensors; element t−1 is P_t with shape (N, 2^t), the distribution over level t's nodes
        ordered left to right. Each is a cumulative product of edge probabilities; the only loop
        is over the T levels.
    """
    if decisions.ndim != 2:
        raise ValueError(f"decisions must have shape (N, 2^T - 1), got {tuple(decisions.shape)}")
    depth = depth_from_decisions(decisions.shape[1])
    n = decisions.shape[0]
    reach = decisions.new_ones(n, 1)
    levels = []
    for t in range(depth):
        d = decisions[:, 2**t - 1 : 2 ** (t + 1) - 1]  # the 2^t decisions of level t
        # Left child of level position j lands at 2j, right child at 2j+1.
        reach = torch.stack((reach * d, reach * (1.0 - d)), dim=-1).reshape(n, 2 ** (t + 1))
        levels.append(reach)
    return levels


def leaf_probabilities(decisions: torch.Tensor, leaf_mask: torch.Tensor | None = None) -> torch.Tensor:
    """P_T, shape (N, 2^T), with pruned leaves (mask 0) set to 0 (not renormalized)."""
    leaves = level_probabilities(decisions)[-1]
    if leaf_mask is not None:
        leaves = leaves * _check_mask(leaf_mask, leaves.shape[1]).to(leaves)
    return leaves


def _check_mask(leaf_mask: torch.Tensor, n_leaves: int) -> torch.Tensor:
    if leaf_mask.shape != (n_leaves,):
        raise ValueError(
            f"leaf_mask must have shape ({n_leaves},) for this tree, got {tuple(leaf_mask.shape)}"
        )
    return leaf_mask


def _check_views(decisions_a: torch.Tensor, decisions_b: torch.Tensor) -> None:
    if decisions_a.shape != decisions_b.shape:
        raise ValueError(
            "the two views must have the same shape, got "
            f"{tuple(decisions_a.shape)} and {tuple(decisions_b.shape)}"
        )
    if decisions_a.ndim != 2 or decisions_a.shape[0] < 1:
        raise ValueError(f"decisions must have shape (N >= 1, 2^T - 1), got {tuple(decisions_a.shape)}")


def _masked_levels(
    decisions_a: torch.Tensor, decisions_b: torch.Tensor, leaf_mask: torch.Tensor | None
) -> list[torch.Tensor]:
    """Levels of both views stacked to 2N rows; the mask applies at the leaf level only."""
    levels = level_probabilities(torch.cat((decisions_a, decisions_b), dim=0))
    if leaf_mask is not None:
        levels[-1] = levels[-1] * _check_mask(leaf_mask, levels[-1].shape[1]).to(levels[-1])
    return levels


def cohiloss(
    decisions_a: torch.Tensor,
    decisions_b: torch.Tensor,
    leaf_mask: torch.Tensor | None = None,
    form: str = "reference",
) -> torch.Tensor:
    """CoHiLoss summed over levels 1..T (docs/methods.md, "CoHiLoss"), in closed form O(N·2^T).

    Args:
        decisions_a, decisions_b: (N, 2^T − 1) tree-head outputs for the two views; row j of
            both comes from the same image.
        leaf_mask: (2^T,) with 0 for pruned leaves, 1 otherwise; applied at level T only.
        form: ``"reference"`` (the authors' code: 2N stacked rows, r = sqrt(P·mask + 1e-8),
            negatives = all ordered pairs of the 2N×2N grid but the 2N positives, self-pairs
            included) or ``"paper"`` (1/(N(N−1)) Σ_{j≠i} s(x_j, x̃_i) − 1/N Σ_j s(x_j, x̃_j)).

    Returns:
        Scalar tensor. Sums over pairs are computed as Σ_{a,b} r_a·r_b = ‖Σ_a r_a‖², so no N×N
        matrix is ever formed.
    """
    _check_views(decisions_a, decisions_b)
    n = decisions_a.shape[0]
    levels = _masked_levels(decisions_a, decisions_b, leaf_mask)
    total = decisions_a.new_zeros(())
    if form == "reference":
        n_rows = 2 * n
        n_neg = n_rows * n_rows - n_rows
        for p in levels:
            r = torch.sqrt(p + _SQRT_EPS)  # (2N, 2^t)
            all_pairs = r.sum(0).square().sum()
            positives = 2.0 * (r[:n] * r[n:]).sum()  # (j, j+N) and (j+N, j)
            total = total + (all_pairs - positives) / n_neg - positives / n_rows
    elif form == "paper":
        if n < 2:
            raise ValueError("the paper form of CoHiLoss needs a batch of at least 2 images")
        for p in levels:
            # sqrt'(0) is infinite: a floor keeps gradients finite when a decision saturates.
            r = torch.sqrt(p.clamp_min(_PAPER_FLOOR))
            ra, rb = r[:n], r[n:]
            positives = (ra * rb).sum()  # Σ_j s_t(x_j, x̃_j)
            all_pairs = (ra.sum(0) * rb.sum(0)).sum()  # Σ_j Σ_i s_t(x_j, x̃_i)
            total = total + (all_pairs - positives) / (n * (n - 1)) - positives / n
    else:
        raise ValueError(f"form must be 'reference' or 'paper', got {form!r}")
    return total


def tree_balance_loss(
    decisions_a: torch.Tensor,
    decisions_b: torch.Tensor,
    leaf_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """R1, the balanced-split regularizer, before its 2^−T factor (docs/methods.md, "Regularization", reference form).

    For each level t: p̄ = mean over the 2N stacked rows of P_t (masked at level T); each sibling
    pair (2l, 2l+1) with neither leaf pruned adds −(1/2^t)·½·(log p̄_2l + log p̄_2l+1).

    Returns:
        Scalar tensor; the total CoHiClust loss uses 2^−T times this value.
    """
    _check_views(decisions_a, decisions_b)
    levels = _masked_levels(decisions_a, decisions_b, leaf_mask)
    total = decisions_a.new_zeros(())
    for t, p in enumerate(levels, start=1):
        mean = p.mean(0).clamp_min(_LOG_FLOOR)
        pair_log = torch.log(mean).reshape(-1, 2).sum(1)  # log p̄_2l + log p̄_2l+1
        if t == len(levels) and leaf_mask is not None:
            keep = _check_mask(leaf_mask, p.shape[1]).reshape(-1, 2).bool().all(1)
            pair_log = pair_log[keep]
        total = total - pair_log.sum() * (0.5 / 2**t)
    return total
