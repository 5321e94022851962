"""DeepECT's tree losses (docs/methods.md, "DeepECT"), vectorized over points and nodes.

The cluster tree lives in arrays of a fixed capacity M (rows are nodes): ``centers`` (M, D),
``left`` / ``right`` (M,) child rows (−1 for a leaf or a free row). Points are assigned to their
nearest leaf; ``member`` (B, M) says which nodes each point lies under (its leaf and every ancestor).
With augmentation several views of a batch share the assignment of the first view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["node_center_loss", "data_compression_loss"]


def node_center_loss(views: list[torch.Tensor], leaf_of: torch.Tensor, centers: torch.Tensor,
                     n_leaves: int) -> torch.Tensor:
    """L_NC: Σ over leaves with points in the batch of ‖μ_leaf − mean(z of its points)‖ / n_leaves.

    Args:
        views: V tensors (B, D), embeddings of the batch (one per view, same assignment).
        leaf_of: (B,) int64 row of each point's leaf.
        centers: (M, D) node centers (the leaf rows are what this loss trains).
        n_leaves: number of leaves of the tree (the divisor).

    Returns:
        Scalar. The mean of a leaf's points is averaged over the views and detached: the loss
        moves the centers toward the data, not the data toward the centers.

    >>> z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    >>> mu = torch.tensor([[1.0, 1.0], [5.0, 5.0]])
    >>> float(node_center_loss([z], torch.tensor([0, 0, 1]), mu, 2))  # (‖(1,1)−(1,0)‖ + 0) / 2
    0.5
    """
    onehot = F.one_hot(leaf_of, centers.shape[0]).to(centers.dtype)  # (B, M)
    counts = onehot.sum(0)  # (M,)
    sums = sum(onehot.T @ v.to(centers.dtype) for v in views) / len(views)  # (M, D)
    means = (sums / counts.clamp_min(1)[:, None]).detach()
    present = counts > 0
    return (centers[present] - means[present]).norm(dim=1).sum() / n_leaves


def data_compression_loss(views: list[torch.Tensor], member: torch.Tensor, centers: torch.Tensor,
                          left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """L_DC: for each split node s with children l, r and direction d_s = (μ_l − μ_r)/‖μ_l − μ_r‖
    (norm detached), Σ over the points under each child c of |⟨μ_c (detached) − z, d_s⟩|, divided
    by 2 · (number of split nodes) · (batch size), averaged over the views.

    Args:
        views: V tensors (B, D).
        member: (B, M) bool, point b lies under node m.
        centers: (M, D). Gradients reach the centers only through d_s.
        left, right: (M,) int64 child rows (−1 for leaves and free rows).

    Returns:
        Scalar; 0 for a tree without splits.

    >>> mu = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])  # root 0 with children 1, 2
    >>> member = torch.tensor([[True, True, False], [True, False, True]])
    >>> z = torch.tensor([[3.0, 7.0], [-1.0, 2.0]])
    >>> float(data_compression_loss([z], member, mu, torch.tensor([1, -1, -1]), torch.tensor([2, -1, -1])))
    0.5
    """
    splits = torch.nonzero(left >= 0).flatten()
    if splits.numel() == 0:
        return centers.new_zeros(())
    l, r = left[splits], right[splits]
    diff = centers[l] - centers[r]  # (S, D)
    d = diff / diff.norm(dim=1, keepdim=True).detach().clamp_min(1e-12)
    child = torch.cat((l, r))  # (2S,) each child with its parent's direction
    direction = torch.cat((d, d))  # (2S, D)
    offset = (centers[child].detach() * direction).sum(1)  # ⟨μ_c, d⟩, (2S,)
    mask = member[:, child].to(centers.dtype)  # (B, 2S)
    total = centers.new_zeros(())
    for v in views:
        proj = offset[None, :] - v.to(centers.dtype) @ direction.T  # ⟨μ_c − z_b, d⟩, (B, 2S)
        total = total + (proj.abs() * mask).sum()
    batch = views[0].shape[0]
    return total / (2 * splits.numel() * batch * len(views))
