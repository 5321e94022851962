"""Losses as pure functions of tensors."""

from hiclust.losses.contrastive import cluster_contrastive_loss, cluster_entropy, nt_xent
from hiclust.losses.tree import (
    cohiloss,
    depth_from_decisions,
    leaf_probabilities,
    level_probabilities,
    tree_balance_loss,
)

__all__ = [
    "cohiloss",
    "tree_balance_loss",
    "level_probabilities",
    "leaf_probabilities",
    "depth_from_decisions",
    "nt_xent",
    "cluster_contrastive_loss",
    "cluster_entropy",
]
