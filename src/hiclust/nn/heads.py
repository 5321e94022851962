"""Heads on top of backbone features h: projection g (NT-Xent), tree π (CoHiClust), cluster
softmax (CC)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hiclust.losses.tree import level_probabilities

__all__ = ["ProjectionHead", "TreeHead", "ClusterHead"]


class ProjectionHead(nn.Module):
    """g: Linear(d→hidden, no bias) → BatchNorm1d → ReLU → Linear(hidden→out), L2-normalized.

    (B, d) → (B, out) unit vectors. ``batch_norm=False`` gives CC's instance head
    (Linear → ReLU → Linear).
    """

    def __init__(self, in_features: int, hidden: int = 512, out_features: int = 128, batch_norm: bool = True) -> None:
        super().__init__()
        if batch_norm:
            first: list[nn.Module] = [nn.Linear(in_features, hidden, bias=False), nn.BatchNorm1d(hidden)]
        else:
            first = [nn.Linear(in_features, hidden)]
        self.net = nn.Sequential(*first, nn.ReLU(inplace=True), nn.Linear(hidden, out_features))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(h), dim=1)


class TreeHead(nn.Module):
    """π: ONE linear layer + sigmoid with 2^T − 1 outputs, one per internal node (heap order).

    forward: (B, d) → decisions (B, 2^T − 1), each the probability of going left.
    """

    def __init__(self, in_features: int, depth: int) -> None:
        super().__init__()
        if not 1 <= depth <= 12:
            raise ValueError(f"tree depth must be between 1 and 12, got {depth}")
        self.depth = depth
        self.linear = nn.Linear(in_features, 2**depth - 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(h))

    def leaf_probabilities(self, h: torch.Tensor) -> torch.Tensor:
        """(B, d) → P_T (B, 2^T), unmasked."""
        return level_probabilities(self(h))[-1]


class ClusterHead(nn.Module):
    """CC's g_C: Linear(d→hidden) → ReLU → Linear(hidden→M) → softmax. (B, d) → (B, M)."""

    def __init__(self, in_features: int, n_clusters: int, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_clusters))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(h), dim=1)
